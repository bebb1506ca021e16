// Package loginflow keeps the sign-ins that leave mcpgate and come back —
// "Continue with <provider>" (internal/upstream) and "bring your own
// login" (internal/customauth) — in the store, so that whichever node the
// browser comes back to can finish them, and a restart loses none.
//
// What every node shares, through the database and the server key:
//
//   - the flow row (store.LoginFlow): found by the SHA-256 of the state or
//     login request id, never by the value itself, since those travel
//     through the browser and are bearer secrets for the flow;
//   - the secrets the callback needs in clear (PKCE verifier, OIDC nonce),
//     sealed with AES-256-GCM under HKDF(server key, "mcpgate login flow
//     secrets v1") and bound to their row;
//   - the browser binding: the cookie holds HMAC(HKDF(server key,
//     "mcpgate login flow binding v1"), kind, state), so any node can check
//     that the callback comes from the browser that started the sign-in;
//   - single use: a conditional update in the store, of which exactly one
//     of several racing callbacks succeeds, on any node.
//
// Every start stores a row, so starts are bounded three times: per client
// by a rate limit (the kind /authorize uses; shared through Redis with
// --redis-url), per client by a cap on its sign-ins in progress across all
// nodes (MaxPendingPerSource), and in total by a cap on live rows across
// all nodes (MaxPending), so that a flood from many addresses cannot fill
// the database either, and a flood from one client cannot take the whole
// total. A client is an IPv4 address or an IPv6 /64 (httpx.RateLimitKey).
// Starts must also be same-origin navigations when the browser says where
// they come from (AllowStart), so other sites cannot spend these budgets
// from their visitors' browsers.
//
// The callbacks write an audit row per refusal, so refusals are limited
// per client too (RefusalLimited), as authn limits refused credentials.
package loginflow

import (
	"context"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/serverkey"
	"github.com/mcpgate/mcpgate/internal/store"
)

// TTL is how long a started sign-in may take.
const TTL = 10 * time.Minute

// Defaults of Options.
const (
	// DefaultMaxPending bounds the sign-ins in progress across all nodes:
	// 100 000 rows of a few hundred bytes, and 2 000 clients (addresses
	// or IPv6 /64s, each at DefaultMaxPendingPerSource) to fill — more
	// than one /56 holds (review #5, N1).
	DefaultMaxPending = 100_000
	// DefaultMaxPendingPerSource bounds the unfinished sign-ins of one
	// client (IPv4 address or IPv6 /64) across all nodes: a client needs
	// DefaultMaxPending / 50 = 2 000 addresses or /64s to fill the total.
	// Finished sign-ins do not count: a NAT whose users start 100
	// sign-ins in 10 minutes and abandon a fifth of them holds about 20
	// abandoned and a few running ones; only a source near the start
	// limit's full pace (330 starts in 10 minutes) that abandons more than
	// one in seven reaches it.
	DefaultMaxPendingPerSource = 50
	// DefaultStartBurst sign-in starts per client IP at once, then one
	// more every DefaultStartEvery (the login page's per-IP budget: users
	// behind one NAT share it).
	DefaultStartBurst = 30
	DefaultStartEvery = 2 * time.Second
	// DefaultRefusalBurst refused callbacks (custom login's POST of the
	// user and its /login/callback, upstream callbacks) per client at once,
	// then one more every DefaultRefusalEvery: each writes an audit row.
	// Users rarely see a refusal; past the budget a client gets 429.
	DefaultRefusalBurst = 30
	DefaultRefusalEvery = 2 * time.Second
	// CleanEvery is how often Run deletes expired flows.
	CleanEvery = 10 * time.Minute
	cleanBatch = 500
)

// Reasons of refused starts, audited under the caller's event type.
const (
	ReasonRateLimited    = audit.ReasonRateLimited // the client started (or was refused) too often
	ReasonTooManyPending = "too_many_pending"      // MaxPending sign-ins are in progress
	// ReasonTooManyPendingFromSource: the client has MaxPendingPerSource
	// sign-ins in progress.
	ReasonTooManyPendingFromSource = "too_many_pending_from_source"
)

// LoginPage is where a start another site sent the browser to goes
// instead (AllowStart): the login page, whose buttons start sign-ins.
const LoginPage = "/login"

// HKDF info strings of the two keys derived from the server key.
const (
	secretsInfo = "mcpgate login flow secrets v1"
	bindingInfo = "mcpgate login flow binding v1"
	sealVersion = 1
)

