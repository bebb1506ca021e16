package verify_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/verify"
)

// TestVerifyCompact: the compact result of a hit matches the cold one,
// costs no allocation, and materialises the same Claims as Verify.
func TestVerifyCompact(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	v := newVerifier(t, staticKeys(t, k))
	tok := mint(t, k, k.header(), with(claims(t0), "custom", map[string]any{"tenant": "acme"}))
	cold, err := v.VerifyCompact(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	hot, err := v.VerifyCompact(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(cold, hot, cmp.AllowUnexported(verify.Compact{})); d != "" {
		t.Errorf("hit differs from the cold result (-cold +hot):\n%s", d)
	}
	if hot.Subject != "usr_alice" || hot.GrantID != "grt_1" || !hot.HasScope("payments:write") || hot.HasScope("payments") || hot.HasScope("") {
		t.Errorf("compact = %+v", hot)
	}
	ctx := t.Context()
	if n := testing.AllocsPerRun(200, func() {
		if _, err := v.VerifyCompact(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("a cached VerifyCompact allocates %v times, want 0", n)
	}
	full, err := hot.Claims()
	if err != nil {
		t.Fatal(err)
	}
	viaVerify := mustVerify(t, v, tok)
	if d := cmp.Diff(viaVerify, full); d != "" {
		t.Errorf("Compact.Claims differs from Verify (-Verify +Claims):\n%s", d)
	}
	if full.Raw["custom"].(map[string]any)["tenant"] != "acme" {
		t.Errorf("custom claim lost: %v", full.Raw)
	}
	if _, err := (verify.Compact{}).Claims(); err == nil {
		t.Error("zero Compact materialised claims")
	}
}

// TestCacheDisabled: with a negative CacheSize every call verifies fully.
func TestCacheDisabled(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	keys := &countingKeys{KeySource: staticKeys(t, k)}
	v := newVerifier(t, keys, func(o *verify.Options) { o.CacheSize = -1 })
	tok := mint(t, k, k.header(), claims(t0))
	for range 3 {
		mustVerify(t, v, tok)
	}
	if keys.n != 3 {
		t.Errorf("key lookups = %d, want 3 (no cache)", keys.n)
	}
	cached := &countingKeys{KeySource: staticKeys(t, k)}
	v = newVerifier(t, cached)
	for range 3 {
		mustVerify(t, v, tok)
	}
	if cached.n != 1 {
		t.Errorf("key lookups with the cache = %d, want 1", cached.n)
	}
}
