package verify_test

import (
	"testing"

	"github.com/mcpgate/mcpgate/verify"
)

// TestWrongIssuer: iss must be byte-identical to the expected issuer
// (RFC 9068 §4): no trailing-slash, case, scheme or port leniency.
func TestWrongIssuer(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	v := newVerifier(t, staticKeys(t, k))
	for _, iss := range []string{
		testIssuer + "/",
		"https://AUTH.example.com",
		"http://auth.example.com",
		"https://auth.example.com:443",
		"https://auth.example.com.evil.com",
		"https://evil.example.com",
		" " + testIssuer,
		"",
	} {
		t.Run(iss, func(t *testing.T) {
			wantErr(t, v, mint(t, k, k.header(), with(claims(t0), "iss", iss)), verify.ErrIssuer)
		})
	}
	wantErr(t, v, mint(t, k, k.header(), with(claims(t0), "iss", []string{testIssuer})), verify.ErrMalformed)

	// A verifier configured with a trailing slash does not accept the
	// issuer without one either.
	vs := newVerifier(t, staticKeys(t, k), func(o *verify.Options) { o.Issuer = testIssuer + "/" })
	wantErr(t, vs, mint(t, k, k.header(), claims(t0)), verify.ErrIssuer)
}