// Options configure Flows. Store and ServerKey are required.
type Options struct {
	Store store.LoginFlowStore
	// ServerKey (at least 32 bytes) must be the same on every node.
	ServerKey []byte
	// StartLimiter limits sign-in starts per client. nil: in memory,
	// DefaultStartBurst then one per DefaultStartEvery.
	StartLimiter ratelimit.Limiter
	// RefusalLimiter limits refused callbacks per client (RefusalLimited).
	// nil: in memory, DefaultRefusalBurst then one per DefaultRefusalEvery.
	RefusalLimiter ratelimit.Limiter
	// MaxPending bounds the live flows across all nodes; 0:
	// DefaultMaxPending.
	MaxPending int
	// MaxPendingPerSource bounds the unfinished flows of one client
	// across all nodes; 0: DefaultMaxPendingPerSource.
	MaxPendingPerSource int
	Now                 func() time.Time
	Logger              *slog.Logger
}

// Flows creates, seals, binds and cleans login flows. Safe for concurrent
// use; one per node, shared by the upstream and custom login handlers.
type Flows struct {
	st       store.LoginFlowStore
	aead     cipher.AEAD
	bindKey  []byte
	starts   ratelimit.Limiter
	refusals ratelimit.Limiter
	notes    ratelimit.Limiter // one audit note per kind, reason (and client) and minute
	limits   store.LoginFlowLimits
	now      func() time.Time
	log      *slog.Logger
}

