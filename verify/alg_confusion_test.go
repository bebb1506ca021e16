package verify_test

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"testing"

	"github.com/mcpgate/mcpgate/verify"
)

// TestAlgConfusion: the classic attack takes the issuer's RSA public key,
// which anyone can read from the JWKS, and uses it as the HMAC secret of
// an HS256 token. HMAC algorithms cannot even be configured, and an
// asymmetric algorithm that does not fit the key is refused too.
func TestAlgConfusion(t *testing.T) {
	rs := newTestKey(t, "RS256", "rsa-1")
	es := newTestKey(t, "ES256", "ec-1")
	v := newVerifier(t, staticKeys(t, rs, es))

	pubDER, err := x509.MarshalPKIXPublicKey(rs.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	jwkJSON, _ := json.Marshal(rs.jwk())
	for name, secret := range map[string][]byte{"PEM": pubPEM, "DER": pubDER, "JWK": jwkJSON} {
		for _, alg := range []string{"HS256", "HS384", "HS512", "hs256"} {
			tok := hmacToken(with(rs.header(), "alg", alg), claims(t0), secret)
			t.Run(alg+"/"+name, func(t *testing.T) { wantErr(t, v, tok, verify.ErrAlgorithm) })
		}
	}

	// An RS256 header naming the EC key, and an ES256 header naming the
	// RSA key: the key's type decides, not the header.
	t.Run("RS256 header, EC key", func(t *testing.T) {
		wantErr(t, v, mint(t, rs, with(rs.header(), "kid", es.kid), claims(t0)), verify.ErrUnknownKey)
	})
	t.Run("ES256 header, RSA key", func(t *testing.T) {
		wantErr(t, v, mint(t, es, with(es.header(), "kid", rs.kid), claims(t0)), verify.ErrUnknownKey)
	})
	// A JWK whose "alg" says RS256 is not used for PS256 even though the
	// key type fits.
	t.Run("PS256 with an RS256 key", func(t *testing.T) {
		v := newVerifier(t, staticKeys(t, rs), func(o *verify.Options) { o.Algorithms = []string{"RS256", "PS256"} })
		ps := rs
		ps.alg = "PS256"
		wantErr(t, v, mint(t, ps, ps.header(), claims(t0)), verify.ErrUnknownKey)
	})

	for _, algs := range [][]string{{"HS256"}, {"ES256", "HS512"}, {"RS256", "hs256"}} {
		if _, err := verify.New(verify.Options{Issuer: testIssuer, Audience: testAudience, Keys: staticKeys(t, es), Algorithms: algs}); err == nil {
			t.Errorf("New with Algorithms %v succeeded, want an error", algs)
		}
	}

	// A JWKS that smuggles a symmetric ("oct") key: it is skipped, so an
	// HS256 token naming it finds no key either.
	oct := []byte(`{"keys":[{"kty":"oct","kid":"sym","k":"c2VjcmV0"},` + string(mustJSON(es.jwk())) + `]}`)
	ks, err := verify.StaticKeys(oct)
	if err != nil {
		t.Fatal(err)
	}
	if got := ks.Keys(); len(got) != 1 || got[0].KeyID != es.kid {
		t.Errorf("StaticKeys kept %v, want only the EC key", got)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
