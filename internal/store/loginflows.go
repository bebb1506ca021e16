package store

import (
	"context"
	"errors"
	"fmt"
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
	// ErrSourceFull is the ErrFull of one source (errors.Is(err, ErrFull)
	// holds for it too): the rows of the caller's source reached its own
	// bound, while others may still have room.
	ErrSourceFull = fmt.Errorf("%w from this source", ErrFull)
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
	// Source is the client the sign-in was started from, as per-client
	// rate limits key it (httpx.RateLimitKey: an IPv4 address or an IPv6
	// /64); "" counts against no per-source bound.
	Source string
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

// LoginFlowLimits bound the rows CreateLoginFlow may add to; 0: no bound.
type LoginFlowLimits struct {
	// Total bounds the pending flows of all sources (live and not used
	// yet), the rows PerSource counts: a client that finishes its own
	// flows cannot fill the total with them. Finished rows are bounded by
	// the start rate limit per client until they expire.
	Total int
	// PerSource bounds the pending flows (live and not used yet: sign-ins
	// still in progress) of one Source. Finished sign-ins do not count, so
	// many users behind one address who complete their sign-ins are never
	// held back by it; flows without a Source are not counted.
	PerSource int
}

// LoginFlowStore persists login flows. Single use holds across nodes: the
// state changes are conditional updates of which exactly one of any
// number of concurrent callers succeeds.
type LoginFlowStore interface {
	// CreateLoginFlow stores f within limits, counted at f.CreatedAt:
	// ErrSourceFull when f.Source already has limits.PerSource pending
	// flows, ErrFull when limits.Total flows are live. The counts and the
	// insert are one serialised step on every backend, so the bounds are
	// exact across nodes. ErrConflict on a taken id or hash.
	CreateLoginFlow(ctx context.Context, f LoginFlow, limits LoginFlowLimits) error
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
