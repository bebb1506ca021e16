package verify_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"testing"

	"github.com/mcpgate/mcpgate/verify"
)

// TestParseJWKS: usable signature keys are read, everything else skipped
// (RFC 7517 §5), and only a document that is not a JWK Set fails.
func TestParseJWKS(t *testing.T) {
	es := newTestKey(t, "ES256", "es")
	ed := newTestKey(t, "EdDSA", "ed")
	rs := newTestKey(t, "RS256", "rs")
	b := base64.RawURLEncoding.EncodeToString
	small, _ := rsa.GenerateKey(randReader{}, 1024)
	skipped := []map[string]any{
		{"kty": "oct", "kid": "sym", "k": b([]byte("secret"))},
		with(es.jwk(), "kid", "enc", "use", "enc"),
		with(es.jwk(), "kid", "ops", "key_ops", []string{"encrypt"}),
		with(es.jwk(), "kid", "wrong-alg", "alg", "RS256"),
		with(es.jwk(), "kid", "hs-alg", "alg", "HS256"),
		with(es.jwk(), "kid", "private", "d", b(make([]byte, 32))),
		with(es.jwk(), "kid", "off-curve", "y", b(make([]byte, 32))),
		with(es.jwk(), "kid", "short-x", "x", b(make([]byte, 31))),
		with(es.jwk(), "kid", "secp256k1", "crv", "secp256k1"),
		with(ed.jwk(), "kid", "x448", "crv", "Ed448"),
		with(ed.jwk(), "kid", "short-ed", "x", b(make([]byte, 31))),
		{"kty": "RSA", "kid": "rsa-1024", "n": b(small.N.Bytes()), "e": "AQAB"},
		with(rs.jwk(), "kid", "even-e", "e", b([]byte{2})),
		with(rs.jwk(), "kid", "no-n", "n", nil),
		{"kid": "no-kty"},
		{"kty": 7},
	}
	doc := map[string]any{"keys": append([]any{es.jwk(), ed.jwk(), rs.jwk(), with(es.jwk(), "kid", "ops-ok", "key_ops", []string{"verify"})}, toAny(skipped)...)}
	keys, err := verify.ParseJWKS(mustJSON(doc))
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range keys {
		kids = append(kids, k.KeyID)
	}
	if fmt.Sprint(kids) != "[es ed rs ops-ok]" {
		t.Errorf("kept %v, want [es ed rs ops-ok]", kids)
	}
	if _, ok := keys[0].Key.(*ecdsa.PublicKey); !ok {
		t.Errorf("es: %T", keys[0].Key)
	}
	if _, ok := keys[1].Key.(ed25519.PublicKey); !ok {
		t.Errorf("ed: %T", keys[1].Key)
	}
	for _, bad := range []string{``, `[]`, `{"keys":{}}`, `{}`, `{"keys":null}`} {
		if _, err := verify.ParseJWKS([]byte(bad)); err == nil {
			t.Errorf("ParseJWKS(%q) succeeded", bad)
		}
	}
	if _, err := verify.StaticKeys([]byte(`{"keys":[]}`)); err == nil {
		t.Error("StaticKeys of an empty set succeeded")
	}
	if _, err := verify.NewStaticKeySet(verify.PublicKey{KeyID: "x", Key: []byte("secret")}); err == nil {
		t.Error("NewStaticKeySet accepted a symmetric key")
	}
}

func toAny(ms []map[string]any) []any {
	out := make([]any, len(ms))
	for i, m := range ms {
		out[i] = m
	}
	return out
}

type randReader struct{}

func (randReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i*7 + 3)
	}
	return len(p), nil
}
