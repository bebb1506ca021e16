package store

import (
	"context"
	"time"
)

// UserIdentity links an account at an external identity source (a trusted
// external token issuer, later an upstream login provider) to a local user.
// (Issuer, Subject) is unique: one external account belongs to exactly one
// local user, while a user may have several identities.
type UserIdentity struct {
	// Issuer names the identity source: its issuer URL, compared byte for
	// byte (OIDC Core §2 "iss"). Sources without an issuer URL use a stable
	// URL-like name of their own.
	Issuer string
	// Subject is the source's identifier of the account ("sub"), never
	// reassigned by the source.
	Subject string
	UserID  string
	// Email, EmailVerified and Name are what the source said most recently;
	// for display and diagnostics, never a credential.
	Email         string
	EmailVerified bool
	Name          string
	CreatedAt     time.Time
	LastLoginAt   time.Time // zero: never used to log in
}

// IdentityStore persists the links between external identities and users.
type IdentityStore interface {
	// CreateUserWithIdentity creates u and links id to it (id.UserID must
	// be u.ID) in one transaction: either both exist afterwards or
	// neither. ErrConflict when u's id or email is taken or when
	// (Issuer, Subject) is already linked; in that case nothing is written.
	CreateUserWithIdentity(ctx context.Context, u User, id UserIdentity) error
	// LinkIdentity links id to the existing user id.UserID. ErrConflict
	// when (Issuer, Subject) is already linked (to any user); ErrNotFound
	// when the user does not exist.
	LinkIdentity(ctx context.Context, id UserIdentity) error
	// GetIdentity returns the link of (issuer, subject); ErrNotFound.
	GetIdentity(ctx context.Context, issuer, subject string) (UserIdentity, error)
	// ListIdentities returns the identities of a user, oldest first.
	ListIdentities(ctx context.Context, userID string) ([]UserIdentity, error)
	// ListAllIdentities returns every link, by user id and then oldest
	// first (the admin's user list names each user's sources; it lists
	// every user too).
	ListAllIdentities(ctx context.Context) ([]UserIdentity, error)
	// TouchIdentity stores what the source said at a login: Email,
	// EmailVerified and Name replace the stored ones, and LastLoginAt is
	// raised to id.LastLoginAt (now when zero; it never moves backwards). The link itself
	// (UserID) and CreatedAt are not changed. ErrNotFound for an unknown
	// (Issuer, Subject).
	TouchIdentity(ctx context.Context, id UserIdentity) error
}
