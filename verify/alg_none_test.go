package verify_test

import (
	"encoding/base64"
	"testing"

	"github.com/mcpgate/mcpgate/verify"
)

// TestAlgNone: unsigned tokens ("alg":"none", RFC 7519 §6) are refused in
// every spelling, with or without a signature segment, and "none" cannot
// be configured.
func TestAlgNone(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	v := newVerifier(t, staticKeys(t, k))
	valid := mint(t, k, k.header(), claims(t0))
	realSig := valid[len(valid)-86:]
	for _, alg := range []string{"none", "None", "NONE", "nOnE"} {
		in := b64json(with(k.header(), "alg", alg)) + "." + b64json(claims(t0))
		t.Run(alg, func(t *testing.T) {
			wantErr(t, v, in+"."+realSig, verify.ErrAlgorithm) // a real signature copied over
			wantErr(t, v, in+"."+base64.RawURLEncoding.EncodeToString([]byte("x")), verify.ErrAlgorithm)
			wantErr(t, v, in+".", verify.ErrMalformed) // the RFC 7519 unsecured form has an empty signature
		})
	}
	for _, algs := range [][]string{{"none"}, {"ES256", "None"}} {
		if _, err := verify.New(verify.Options{Issuer: testIssuer, Audience: testAudience, Keys: staticKeys(t, k), Algorithms: algs}); err == nil {
			t.Errorf("New with Algorithms %v succeeded, want an error", algs)
		}
	}
}
