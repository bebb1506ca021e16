// Package store defines mcpgate's persistence boundary: one Store interface,
// plain value structs and sentinel errors. Implementations live in
// sub-packages (sqlstore serves SQLite and PostgreSQL); every implementation
// must pass the suite in store/conformance.
//
// The shape follows Dex's storage package: value structs in, value structs
// out, read-modify-write through updater functions run inside one
// transaction, and ErrNotFound / ErrConflict as the only errors callers
// branch on.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Implementations wrap them (errors.Is works) and never
// leak driver-specific error values for these conditions.
var (
	// ErrNotFound: the addressed row does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: a uniqueness constraint (email, key hash, idempotency key) was hit.
	ErrConflict = errors.New("store: conflict")
	// ErrInsufficientFunds: a demo ledger transfer would overdraw the sender.
	ErrInsufficientFunds = errors.New("store: insufficient funds")
)

// User is a local account. Email is stored normalised (see identity.NormalizeEmail)
// and unique case-insensitively.
type User struct {
	ID           string
	Email        string
	DisplayName  string
	Roles        []string
	PasswordHash string // argon2id PHC string; empty = no password login
	Disabled     bool
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// API key kinds.
const (
	KeyKindManual  = "manual"  // created by a user or operator
	KeyKindSession = "session" // derived from a browser session (browser-session issue)
)

// APIKey is the stored form of an API key. The plaintext never reaches the
// store: only its SHA-256 (Hash) and a short display prefix.
type APIKey struct {
	ID         string
	UserID     string
	Name       string
	Prefix     string // visible part, e.g. "mcpg_7Hq2xZ1a", safe to display and log
	Hash       []byte // SHA-256 of the full key, 32 bytes, unique
	Kind       string
	Scopes     []string
	CreatedAt  time.Time
	ExpiresAt  time.Time // zero: never expires
	LastUsedAt time.Time // zero: never used
	RevokedAt  time.Time // zero: not revoked
	SessionID  string    // kind session: the browser session the key belongs to (revoked with it)
}

// Active reports whether the key is neither revoked nor expired at now.
func (k APIKey) Active(now time.Time) bool {
	return k.RevokedAt.IsZero() && (k.ExpiresAt.IsZero() || now.Before(k.ExpiresAt))
}

// Audit outcomes.
const (
	OutcomeAllow = "allow"
	OutcomeDeny  = "deny"
)

// AuditEvent is one row of the append-only audit log. It never holds a
// secret: CredentialID is the id of a key or token, never its value.
type AuditEvent struct {
	ID           int64
	Time         time.Time
	Type         string
	Outcome      string
	Reason       string
	UserID       string
	CredentialID string
	ClientIP     string
	UserAgent    string
	Resource     string
	Tool         string
	Details      map[string]any
}

// AuditFilter selects audit events, newest first. Zero fields do not filter.
type AuditFilter struct {
	Since    time.Time
	Until    time.Time
	Type     string
	UserID   string
	Outcome  string
	BeforeID int64 // keyset pagination: only events with ID < BeforeID
	Limit    int   // 0: implementation default (100); capped at 1000
}

// LedgerTransaction is one movement of the demo payments ledger.
type LedgerTransaction struct {
	ID             int64
	FromUserID     string
	ToUserID       string
	Amount         int64 // whole currency units, > 0
	CreatedAt      time.Time
	IdempotencyKey string // set for transfers made through the tool; unique per sender
}

// Transfer asks the ledger to move Amount from From to To.
type Transfer struct {
	FromUserID     string
	ToUserID       string
	Amount         int64
	IdempotencyKey string
	At             time.Time
}

// Store is everything mcpgate persists. All methods are safe for concurrent
// use. Times are stored with millisecond precision.
type Store interface {
	// Users.
	CreateUser(ctx context.Context, u User) error                   // ErrConflict: email taken
	GetUser(ctx context.Context, id string) (User, error)           // ErrNotFound
	GetUserByEmail(ctx context.Context, email string) (User, error) // ErrNotFound; email compared case-insensitively
	ListUsers(ctx context.Context) ([]User, error)                  // ordered by email
	// UpdateUser runs updater on the current row inside one transaction and
	// stores its result (ID and CreatedAt are kept). An updater error aborts
	// the transaction and is returned as is.
	UpdateUser(ctx context.Context, id string, updater func(User) (User, error)) (User, error)

	// API keys.
	CreateAPIKey(ctx context.Context, k APIKey) error         // ErrConflict: hash or id taken
	GetAPIKey(ctx context.Context, id string) (APIKey, error) // ErrNotFound
	// LookupAPIKey finds a key by the SHA-256 of its plaintext together with
	// its owner, in one round trip: this is the uncached verification path.
	LookupAPIKey(ctx context.Context, hash []byte) (APIKey, User, error) // ErrNotFound
	ListAPIKeys(ctx context.Context, userID string) ([]APIKey, error)    // userID "" = all; newest first
	// RevokeAPIKey sets RevokedAt (keeping an earlier revocation time) and
	// returns the key. ErrNotFound for an unknown id.
	RevokeAPIKey(ctx context.Context, id string, at time.Time) (APIKey, error)
	// TouchAPIKeys records last-used times in one batch; unknown ids are
	// ignored and a time never moves backwards.
	TouchAPIKeys(ctx context.Context, lastUsed map[string]time.Time) error
	// DeleteAPIKeysBefore deletes keys that expired or were revoked before
	// cutoff, at most limit rows, and returns how many it deleted. Keys
	// bound to a session are left alone: they go with their session
	// (DeleteSessionsBefore), so a session never gets a second key.
	DeleteAPIKeysBefore(ctx context.Context, cutoff time.Time, limit int) (int, error)

	// Browser sessions.
	SessionStore

	// OAuth authorization server state: pending requests, consents,
	// grants with their codes, refresh tokens (oauth.go).
	OAuthStore

	// OAuth clients: CIMD cache, dynamic registrations, static clients
	// (clients.go).
	ClientStore

	// JWT signing keys (signingkeys.go).
	SigningKeyStore

	// External identities linked to users (identities.go).
	IdentityStore

	// Sign-ins in progress through upstream providers and the operator's
	// login application (loginflows.go).
	LoginFlowStore

	// Audit log (append-only: there is no update or delete).
	AppendAudit(ctx context.Context, events []AuditEvent) error
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, error)

	// Demo payments ledger.
	InsertLedgerTransaction(ctx context.Context, t LedgerTransaction) error                            // seeding; ErrConflict on duplicate ID
	ListLedgerTransactions(ctx context.Context, userID string, limit int) ([]LedgerTransaction, error) // involving userID, newest first; limit 0 = all
	LedgerBalance(ctx context.Context, userID string) (int64, error)                                   // received - sent
	// ApplyTransfer checks funds and inserts the transaction atomically. When
	// the sender already used IdempotencyKey, the earlier transaction is
	// returned with replayed=true if it has the same recipient and amount,
	// and ErrConflict otherwise. ErrInsufficientFunds when the balance is short.
	ApplyTransfer(ctx context.Context, t Transfer) (tx LedgerTransaction, replayed bool, err error)

	// Ping checks that the database answers (readiness).
	Ping(ctx context.Context) error
	Close() error
}
