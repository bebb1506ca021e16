package verify

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestCacheEntryHasNoPointers: the map values must hold no pointers, so
// the garbage collector never scans the cache however large it is.
func TestCacheEntryHasNoPointers(t *testing.T) {
	var check func(reflect.Type) bool
	check = func(ty reflect.Type) bool {
		switch ty.Kind() {
		case reflect.Pointer, reflect.String, reflect.Slice, reflect.Map, reflect.Interface, reflect.Chan, reflect.Func, reflect.UnsafePointer:
			return false
		case reflect.Array:
			return check(ty.Elem())
		case reflect.Struct:
			for i := range ty.NumField() {
				if !check(ty.Field(i).Type) {
					t.Errorf("cacheEntry field %s holds a pointer", ty.Field(i).Name)
					return false
				}
			}
		}
		return true
	}
	check(reflect.TypeFor[cacheEntry]())
}

func cachedCompact(i int) Compact {
	return Compact{
		Subject: fmt.Sprint("usr_", i), ClientID: "client", Scope: "a b", GrantID: fmt.Sprint("grt_", i), JTI: fmt.Sprint("jti", i),
		IssuedAt: time.Unix(1000, 0).UTC(), ExpiresAt: time.Unix(5000, 0).UTC(),
	}
}

func fakeToken(i, size int) string {
	s := fmt.Sprintf("h.p%d.", i)
	return s + strings.Repeat("s", max(0, size-len(s)))
}

// TestCacheHitReturnsStoredStrings: a hit returns the claims stored for
// exactly that token, and neither a token of another length nor one
// differing in a single byte hits.
func TestCacheHit(t *testing.T) {
	c := newTokenCache(100)
	tok := fakeToken(1, 700)
	want := cachedCompact(1)
	c.put(tok, &want, 10e9, 1)
	got, ok := c.get(tok, 2)
	if !ok {
		t.Fatal("miss right after put")
	}
	want.token = tok
	if got != want {
		t.Errorf("hit = %+v, want %+v", got, want)
	}
	for _, other := range []string{tok[:len(tok)-1], tok + "s", tok[:len(tok)-1] + "t", strings.ToUpper(tok[:1]) + tok[1:]} {
		if _, ok := c.get(other, 2); ok {
			t.Errorf("a different token hit the cache")
		}
	}
	if _, ok := c.get(tok, 10e9); ok {
		t.Error("hit at the entry's end")
	}
}

// TestCacheBounds: the entry count and arena size stay bounded under churn,
// expired entries are dropped first, and strings returned earlier stay
// intact after their entry was evicted and the arena rebuilt.
func TestCacheBounds(t *testing.T) {
	c := newTokenCache(64) // 4 per shard
	tok0 := fakeToken(0, 800)
	cc := cachedCompact(0)
	c.put(tok0, &cc, 1<<62, 0)
	first, ok := c.get(tok0, 1)
	if !ok {
		t.Fatal("miss")
	}
	for i := 1; i < 20_000; i++ {
		cc := cachedCompact(i)
		c.put(fakeToken(i, 600+i%700), &cc, 1<<62, int64(i))
	}
	if n := c.len(); n > 64 {
		t.Errorf("%d entries, want at most 64", n)
	}
	for i := range c.shards {
		if a := cap(c.shards[i].arena); a > c.maxArena {
			t.Errorf("shard %d arena %d bytes, above %d", i, a, c.maxArena)
		}
	}
	if first.Subject != "usr_0" || first.GrantID != "grt_0" || first.JTI != "jti0" {
		t.Errorf("strings returned earlier changed: %+v", first)
	}
	// Recent entries are still found.
	found := 0
	for i := 19_900; i < 20_000; i++ {
		if got, ok := c.get(fakeToken(i, 600+i%700), 1); ok {
			found++
			if got.Subject != fmt.Sprint("usr_", i) {
				t.Fatalf("token %d hit with subject %q", i, got.Subject)
			}
		}
	}
	if found == 0 {
		t.Error("no recent entry survived")
	}
}

// TestCacheTooLarge: a token too large for the cache is simply not cached.
func TestCacheTooLarge(t *testing.T) {
	c := newTokenCache(100)
	tok := fakeToken(1, maxCachedBytes+1)
	cc := cachedCompact(1)
	c.put(tok, &cc, 1<<62, 0)
	if _, ok := c.get(tok, 1); ok || c.len() != 0 {
		t.Error("oversized token was cached")
	}
	off := newTokenCache(-1)
	off.put(fakeToken(1, 100), &cc, 1<<62, 0)
	if _, ok := off.get(fakeToken(1, 100), 1); ok {
		t.Error("disabled cache hit")
	}
}

// TestCacheHitAllocs: a hit does not allocate.
func TestCacheHitAllocs(t *testing.T) {
	c := newTokenCache(100)
	tok := fakeToken(1, 700)
	cc := cachedCompact(1)
	c.put(tok, &cc, 1<<62, 0)
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := c.get(tok, 1); !ok {
			t.Fatal("miss")
		}
	}); n != 0 {
		t.Errorf("a hit allocates %v times", n)
	}
}

// TestCacheConcurrent: readers and writers on a small cache (constant
// eviction and arena rebuilds) never see another token's claims.
func TestCacheConcurrent(t *testing.T) {
	c := newTokenCache(32)
	const workers, per = 8, 2000
	done := make(chan struct{})
	for w := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range per {
				n := w*per + i
				tok := fakeToken(n, 500+n%900)
				cc := cachedCompact(n)
				c.put(tok, &cc, 1<<62, int64(n))
				for _, m := range []int{n, n - 1, n - 7} {
					if got, ok := c.get(fakeToken(m, 500+m%900), int64(n)); ok && (got.Subject != fmt.Sprint("usr_", m) || got.JTI != fmt.Sprint("jti", m)) {
						t.Errorf("token %d hit with %+v", m, got)
						return
					}
				}
			}
		}()
	}
	for range workers {
		<-done
	}
}
