package ratelimit

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/ratelimit/redistest"
)

// Two nodes (two clients, two limiters of the same name) spend from one
// budget per key, on the Redis server's clock.
func TestRedisNodesShareOneBudget(t *testing.T) {
	client := redistest.Client(t)
	name := redistest.Name(t, client)
	other, err := DialRedis(t.Context(), redistest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	nodes := []*Redis{NewRedis(client, name, time.Hour, 4), NewRedis(other, name, time.Hour, 4)}
	for i := range 4 {
		if d := allow(t, nodes[i%2], "alice@example.com"); !d.Allowed {
			t.Fatalf("attempt %d on node %d: %+v, want allowed", i+1, i%2+1, d)
		}
	}
	for i, n := range nodes {
		d := allow(t, n, "alice@example.com")
		if d.Allowed || d.RetryAfter <= 59*time.Minute || d.RetryAfter > time.Hour {
			t.Errorf("node %d after the shared burst: %+v, want refused with RetryAfter of about 1h", i+1, d)
		}
	}
	if d := allow(t, nodes[1], "bob@example.com"); !d.Allowed {
		t.Errorf("another key is limited too: %+v", d)
	}
}

// Limiters of different names keep separate budgets for the same key.
func TestRedisLimitersDoNotCollide(t *testing.T) {
	client := redistest.Client(t)
	login := NewRedis(client, redistest.Name(t, client), time.Hour, 1)
	authorize := NewRedis(client, redistest.Name(t, client), time.Hour, 1)
	for _, l := range []*Redis{login, authorize} {
		if d := allow(t, l, "192.0.2.7"); !d.Allowed {
			t.Fatalf("%s: first attempt refused: %+v", l.name, d)
		}
	}
	for _, l := range []*Redis{login, authorize} {
		if d := allow(t, l, "192.0.2.7"); d.Allowed {
			t.Fatalf("%s: second attempt allowed", l.name)
		}
	}
}

// What a limiter leaves in Redis: one namespaced key per caller key, the
// caller's key hashed (no email in clear, bounded length), expiring once
// the bucket would be full again.
func TestRedisKeys(t *testing.T) {
	client := redistest.Client(t)
	name := redistest.Name(t, client)
	l := NewRedis(client, name, time.Minute, 5)
	long := strings.Repeat("x", 10_000) + "@example.com"
	for _, k := range []string{"alice@example.com", long} {
		allow(t, l, k)
		allow(t, l, k)
	}
	keys, err := client.Keys(t.Context(), KeyPrefix+name+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("keys %q, want two", keys)
	}
	for _, k := range keys {
		if strings.Contains(k, "example.com") || len(k) != len(KeyPrefix+name+":")+43 {
			t.Errorf("key %q: want the prefix and a 43-character hash", k)
		}
		ttl, err := client.PTTL(t.Context(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		// Two of five tokens spent: full again within two minutes, and
		// the key goes a second after that.
		if ttl <= time.Minute || ttl > 2*time.Minute+time.Second {
			t.Errorf("key %q expires in %s, want a second after its bucket is full again (about 2m1s)", k, ttl)
		}
	}
}

// closedPort is an address nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// A Redis that is down is an error at start, and an error from Allow
// (callers fail closed); the password appears in neither.
func TestRedisUnreachable(t *testing.T) {
	u := "redis://:s3cret-pw@" + closedPort(t) + "/0"
	_, err := DialRedis(t.Context(), u)
	if err == nil || strings.Contains(err.Error(), "s3cret-pw") || !strings.Contains(err.Error(), "xxxxx") {
		t.Fatalf("DialRedis of a closed port: %v; want an error naming the redacted URL", err)
	}
	opts, err := ParseRedisURL(u)
	if err != nil {
		t.Fatal(err)
	}
	client := newRedisClient(opts)
	defer client.Close()
	d, err := NewRedis(client, "login-account", time.Minute, 10).Allow(t.Context(), "alice@example.com")
	if err == nil || d.Allowed || !strings.Contains(err.Error(), "login-account") {
		t.Fatalf("Allow with Redis down = %+v, %v; want an error naming the limiter", d, err)
	}
}

// A Redis that accepts connections but never answers costs one
// CallTimeout, then an error: a hung Redis does not hang logins.
func TestRedisHung(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			defer c.Close() // held open, never answered
		}
	}()
	opts, err := ParseRedisURL("redis://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	client := newRedisClient(opts)
	defer client.Close()
	// The caller's context has no deadline: Allow's own bounds the call.
	d, err := NewRedis(client, "login-ip", time.Minute, 10).Allow(context.Background(), "192.0.2.1")
	if err == nil || d.Allowed {
		t.Fatalf("Allow on a hung Redis = %+v, %v; want an error", d, err)
	}
	if accepted.Load() == 0 {
		t.Fatal("the client never reached the hung server")
	}
}

func TestParseRedisURL(t *testing.T) {
	for _, u := range []string{"redis://127.0.0.1:6379/0", "redis://:pw@redis.internal:6380/3", "rediss://user:pw@redis.example.com", "redis://[::1]:6379"} {
		if _, err := ParseRedisURL(u); err != nil {
			t.Errorf("ParseRedisURL(%q): %v", u, err)
		}
	}
	for u, want := range map[string]string{
		"http://:s3cret-pw@127.0.0.1:6379": "must start with redis:// or rediss://",
		"127.0.0.1:6379":                   "must start with redis:// or rediss://",
		"redis://:s3cret-pw@/0":            "must name a host",
		"redis://:s3cret-pw@h:6379/zero":   "invalid database number",
		"redis://:s3cret-pw@h/0/1":         "invalid URL path",
		"redis://:s3cret-pw@h/0?bogus=1":   "unexpected option",
		"redis://:s3cret%pw@h:6379/0":      "malformed URL",
	} {
		_, err := ParseRedisURL(u)
		switch {
		case err == nil:
			t.Errorf("ParseRedisURL(%q) accepted it", u)
		case !strings.Contains(err.Error(), want):
			t.Errorf("ParseRedisURL(%q) = %v, want %q", u, err, want)
		case strings.Contains(err.Error(), "s3cret"):
			t.Errorf("ParseRedisURL(%q) = %v: the password leaked", u, err)
		}
	}
}

func TestRedactRedisURL(t *testing.T) {
	for in, want := range map[string]string{
		"redis://:s3cret@h:6379/0":          "redis://:xxxxx@h:6379/0",
		"rediss://user:s3cret@h:6380/2":     "rediss://user:xxxxx@h:6380/2",
		"redis://127.0.0.1:6379/0":          "redis://127.0.0.1:6379/0",
		"redis://:s3cret%zz@127.0.0.1:6379": "(malformed Redis URL)",
	} {
		if got := RedactRedisURL(in); got != want {
			t.Errorf("RedactRedisURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func BenchmarkAllow(b *testing.B) {
	client := redistest.Client(b)
	impls := map[string]Limiter{
		"memory": NewMemory(time.Millisecond, 1_000_000, 0),
		"redis":  NewRedis(client, redistest.Name(b, client), time.Millisecond, 1_000_000),
	}
	for _, name := range []string{"memory", "redis"} {
		l := impls[name]
		b.Run(name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				if _, err := l.Allow(context.Background(), fmt.Sprint("192.0.2.", i%256)); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		b.Run(name+"-parallel", func(b *testing.B) {
			var n atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := l.Allow(context.Background(), fmt.Sprint("192.0.2.", n.Add(1)%256)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
