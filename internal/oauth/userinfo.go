package oauth

// The OpenID Connect UserInfo endpoint (OIDC Core §5.3).
//
// §5.3.1: "The Client sends the UserInfo Request using either HTTP GET or
// HTTP POST. The Access Token obtained from an OpenID Connect
// Authentication Request MUST be sent as a Bearer Token, per Section 2 of
// OAuth 2.0 Bearer Token Usage [RFC6750]." mcpgate accepts the
// Authorization header only (RFC 6750 §2.1; never the query). The token
// is an mcpgate access token for any resource mcpgate serves, with the
// openid scope, a live grant and an enabled user. §5.3.2: the response
// carries sub, and the claims of the granted scopes (§5.4: email and
// email_verified for "email", name for "profile"), and with
// --id-token-roles the "roles" of the grant's ID tokens (idroles.go).
//
// Errors (§5.3.3, RFC 6750 §3): 401 with WWW-Authenticate
// Bearer error="invalid_token"; 403 insufficient_scope without openid.

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/verify"
)

// userinfo serves GET and POST /userinfo.
func (s *Server) userinfo(w http.ResponseWriter, r *http.Request) {
	writeNoStore(w)
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		httpx.WriteOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "use GET or POST")
		return
	}
	ctx := r.Context()
	refuse := func(status int, reason string, ch httpx.Challenge, details map[string]any) {
		s.opts.Audit.Record(ctx, audit.Event{
			Type: audit.TypeOAuthUserinfoRefused, Outcome: store.OutcomeDeny, Reason: reason, Details: details,
		})
		httpx.WriteChallenge(w, status, ch)
	}
	invalid := httpx.Challenge{Error: "invalid_token", Description: "the access token is invalid"}
	auths := r.Header.Values("Authorization")
	if len(auths) == 0 {
		refuse(http.StatusUnauthorized, audit.ReasonMissing, httpx.Challenge{Scope: ScopeOpenID}, nil)
		return
	}
	scheme, tok, _ := strings.Cut(strings.TrimSpace(auths[0]), " ")
	tok = strings.TrimSpace(tok)
	if len(auths) > 1 || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		refuse(http.StatusUnauthorized, audit.ReasonMalformed, httpx.Challenge{Scope: ScopeOpenID}, map[string]any{"problem": "not one Bearer token"})
		return
	}
	c, _, err := s.verifyAccessToken(ctx, tok)
	if err != nil {
		if errors.Is(err, verify.ErrKeysUnavailable) {
			s.unavailable(w, r, err)
			return
		}
		refuse(http.StatusUnauthorized, audit.TokenRefusalReason(err), invalid, nil)
		return
	}
	if c.GrantID != "" {
		active, err := s.GrantActive(ctx, c.GrantID)
		if err != nil {
			s.unavailable(w, r, err)
			return
		}
		if !active {
			refuse(http.StatusUnauthorized, audit.ReasonGrantRevoked, invalid, map[string]any{"client_id": c.ClientID, "grant_id": c.GrantID})
			return
		}
	}
	if c.Subject == c.ClientID || !slices.Contains(c.Scopes, ScopeOpenID) {
		refuse(http.StatusForbidden, audit.ReasonInsufficient,
			httpx.Challenge{Error: "insufficient_scope", Description: "the userinfo endpoint needs a user's token with the openid scope", Scope: ScopeOpenID},
			map[string]any{"client_id": c.ClientID})
		return
	}
	u, err := s.user(ctx, c.Subject)
	switch {
	case errors.Is(err, store.ErrNotFound):
		refuse(http.StatusUnauthorized, audit.ReasonUnknown, invalid, map[string]any{"client_id": c.ClientID})
		return
	case err != nil:
		s.unavailable(w, r, err)
		return
	case u.Disabled:
		refuse(http.StatusUnauthorized, audit.ReasonDisabledUser, invalid, map[string]any{"client_id": c.ClientID})
		return
	}
	out := map[string]any{"sub": u.ID}
	if slices.Contains(c.Scopes, ScopeEmail) {
		out["email"] = u.Email
		out["email_verified"] = false // mcpgate does not verify email addresses
	}
	if slices.Contains(c.Scopes, ScopeProfile) && u.DisplayName != "" {
		out["name"] = u.DisplayName
	}
	if s.opts.IDTokenRoles {
		// The same roles as the grant's ID tokens (idroles.go).
		roles, err := s.grantRoles(ctx, u, c.GrantID)
		if err != nil {
			s.unavailable(w, r, err)
			return
		}
		out["roles"] = roles
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}
