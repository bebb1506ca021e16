package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
)

// account guards an account endpoint with authn.Account (session cookie
// with CSRF protection, or an API key with the account scope), rewriting
// its refusals into this API's error body ({"error","message"}) so clients
// parse one shape everywhere.
func (a *API) account(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		passed := false
		rec := &bufferedWriter{header: http.Header{}}
		a.opts.Authn.Account(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			passed = true
			next.ServeHTTP(w, r)
		})).ServeHTTP(rec, r)
		if !passed {
			a.translateRefusal(w, rec)
		}
	})
}

// facade authenticates a tools facade request. A request with a
// credential header (Authorization or X-API-Key) is forwarded to /mcp with
// exactly that credential, and /mcp's authn judges it: any key or token
// that may call MCP tools works, no account scope needed. Otherwise the
// session cookie is checked by authn.Account (with CSRF protection for
// POST) and the session's MCP key is sent in its place.
func (a *API) facade(serve func(w http.ResponseWriter, r *http.Request, cred http.Header)) http.Handler {
	bySession := a.account(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		plaintext, _, e := a.sessionKey(r)
		if e != nil {
			writeError(w, e)
			return
		}
		serve(w, r, http.Header{"Authorization": {"Bearer " + plaintext}})
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if queryHasCredential(r.URL.RawQuery) {
			writeError(w, errorf(http.StatusBadRequest, codeInvalidRequest,
				"credentials in the URL query are refused because URLs end up in logs; send the key in the Authorization header (Bearer) or X-API-Key"))
			return
		}
		auth, keys := r.Header.Values("Authorization"), r.Header.Values("X-Api-Key")
		if len(auth)+len(keys) == 0 {
			bySession.ServeHTTP(w, r)
			return
		}
		cred := http.Header{}
		if len(auth) > 0 {
			cred["Authorization"] = auth
		}
		if len(keys) > 0 {
			cred["X-Api-Key"] = keys
		}
		serve(w, r, cred)
	})
}

// sessionKey returns the MCP key of the request's browser session. The
// request has passed authn.Account with the session cookie.
func (a *API) sessionKey(r *http.Request) (string, store.APIKey, *apiError) {
	p := principal.From(r.Context())
	if p == nil || p.Method != principal.MethodSession {
		return "", store.APIKey{}, errorf(http.StatusForbidden, codeForbidden, "this endpoint needs the browser session cookie; API key callers already hold their credential")
	}
	cur, err := a.opts.Sessions.Current(r)
	switch {
	case errors.Is(err, session.ErrNoSession):
		return "", store.APIKey{}, errorf(http.StatusUnauthorized, codeUnauthorized, "your session has ended; log in again")
	case err != nil:
		return "", store.APIKey{}, a.unavailable(err)
	}
	plaintext, key, err := a.opts.Keys.SessionKey(r.Context(), cur.Session, cur.Secret, a.sessionScopes)
	var refused *apikeys.RefusedError
	switch {
	case errors.As(err, &refused) && refused.KeyID != "":
		// The session's key exists but was revoked (by the user, in the
		// key list) or expired: a session gets one key only.
		return "", store.APIKey{}, errorf(http.StatusUnauthorized, codeUnauthorized, "the MCP credential of this session was revoked or has expired; log in again to get a new one")
	case errors.As(err, &refused):
		return "", store.APIKey{}, errorf(http.StatusUnauthorized, codeUnauthorized, "your session has ended; log in again")
	case errors.Is(err, apikeys.ErrSessionKeyChanged):
		a.log.Warn("api: a session key was derived under another server key; do all nodes share --server-key?", "session", cur.Session.ID)
		return "", store.APIKey{}, errorf(http.StatusUnauthorized, codeUnauthorized, "the MCP credential of this session can no longer be derived (the server key changed); log in again")
	case errors.Is(err, apikeys.ErrNoServerKey):
		a.log.Error("api: session credentials need a server key (apikeys.Options.ServerKey)")
		return "", store.APIKey{}, errorf(http.StatusServiceUnavailable, codeUnavailable, "session credentials are not configured on this server")
	case err != nil:
		return "", store.APIKey{}, a.unavailable(err)
	}
	return plaintext, key, nil
}

