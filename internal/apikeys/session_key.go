package apikeys

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/store"
)

// SessionKeyName is the name of every session key.
const SessionKeyName = "MCP session key"

// sessionKeyLabel separates session-key derivation from any other use of
// the server key (and versions it).
const sessionKeyLabel = "mcpgate session key v1\x00"

// ErrNoServerKey: SessionKey needs Options.ServerKey.
var ErrNoServerKey = errors.New("apikeys: no server key configured (at least 32 bytes) for session keys")

// ErrSessionKeyChanged: the session already holds a key derived under
// another server key (the key was rotated, or the nodes do not share one).
// The user must log in again to get a session, and key, under this one.
var ErrSessionKeyChanged = errors.New("apikeys: the session's key was derived under a different server key")

// deriveSessionKey is the plaintext session key for a cookie secret: the
// key format applied to HMAC-SHA256(server key, label || secret). The same
// session always gets the same key, and neither the key nor the secret
// can be computed from the other without the server key.
func (s *Service) deriveSessionKey(secret string) string {
	mac := hmac.New(sha256.New, s.serverKey)
	mac.Write([]byte(sessionKeyLabel))
	mac.Write([]byte(secret))
	return format([32]byte(mac.Sum(nil)))
}

// SessionKey returns the MCP credential of a browser session: an API key of
// kind session named SessionKeyName, bound to sess. The plaintext is
// derived from the session's cookie secret (see deriveSessionKey), so it is
// stored nowhere and every call for the same session returns the same key.
//
// The first call stores the key (scopes as given, expiry at the session's
// end but at most SessionKeyMaxLifetime from now) and records key.created;
// later calls return the same plaintext and row, whatever scopes they ask
// for. A key that was revoked (by its owner, or with its session) or has
// expired is not made again: the result is a *RefusedError matching
// ErrRevoked or ErrExpired. A dead session is ErrRevoked. Concurrent first
// calls create one row (the store allows one key per session).
//
// sess and secret come from session.Manager.Current: the caller has
// checked the session and its user.
func (s *Service) SessionKey(ctx context.Context, sess store.Session, secret string, scopes []string) (plaintext string, key store.APIKey, err error) {
	if len(s.serverKey) < MinServerKeyLen {
		return "", store.APIKey{}, ErrNoServerKey
	}
	if sess.ID == "" || sess.UserID == "" || secret == "" {
		return "", store.APIKey{}, errors.New("apikeys: session key: no session")
	}
	now := s.now()
	if !sess.Alive(now, s.sessionIdle) {
		return "", store.APIKey{}, &RefusedError{Reason: ErrRevoked, UserID: sess.UserID, Detail: "session ended"}
	}
	plaintext = s.deriveSessionKey(secret)
	h := Hash(plaintext)

	if k, found, err := s.existingSessionKey(ctx, h, sess, now); found || err != nil {
		return plaintext, k, err
	}

	scopeList, err := normalizeScopes(scopes)
	if err != nil {
		return "", store.APIKey{}, err
	}
	expiresAt := sess.ExpiresAt
	if capAt := now.Add(s.sessionKeyMax); capAt.Before(expiresAt) {
		expiresAt = capAt
	}
	expiresAt = toMillis(expiresAt)
	if !expiresAt.After(now) {
		return "", store.APIKey{}, &RefusedError{Reason: ErrExpired, UserID: sess.UserID, Detail: "session ends now"}
	}
	key = store.APIKey{
		ID:        store.NewID(keyIDPrefix),
		UserID:    sess.UserID,
		Name:      SessionKeyName,
		Prefix:    plaintext[:DisplayPrefixLen],
		Hash:      h[:],
		Kind:      store.KeyKindSession,
		Scopes:    scopeList,
		CreatedAt: toMillis(now),
		ExpiresAt: expiresAt,
		SessionID: sess.ID,
	}
	err = s.st.CreateAPIKey(ctx, key)
	switch {
	case errors.Is(err, store.ErrConflict):
		// A concurrent first call won: return its row.
		k, found, err := s.existingSessionKey(ctx, h, sess, now)
		if err == nil && !found {
			// The session already has a key, but not the one derived now:
			// it was derived under another server key (a rotated key, or
			// nodes that do not share one).
			err = ErrSessionKeyChanged
		}
		return plaintext, k, err
	case errors.Is(err, store.ErrNotFound):
		// The session ended (or its user went) between the check and the insert.
		return "", store.APIKey{}, &RefusedError{Reason: ErrRevoked, UserID: sess.UserID, Detail: "session ended"}
	case err != nil:
		return "", store.APIKey{}, fmt.Errorf("apikeys: session key: %w", err)
	}
	s.rec.Record(ctx, audit.Event{
		Time:         now,
		Type:         audit.TypeKeyCreated,
		Outcome:      store.OutcomeAllow,
		UserID:       key.UserID,
		CredentialID: key.ID,
		Details: map[string]any{
			"name":       key.Name,
			"prefix":     key.Prefix,
			"kind":       key.Kind,
			"scopes":     append([]string{}, key.Scopes...),
			"expires_at": key.ExpiresAt.Format(time.RFC3339Nano),
			"session_id": sess.ID,
			"actor":      sess.UserID,
		},
	})
	return plaintext, key, nil
}

// existingSessionKey looks the derived key up. found reports a row; a row
// that cannot be used is a *RefusedError.
func (s *Service) existingSessionKey(ctx context.Context, h [32]byte, sess store.Session, now time.Time) (store.APIKey, bool, error) {
	k, u, err := s.st.LookupAPIKey(ctx, h[:])
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.APIKey{}, false, nil
	case err != nil:
		return store.APIKey{}, false, fmt.Errorf("apikeys: session key: %w", err)
	}
	if subtle.ConstantTimeCompare(k.Hash, h[:]) != 1 || k.SessionID != sess.ID || k.UserID != sess.UserID || u.ID != k.UserID {
		s.log.Error("apikeys: stored session key does not belong to its session", "key_id", k.ID, "session_id", sess.ID)
		return store.APIKey{}, true, errInconsistent
	}
	switch {
	case !k.RevokedAt.IsZero():
		return k, true, &RefusedError{Reason: ErrRevoked, KeyID: k.ID, UserID: k.UserID}
	case !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):
		return k, true, &RefusedError{Reason: ErrExpired, KeyID: k.ID, UserID: k.UserID}
	case u.Disabled:
		return k, true, &RefusedError{Reason: ErrDisabledUser, KeyID: k.ID, UserID: k.UserID}
	}
	return k, true, nil
}

// sessionDead reports why a session key's session is not alive ("" when
// it is); an error is a storage failure.
func (s *Service) sessionDead(ctx context.Context, k store.APIKey, now time.Time) (string, error) {
	if k.SessionID == "" {
		return "session key without a session", nil
	}
	sess, err := s.st.GetSession(ctx, k.SessionID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "session no longer exists", nil
	case err != nil:
		return "", fmt.Errorf("apikeys: look up session of key: %w", err)
	case !sess.RevokedAt.IsZero():
		return "session ended", nil
	case !sess.Alive(now, s.sessionIdle):
		return "session expired", nil
	}
	return "", nil
}

// Evict makes this process forget keys at once (their cache entries), for
// keys revoked other than through Revoke, e.g. with their browser session
// (wire it to session.Manager.OnKeysRevoked).
func (s *Service) Evict(keys []store.APIKey) {
	for _, k := range keys {
		s.evict(k)
	}
}
