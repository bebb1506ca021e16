// Package ratelimit decides whether an action identified by a key (an
// account, a client IP) may happen now. Limiter is the interface callers
// depend on; Memory is the in-process token-bucket implementation (one
// node), Redis the same bucket shared by every node (redis.go).
package ratelimit

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Decision is the answer of a Limiter.
type Decision struct {
	Allowed bool
	// RetryAfter is how long to wait before the next attempt can succeed
	// (zero when Allowed).
	RetryAfter time.Duration
}

// Limiter decides whether one more event for key is allowed now. An error
// means the limiter could not decide (a shared backend is down); callers
// fail closed.
type Limiter interface {
	Allow(ctx context.Context, key string) (Decision, error)
}

// Memory is a token bucket per key (golang.org/x/time/rate): a key may
// spend burst events at once, and regains one every `every`. The map of
// keys is bounded by maxKeys: idle keys (whose bucket is full again, so
// forgetting them changes nothing) are swept when the map is full, and if
// none is idle an arbitrary key is dropped. Safe for concurrent use.
type Memory struct {
	limit   rate.Limit
	burst   int
	maxKeys int
	now     func() time.Time

	mu        sync.Mutex
	buckets   map[string]*rate.Limiter
	lastSweep time.Time
}

var _ Limiter = (*Memory)(nil)

// NewMemory returns a Memory limiter allowing burst events at once and one
// more every `every` (every <= 0: no limit). maxKeys bounds the keys kept
// (<= 0: 100 000).
func NewMemory(every time.Duration, burst int, maxKeys int) *Memory {
	if burst < 1 {
		burst = 1
	}
	if maxKeys <= 0 {
		maxKeys = 100_000
	}
	lim := rate.Inf
	if every > 0 {
		lim = rate.Every(every)
	}
	return &Memory{limit: lim, burst: burst, maxKeys: maxKeys, now: time.Now, buckets: map[string]*rate.Limiter{}}
}

// Allow takes one token from key's bucket if there is one. When there is
// none, nothing is taken and RetryAfter says when one will be there.
func (m *Memory) Allow(_ context.Context, key string) (Decision, error) {
	if m.limit == rate.Inf {
		return Decision{Allowed: true}, nil
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.buckets[key]
	if !ok {
		if len(m.buckets) >= m.maxKeys {
			m.makeRoom(now)
		}
		b = rate.NewLimiter(m.limit, m.burst)
		m.buckets[key] = b
	}
	r := b.ReserveN(now, 1)
	if !r.OK() {
		return Decision{RetryAfter: time.Duration(math.MaxInt64)}, nil
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		// Up to the next millisecond: the bucket's float arithmetic can
		// land a hair short, and waiting RetryAfter must be enough.
		return Decision{RetryAfter: (d + time.Millisecond - 1).Truncate(time.Millisecond)}, nil
	}
	return Decision{Allowed: true}, nil
}

// makeRoom frees at least one slot. Sweeping idle buckets costs a pass
// over the map, so it runs at most once a second; otherwise (or when no
// bucket is idle) an arbitrary bucket goes (map iteration order is random),
// which at worst gives that key a fresh burst.
func (m *Memory) makeRoom(now time.Time) {
	if now.Sub(m.lastSweep) >= time.Second {
		m.lastSweep = now
		for k, b := range m.buckets {
			if b.TokensAt(now) >= float64(m.burst) {
				delete(m.buckets, k)
			}
		}
	}
	for len(m.buckets) >= m.maxKeys {
		for k := range m.buckets {
			delete(m.buckets, k)
			break
		}
	}
}

// Len returns how many keys are tracked (tests, metrics).
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.buckets)
}
