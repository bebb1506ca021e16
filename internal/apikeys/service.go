package apikeys

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/store"
)

// Verification outcomes. Verify returns one of these (ErrMalformed wrapped
// with the failed check), or a storage error that matches none of them:
// callers must treat every non-nil error as a refusal (fail closed), and a
// storage error as a server fault rather than a bad credential.
var (
	ErrUnknown      = errors.New("apikeys: unknown key")
	ErrRevoked      = errors.New("apikeys: key revoked")
	ErrExpired      = errors.New("apikeys: key expired")
	ErrDisabledUser = errors.New("apikeys: key owner disabled")
)

// RefusedError is how Verify refuses a key it found: Reason is ErrRevoked,
// ErrExpired or ErrDisabledUser (errors.Is matches it), and the ids say
// whose key it was, so the audit event can name them. The ids are not
// secret; the key itself is never in an error.
type RefusedError struct {
	Reason        error
	KeyID, UserID string
	// Detail says more for the audit log, e.g. why a session key is
	// revoked ("session ended"); "" when Reason says it all.
	Detail string
}

func (e *RefusedError) Error() string { return e.Reason.Error() + " (" + e.KeyID + ")" }
func (e *RefusedError) Unwrap() error { return e.Reason }

// errInconsistent: the store answered a lookup with a row that does not
// belong to the question (a storage bug). Verify fails closed with it.
var errInconsistent = errors.New("apikeys: store returned an inconsistent key row")

// Defaults for Options.
const (
	DefaultCacheTTL      = 5 * time.Second
	DefaultCacheSize     = 100_000
	DefaultTouchInterval = time.Minute
	// DefaultSessionKeyMaxLifetime caps session keys (Options).
	DefaultSessionKeyMaxLifetime = 7 * 24 * time.Hour
	// MinServerKeyLen is the shortest accepted Options.ServerKey.
	MinServerKeyLen = 32
)

// Options configure a Service. Zero values select the defaults.
type Options struct {
	// CacheTTL is how long a successful verification is trusted without
	// reading the database again. It bounds how long a revocation or a
	// user disable made by ANOTHER process sharing the database
	// (another node, or the CLI) can go unnoticed here; changes made
	// through this Service take effect at once (Revoke, and
	// InvalidateUser, which whoever disables a user must call).
	// Default DefaultCacheTTL; negative disables the cache.
	CacheTTL time.Duration
	// CacheSize is the most keys the cache holds (rounded up to a
	// multiple of its 16 shards); when a shard is full, an arbitrary entry
	// makes room. Each entry takes about 150 bytes. Default
	// DefaultCacheSize; negative disables the cache.
	CacheSize int
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives storage failures; default slog.Default(). Nothing
	// logged contains a key.
	Logger *slog.Logger
	// TouchInterval is how often each key's use is queued for the
	// last-used batch, and how often Run writes the batch. A key's stored
	// LastUsedAt can therefore lag its real last use by up to about two
	// intervals. Default DefaultTouchInterval.
	TouchInterval time.Duration

	// ServerKey (at least 32 bytes, the same on every node) derives the
	// MCP key of a browser session from its cookie secret (SessionKey).
	// Without it SessionKey fails; nothing else needs it.
	ServerKey []byte
	// SessionKeyMaxLifetime caps the lifetime of a session key; default
	// DefaultSessionKeyMaxLifetime. The key also ends with its session.
	SessionKeyMaxLifetime time.Duration
	// SessionIdleTimeout is the browser sessions' idle timeout, used to
	// check on the uncached path that a session key's session is alive
	// (0: sessions have no idle limit here).
	SessionIdleTimeout time.Duration
}

// Service issues, verifies and revokes API keys. It is safe for concurrent
// use.
type Service struct {
	st      store.Store
	rec     audit.Recorder
	now     func() time.Time
	log     *slog.Logger
	touch   time.Duration
	cache   *cache
	flushMu sync.Mutex // serialises Flush

	serverKey     []byte
	sessionKeyMax time.Duration
	sessionIdle   time.Duration

	warnUncachedOnce sync.Once
}

