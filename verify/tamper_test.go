package verify_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/verify"
)

// TestTampered: any change to the header, payload or signature of a valid
// token makes it fail, and the cached verification of the original does
// not leak to the altered token.
func TestTampered(t *testing.T) {
	for _, alg := range []string{"ES256", "EdDSA", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			k := newTestKey(t, alg, "k1")
			v := newVerifier(t, staticKeys(t, k))
			valid := mint(t, k, k.header(), claims(t0))
			mustVerify(t, v, valid) // now cached
			h, p, s := split3(valid)

			elevated := b64json(with(claims(t0), "sub", "usr_admin", "scope", "admin"))
			wantErr(t, v, h+"."+elevated+"."+s, verify.ErrSignature)
			otherHeader := b64json(with(k.header(), "x", 1))
			wantErr(t, v, otherHeader+"."+p+"."+s, verify.ErrSignature)

			sig, _ := base64.RawURLEncoding.DecodeString(s)
			for _, i := range []int{0, len(sig) / 2, len(sig) - 1} {
				bad := append([]byte(nil), sig...)
				bad[i] ^= 0x01
				wantErr(t, v, h+"."+p+"."+base64.RawURLEncoding.EncodeToString(bad), verify.ErrSignature)
			}
			wantErr(t, v, h+"."+p+"."+base64.RawURLEncoding.EncodeToString(sig[:len(sig)-1]), verify.ErrSignature)
			wantErr(t, v, h+"."+p+"."+base64.RawURLEncoding.EncodeToString(append(sig, 0)), verify.ErrSignature)
			// One bit flipped in the payload's encoding.
			pb := []byte(p)
			pb[len(pb)/2] ^= 0x01
			if b := string(pb); b != p {
				_, err := v.Verify(t.Context(), h+"."+b+"."+s)
				if err == nil {
					t.Error("payload with a flipped bit verified")
				}
			}
			mustVerify(t, v, valid)
		})
	}
}

// TestMalformed: shapes that are not a compact JWS.
func TestMalformed(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	v := newVerifier(t, staticKeys(t, k))
	valid := mint(t, k, k.header(), claims(t0))
	h, p, s := split3(valid)
	noAlg := b64json(with(k.header(), "alg", nil)) + "." + p
	for name, tok := range map[string]string{
		"empty":                "",
		"one segment":          h,
		"two segments":         h + "." + p,
		"four segments":        valid + "." + s,
		"empty payload":        h + ".." + s,
		"padding":              h + "=." + p + "." + s,
		"standard base64":      strings.ReplaceAll(valid, "-", "+") + "+/",
		"header not JSON":      base64.RawURLEncoding.EncodeToString([]byte("{alg")) + "." + p + "." + s,
		"header a JSON array":  base64.RawURLEncoding.EncodeToString([]byte(`["alg"]`)) + "." + p + "." + s,
		"header null":          base64.RawURLEncoding.EncodeToString([]byte(`null`)) + "." + p + "." + s,
		"no alg":               noAlg + "." + signRaw(t, k, "ES256", noAlg),
		"JWE (five segments)":  h + "." + p + "." + s + "." + s + "." + s,
		"whitespace":           " " + valid,
		"non-canonical base64": h + "." + p + "." + s[:len(s)-1] + "B",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := v.Verify(t.Context(), tok); err == nil {
				t.Fatal("Verify succeeded")
			}
		})
	}
	// crit names extensions we do not implement (RFC 7515 §4.1.11).
	crit := with(k.header(), "crit", []string{"exp"}, "exp", 1)
	wantErr(t, v, mint(t, k, crit, claims(t0)), verify.ErrMalformed)
	// Payload not a JSON object, correctly signed.
	hb := b64json(k.header())
	for _, payload := range []string{`[]`, `"x"`, `null`, `{"iss":`} {
		in := hb + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
		wantErr(t, v, in+"."+signRaw(t, k, "ES256", in), verify.ErrMalformed)
	}
}

func split3(tok string) (h, p, s string) {
	parts := strings.Split(tok, ".")
	return parts[0], parts[1], parts[2]
}
