package verify_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/verify"
)

// TestHugeTokens: oversized tokens are refused before any decoding or key
// lookup; the limit is configurable.
func TestHugeTokens(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	keys := &countingKeys{KeySource: staticKeys(t, k)}
	v := newVerifier(t, keys)
	padding := strings.Repeat("A", 10_000)
	big := mint(t, k, k.header(), with(claims(t0), "pad", padding))
	wantErr(t, v, big, verify.ErrMalformed)
	wantErr(t, v, strings.Repeat("a", 1<<20)+"."+strings.Repeat("b", 1<<20)+".c", verify.ErrMalformed)
	wantErr(t, v, strings.Repeat(".", 1<<16), verify.ErrMalformed)
	if keys.n != 0 {
		t.Errorf("key source consulted %d times for oversized tokens", keys.n)
	}
	// Deeply nested JSON inside the limit is just malformed.
	deep := b64json(k.header()) + "." + b64str(strings.Repeat("[", 3000)+strings.Repeat("]", 3000))
	if _, err := v.Verify(t.Context(), deep+"."+signRaw(t, k, "ES256", deep)); !errors.Is(err, verify.ErrMalformed) {
		t.Errorf("deeply nested payload: %v, want ErrMalformed", err)
	}

	vBig := newVerifier(t, staticKeys(t, k), func(o *verify.Options) { o.MaxTokenBytes = 64 << 10 })
	mustVerify(t, vBig, big)
}