// unavailable logs a storage failure and describes it to the client.
func (a *API) unavailable(err error) *apiError {
	a.log.Error("api: storage failure", "err", err)
	e := errorf(http.StatusServiceUnavailable, codeUnavailable, "the service is temporarily unavailable; try again shortly")
	e.RetryAfter = 5
	return e
}

// translateRefusal rewrites authn's refusal (RFC 6750 body:
// {"error","error_description"}) into this API's error body, keeping the
// status and the challenge headers.
func (a *API) translateRefusal(w http.ResponseWriter, rec *bufferedWriter) {
	writeError(w, authnRefusal(w, rec))
}

// authnRefusal is translateRefusal's error body; it copies the challenge
// headers to w.
func authnRefusal(w http.ResponseWriter, rec *bufferedWriter) *apiError {
	for _, h := range []string{"WWW-Authenticate", "Retry-After"} {
		if v := rec.header.Values(h); len(v) > 0 {
			w.Header()[h] = v
		}
	}
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(rec.body.Bytes(), &body)
	status := rec.status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	e := &apiError{Status: status, Code: body.Error, Message: body.Description}
	switch {
	case status == http.StatusUnauthorized:
		e.Code = codeUnauthorized
		e.Message = orDefault(e.Message, "log in, or send an API key in the Authorization header")
		if body.Error == "invalid_token" {
			e.Message = "the API key is invalid, expired or revoked"
		}
	case status == http.StatusForbidden && body.Error == "insufficient_scope":
		e.Code = codeInsufficientScope
		e.RequiredScopes = challengeScopes(rec.header.Get("WWW-Authenticate"))
	case status == http.StatusForbidden:
		e.Code = codeForbidden
	case status == http.StatusBadRequest:
		e.Code = codeInvalidRequest
	case status == http.StatusServiceUnavailable:
		e.Code = codeUnavailable
		if ra, err := strconv.Atoi(rec.header.Get("Retry-After")); err == nil {
			e.RetryAfter = ra
		}
	}
	if e.Code == "" {
		e.Code = codeServerError
	}
	e.Message = orDefault(e.Message, http.StatusText(status))
	return e
}

// bufferedWriter keeps what authn wrote when it refused a request.
type bufferedWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header { return b.header }
func (b *bufferedWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}
func (b *bufferedWriter) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	if b.body.Len() > 64<<10 {
		return len(p), nil
	}
	return b.body.Write(p)
}

// checkCSRF refuses a cross-origin browser request that would change state
// with the session cookie (login and logout, which run before authn).
func (a *API) checkCSRF(r *http.Request) *apiError {
	if err := a.csrf.Check(r); err != nil {
		return errorf(http.StatusForbidden, codeForbidden, "cross-origin request refused")
	}
	return nil
}

// minLevel drops log records below min.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(attrs), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}

// queryCredentialNames are query parameters that carry credentials in other
// products (authn refuses the same on every route it guards).
var queryCredentialNames = []string{"access_token", "api_key", "apikey", "api-key", "key", "token", "x-api-key", "bearer"}

// queryHasCredential reports whether a raw query seems to carry a
// credential: a parameter named like one, or an mcpgate key anywhere.
func queryHasCredential(raw string) bool {
	if raw == "" {
		return false
	}
	if strings.Contains(raw, apikeys.KeyPrefix) {
		return true
	}
	for _, pair := range strings.FieldsFunc(raw, func(r rune) bool { return r == '&' || r == ';' }) {
		name, value, _ := strings.Cut(pair, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
		if v, err := url.QueryUnescape(value); err == nil && strings.Contains(v, apikeys.KeyPrefix) {
			return true
		}
		for _, c := range queryCredentialNames {
			if strings.EqualFold(name, c) {
				return true
			}
		}
	}
	return false
}
