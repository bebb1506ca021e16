package oauth

// Token revocation (RFC 7009) and the user's connected apps (their
// consents: list and revoke).
//
// What a revocation revokes:
//   - a refresh token: its whole grant — the family and every access token
//     issued from it (RFC 7009 §2.1: the server "SHOULD also invalidate all
//     access tokens based on the same authorization grant");
//   - an access token: its grant as well (§2.1: "If the token passed to
//     the request is an access token, the server MAY revoke the respective
//     refresh token as well"). Access tokens are JWTs that are not stored;
//     revoking the grant is what makes authn refuse them (it checks "gid"),
//     until they expire. A client revoking a token is done with that
//     authorization, so the family goes with it. A client-credentials token
//     has a grant of its own: only that token is revoked.
//
// RFC 7009 §2.2: "The authorization server responds with HTTP status code
// 200 if the token has been revoked successfully or if the client
// submitted an invalid token." Unknown, malformed, expired and already
// revoked tokens all get 200. A token issued to another client is not
// revoked (§2.1: the server "verifies whether the token was issued to the
// client making the revocation request. If this validation fails, the
// request is refused"), but the answer is the same 200 as for an invalid
// token: an error here would tell any client that a token it holds is
// valid and whose it is (an oracle). §2.2 permits it (an "invalid token"
// includes one the client may not revoke). The refusal is audited.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/verify"
)

// revoke serves POST /revoke.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	cl, ok := s.backChannel(w, r, "RFC 7009 §2.1")
	if !ok {
		return
	}
	ctx := r.Context()
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
	// The hint only orders the look-ups (§2.1: the server "MAY ignore"
	// it and must then search all its token types).
	g, kind, err := s.findToken(ctx, tok, form.Get("token_type_hint"))
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	if g == nil {
		w.WriteHeader(http.StatusOK) // unknown, invalid or expired: nothing to do
		return
	}
	if g.ClientID != cl.ClientID {
		s.opts.Audit.Record(ctx, audit.Event{
			Type: audit.TypeOAuthTokenRevoked, Outcome: store.OutcomeDeny, Reason: audit.ReasonClientMismatch,
			UserID: g.UserID, CredentialID: g.ID, Details: map[string]any{"client_id": cl.ClientID, "token_client_id": g.ClientID, "token_type": kind},
		})
		w.WriteHeader(http.StatusOK) // not revoked; the same answer as an invalid token
		return
	}
	gr, ended, err := s.st.RevokeOAuthGrant(ctx, g.ID, s.now(), "client_revoked")
	s.grants.evict(g.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.unavailable(w, r, err)
		return
	}
	if ended {
		s.opts.Audit.Record(ctx, audit.Event{
			Type: audit.TypeOAuthTokenRevoked, Outcome: store.OutcomeAllow, UserID: gr.UserID, CredentialID: gr.ID, Resource: gr.Resource,
			Details: map[string]any{"client_id": cl.ClientID, "token_type": kind},
		})
	}
	w.WriteHeader(http.StatusOK)
}

// Token kinds as RFC 7009 / RFC 7662 name them.
const (
	hintAccessToken  = "access_token"
	hintRefreshToken = "refresh_token"
)

// findToken finds the grant of a refresh token or a valid access token.
// It returns nil for anything unknown, malformed or expired.
func (s *Server) findToken(ctx context.Context, tok, hint string) (*store.OAuthGrant, string, error) {
	lookRefresh := func() (*store.OAuthGrant, error) {
		if !strings.HasPrefix(tok, refreshTokenPrefix) {
			return nil, nil
		}
		_, g, err := s.st.GetOAuthRefreshToken(ctx, hashSecret(tok))
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, nil
		case err != nil:
			return nil, err
		}
		return &g, nil
	}
	lookAccess := func() (*store.OAuthGrant, error) {
		cl, _, err := s.verifyAccessToken(ctx, tok)
		if err != nil {
			if errors.Is(err, verify.ErrKeysUnavailable) {
				return nil, err
			}
			return nil, nil
		}
		if cl.GrantID == "" {
			return nil, nil
		}
		g, err := s.st.GetOAuthGrant(ctx, cl.GrantID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, nil
		case err != nil:
			return nil, err
		}
		return &g, nil
	}
	order := []struct {
		kind string
		fn   func() (*store.OAuthGrant, error)
	}{{hintRefreshToken, lookRefresh}, {hintAccessToken, lookAccess}}
	if hint == hintAccessToken {
		order[0], order[1] = order[1], order[0]
	}
	for _, o := range order {
		g, err := o.fn()
		if err != nil || g != nil {
			return g, o.kind, err
		}
	}
	return nil, "", nil
}

