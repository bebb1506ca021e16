package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/ratelimit/redistest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)} }

func newTestMemory(every time.Duration, burst, maxKeys int) (*Memory, *clock) {
	c := newClock()
	m := NewMemory(every, burst, maxKeys)
	m.now = c.now
	return m, c
}

// newLimiter builds a limiter of one implementation on a test clock.
type newLimiter func(every time.Duration, burst int) (Limiter, *clock)

// eachImplementation runs fn against Memory and against Redis (the
// latter skipped as redistest.URL describes): both must behave the same.
func eachImplementation(t *testing.T, fn func(t *testing.T, newLimiter newLimiter)) {
	t.Run("memory", func(t *testing.T) {
		fn(t, func(every time.Duration, burst int) (Limiter, *clock) { return newTestMemory(every, burst, 0) })
	})
	t.Run("redis", func(t *testing.T) {
		client := redistest.Client(t)
		fn(t, func(every time.Duration, burst int) (Limiter, *clock) {
			c := newClock()
			r := NewRedis(client, redistest.Name(t, client), every, burst)
			r.now = c.now
			return r, c
		})
	})
}

func allow(t *testing.T, l Limiter, key string) Decision {
	t.Helper()
	d, err := l.Allow(context.Background(), key)
	if err != nil {
		t.Fatalf("Allow(%q): %v", key, err)
	}
	return d
}

func TestBurstThenRefill(t *testing.T) {
	eachImplementation(t, func(t *testing.T, newLimiter newLimiter) {
		l, c := newLimiter(10*time.Second, 3)
		for i := range 3 {
			if d := allow(t, l, "alice"); !d.Allowed || d.RetryAfter != 0 {
				t.Fatalf("attempt %d: %+v, want allowed", i+1, d)
			}
		}
		d := allow(t, l, "alice")
		if d.Allowed || d.RetryAfter != 10*time.Second {
			t.Fatalf("4th attempt: %+v, want refused with RetryAfter 10s", d)
		}
		// A refusal takes no token: waiting what RetryAfter said is enough.
		c.advance(4 * time.Second)
		if d := allow(t, l, "alice"); d.Allowed || d.RetryAfter != 6*time.Second {
			t.Fatalf("after 4s: %+v, want refused with RetryAfter 6s", d)
		}
		if d := allow(t, l, "bob"); !d.Allowed {
			t.Fatalf("another key is limited too: %+v", d)
		}
		c.advance(6 * time.Second)
		if d := allow(t, l, "alice"); !d.Allowed {
			t.Fatalf("after RetryAfter: %+v, want allowed", d)
		}
		if d := allow(t, l, "alice"); d.Allowed {
			t.Fatalf("one token regained, two spent: %+v", d)
		}
		// A long pause refills the bucket up to the burst, no further.
		c.advance(time.Hour)
		for i := range 3 {
			if d := allow(t, l, "alice"); !d.Allowed {
				t.Fatalf("after an hour, attempt %d: %+v, want allowed", i+1, d)
			}
		}
		if d := allow(t, l, "alice"); d.Allowed || d.RetryAfter != 10*time.Second {
			t.Fatalf("after an hour, 4th attempt: %+v, want refused with RetryAfter 10s", d)
		}
	})
}

// Sub-second intervals: RetryAfter is rounded up to whole milliseconds, so
// waiting it is always enough.
func TestRetryAfterRoundsUp(t *testing.T) {
	eachImplementation(t, func(t *testing.T, newLimiter newLimiter) {
		l, c := newLimiter(1500*time.Microsecond, 1)
		allow(t, l, "k")
		d := allow(t, l, "k")
		if d.Allowed || d.RetryAfter != 2*time.Millisecond {
			t.Fatalf("second attempt: %+v, want refused with RetryAfter 2ms", d)
		}
		c.advance(d.RetryAfter)
		if d := allow(t, l, "k"); !d.Allowed {
			t.Fatalf("after RetryAfter: %+v, want allowed", d)
		}
	})
}

func TestNoLimit(t *testing.T) {
	eachImplementation(t, func(t *testing.T, newLimiter newLimiter) {
		l, _ := newLimiter(0, 1)
		for range 100 {
			if d := allow(t, l, "x"); !d.Allowed {
				t.Fatal("every <= 0 must not limit")
			}
		}
		if m, ok := l.(*Memory); ok && m.Len() != 0 {
			t.Errorf("an unlimited limiter tracks %d keys", m.Len())
		}
	})
}

func TestConcurrent(t *testing.T) {
	eachImplementation(t, func(t *testing.T, newLimiter newLimiter) {
		l, _ := newLimiter(time.Hour, 50)
		var allowed atomic.Int32
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				for range 10 {
					d, err := l.Allow(context.Background(), "shared")
					if err != nil {
						t.Error(err)
						return
					}
					if d.Allowed {
						allowed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if allowed.Load() != 50 {
			t.Errorf("%d of 200 concurrent attempts allowed, want exactly the burst of 50", allowed.Load())
		}
	})
}

func TestMemoryIsBounded(t *testing.T) {
	m, c := newTestMemory(time.Minute, 2, 10)
	for i := range 1000 {
		allow(t, m, fmt.Sprint("ip-", i))
		if m.Len() > 10 {
			t.Fatalf("after %d keys the map holds %d, want at most 10", i+1, m.Len())
		}
	}
	// Idle keys (full buckets) are swept first, so a busy key keeps its
	// state when the map fills with keys that have recovered.
	m2, c2 := newTestMemory(time.Minute, 2, 3)
	allow(t, m2, "busy")
	allow(t, m2, "busy")
	allow(t, m2, "a")
	allow(t, m2, "b")
	c2.advance(3 * time.Minute / 2) // a, b full again; busy has 1.5 tokens
	allow(t, m2, "c")               // map full: a and b are swept
	if m2.Len() != 2 {
		t.Errorf("after the sweep %d keys are tracked, want busy and c", m2.Len())
	}
	if d := allow(t, m2, "busy"); !d.Allowed {
		t.Fatal("busy lost a token it had")
	}
	if d := allow(t, m2, "busy"); d.Allowed {
		t.Fatal("busy's bucket was reset by the sweep")
	}
	_ = c
}