// New returns a Service. st and rec must not be nil. Call Run to write
// last-used times periodically and Close on shutdown.
func New(st store.Store, rec audit.Recorder, opts Options) *Service {
	if st == nil || rec == nil {
		panic("apikeys.New: nil store or audit recorder")
	}
	if opts.CacheTTL == 0 {
		opts.CacheTTL = DefaultCacheTTL
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.TouchInterval <= 0 {
		opts.TouchInterval = DefaultTouchInterval
	}
	if opts.SessionKeyMaxLifetime <= 0 {
		opts.SessionKeyMaxLifetime = DefaultSessionKeyMaxLifetime
	}
	return &Service{
		st:            st,
		rec:           rec,
		now:           opts.Now,
		log:           opts.Logger,
		touch:         opts.TouchInterval,
		cache:         newCache(opts.CacheSize, opts.CacheTTL, opts.TouchInterval),
		serverKey:     slices.Clone(opts.ServerKey),
		sessionKeyMax: opts.SessionKeyMaxLifetime,
		sessionIdle:   opts.SessionIdleTimeout,
	}
}

// Verify checks a presented key and returns what it grants.
//
// The format is checked first (ErrMalformed, no database read); then the
// cache; on a miss the database (one LookupAPIKey). The stored hash is
// compared in constant time before a row or cache entry is trusted.
// Refusals are ErrUnknown, ErrRevoked, ErrExpired and ErrDisabledUser; any
// other error is a storage failure, which callers must also treat as a
// refusal. Verify records no audit event: the caller (authn) does, with the
// reason these errors give.
//
// A cache hit performs no allocation and no database access.
func (s *Service) Verify(ctx context.Context, plaintext string) (Result, error) {
	if err := Parse(plaintext); err != nil {
		return Result{}, err
	}
	h := Hash(plaintext)
	now := s.now()
	nowNs := now.UnixNano()
	sh := s.cache.shard(&h)
	var gen uint64
	if s.cache.enabled() {
		var e entry
		var hit bool
		e, gen, hit = sh.get(&h, nowNs)
		if hit {
			r := e.result()
			if r.expiredAt(now.UnixMilli()) {
				return Result{}, &RefusedError{Reason: ErrExpired, KeyID: r.KeyID(), UserID: r.UserID()}
			}
			if nowNs-e.notedAt >= s.cache.interval {
				s.cache.noteHit(sh, &h, e.keyID, nowNs)
			}
			return r, nil
		}
	}
	// h is passed by value: the store call makes its argument escape, and
	// only this path should pay for that.
	return s.verifyStored(ctx, sh, h, gen, now)
}

// verifyStored is the cache-miss path of Verify.
func (s *Service) verifyStored(ctx context.Context, sh *shard, h [32]byte, gen uint64, now time.Time) (Result, error) {
	k, u, err := s.st.LookupAPIKey(ctx, h[:])
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Result{}, ErrUnknown
	case err != nil:
		return Result{}, fmt.Errorf("apikeys: look up key: %w", err)
	}
	if subtle.ConstantTimeCompare(k.Hash, h[:]) != 1 || u.ID != k.UserID {
		s.log.Error("apikeys: store returned a key row that does not match the lookup", "key_id", k.ID)
		return Result{}, errInconsistent
	}
	switch {
	case !k.RevokedAt.IsZero():
		return Result{}, &RefusedError{Reason: ErrRevoked, KeyID: k.ID, UserID: k.UserID}
	case !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):
		return Result{}, &RefusedError{Reason: ErrExpired, KeyID: k.ID, UserID: k.UserID}
	case u.Disabled:
		return Result{}, &RefusedError{Reason: ErrDisabledUser, KeyID: k.ID, UserID: k.UserID}
	}
	if k.Kind == store.KeyKindSession {
		// A session key lives only as long as its browser session. Only
		// this path needs the check: cached entries live at most CacheTTL,
		// and ending a session in this process evicts its key (Evict).
		detail, err := s.sessionDead(ctx, k, now)
		if err != nil {
			return Result{}, err
		}
		if detail != "" {
			return Result{}, &RefusedError{Reason: ErrRevoked, KeyID: k.ID, UserID: k.UserID, Detail: detail}
		}
	}
	r, compact := newResult(k)
	if !compact {
		s.warnUncachedOnce.Do(func() {
			s.log.Warn("apikeys: a key cannot be cached (unusual id or kind, or more than 64 distinct scopes in use; see RegisterScopes); it is verified against the database on every use", "key_id", k.ID)
		})
	}
	s.cache.record(sh, &h, r, compact, gen, now.UnixNano())
	return r, nil
}

