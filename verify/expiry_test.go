package verify_test

import (
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/verify"
)

// TestExpired: a token is refused from exp + skew on (RFC 7519 §4.1.4),
// accepted just before, and a cached verification ends at the same moment.
func TestExpired(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	clk := &clock{now: t0}
	v := newVerifier(t, staticKeys(t, k), func(o *verify.Options) { o.Now = clk.Now })
	exp := t0.Add(10 * time.Minute)
	tok := mint(t, k, k.header(), with(claims(t0), "exp", exp.Unix()))
	mustVerify(t, v, tok) // cached from here on

	clk.Add(10*time.Minute + verify.DefaultClockSkew - time.Millisecond)
	mustVerify(t, v, tok)
	clk.Add(time.Millisecond)
	wantErr(t, v, tok, verify.ErrExpired)

	// Long expired, never seen before.
	old := mint(t, k, k.header(), with(claims(t0.Add(-48*time.Hour)), "exp", t0.Add(-24*time.Hour).Unix()))
	wantErr(t, v, old, verify.ErrExpired)

	// Without skew, exp itself is the end.
	v0 := newVerifier(t, staticKeys(t, k), func(o *verify.Options) { o.Now = fixedClock(exp); o.ClockSkew = -1 })
	wantErr(t, v0, tok, verify.ErrExpired)
	v0 = newVerifier(t, staticKeys(t, k), func(o *verify.Options) { o.Now = fixedClock(exp.Add(-time.Millisecond)); o.ClockSkew = -1 })
	mustVerify(t, v0, tok)
}

// TestNotYetValid: nbf or iat in the future (beyond the skew) are refused.
func TestNotYetValid(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	v := newVerifier(t, staticKeys(t, k))
	skew := verify.DefaultClockSkew
	wantErr(t, v, mint(t, k, k.header(), with(claims(t0), "nbf", t0.Add(time.Hour).Unix())), verify.ErrNotYetValid)
	wantErr(t, v, mint(t, k, k.header(), with(claims(t0), "nbf", t0.Add(skew+time.Second).Unix())), verify.ErrNotYetValid)
	mustVerify(t, v, mint(t, k, k.header(), with(claims(t0), "nbf", t0.Add(skew).Unix())))
	mustVerify(t, v, mint(t, k, k.header(), with(claims(t0), "nbf", t0.Add(-time.Hour).Unix())))

	future := claims(t0.Add(time.Hour)) // iat an hour ahead, exp two hours ahead
	wantErr(t, v, mint(t, k, k.header(), future), verify.ErrNotYetValid)
	mustVerify(t, v, mint(t, k, k.header(), claims(t0.Add(skew))))
	wantErr(t, v, mint(t, k, k.header(), with(claims(t0), "nbf", "soon")), verify.ErrMalformed)
}
