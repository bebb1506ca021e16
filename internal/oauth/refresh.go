package oauth

// The refresh_token grant (RFC 6749 §6, OAuth 2.1 §4.3) with rotation and
// replay detection (OAuth 2.1 §4.3.1, RFC 9700 §4.14.2).
//
// Every refresh uses the presented token up and returns a new one.
// RFC 9700 §4.14.2: "If a refresh token is compromised and subsequently
// used by both the attacker and the legitimate client, one of them will
// present an invalidated refresh token, which will inform the
// authorization server of the breach. The authorization server cannot
// determine which party submitted the invalid refresh token, but it will
// revoke the active refresh token." mcpgate revokes the whole grant: every
// refresh token of the family and, through "gid", its access tokens.
//
// The grace window (RefreshGrace, default 30 s): a token used again
// within that time after its rotation is taken for a client retrying a
// refresh whose response it lost, or for two concurrent refreshes of one
// client — the main cause of forced re-logins in other MCP servers. It
// gets a valid new pair (a sibling successor) instead of destroying the
// family. Past the window, a second use is a replay. The trade-off: a
// stolen token used within 30 s of the legitimate refresh is not
// detected as a replay.
//
// Lifetimes: a refresh token dies after RefreshIdle (7 days) without use;
// no refresh succeeds after RefreshAbsolute (90 days) since the user's
// authorization. The scope of the new access token may be narrowed
// (RFC 6749 §6), never widened.

import (
	"context"
	"errors"
	"net/url"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/store"
)

func (s *Server) refresh(ctx context.Context, cl store.OAuthClient, form url.Values) (*tokenResponse, *tokenError, error) {
	raw := form.Get("refresh_token")
	if raw == "" {
		return nil, &tokenError{code: "invalid_request", description: "refresh_token is required", reason: audit.ReasonInvalidRequest}, nil
	}
	if !AllowsGrant(cl, GrantRefreshToken) {
		return nil, &tokenError{code: "unauthorized_client", description: "this client is not registered for the refresh_token grant", reason: audit.ReasonUnauthorizedClient}, nil
	}
	hash := hashSecret(raw)
	// RFC 6749 §6: "validate the refresh token and ensure that it was
	// issued to the authenticated client" — before using it up, so
	// another client cannot burn someone's token.
	_, g, err := s.st.GetOAuthRefreshToken(ctx, hash)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, invalidGrant(audit.ReasonUnknownRefreshToken, "the refresh token is invalid or expired"), nil
	case err != nil:
		return nil, nil, err
	}
	refused := func(reason, desc string) *tokenError {
		terr := invalidGrant(reason, desc)
		terr.grantID, terr.userID = g.ID, g.UserID
		return terr
	}
	if g.ClientID != cl.ClientID {
		return nil, refused(audit.ReasonClientMismatch, "the refresh token was issued to another client"), nil
	}
	if terr := s.checkResourceParam(form["resource"], g.Resource); terr != nil {
		terr.grantID, terr.userID = g.ID, g.UserID
		return nil, terr, nil
	}
	scopes, terr := narrowScopes(form.Get("scope"), form.Has("scope"), g.Scopes)
	if terr != nil {
		terr.grantID, terr.userID = g.ID, g.UserID
		return nil, terr, nil
	}
	user, terr, err := s.grantUser(ctx, g)
	if terr != nil || err != nil {
		return nil, terr, err
	}

	now := s.now()
	next, nextHash := newSecret(refreshTokenPrefix)
	grace := s.opts.RefreshGrace
	if grace < 0 {
		grace = 0
	}
	res, err := s.st.RotateRefreshToken(ctx, hash, store.OAuthRefreshToken{
		ID: store.NewID("ort"), Hash: nextHash, CreatedAt: now, ExpiresAt: now.Add(s.opts.RefreshIdle),
	}, now, grace)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, invalidGrant(audit.ReasonUnknownRefreshToken, "the refresh token is invalid or expired"), nil
	case err != nil:
		return nil, nil, err
	}
	switch res.Outcome {
	case store.RefreshRotated, store.RefreshGraceRetry:
	case store.RefreshReplayed:
		s.grants.evict(g.ID)
		s.opts.Audit.Record(ctx, audit.Event{
			Type: audit.TypeOAuthRefreshReplayed, Outcome: store.OutcomeDeny, Reason: audit.ReasonRefreshReplayed,
			UserID: g.UserID, CredentialID: g.ID, Resource: g.Resource,
			Details: map[string]any{"client_id": cl.ClientID, "rotated_at": res.Token.RotatedAt.Format(time.RFC3339Nano), "grant_revoked": true},
		})
		return nil, refused(audit.ReasonRefreshReplayed, "the refresh token was already used; the authorization has been revoked, sign in again"), nil
	case store.RefreshExpired:
		return nil, refused(audit.ReasonRefreshExpired, "the refresh token has expired"), nil
	case store.RefreshGrantRevoked:
		return nil, refused(audit.ReasonGrantRevoked, "the authorization was revoked"), nil
	case store.RefreshGrantExpired:
		return nil, refused(audit.ReasonGrantExpired, "the authorization has reached its maximum lifetime; sign in again"), nil
	default:
		return nil, nil, errors.New("oauth: unknown refresh outcome " + res.Outcome)
	}
	out, err := s.mintTokens(ctx, res.Grant, scopes, next, user, "")
	if err != nil {
		return nil, nil, err
	}
	s.opts.Audit.Record(ctx, audit.Event{
		Type: audit.TypeOAuthTokenRefreshed, Outcome: store.OutcomeAllow, UserID: g.UserID, CredentialID: g.ID, Resource: g.Resource,
		Details: map[string]any{"client_id": cl.ClientID, "scopes": scopes, "grace_retry": res.Outcome == store.RefreshGraceRetry,
			"expires_at": out.expires.Format(time.RFC3339)},
	})
	return out.resp, nil, nil
}
