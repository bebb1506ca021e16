package verify_test

import (
	"testing"

	"github.com/mcpgate/mcpgate/verify"
)

// TestWrongType: RFC 9068 §4 requires typ at+jwt. Plain JWTs, ID tokens
// (typ JWT, aud = client id) and logout tokens are not access tokens, even
// when signed by the right key with otherwise valid claims.
func TestWrongType(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	v := newVerifier(t, staticKeys(t, k))
	for name, typ := range map[string]any{
		"JWT":           "JWT",
		"jwt lower":     "jwt",
		"logout+jwt":    "logout+jwt",
		"dpop+jwt":      "dpop+jwt",
		"at+jwt suffix": "at+jwtx",
		"JOSE":          "JOSE",
		"empty":         "",
		"number":        1,
		"absent":        nil,
	} {
		t.Run(name, func(t *testing.T) {
			wantErr(t, v, mint(t, k, with(k.header(), "typ", typ), claims(t0)), verify.ErrType)
		})
	}
	t.Run("ID token", func(t *testing.T) {
		idToken := with(claims(t0), "aud", testAudience, "nonce", "n-0S6_WzA2Mj", "auth_time", t0.Unix())
		wantErr(t, v, mint(t, k, with(k.header(), "typ", "JWT"), idToken), verify.ErrType)
	})
}
