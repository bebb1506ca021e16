package oauth

// Token introspection (RFC 7662).
//
// §2.1: "the endpoint MUST also require some form of authorization to
// access this endpoint": the caller authenticates as a confidential
// client (client_secret_basic or client_secret_post; the metadata lists
// no "none"). §4: to keep clients from scanning or learning about tokens
// that are not theirs, a client sees only tokens issued to it — except an
// operator-registered (static) confidential client, which is trusted as a
// resource server and may introspect any token mcpgate issued. Anything
// else is answered {"active": false}, exactly like an unknown, malformed,
// expired or revoked token (§2.2: "If the introspection call is properly
// authorized but the token is not active, does not exist on this server,
// or the protected resource is not allowed to introspect this particular
// token, then the authorization server MUST return an introspection
// response with the "active" field set to "false"").

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/verify"
)

// introspection is the response of RFC 7662 §2.2.
type introspection struct {
	Active    bool     `json:"active"`
	Scope     string   `json:"scope,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	Username  string   `json:"username,omitempty"`
	TokenType string   `json:"token_type,omitempty"`
	Exp       int64    `json:"exp,omitempty"`
	Iat       int64    `json:"iat,omitempty"`
	Sub       string   `json:"sub,omitempty"`
	Aud       []string `json:"aud,omitempty"`
	Iss       string   `json:"iss,omitempty"`
	JTI       string   `json:"jti,omitempty"`
}

// introspect serves POST /introspect.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	cl, ok := s.backChannel(w, r, "RFC 7662 §2.1")
	if !ok {
		return
	}
	ctx := r.Context()
	if cl.Public() {
		s.opts.Audit.Record(ctx, audit.Event{
			Type: audit.TypeOAuthIntrospection, Outcome: store.OutcomeDeny, Reason: audit.ReasonUnauthorizedClient,
			Details: map[string]any{"client_id": cl.ClientID, "problem": "public client"},
		})
		(&ClientAuthError{Code: "invalid_client", Description: "introspection requires a confidential client (client_secret_basic or client_secret_post)"}).Write(w)
		return
	}
	form := r.PostForm
	if k := singleValues(form); k != "" {
		httpx.WriteOAuthError(w, http.StatusBadRequest, "invalid_request", "the "+k+" parameter appears more than once")
		return
	}
	tok := form.Get("token")
	if tok == "" {
		httpx.WriteOAuthError(w, http.StatusBadRequest, "invalid_request", "token is required")
		return
	}
	resp, err := s.inspect(ctx, tok, form.Get("token_type_hint"))
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	if resp.Active && resp.ClientID != cl.ClientID && cl.Kind != store.ClientKindStatic {
		resp = introspection{} // not this client's token (§4)
	}
	s.opts.Audit.Record(ctx, audit.Event{
		Type: audit.TypeOAuthIntrospection, Outcome: store.OutcomeAllow,
		Details: map[string]any{"client_id": cl.ClientID, "active": resp.Active, "token_type": resp.TokenType, "token_client_id": resp.ClientID},
	})
	httpx.WriteJSON(w, http.StatusOK, resp)
}

// inspect describes a token: a refresh token (by hash) or a JWT access
// token, active only while its grant is live and its user enabled.
func (s *Server) inspect(ctx context.Context, tok, hint string) (introspection, error) {
	now := s.now()
	tryRefresh := func() (introspection, bool, error) {
		if !strings.HasPrefix(tok, refreshTokenPrefix) {
			return introspection{}, false, nil
		}
		rt, g, err := s.st.GetOAuthRefreshToken(ctx, hashSecret(tok))
		switch {
		case errors.Is(err, store.ErrNotFound):
			return introspection{}, false, nil
		case err != nil:
			return introspection{}, false, err
		}
		if !g.Active(now) || !rt.RotatedAt.IsZero() || !now.Before(rt.ExpiresAt) {
			return introspection{}, true, nil
		}
		resp := introspection{
			Active: true, Scope: strings.Join(g.Scopes, " "), ClientID: g.ClientID, TokenType: hintRefreshToken,
			Exp: rt.ExpiresAt.Unix(), Iat: rt.CreatedAt.Unix(), Sub: g.UserID, Aud: []string{g.Resource}, Iss: s.opts.Issuer,
		}
		return s.withUser(ctx, resp, g.UserID)
	}
	tryAccess := func() (introspection, bool, error) {
		c, _, err := s.verifyAccessToken(ctx, tok)
		if err != nil {
			if errors.Is(err, verify.ErrKeysUnavailable) {
				return introspection{}, false, err
			}
			return introspection{}, false, nil
		}
		if c.GrantID != "" {
			active, err := s.GrantActive(ctx, c.GrantID)
			if err != nil || !active {
				return introspection{}, true, err
			}
		}
		resp := introspection{
			Active: true, Scope: strings.Join(c.Scopes, " "), ClientID: c.ClientID, TokenType: "Bearer",
			Exp: c.ExpiresAt.Unix(), Iat: c.IssuedAt.Unix(), Sub: c.Subject, Aud: c.Audience, Iss: c.Issuer, JTI: c.JTI,
		}
		if c.Subject == c.ClientID {
			return resp, true, nil // client credentials: no user
		}
		return s.withUser(ctx, resp, c.Subject)
	}
	order := []func() (introspection, bool, error){tryRefresh, tryAccess}
	if hint == hintAccessToken {
		order[0], order[1] = order[1], order[0]
	}
	for _, fn := range order {
		resp, found, err := fn()
		if err != nil || found {
			return resp, err
		}
	}
	return introspection{}, nil
}

// withUser adds the username and checks that the user may still act.
func (s *Server) withUser(ctx context.Context, resp introspection, userID string) (introspection, bool, error) {
	if userID == "" {
		return resp, true, nil
	}
	u, err := s.user(ctx, userID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return introspection{}, true, nil
	case err != nil:
		return introspection{}, true, err
	case u.Disabled:
		return introspection{}, true, nil
	}
	resp.Username = u.Email
	return resp, true, nil
}
