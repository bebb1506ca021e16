package store

import (
	"context"
	"time"
)

// Session is a browser login session. The cookie holds a 32-byte random
// secret; the store keeps only its SHA-256 (Hash). ID is the public handle
// used to list and revoke sessions; it is not a credential.
type Session struct {
	ID         string // "ses_…"
	UserID     string
	Hash       []byte // SHA-256 of the cookie secret, 32 bytes, unique
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time // absolute lifetime end
	RevokedAt  time.Time // zero: not revoked
	IP         string
	UserAgent  string
}

// Alive reports whether the session is usable at now given the idle timeout.
func (s Session) Alive(now time.Time, idle time.Duration) bool {
	return s.RevokedAt.IsZero() && now.Before(s.ExpiresAt) && (idle <= 0 || now.Before(s.LastSeenAt.Add(idle)))
}

// SessionStore persists browser sessions. Ending a session (revocation)
// also revokes the API keys bound to it (APIKey.SessionID) in the same
// transaction, so a session's MCP credential can never outlive it.
type SessionStore interface {
	CreateSession(ctx context.Context, s Session) error // ErrConflict: id or hash taken; ErrNotFound: unknown user
	GetSession(ctx context.Context, id string) (Session, error)
	// LookupSession finds a session by the SHA-256 of its cookie secret,
	// with its user, in one round trip. ErrNotFound when unknown.
	LookupSession(ctx context.Context, hash []byte) (Session, User, error)
	ListSessions(ctx context.Context, userID string) ([]Session, error) // not revoked, newest first (expired ones included; callers filter)
	// TouchSession moves LastSeenAt forward (never backwards).
	TouchSession(ctx context.Context, id string, at time.Time) error
	// RevokeSession revokes one session and its session keys; revoking an
	// already revoked session keeps the first time. ErrNotFound for an unknown id.
	RevokeSession(ctx context.Context, id string, at time.Time) (Session, error)
	// RevokeUserSessions revokes every live session of a user except
	// exceptID (may be ""), with their session keys, and returns the
	// sessions it revoked.
	RevokeUserSessions(ctx context.Context, userID, exceptID string, at time.Time) ([]Session, error)
	// DeleteSessionsBefore deletes sessions that expired or were revoked
	// before cutoff, at most limit rows; safe to run on several nodes at once.
	DeleteSessionsBefore(ctx context.Context, cutoff time.Time, limit int) (int, error)
	// ListSessionKeys returns the keys bound to a session (kind session).
	ListSessionKeys(ctx context.Context, sessionID string) ([]APIKey, error)
}
