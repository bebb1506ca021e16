// Package redistest gives any package's tests the real Redis named by
// MCPGATE_TEST_REDIS_URL, e.g.
//
//	MCPGATE_TEST_REDIS_URL=redis://127.0.0.1:6379/0 go test ./...
//
// Without it Redis tests are skipped, except under CI=true, where a missing
// or unreachable Redis is a failure rather than a silent skip. Test
// packages run in parallel against the one database, so nothing here
// flushes it: each test writes under names of its own (Name) and deletes
// its keys when it ends.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Env names the environment variable holding the Redis URL.
const Env = "MCPGATE_TEST_REDIS_URL"

const setupTimeout = 10 * time.Second

// URL returns the test Redis URL after checking that Redis answers. It
// skips the test when the variable is unset, unless CI=true, and fails it
// when Redis cannot be reached.
func URL(t testing.TB) string {
	t.Helper()
	raw := os.Getenv(Env)
	if raw == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redistest: %s must be set when CI=true (Redis tests may not be skipped on CI)", Env)
		}
		t.Skip(Env + " not set: Redis tests skipped (e.g. " + Env + "=redis://127.0.0.1:6379/0)")
	}
	c := dial(t, raw)
	c.Close()
	return raw
}

// Client returns a client of the test Redis (see URL), closed when the
// test ends.
func Client(t testing.TB) *redis.Client {
	t.Helper()
	c := dial(t, URL(t))
	t.Cleanup(func() { c.Close() })
	return c
}

func dial(t testing.TB, raw string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(raw)
	if err != nil {
		t.Fatalf("redistest: %s is not a valid Redis URL: %v", Env, err)
	}
	c := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		u, _ := url.Parse(raw)
		t.Fatalf("redistest: cannot reach Redis at %s (%s is set, so this is a failure, not a skip): %v", u.Redacted(), Env, err)
	}
	return c
}

// Name returns a limiter name no other test uses ("test-" and random
// hex); the keys under mcpgate:rl:<name>: are deleted when the test ends.
func Name(t testing.TB, c *redis.Client) string {
	t.Helper()
	var b [8]byte
	rand.Read(b[:])
	name := "test-" + hex.EncodeToString(b[:])
	t.Cleanup(func() { DeleteKeys(t, c, "mcpgate:rl:"+name+":*") })
	return name
}

// DeleteKeys deletes the keys matching pattern (SCAN, not KEYS, and never
// FLUSHDB: other test packages share the database).
func DeleteKeys(t testing.TB, c *redis.Client, pattern string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		if err := c.Del(ctx, iter.Val()).Err(); err != nil {
			t.Errorf("redistest: deleting %s: %v", iter.Val(), err)
			return
		}
	}
	if err := iter.Err(); err != nil {
		t.Errorf("redistest: scanning %s: %v", pattern, err)
	}
}