// New builds Flows.
func New(opts Options) (*Flows, error) {
	if opts.Store == nil {
		return nil, errors.New("loginflow.New: Store is required")
	}
	aead, err := serverkey.NewAEAD(opts.ServerKey, secretsInfo)
	if err != nil {
		return nil, fmt.Errorf("loginflow: %w", err)
	}
	bindKey, err := serverkey.Derive(opts.ServerKey, bindingInfo)
	if err != nil {
		return nil, fmt.Errorf("loginflow: %w", err)
	}
	if opts.StartLimiter == nil {
		opts.StartLimiter = ratelimit.NewMemory(DefaultStartEvery, DefaultStartBurst, 100_000)
	}
	if opts.RefusalLimiter == nil {
		opts.RefusalLimiter = ratelimit.NewMemory(DefaultRefusalEvery, DefaultRefusalBurst, 100_000)
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	if opts.MaxPendingPerSource <= 0 {
		opts.MaxPendingPerSource = DefaultMaxPendingPerSource
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Flows{
		st: opts.Store, aead: aead, bindKey: bindKey, starts: opts.StartLimiter, refusals: opts.RefusalLimiter,
		notes:  ratelimit.NewMemory(time.Minute, 1, 100_000),
		limits: store.LoginFlowLimits{Total: opts.MaxPending, PerSource: opts.MaxPendingPerSource},
		now:    opts.Now, log: opts.Logger,
	}, nil
}

// Store is where the flows live (the handlers' conditional updates).
func (fl *Flows) Store() store.LoginFlowStore { return fl.st }

// Token returns a fresh handle: 32 random bytes, base64url.
func Token() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Hash is what a handle (state, login request id) is stored and looked up
// as: its SHA-256.
func Hash(handle string) []byte {
	h := sha256.Sum256([]byte(handle))
	return h[:]
}

// Create stores f, with secret (may be nil) sealed into f.Sealed, and
// returns it as stored. f.ID is set here; f.Source, the client that starts
// the sign-in (httpx.ClientKey of its request), is required. The error
// wraps store.ErrFull when MaxPending sign-ins are in progress, or
// store.ErrSourceFull (an ErrFull) when the client has MaxPendingPerSource
// (answer both with RefuseFull).
func (fl *Flows) Create(ctx context.Context, f store.LoginFlow, secret []byte) (store.LoginFlow, error) {
	if f.Source == "" {
		return store.LoginFlow{}, errors.New("loginflow: a sign-in needs the client it is started from (Source)")
	}
	f.ID = store.NewID("lgf")
	if secret != nil {
		f.Sealed = serverkey.Seal(fl.aead, sealVersion, secret, sealAD(f))
	}
	if err := fl.st.CreateLoginFlow(ctx, f, fl.limits); err != nil {
		return store.LoginFlow{}, fmt.Errorf("loginflow: %w", err)
	}
	return f, nil
}

// Open returns the secret sealed into f by Create.
func (fl *Flows) Open(f store.LoginFlow) ([]byte, error) {
	pt, err := serverkey.Open(fl.aead, sealVersion, f.Sealed, sealAD(f))
	if err != nil {
		return nil, fmt.Errorf("loginflow: the secrets of %s: %w (every node must use the same server key)", f.ID, err)
	}
	return pt, nil
}

// sealAD binds sealed secrets to their row: copied to another row, they
// do not open.
func sealAD(f store.LoginFlow) []byte {
	return []byte("mcpgate login flow\x00" + f.ID + "\x00" + f.Kind + "\x00" + f.Provider + "\x00" + string(f.StateHash))
}

// Binding is the cookie value that ties the state of a flow of kind to
// the browser that started it.
func (fl *Flows) Binding(kind, state string) string {
	m := hmac.New(sha256.New, fl.bindKey)
	m.Write([]byte(kind + "\x00" + state))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Bound reports whether r carries the binding cookie of state (constant
// time).
func (fl *Flows) Bound(r *http.Request, cookie, kind, state string) bool {
	c, err := r.Cookie(cookie)
	if err != nil || c.Value == "" {
		return false
	}
	return hmac.Equal([]byte(c.Value), []byte(fl.Binding(kind, state)))
}

// Page writes a readable error page (the handlers' ErrorPage).
type Page func(w http.ResponseWriter, r *http.Request, status int, title, message string)

// Note records a refused start, or the one note of a flood of refusals,
// under the caller's audit event type.
type Note func(reason string, details map[string]any)

// AllowStart decides whether r may start a sign-in of kind. When it
// refuses, it has answered:
//
//   - a start another site's page caused (httpx.CrossSite: an <img>, a
//     form or a link elsewhere) goes to the login page with its return_to,
//     storing nothing: sign-ins start from mcpgate's own buttons (a
//     same-origin navigation), from an address typed, bookmarked or opened
//     by an application ("none"), or from clients that send no Fetch
//     Metadata. Otherwise any web page could spend the start budgets of
//     its visitors' addresses and fill the sign-ins in progress.
//   - past the per-client rate limit: 429 with Retry-After and a readable
//     page, or 503 when the limiter cannot decide (fail closed). A flood
//     is audited once per client, kind and minute (note), as authn does
//     with refused requests: the rest of it shows in the 429s only.
func (fl *Flows) AllowStart(w http.ResponseWriter, r *http.Request, kind string, page Page, note Note) bool {
	if httpx.CrossSite(r) {
		http.Redirect(w, r, LoginPage+"?return_to="+url.QueryEscape(r.URL.Query().Get("return_to")), http.StatusSeeOther)
		return false
	}
	src := httpx.ClientKey(r)
	d, err := fl.starts.Allow(r.Context(), "login-start:"+src)
	switch {
	case err != nil:
		fl.limiterFailed(w, r, page, "start", err)
		return false
	case d.Allowed:
		return true
	}
	secs := retrySeconds(d.RetryAfter)
	if fl.firstIn(r.Context(), kind+":"+ReasonRateLimited+":"+src) {
		note(ReasonRateLimited, map[string]any{"stage": "start", "retry_after": secs,
			"note": "further refused starts from this address within the minute are not recorded"})
	}
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	page(w, r, http.StatusTooManyRequests, "Too many sign-ins",
		"mcpgate received too many sign-in attempts from your network. Wait "+httpx.WaitSeconds(secs)+
			", then go back to the sign-in page and try again.")
	return false
}

// RefusalLimited is called by a callback handler each time it is about to
// refuse r (reason), before it audits and answers: each refusal costs an
// audit row, so refusals are limited per client. Within the budget it
// returns false and the handler goes on as usual. Past it, it has
// answered — 429 with Retry-After (page: a readable page for browsers, an
// error object for the API) — and audited once per client, kind and
// minute (note: reason rate_limited, the refusal it replaced as
// last_reason), and the handler must neither audit nor answer. When the
// limiter cannot decide it has answered 503 (fail closed), unaudited.
// Only refusals count: a valid request from a limited client still passes.
func (fl *Flows) RefusalLimited(w http.ResponseWriter, r *http.Request, kind, reason string, page Page, note Note) bool {
	src := httpx.ClientKey(r)
	d, err := fl.refusals.Allow(r.Context(), "login-refusal:"+src)
	switch {
	case err != nil:
		fl.limiterFailed(w, r, page, "refusal", err)
		return true
	case d.Allowed:
		return false
	}
	secs := retrySeconds(d.RetryAfter)
	if fl.firstIn(r.Context(), kind+":refused:"+src) {
		note(ReasonRateLimited, map[string]any{"last_reason": reason, "retry_after": secs,
			"note": "further refusals for this address within the minute are not recorded"})
	}
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	page(w, r, http.StatusTooManyRequests, "Too many refused sign-ins",
		"mcpgate refused too many sign-in requests from your network. Wait "+httpx.WaitSeconds(secs)+
			", then start the sign-in again.")
	return true
}

// limiterFailed answers when a limiter cannot decide: 503, fail closed.
func (fl *Flows) limiterFailed(w http.ResponseWriter, r *http.Request, page Page, stage string, err error) {
	fl.log.LogAttrs(r.Context(), slog.LevelError, "loginflow: the sign-in rate limiter failed; refusing",
		slog.String("stage", stage), slog.Any("err", err))
	w.Header().Set("Retry-After", "5")
	page(w, r, http.StatusServiceUnavailable, "Temporarily unavailable",
		"mcpgate could not handle this sign-in right now. Please try again in a moment.")
}

func retrySeconds(d time.Duration) int64 { return max(int64(math.Ceil(d.Seconds())), 1) }

// RefuseFull answers a start whose Create failed with err, a
// store.ErrFull:
//
//   - store.ErrSourceFull, the client has MaxPendingPerSource sign-ins in
//     progress: 429 with Retry-After: 60 and a readable page, audited once
//     per client, kind and minute. Everybody else still signs in.
//   - otherwise MaxPending sign-ins are in progress: 503 with Retry-After:
//     60 and a readable page, audited and logged once per kind and minute.
func (fl *Flows) RefuseFull(w http.ResponseWriter, r *http.Request, err error, kind string, page Page, note Note) {
	w.Header().Set("Retry-After", "60")
	if errors.Is(err, store.ErrSourceFull) {
		if fl.firstIn(r.Context(), kind+":"+ReasonTooManyPendingFromSource+":"+httpx.ClientKey(r)) {
			note(ReasonTooManyPendingFromSource, map[string]any{"stage": "start", "max_pending_per_source": fl.limits.PerSource,
				"note": "further refused starts from this address within the minute are not recorded"})
		}
		page(w, r, http.StatusTooManyRequests, "Too many sign-ins in progress",
			"Your network has too many unfinished sign-ins at mcpgate. Finish or close the ones you started, "+
				"or wait a minute, then go back to the sign-in page and try again.")
		return
	}
	if fl.firstIn(r.Context(), kind+":"+ReasonTooManyPending) {
		fl.log.LogAttrs(r.Context(), slog.LevelWarn, "loginflow: too many sign-ins in progress; refusing new ones",
			slog.String("kind", kind), slog.Int("max_pending", fl.limits.Total))
		note(ReasonTooManyPending, map[string]any{"stage": "start", "max_pending": fl.limits.Total,
			"note": "further refused starts within the minute are not recorded"})
	}
	page(w, r, http.StatusServiceUnavailable, "Too many sign-ins in progress", "Please try again in a minute.")
}

func (fl *Flows) firstIn(ctx context.Context, key string) bool {
	d, err := fl.notes.Allow(ctx, key)
	return err == nil && d.Allowed
}

// Clean deletes the flows that expired, in batches, and returns how many.
func (fl *Flows) Clean(ctx context.Context) (int, error) {
	now := fl.now()
	total := 0
	for ctx.Err() == nil {
		n, err := fl.st.DeleteExpiredLoginFlows(ctx, now, cleanBatch)
		total += n
		if err != nil {
			return total, fmt.Errorf("loginflow: clean: %w", err)
		}
		if n < cleanBatch {
			break
		}
	}
	return total, ctx.Err()
}

// Run cleans at once and then every `every` (default CleanEvery) until ctx
// ends. Safe on several nodes at once.
func (fl *Flows) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = CleanEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n, err := fl.Clean(ctx); err != nil && ctx.Err() == nil {
			fl.log.Warn("loginflow: deleting expired sign-ins failed; will retry", "err", err)
		} else if n > 0 {
			fl.log.Info("loginflow: deleted expired sign-ins", "rows", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
