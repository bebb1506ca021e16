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
// refresh whose response it lost, or for concurrent refreshes of one
// client — the main cause of forced re-logins in other MCP servers. The
// retry is idempotent: it gets the SAME successor refresh token the
// rotation produced (and a fresh access token), never a new sibling, so
// a token has at most one live successor and a stolen token cannot fork
// the family. To hand the successor out again without keeping it in
// clear, the rotation stores it sealed (AES-256-GCM, key derived from the
// server key, bound to the parent and successor ids) on the rotated row;
// the secret is wiped when the successor is used, and by the cleaner
// once the window has passed. A retry after the window, or after the
// successor was used, is a replay and revokes the family. The
// trade-off: a stolen token used within the window gets the legitimate
// client's successor; the two then share one chain, and the first time
// they diverge (one of them refreshes a token the other already rotated
// more than the window ago) the family is revoked.
//
// Lifetimes: a refresh token dies after RefreshIdle (7 days) without use;
// no refresh succeeds after RefreshAbsolute (90 days) since the user's
// authorization. The scope of the new access token may be narrowed
// (RFC 6749 §6), never widened.

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/serverkey"
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
	cur, g, err := s.st.GetOAuthRefreshToken(ctx, hash)
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
	aead, err := s.successorAEAD()
	if err != nil {
		return nil, nil, err
	}
	nextTok := store.OAuthRefreshToken{ID: store.NewID("ort"), Hash: nextHash, CreatedAt: now, ExpiresAt: now.Add(s.opts.RefreshIdle)}
	if grace > 0 {
		nextTok.Sealed = sealSuccessor(aead, next, g.ID, cur.ID, nextTok.ID)
	}
	res, err := s.st.RotateRefreshToken(ctx, hash, nextTok, now, grace)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, invalidGrant(audit.ReasonUnknownRefreshToken, "the refresh token is invalid or expired"), nil
	case err != nil:
		return nil, nil, err
	}
	switch res.Outcome {
	case store.RefreshRotated:
	case store.RefreshGraceRetry:
		// The successor the rotation produced, not a new one.
		next, err = openSuccessor(aead, res.Next, g.ID, res.Token.ID)
		if err != nil {
			// Another node with another server key, a restart without
			// one, or a tampered row: refuse this retry, keep the family
			// (whoever got the rotation's answer holds the live token).
			s.log.ErrorContext(ctx, "oauth: a refresh grace retry cannot open the sealed successor; every node must use the same server key",
				"grant_id", g.ID, "err", err)
			terr := refused(audit.ReasonUnknown, "the refresh token was already used; retry is not possible, sign in again")
			terr.details = map[string]any{"grace_retry": true, "successor_unavailable": true}
			return nil, terr, nil
		}
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
	out, terr, err := s.mintTokens(ctx, res.Grant, scopes, next, user, "")
	if terr != nil || err != nil {
		return nil, terr, err
	}
	s.opts.Audit.Record(ctx, audit.Event{
		Type: audit.TypeOAuthTokenRefreshed, Outcome: store.OutcomeAllow, UserID: g.UserID, CredentialID: g.ID, Resource: g.Resource,
		Details: withClaims(map[string]any{"client_id": cl.ClientID, "scopes": scopes, "grace_retry": res.Outcome == store.RefreshGraceRetry,
			"expires_at": out.expires.Format(time.RFC3339)}, out),
	})
	return out.resp, nil, nil
}

// ---- sealed successors (grace-window retries) ----

// successorSealInfo is the HKDF info of the key that seals refresh-token
// successors; distinct from every other use of the server key.
const successorSealInfo = "mcpgate refresh successor v1"

// successorSealVersion is the first byte of a sealed successor: version
// || nonce (12 bytes) || AES-256-GCM ciphertext and tag.
const successorSealVersion = 1

var (
	processKeyOnce sync.Once
	processKey     []byte
	noKeyWarning   sync.Once
)

// successorAEAD returns the AES-256-GCM that seals successors, keyed by
// HKDF-SHA256 of ServerOptions.ServerKey (or of a random per-process key
// when none is configured).
func (s *Server) successorAEAD() (cipher.AEAD, error) {
	key := s.opts.ServerKey
	if len(key) == 0 {
		processKeyOnce.Do(func() {
			processKey = make([]byte, 32)
			rand.Read(processKey)
		})
		noKeyWarning.Do(func() {
			s.log.Warn("oauth: no server key configured for the authorization server; refresh grace retries work only on the node that rotated the token, until it restarts")
		})
		key = processKey
	}
	aead, err := serverkey.NewAEAD(key, successorSealInfo)
	if err != nil {
		return nil, fmt.Errorf("oauth: %w", err)
	}
	return aead, nil
}

// successorAD binds a sealed successor to its grant, its parent token and
// itself: a sealed value copied to another row does not open there.
func successorAD(grantID, parentID, successorID string) []byte {
	return []byte("mcpgate refresh successor\x00" + grantID + "\x00" + parentID + "\x00" + successorID)
}

func sealSuccessor(aead cipher.AEAD, secret, grantID, parentID, successorID string) []byte {
	return serverkey.Seal(aead, successorSealVersion, []byte(secret), successorAD(grantID, parentID, successorID))
}

// openSuccessor returns the secret of the stored successor t of the
// token parentID, checked against t's hash.
func openSuccessor(aead cipher.AEAD, t store.OAuthRefreshToken, grantID, parentID string) (string, error) {
	pt, err := serverkey.Open(aead, successorSealVersion, t.Sealed, successorAD(grantID, parentID, t.ID))
	switch {
	case errors.Is(err, serverkey.ErrFormat):
		return "", errors.New("unknown sealed successor format")
	case err != nil:
		return "", errors.New("the sealed successor does not open with this server key")
	}
	secret := string(pt)
	if subtle.ConstantTimeCompare(hashSecret(secret), t.Hash) != 1 {
		return "", errors.New("the sealed successor does not match its hash")
	}
	return secret, nil
}
