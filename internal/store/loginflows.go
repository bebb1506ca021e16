package store

import (
	"context"
	"errors"
	"time"
)

// Kinds of login flow.
const (
	// LoginFlowUpstream: "Continue with <provider>", a login through an
	// upstream identity provider (internal/upstream).
	LoginFlowUpstream = "upstream"
	// LoginFlowCustom: "bring your own login", a login request handed to
	// the operator's application (internal/customauth).
	LoginFlowCustom = "custom"
)

var (
	// ErrExpired: the addressed row exists but its lifetime is over.
	ErrExpired = errors.New("store: expired")
	// ErrFull: a bounded table already holds as many live rows as the
	// caller allows.
	ErrFull = errors.New("store: too many live rows")
)

// Size bounds of a LoginFlow.
const (
	MaxLoginFlowSealedBytes = 1024
	MaxLoginFlowUserBytes   = 64 << 10
)

// LoginFlow is a sign-in that left mcpgate for an outside party (an
// upstream identity provider, the operator's login application) and comes
// back to whichever node the load balancer picks. The handles that travel
// through the browser — the state, the login request id — are bearer
// secrets for the flow: only their SHA-256 is kept. Values the callback
// needs in clear (the PKCE verifier, the OIDC nonce) are sealed by the
// caller under a key derived from the server key; the store cannot open
// them.
type LoginFlow struct {
	ID          string // "lgf_…": a handle for the audit log; never in a URL, not a credential
	Kind        string // LoginFlowUpstream or LoginFlowCustom
	Provider    string // upstream: the provider's configured name; custom: ""
	StateHash   []byte // SHA-256 of the state the browser brings back (32 bytes, unique)
	RequestHash []byte // custom: SHA-256 of the login request id (32 bytes, unique); upstream: nil
	Sealed      []byte // caller-sealed secrets, at most MaxLoginFlowSealedBytes; may be nil
	ReturnTo    string // the local path the browser continues at
	// User is, for a custom flow, the description of the user the
	// operator's application posted (JSON, at most MaxLoginFlowUserBytes);
	// "" until then.
	User      string
	CreatedAt time.Time
	ExpiresAt time.Time
	UserAt    time.Time // when User was set; zero: not yet
	// UsedAt is when the callback consumed the flow; zero: not yet. A used
	// flow stays until it expires, so a replay is told apart from an
	// unknown state.
	UsedAt time.Time
	// CallbackHash is, for a custom flow, the SHA-256 of the one-time
	// callback code handed out with the posted user (set together with
	// User; nil until then): /login/callback must bring the code, which
	// only the browser the application redirects ever sees.
	CallbackHash []byte
}

// LoginFlowStore persists login flows. Single use holds across nodes: the
// state changes are conditional updates of which exactly one of any
// number of concurrent callers succeeds.
type LoginFlowStore interface {
	// CreateLoginFlow stores f when fewer than max flows are live (not
	// expired at f.CreatedAt); ErrFull otherwise (max <= 0: no bound). The
	// count and the insert run in one transaction: exact on SQLite; on
	// PostgreSQL nodes inserting at the same instant may each see the last
	// free place. ErrConflict on a taken id or hash.
	CreateLoginFlow(ctx context.Context, f LoginFlow, max int) error
	// GetLoginFlow returns the flow of kind whose state has this SHA-256;
	// used and expired ones too (the caller decides). ErrNotFound.
	GetLoginFlow(ctx context.Context, kind string, stateHash []byte) (LoginFlow, error)
	// SetLoginFlowUser sets User (non-empty) and CallbackHash (a 32-byte
	// SHA-256 digest) of the custom flow whose login request id has this
	// SHA-256, once: ErrNotFound for an unknown one,
	// ErrExpired when it is not live at `at`, ErrReplayed when a user was
	// set before or the flow was used. It returns the flow as stored (on
	// ErrExpired and ErrReplayed too, unchanged).
	SetLoginFlowUser(ctx context.Context, requestHash []byte, user string, callbackHash []byte, at time.Time) (LoginFlow, error)
	// UseLoginFlow marks the flow of kind whose state has this SHA-256
	// used at `at`, once: ErrNotFound for an unknown one, ErrExpired when
	// it is not live at `at`, ErrReplayed when it was used before. It
	// returns the flow as stored (on ErrExpired and ErrReplayed too,
	// unchanged).
	UseLoginFlow(ctx context.Context, kind string, stateHash []byte, at time.Time) (LoginFlow, error)
	// DeleteExpiredLoginFlows deletes at most limit flows that expired
	// before now, used or not, and returns how many. Safe on several nodes
	// at once.
	DeleteExpiredLoginFlows(ctx context.Context, now time.Time, limit int) (int, error)
}