// verifyAccessToken checks a JWT access token of any served resource
// (signature, issuer, audience, expiry; not the grant) and returns its
// claims and resource.
func (s *Server) verifyAccessToken(ctx context.Context, tok string) (*verify.Claims, Resource, error) {
	var last error
	for i, v := range s.verifiers {
		cl, err := v.Verify(ctx, tok)
		if err == nil {
			return cl, s.resources[i], nil
		}
		last = err
		if !errors.Is(err, verify.ErrAudience) {
			break // the same answer for every resource
		}
	}
	return nil, Resource{}, last
}

// GrantView is one connected app of a user: a client the user authorized
// at a resource (a consent), for the account page and the JSON API.
type GrantView struct {
	// ID identifies the connected app (the consent id): pass it to
	// RevokeGrant.
	ID string

	ClientID       string
	ClientName     string
	ClientKind     string
	ClientVerified bool
	// ClientHost is where the client lives: the host of its metadata
	// document URL (CIMD), of its home page, or of its first redirect URI
	// (for a native app: its scheme, e.g. "cursor:").
	ClientHost string

	Resource     string
	ResourceName string
	Scopes       []ScopeView

	FirstUsed time.Time // when the user first authorized it
	LastUsed  time.Time // the last token issued (authorization or refresh); zero: never
}

// ListGrants returns the connected apps of a user, most recently used
// first.
func (s *Server) ListGrants(ctx context.Context, userID string) ([]GrantView, error) {
	cs, err := s.st.ListOAuthConsents(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("oauth: list connected apps: %w", err)
	}
	out := make([]GrantView, 0, len(cs))
	for _, c := range cs {
		cl, err := s.opts.Clients.Get(ctx, c.ClientID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("oauth: list connected apps: %w", err)
		}
		res, ok := s.resourceByURL(c.Resource)
		if !ok {
			res = Resource{URL: c.Resource}
		}
		out = append(out, GrantView{
			ID: c.ID, ClientID: c.ClientID, ClientName: cl.Name, ClientKind: cl.Kind, ClientVerified: ClientVerified(cl),
			ClientHost: clientHost(cl), Resource: c.Resource, ResourceName: res.Name,
			Scopes: describeScopes(res, c.Scopes), FirstUsed: c.CreatedAt, LastUsed: c.LastUsedAt,
		})
	}
	return out, nil
}

// clientHost says where a client lives (see GrantView.ClientHost).
func clientHost(cl store.OAuthClient) string {
	if h := ClientDisplayHost(cl); h != "" {
		return h
	}
	if cl.ClientURI != "" {
		if u, err := url.Parse(cl.ClientURI); err == nil && u.Host != "" {
			return u.Host
		}
	}
	if len(cl.RedirectURIs) > 0 {
		return redirectHost(cl.RedirectURIs[0])
	}
	return ""
}

// RevokeGrant revokes one of the user's connected apps (id from
// ListGrants): the consent is deleted and every grant made under it is
// revoked — its refresh tokens at once, its access tokens within seconds
// (authn checks the grant; GrantActive answers from a cache of at most
// 2 s, evicted at once on this node). The next authorization asks the user
// again. store.ErrNotFound when the user has no such app.
func (s *Server) RevokeGrant(ctx context.Context, userID, grantID string) error {
	c, gs, err := s.st.RevokeOAuthConsent(ctx, userID, grantID, s.now(), "user_revoked")
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(gs))
	for _, g := range gs {
		ids = append(ids, g.ID)
	}
	s.grants.evict(ids...)
	s.opts.Audit.Record(ctx, audit.Event{
		Type: audit.TypeOAuthConsentRevoked, Outcome: store.OutcomeAllow, UserID: userID, Resource: c.Resource,
		Details: map[string]any{"client_id": c.ClientID, "consent_id": c.ID, "scopes": c.Scopes, "grants_revoked": len(gs), "actor": actorOf(ctx, userID)},
	})
	return nil
}

// actorOf names who acted: the context's actor (WithActor) or the user.
func actorOf(ctx context.Context, userID string) string {
	if a := actor(ctx); a != "cli" {
		return a
	}
	return userID
}