// IssueRequest describes a key to create.
type IssueRequest struct {
	UserID    string    // owner; must exist and not be disabled
	Name      string    // 1..100 characters after trimming spaces; no control characters
	Scopes    []string  // RFC 6749 scope-tokens, at most 32 distinct; stored sorted and deduplicated
	ExpiresAt time.Time // zero: never; otherwise in the future (stored to the millisecond)
	Kind      string    // store.KeyKindManual (default; session keys come from SessionKey)
}

// ValidationError reports an IssueRequest field that cannot be accepted.
// Message is safe to show to the user.
type ValidationError struct {
	Field   string // "user_id", "name", "scopes", "expires_at" or "kind"
	Message string
}

func (e *ValidationError) Error() string {
	return "apikeys: invalid " + e.Field + ": " + e.Message
}

// Issue creates a key and returns its plaintext, which exists nowhere else:
// show it to the user once. Invalid input yields a *ValidationError. The
// key.created event names the principal in ctx as the actor ("cli" when
// there is none).
//
// Issue does not check who may create keys for req.UserID, nor which
// scopes they may grant: callers do.
func (s *Service) Issue(ctx context.Context, req IssueRequest) (plaintext string, key store.APIKey, err error) {
	now := s.now()
	name, scopeList, expiresAt, kind, err := validateIssue(req, now)
	if err != nil {
		return "", store.APIKey{}, err
	}
	u, err := s.st.GetUser(ctx, req.UserID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", store.APIKey{}, &ValidationError{Field: "user_id", Message: "no such user"}
	case err != nil:
		return "", store.APIKey{}, fmt.Errorf("apikeys: issue: %w", err)
	case u.Disabled:
		return "", store.APIKey{}, &ValidationError{Field: "user_id", Message: "the user is disabled"}
	}

	plaintext = Generate()
	h := Hash(plaintext)
	key = store.APIKey{
		ID:        store.NewID(keyIDPrefix),
		UserID:    u.ID,
		Name:      name,
		Prefix:    plaintext[:DisplayPrefixLen],
		Hash:      h[:],
		Kind:      kind,
		Scopes:    scopeList,
		CreatedAt: toMillis(now),
		ExpiresAt: expiresAt,
	}
	if err := s.st.CreateAPIKey(ctx, key); err != nil {
		return "", store.APIKey{}, fmt.Errorf("apikeys: issue: %w", err)
	}

	var expires any // JSON null when the key never expires
	if !expiresAt.IsZero() {
		expires = expiresAt.Format(time.RFC3339Nano)
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
			"expires_at": expires,
			"actor":      actor(ctx),
		},
	})
	return plaintext, key, nil
}

