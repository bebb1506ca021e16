package api

// Simple login for simple clients (docs/oauth.md, "Simple login for
// scripts"): POST /auth/login trades an email and password for a normal
// mcpgate access token for the MCP endpoint (and a refresh token), and
// GET /auth/status says who a bearer credential belongs to.
//
// The password check is identity.Service.Login, the one the login page
// and POST /api/auth/login use: the same per-account and per-IP rate
// limits, one answer for a wrong email, a wrong password and a disabled
// user, login.succeeded / login.failed in the audit log. The tokens come
// from the authorization server (oauth.Server.DirectLogin): a real grant
// of a built-in first-party client, so they are audience-bound, revocable
// (/revoke, Connected apps, password change, disable), refreshable at
// /token, and audited as oauth.token_issued. GET /auth/status goes
// through authn.Middleware, the chain /mcp uses: an access token or an
// API key, refused with /mcp's challenge.

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/store"
)

// DirectLogin issues the tokens of POST /auth/login (*oauth.Server).
type DirectLogin interface {
	// DirectLogin issues an access token (and refresh token) for the MCP
	// resource to a user who has just logged in with a password.
	DirectLogin(ctx context.Context, u store.User) (oauth.DirectLoginTokens, error)
}

// directLoginPrefix is where the simple-login endpoints live (outside
// /api/: scripts find them at the origin's root).
const directLoginPrefix = "/auth/"

type directLoginResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope"`
	ClientID     string `json:"client_id"`
	Message      string `json:"message"`
}

// directLogin serves POST /auth/login.
func (a *API) directLogin(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Pragma", "no-cache")
	// Scripts send no Origin; a browser page of another origin (not one
	// the operator trusts) may not make its visitors' browsers guess
	// passwords for it.
	if e := a.checkCSRF(r); e != nil {
		writeError(w, e)
		return
	}
	var req loginRequest
	if e := decodeJSON(r, maxBody, &req); e != nil {
		writeError(w, e)
		return
	}
	switch {
	case strings.TrimSpace(req.Email) == "":
		writeError(w, badField("email", "email is required"))
		return
	case req.Password == "":
		writeError(w, badField("password", "password is required"))
		return
	}
	u, e := a.checkPassword(r, req.Email, req.Password)
	if e != nil {
		writeError(w, e)
		return
	}
	tok, err := a.opts.DirectLogin.DirectLogin(r.Context(), u)
	if err != nil {
		writeError(w, a.unavailable(err))
		return
	}
	writeJSON(w, http.StatusOK, directLoginResponse{
		AccessToken: tok.AccessToken, TokenType: "bearer", ExpiresIn: tok.ExpiresIn,
		RefreshToken: tok.RefreshToken, Scope: strings.Join(tok.Scopes, " "), ClientID: tok.ClientID,
		Message: "Login successful",
	})
}

type authStatusResponse struct {
	Authenticated bool       `json:"authenticated"`
	User          *userJSON  `json:"user"` // null for a client-credentials token (no user)
	Scopes        []string   `json:"scopes"`
	Method        string     `json:"method"`
	ClientID      string     `json:"client_id,omitempty"`
	ExpiresAt     *time.Time `json:"expires_at"` // null: the credential does not expire
}

// bearer guards a route with authn.Middleware (the checks of /mcp: a
// bearer access token or API key, origin policy, no credentials in the
// query), rewriting its refusals into this API's error body while keeping
// the status and the challenge (WWW-Authenticate).
func (a *API) bearer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		passed := false
		rec := &bufferedWriter{header: http.Header{}}
		a.opts.Authn.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			passed = true
			next.ServeHTTP(w, r)
		})).ServeHTTP(rec, r)
		if passed {
			return
		}
		e := authnRefusal(w, rec)
		if e.Status == http.StatusUnauthorized {
			e.Message = "send an mcpgate access token (from POST /auth/login or OAuth) or an API key in the Authorization header"
			if strings.Contains(rec.header.Get("WWW-Authenticate"), "invalid_token") {
				e.Message = "the access token or API key is invalid, expired or revoked"
			}
		}
		writeError(w, e)
	})
}

// authStatus serves GET /auth/status.
func (a *API) authStatus(w http.ResponseWriter, r *http.Request) {
	p := principal.From(r.Context())
	if p == nil { // authn.Middleware always sets one
		writeError(w, errorf(http.StatusUnauthorized, codeUnauthorized, "not authenticated"))
		return
	}
	out := authStatusResponse{Authenticated: true, Scopes: p.Scopes, Method: p.Method, ClientID: p.ClientID}
	if out.Scopes == nil {
		out.Scopes = []string{}
	}
	if p.UserID != "" {
		u := userOut(store.User{ID: p.UserID, Email: p.Email, DisplayName: p.Name, Roles: p.Roles})
		out.User = &u
	}
	if !p.ExpiresAt.IsZero() {
		t := p.ExpiresAt.UTC()
		out.ExpiresAt = &t
	}
	writeJSON(w, http.StatusOK, out)
}
