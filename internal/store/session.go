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
	// EndReason says why the session ended ("" while RevokedAt is zero):
	// SessionEndIdle, SessionEndLifetime or SessionEndRevoked. The cookie
	// is dead whatever the reason; an OAuth grant's custom claims outlive
	// an idle session up to ExpiresAt (see oauth's liveSignIn).
	EndReason string
	IP        string
	UserAgent string
	// Claims is a JSON object of custom claims the login source vouched
	// for (custom login); empty otherwise. They land in the principal of
	// requests made with this session.
	Claims string
}

// Why a session ended (Session.EndReason).
const (
	SessionEndIdle     = "idle"     // past the idle timeout
	SessionEndLifetime = "lifetime" // past ExpiresAt
	// SessionEndRevoked: ended by someone — sign-out, revocation by the
	// user or an admin, password change, user disabled, replaced by a new
	// sign-in.
	SessionEndRevoked = "revoked"
)

// ValidSessionEnd reports whether reason is one of the SessionEnd values.
func ValidSessionEnd(reason string) bool {
	return reason == SessionEndIdle || reason == SessionEndLifetime || reason == SessionEndRevoked
}

// Alive reports whether the session is usable at now given the idle timeout.
func (s Session) Alive(now time.Time, idle time.Duration) bool {
	return s.RevokedAt.IsZero() && now.Before(s.ExpiresAt) && (idle <= 0 || now.Before(s.LastSeenAt.Add(idle)))
}

// SessionRevocation is what one revocation changed.
type SessionRevocation struct {
	Session Session // the session as stored after the call
	// Ended is true when this call revoked the session, false when it was
	// already revoked (so concurrent revocations report the end once).
	Ended bool
	// Keys are the session keys this call revoked (kind session, bound to
	// the session), as stored after the call.
	Keys []APIKey
}

// SessionStore persists browser sessions. Ending a session (revocation)
// also revokes the API keys bound to it (APIKey.SessionID) in the same
// transaction, so a session's MCP credential can never outlive it.
//
// Session keys are created with CreateAPIKey (SessionID set): the session
// must exist and not be revoked, checked under a lock so that a concurrent
// revocation cannot miss the new key (ErrNotFound otherwise), and a session
// holds at most one key (ErrConflict for a second one).
type SessionStore interface {
	CreateSession(ctx context.Context, s Session) error // ErrConflict: id or hash taken; ErrNotFound: unknown user
	GetSession(ctx context.Context, id string) (Session, error)
	// LookupSession finds a session by the SHA-256 of its cookie secret,
	// with its user, in one round trip. ErrNotFound when unknown. Revoked
	// and expired sessions are returned too: the caller decides.
	LookupSession(ctx context.Context, hash []byte) (Session, User, error)
	ListSessions(ctx context.Context, userID string) ([]Session, error) // not revoked, newest first (expired ones included; callers filter)
	// TouchSession moves LastSeenAt forward (never backwards). Unknown
	// ids are ignored.
	TouchSession(ctx context.Context, id string, at time.Time) error
	// RevokeSession revokes one session and its session keys, recording
	// reason (a SessionEnd value) as its EndReason; revoking an already
	// revoked session keeps the first time and reason (Ended false), except
	// that SessionEndRevoked replaces SessionEndIdle: someone ending a
	// sign-in that went idle still ends it. ErrNotFound for an unknown id.
	RevokeSession(ctx context.Context, id string, at time.Time, reason string) (SessionRevocation, error)
	// RevokeUserSessions revokes every session of a user that is not yet
	// revoked, except exceptID (may be ""), with their session keys and
	// EndReason SessionEndRevoked, and returns what it revoked (every entry
	// has Ended true). Sessions of the user that ended idle (except
	// exceptID) get EndReason SessionEndRevoked too, without being
	// reported: they were ended already.
	RevokeUserSessions(ctx context.Context, userID, exceptID string, at time.Time) ([]SessionRevocation, error)
	// ExpireSessions revokes, at now, up to limit sessions that are not
	// revoked but dead: past ExpiresAt, or idle (LastSeenAt + idle <= now;
	// idle <= 0: no idle limit), with their session keys and EndReason
	// SessionEndLifetime or SessionEndIdle (lifetime wins when both hold). Safe to run on
	// several nodes at once: each dead session is ended by one caller.
	ExpireSessions(ctx context.Context, now time.Time, idle time.Duration, limit int) ([]SessionRevocation, error)
	// DeleteSessionsBefore deletes up to limit sessions that expired, or
	// were revoked for another reason than SessionEndIdle, before cutoff
	// (an idle session is kept until its lifetime ends: grants' claims
	// live on it), together with their session keys, and returns
	// how many sessions it deleted; safe to run on several nodes at once.
	DeleteSessionsBefore(ctx context.Context, cutoff time.Time, limit int) (int, error)
	// ListSessionKeys returns the keys bound to a session (kind session).
	ListSessionKeys(ctx context.Context, sessionID string) ([]APIKey, error)
}