// Revoke revokes the key with this id, evicts it from this process's cache
// (so it is refused here at once; other processes notice within their
// CacheTTL) and records key.revoked. Revoking a revoked key returns it
// unchanged, without a new event. An unknown id yields an error matching
// store.ErrNotFound.
//
// Revoke does not check who may revoke the key: callers do (for example,
// that the key belongs to the principal, or that the principal is an
// admin).
func (s *Service) Revoke(ctx context.Context, id string) (store.APIKey, error) {
	k, err := s.st.GetAPIKey(ctx, id)
	if err != nil {
		return store.APIKey{}, fmt.Errorf("apikeys: revoke: %w", err)
	}
	if !k.RevokedAt.IsZero() {
		s.evict(k) // revoked elsewhere, maybe still cached here
		return k, nil
	}
	now := s.now()
	at := toMillis(now)
	k, err = s.st.RevokeAPIKey(ctx, id, at)
	if err != nil {
		return store.APIKey{}, fmt.Errorf("apikeys: revoke: %w", err)
	}
	s.evict(k)
	if !k.RevokedAt.Equal(at) {
		return k, nil // a concurrent revocation won; it has its event
	}
	s.rec.Record(ctx, audit.Event{
		Time:         now,
		Type:         audit.TypeKeyRevoked,
		Outcome:      store.OutcomeAllow,
		UserID:       k.UserID,
		CredentialID: k.ID,
		Details: map[string]any{
			"name":   k.Name,
			"prefix": k.Prefix,
			"kind":   k.Kind,
			"actor":  actor(ctx),
		},
	})
	return k, nil
}

// evict drops k from the cache and stops concurrent verifications from
// caching it again from a row read before the change.
func (s *Service) evict(k store.APIKey) {
	if len(k.Hash) == 32 {
		h := [32]byte(k.Hash)
		s.cache.shard(&h).evict(&h)
		return
	}
	raw, ok := rawID(k.ID, keyIDPrefix)
	s.cache.evictWhere(func(e entry) bool { return ok && e.keyID == raw })
}

// InvalidateUser evicts every cached key of the user, so that a change to
// the user committed before the call (disable, password change, role
// change) applies to the next verification in this process.
func (s *Service) InvalidateUser(userID string) {
	raw, ok := rawID(userID, userIDPrefix)
	s.cache.evictWhere(func(e entry) bool { return ok && e.userID == raw })
}

// Get returns the key with this id (store.ErrNotFound if none).
func (s *Service) Get(ctx context.Context, id string) (store.APIKey, error) {
	return s.st.GetAPIKey(ctx, id)
}

// List returns the user's keys, newest first, including revoked and expired
// ones; userID "" lists every user's keys.
func (s *Service) List(ctx context.Context, userID string) ([]store.APIKey, error) {
	return s.st.ListAPIKeys(ctx, userID)
}

// Flush writes the queued last-used times in one batch. On failure they
// stay queued for the next Flush.
func (s *Service) Flush(ctx context.Context) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	pending := s.cache.takePending(s.now().UnixNano())
	if len(pending) == 0 {
		return nil
	}
	if err := s.st.TouchAPIKeys(ctx, lastUsedBatch(pending)); err != nil {
		s.cache.restorePending(pending)
		return fmt.Errorf("apikeys: record last use of %d keys: %w", len(pending), err)
	}
	return nil
}

// Run flushes last-used times every TouchInterval until ctx is done. Call
// Close afterwards for the final flush.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.touch)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Flush(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("apikeys: last-used times not written; will retry", "err", err)
			}
		}
	}
}

// Close writes the last-used times still queued. Call it on shutdown,
// after the listeners stopped accepting requests.
func (s *Service) Close(ctx context.Context) error {
	return s.Flush(ctx)
}

// actor names who asked for a change, for audit details.
func actor(ctx context.Context) string {
	if p := principal.From(ctx); p != nil && p.UserID != "" {
		return p.UserID
	}
	return "cli"
}

// toMillis truncates t to the store's millisecond precision, in UTC.
func toMillis(t time.Time) time.Time {
	return time.UnixMilli(t.UnixMilli()).UTC()
}
