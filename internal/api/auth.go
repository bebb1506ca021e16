package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/store"
)

type userJSON struct {
	ID    string   `json:"id"`
	Email string   `json:"email"`
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
}

func userOut(u store.User) userJSON {
	roles := u.Roles
	if roles == nil {
		roles = []string{}
	}
	return userJSON{ID: u.ID, Email: u.Email, Name: u.DisplayName, Roles: roles}
}

type loginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// login serves POST /api/auth/login: the JSON twin of the login page. It
// sets the same session cookie (session.Manager.Start: a new session id on
// every login, the browser's previous session ended). Cross-origin browser
// posts are refused (login CSRF would log the victim into the attacker's
// account).
func (a *API) login(w http.ResponseWriter, r *http.Request) {
	if e := a.checkCSRF(r); e != nil {
		writeError(w, e)
		return
	}
	var req loginRequest
	if e := decodeJSON(r, maxBody, &req); e != nil {
		writeError(w, e)
		return
	}
	u, e := a.checkPassword(r, req.Email, req.Password)
	if e != nil {
		writeError(w, e)
		return
	}
	if _, err := a.opts.Sessions.Start(r.Context(), w, r, u); err != nil {
		writeError(w, a.unavailable(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": userOut(u)})
}

// logout serves POST /api/auth/logout: it ends the browser session (and
// its MCP key) and clears the cookie. Without a session it only clears the
// cookie: logging out twice, or concurrently, is not an error.
func (a *API) logout(w http.ResponseWriter, r *http.Request) {
	if e := a.checkCSRF(r); e != nil {
		writeError(w, e)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if err := a.opts.Sessions.End(r.Context(), w, r); err != nil {
		writeError(w, a.unavailable(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type credentialJSON struct {
	APIKey    string    `json:"api_key"`
	KeyID     string    `json:"key_id"`
	Prefix    string    `json:"prefix"`
	ExpiresAt time.Time `json:"expires_at"`
	Scopes    []string  `json:"scopes"`
	MCPURL    string    `json:"mcp_url"`
	Kind      string    `json:"kind"`
}

// credentials serves POST /api/mcp/credentials: the MCP credential of the
// current browser session (apikeys.Service.SessionKey). The same key comes
// back on every call of the session; it ends with the session.
func (a *API) credentials(w http.ResponseWriter, r *http.Request) {
	plaintext, key, e := a.sessionKey(r)
	if e != nil {
		writeError(w, e)
		return
	}
	scopes := key.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	writeJSON(w, http.StatusOK, credentialJSON{
		APIKey: plaintext, KeyID: key.ID, Prefix: key.Prefix, ExpiresAt: key.ExpiresAt.UTC(),
		Scopes: scopes, MCPURL: a.opts.MCPURL, Kind: key.Kind,
	})
}

// checkPassword runs identity.Login for the request's client IP and maps its
// outcome to this API's errors: one answer for unknown email, wrong password
// and disabled account (401), 429 with Retry-After when rate-limited, 503
// when storage fails. Both JSON logins (/api/auth/login, /auth/login) use it.
func (a *API) checkPassword(r *http.Request, email, password string) (store.User, *apiError) {
	ip := httpx.InfoFrom(r.Context()).ClientIP
	if ip == "" {
		ip = httpx.ClientIP(r)
	}
	u, err := a.opts.Users.Login(r.Context(), email, password, ip)
	var limited *identity.RateLimitedError
	switch {
	case errors.Is(err, identity.ErrInvalidCredentials):
		return u, errorf(http.StatusUnauthorized, codeInvalidCredentials, "invalid email or password")
	case errors.As(err, &limited):
		e := errorf(http.StatusTooManyRequests, codeRateLimited, "%s", limited.Error())
		e.RetryAfter = identity.RetryAfterSeconds(limited.RetryAfter)
		return u, e
	case err != nil:
		return u, a.unavailable(err)
	}
	return u, nil
}
