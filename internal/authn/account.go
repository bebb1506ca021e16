package authn

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
)

// Account returns middleware for the account JSON API and the other routes
// a browser session or an API key may use. It accepts:
//
//   - an API key (Authorization: Bearer, or X-API-Key) with the account
//     scope, checked like Middleware does, except for the Origin check: a
//     key is not ambient authority, so a cross-origin request carrying one
//     cannot be forged by another site. A key without the scope gets 403
//     insufficient_scope (RFC 6750 §3.1). A key header wins over a cookie.
//   - otherwise the session cookie: the principal has Method
//     principal.MethodSession, CredentialID the session id, and the scopes
//     Options.Scopes plus the account scope. Requests that change state
//     (any method but GET, HEAD, OPTIONS) must pass
//     net/http.CrossOriginProtection, or get 403 (audited with reason csrf).
//
// Without either it answers 401 {"error":"unauthorized"} with a Bearer
// challenge (for key clients). Every refusal is audited as auth.rejected.
func (a *Authenticator) Account(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ref := a.checkQuery(r); ref != nil {
			a.refuse(w, r, ref)
			return
		}
		var (
			p   *principal.Principal
			ref *refusal
			err error
		)
		if len(r.Header.Values("Authorization"))+len(r.Header.Values("X-Api-Key")) > 0 || a.opts.Sessions == nil {
			p, ref, err = a.authenticateKey(r)
			if err == nil && ref == nil && !p.HasScope(a.opts.AccountScope) {
				ref = &refusal{status: http.StatusForbidden, reason: audit.ReasonMissingScopes,
					challenge: httpx.Challenge{Error: "insufficient_scope",
						Description: "this API needs a key with the " + a.opts.AccountScope + " scope",
						Scope:       a.opts.AccountScope},
					keyID: p.CredentialID, userID: p.UserID,
					details: map[string]any{"required": []string{a.opts.AccountScope}, "missing": []string{a.opts.AccountScope}}}
			}
		} else {
			p, ref, err = a.authenticateSession(r)
		}
		if err != nil {
			a.unavailable(w, err)
			return
		}
		if ref != nil {
			a.refuse(w, r, ref)
			return
		}
		a.opts.OnDecision(p.Method, store.OutcomeAllow, "")
		next.ServeHTTP(w, r.WithContext(principal.With(r.Context(), p)))
	})
}

// authenticateSession reads the session cookie.
func (a *Authenticator) authenticateSession(r *http.Request) (*principal.Principal, *refusal, error) {
	if _, err := r.Cookie(a.opts.Sessions.CookieName()); err != nil {
		return nil, &refusal{status: http.StatusUnauthorized, reason: audit.ReasonMissing,
			challenge: httpx.Challenge{Scope: a.opts.AccountScope}}, nil
	}
	cur, err := a.opts.Sessions.Current(r)
	switch {
	case errors.Is(err, session.ErrNoSession):
		return nil, &refusal{status: http.StatusUnauthorized, reason: audit.ReasonInvalidSession, method: principal.MethodSession,
			challenge:   httpx.Challenge{Scope: a.opts.AccountScope},
			description: "your session has ended; log in again"}, nil
	case err != nil:
		return nil, nil, err
	}
	if err := a.csrf.Check(r); err != nil {
		return nil, &refusal{status: http.StatusForbidden, reason: audit.ReasonCSRF, method: principal.MethodSession,
			description: "cross-origin request refused",
			userID:      cur.User.ID, keyID: cur.Session.ID,
			details: map[string]any{
				"origin":         truncate(r.Header.Get("Origin"), 200),
				"sec_fetch_site": truncate(r.Header.Get("Sec-Fetch-Site"), 50),
				"method":         truncate(r.Method, 20),
			}}, nil
	}
	scopes := slices.Clone(a.opts.Scopes)
	if !slices.Contains(scopes, a.opts.AccountScope) {
		scopes = append(scopes, a.opts.AccountScope)
	}
	u := cur.User
	return &principal.Principal{
		UserID: u.ID, Email: u.Email, Name: u.DisplayName, Roles: u.Roles,
		Scopes: scopes, Method: principal.MethodSession, CredentialID: cur.Session.ID,
		ExpiresAt: cur.Session.ExpiresAt, Claims: DecodeSessionClaims(cur.Session.Claims),
	}, nil, nil
}

// DecodeSessionClaims decodes the custom claims kept with a session (custom
// login); nil when there are none or they are unreadable.
func DecodeSessionClaims(raw string) map[string]any {
	if raw == "" {
		return nil
	}
	var m map[string]any
	if json.Unmarshal([]byte(raw), &m) != nil {
		return nil
	}
	return m
}
