package verify_test

import (
	"testing"

	"github.com/mcpgate/mcpgate/verify"
)

// TestWrongKid: a token naming a key the set does not hold is refused as
// unknown; one naming another key of the set fails its signature; a token
// without kid is accepted only when exactly one key fits.
func TestWrongKid(t *testing.T) {
	k1 := newTestKey(t, "ES256", "k1")
	k2 := newTestKey(t, "ES256", "k2")
	stranger := newTestKey(t, "ES256", "k1") // same kid, another key
	v := newVerifier(t, staticKeys(t, k1, k2))

	t.Run("unknown kid", func(t *testing.T) {
		wantErr(t, v, mint(t, k1, with(k1.header(), "kid", "k9"), claims(t0)), verify.ErrUnknownKey)
	})
	t.Run("kid of another key in the set", func(t *testing.T) {
		wantErr(t, v, mint(t, k1, with(k1.header(), "kid", "k2"), claims(t0)), verify.ErrSignature)
	})
	t.Run("attacker key claiming a known kid", func(t *testing.T) {
		wantErr(t, v, mint(t, stranger, stranger.header(), claims(t0)), verify.ErrSignature)
	})
	t.Run("embedded jwk header is ignored", func(t *testing.T) {
		h := with(stranger.header(), "kid", "k9", "jwk", stranger.jwk(), "jku", "https://evil.example/jwks")
		wantErr(t, v, mint(t, stranger, h, claims(t0)), verify.ErrUnknownKey)
	})
	t.Run("no kid, two candidate keys", func(t *testing.T) {
		wantErr(t, v, mint(t, k1, with(k1.header(), "kid", nil), claims(t0)), verify.ErrUnknownKey)
	})
	t.Run("no kid, one candidate key", func(t *testing.T) {
		v := newVerifier(t, staticKeys(t, k1))
		mustVerify(t, v, mint(t, k1, with(k1.header(), "kid", nil), claims(t0)))
	})
	t.Run("kid not a string", func(t *testing.T) {
		wantErr(t, v, mint(t, k1, with(k1.header(), "kid", 1), claims(t0)), verify.ErrMalformed)
	})
}
