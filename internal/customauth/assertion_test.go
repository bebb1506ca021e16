package customauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/verify"
)

// Test keys, generated once (RSA takes a while).
var testKeys = sync.OnceValue(func() map[string]crypto.Signer {
	ed := func() crypto.Signer { _, k, _ := ed25519.GenerateKey(rand.Reader); return k }
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	return map[string]crypto.Signer{"ed": ed(), "ed2": ed(), "attacker": ed(), "p256": p256, "p384": p384, "p521": p521, "rsa": rsaKey}
})

func publicPEM(t *testing.T, keys ...crypto.Signer) []byte {
	t.Helper()
	var out []byte
	for _, k := range keys {
		der, err := x509.MarshalPKIXPublicKey(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
	}
	return out
}

// keyPairFixture is the shared fixture with the handler switched to
// key-pair mode, trusting the keys of a PEM or JWKS document parsed the way
// --custom-login-public-key-file is.
func keyPairFixture(t *testing.T, keyFile []byte) *fixture {
	t.Helper()
	keys, err := config.ParseCustomLoginPublicKeys(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	a, err := newAssertionVerifier(keys, f.h.opts.BaseURL, func() time.Time { return f.now })
	if err != nil {
		t.Fatal(err)
	}
	f.h.auth = a
	return f
}

// claims are good claims for login request id.
func (f *fixture) claims(id string) map[string]any {
	return map[string]any{
		"aud":              "http://127.0.0.1/api/login-requests/" + id + "/user",
		"login_request_id": id,
		"iat":              f.now.Unix(),
		"exp":              f.now.Add(time.Minute).Unix(),
		"jti":              rand.Text(),
	}
}

func thumb(k crypto.Signer) string {
	t, _ := (&jose.JSONWebKey{Key: k.Public()}).Thumbprint(crypto.SHA256)
	return base64.RawURLEncoding.EncodeToString(t)
}

// sign makes an assertion; kid "" sends none.
func sign(t *testing.T, key any, alg jose.SignatureAlgorithm, kid string, claims map[string]any, opts ...func(*jose.SignerOptions)) string {
	t.Helper()
	so := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		so = so.WithHeader("kid", kid)
	}
	for _, o := range opts {
		o(so)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, so)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func without(m map[string]any, name string) map[string]any {
	delete(m, name)
	return m
}

func with(m map[string]any, name string, v any) map[string]any {
	m[name] = v
	return m
}

// wantAssertionRefused checks the last answer and refusal: the generic
// 401, and the precise cause in the audit details only.
func (f *fixture) wantAssertionRefused(w *http.Response, body, cause string) {
	f.t.Helper()
	const generic = `{"error":"bad_assertion","error_description":"send a valid login assertion, a JWT signed with your application's private key, as Authorization: Bearer \u003cJWT\u003e (see docs/custom-login.md)"}`
	if w.StatusCode != http.StatusUnauthorized || w.Header.Get("WWW-Authenticate") == "" || strings.TrimSpace(body) != generic {
		f.t.Fatalf("%s: answer %d %q %s, want the generic 401", cause, w.StatusCode, w.Header.Get("WWW-Authenticate"), body)
	}
	ev := f.rec.last(TypeRefused)
	if ev.Details["assertion"] != cause || ev.Details["stage"] != "post_user" || ev.Details["error"] == "" {
		f.t.Fatalf("refusal details = %v, want assertion %q", ev.Details, cause)
	}
	f.wantRefused(ReasonBadAssertion)
}

func TestAssertionEachKeyType(t *testing.T) {
	k := testKeys()
	for _, tc := range []struct {
		key string
		alg jose.SignatureAlgorithm
	}{
		{"ed", jose.EdDSA}, {"p256", jose.ES256}, {"p384", jose.ES384}, {"rsa", jose.RS256}, {"rsa", jose.PS256},
	} {
		t.Run(string(tc.alg), func(t *testing.T) {
			f := keyPairFixture(t, publicPEM(t, k[tc.key]))
			// A PEM key is called by its RFC 7638 thumbprint; alone, it
			// may also be used without a kid.
			for _, kid := range []string{thumb(k[tc.key]), ""} {
				id, _, cookie := f.start()
				redirect := f.redirectOf(f.post(id, "Bearer "+sign(t, k[tc.key], tc.alg, kid, f.claims(id)), good))
				if w := f.callback(redirect, cookie); w.Code != http.StatusSeeOther {
					t.Fatalf("callback: %d %s", w.Code, w.Body)
				}
				if ev := f.rec.last(TypeCompleted); ev.Details["subject"] != "u-1" {
					t.Fatalf("completed = %+v", ev)
				}
			}
		})
	}
}

// TestAssertionRotation: a JWKS of two keys selected by kid, as during a
// key rotation at the application.
func TestAssertionRotation(t *testing.T) {
	k := testKeys()
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: k["ed"].Public(), KeyID: "2025-old", Use: "sig"},
		{Key: k["ed2"].Public(), KeyID: "2026-new", Algorithm: "EdDSA"},
	}})
	f := keyPairFixture(t, set)
	for _, c := range []struct {
		key, kid string
		cause    string // "" accepted
	}{
		{"ed", "2025-old", ""},
		{"ed2", "2026-new", ""},
		{"ed", "2026-new", AssertionBadSignature}, // the old key cannot pass for the new one
		{"ed2", "", AssertionUnknownKID},          // two keys fit EdDSA: the kid must say which
		{"ed2", "2024-retired", AssertionUnknownKID},
	} {
		id, _, _ := f.start()
		w := f.post(id, "Bearer "+sign(t, k[c.key], jose.EdDSA, c.kid, f.claims(id)), good)
		if c.cause == "" {
			if w.Code != http.StatusOK {
				t.Fatalf("%s as %q: %d %s", c.key, c.kid, w.Code, w.Body)
			}
			continue
		}
		f.wantAssertionRefused(w.Result(), w.Body.String(), c.cause)
	}
}

func TestAssertionRefusals(t *testing.T) {
	k := testKeys()
	f := keyPairFixture(t, publicPEM(t, k["ed"], k["rsa"]))
	edKid, rsaKid := thumb(k["ed"]), thumb(k["rsa"])
	id, _, cookie := f.start()
	otherID, _, _ := f.start()
	ed := func(claims map[string]any, opts ...func(*jose.SignerOptions)) string {
		return sign(t, k["ed"], jose.EdDSA, edKid, claims, opts...)
	}
	seg := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	good0 := ed(f.claims(id))
	h, _, _ := strings.Cut(good0, ".")
	sig := good0[strings.LastIndex(good0, ".")+1:]
	rsaDER, _ := x509.MarshalPKIXPublicKey(k["rsa"].Public())
	now := f.now

	for _, c := range []struct {
		name, auth, cause string
	}{
		{"no header", "", AssertionMissing},
		{"basic", "Basic " + good0, AssertionMissing},
		{"shared secret", "Bearer " + secret, AssertionMalformed},
		{"huge", "Bearer " + strings.Repeat("a", MaxAssertionBytes+1), AssertionMalformed},
		{"alg none", "Bearer " + seg(map[string]any{"alg": "none", "typ": "JWT"}) + "." + seg(f.claims(id)) + ".", AssertionBadAlgorithm},
		// The confusion attack: the public key (PEM, DER) as an HMAC secret.
		{"HS256 with the public PEM", "Bearer " + sign(t, publicPEM(t, k["rsa"]), jose.HS256, rsaKid, f.claims(id)), AssertionBadAlgorithm},
		{"HS256 with the public DER", "Bearer " + sign(t, rsaDER, jose.HS256, rsaKid, f.claims(id)), AssertionBadAlgorithm},
		{"HS256 with the Ed25519 key", "Bearer " + sign(t, []byte(k["ed"].Public().(ed25519.PublicKey)), jose.HS256, "", f.claims(id)), AssertionBadAlgorithm},
		{"RS384", "Bearer " + sign(t, k["rsa"], jose.RS384, rsaKid, f.claims(id)), AssertionBadAlgorithm},
		{"ES256 for the Ed25519 kid", "Bearer " + sign(t, k["p256"], jose.ES256, edKid, f.claims(id)), AssertionBadAlgorithm},
		{"ES256, no such key", "Bearer " + sign(t, k["p256"], jose.ES256, "", f.claims(id)), AssertionBadAlgorithm},
		{"unknown kid", "Bearer " + sign(t, k["ed"], jose.EdDSA, "nope", f.claims(id)), AssertionUnknownKID},
		{"another key", "Bearer " + sign(t, k["attacker"], jose.EdDSA, edKid, f.claims(id)), AssertionBadSignature},
		{"embedded jwk", "Bearer " + sign(t, k["attacker"], jose.EdDSA, "", f.claims(id), func(o *jose.SignerOptions) { o.EmbedJWK = true }), AssertionBadSignature},
		{"tampered", "Bearer " + h + "." + seg(with(f.claims(id), "login_request_id", otherID)) + "." + sig, AssertionBadSignature},
		{"crit", "Bearer " + ed(f.claims(id), func(o *jose.SignerOptions) { o.WithHeader("crit", []string{"x-ours"}).WithHeader("x-ours", 1) }), AssertionMalformed},
		{"another request's", "Bearer " + ed(f.claims(otherID)), AssertionWrongRequest},
		{"request id mismatch", "Bearer " + ed(with(f.claims(id), "login_request_id", otherID)), AssertionWrongRequest},
		{"request id number", "Bearer " + ed(with(f.claims(id), "login_request_id", 7)), AssertionMalformed},
		{"no request id", "Bearer " + ed(without(f.claims(id), "login_request_id")), AssertionMalformed},
		{"aud issuer", "Bearer " + ed(with(f.claims(id), "aud", "http://127.0.0.1")), AssertionWrongAudience},
		{"aud other mcpgate", "Bearer " + ed(with(f.claims(id), "aud", "https://other.example/api/login-requests/"+id+"/user")), AssertionWrongAudience},
		{"aud two values", "Bearer " + ed(with(f.claims(id), "aud", []string{f.claims(id)["aud"].(string), "https://evil.example"})), AssertionWrongAudience},
		{"no aud", "Bearer " + ed(without(f.claims(id), "aud")), AssertionMalformed},
		{"no jti", "Bearer " + ed(without(f.claims(id), "jti")), AssertionMalformed},
		{"no exp", "Bearer " + ed(without(f.claims(id), "exp")), AssertionMalformed},
		{"no iat", "Bearer " + ed(without(f.claims(id), "iat")), AssertionMalformed},
		{"exp before iat", "Bearer " + ed(with(f.claims(id), "exp", now.Add(-time.Second).Unix())), AssertionMalformed},
		{"expired", "Bearer " + ed(with(with(f.claims(id), "iat", now.Add(-3*time.Minute).Unix()), "exp", now.Add(-61*time.Second).Unix())), AssertionExpired},
		{"iat ahead", "Bearer " + ed(with(with(f.claims(id), "iat", now.Add(2*time.Minute).Unix()), "exp", now.Add(3*time.Minute).Unix())), AssertionNotYetValid},
		{"nbf ahead", "Bearer " + ed(with(f.claims(id), "nbf", now.Add(2*time.Minute).Unix())), AssertionNotYetValid},
		{"too long", "Bearer " + ed(with(f.claims(id), "exp", now.Add(5*time.Minute+time.Second).Unix())), AssertionLifetimeTooLong},
	} {
		w := f.post(id, c.auth, good)
		if w.Code != http.StatusUnauthorized {
			t.Fatalf("%s: %d %s, want 401", c.name, w.Code, w.Body)
		}
		// The audit details never name a login request by its id.
		if d := fmt.Sprint(f.rec.last(TypeRefused).Details); strings.Contains(d, id) || strings.Contains(d, otherID) {
			t.Errorf("%s: a login request id is in the audit details: %s", c.name, d)
		}
		f.wantAssertionRefused(w.Result(), w.Body.String(), c.cause)
	}

	// None of them consumed the request; within the clock skew an
	// assertion is still good (exp 30 s ago, exactly 5 minutes long).
	lenient := ed(with(with(f.claims(id), "iat", now.Add(-5*time.Minute-30*time.Second).Unix()), "exp", now.Add(-30*time.Second).Unix()))
	redirect := f.redirectOf(f.post(id, "Bearer "+lenient, good))
	// The same assertion again: authentic, but the request has its user.
	if w := f.post(id, "Bearer "+lenient, `{"sub":"evil"}`); w.Code != http.StatusConflict {
		t.Fatalf("replayed assertion: %d %s", w.Code, w.Body)
	}
	f.wantRefused(ReasonReplayed)
	if w := f.callback(redirect, cookie); w.Code != http.StatusSeeOther {
		t.Fatalf("callback: %d %s", w.Code, w.Body)
	}
	if ev := f.rec.last(TypeCompleted); ev.Details["subject"] != "u-1" {
		t.Fatalf("completed = %+v", ev)
	}
}

// TestAssertionClockSkew: an app clock up to 60 s ahead is tolerated.
func TestAssertionClockSkew(t *testing.T) {
	k := testKeys()
	f := keyPairFixture(t, publicPEM(t, k["p256"]))
	id, _, _ := f.start()
	cl := with(with(f.claims(id), "iat", f.now.Add(59*time.Second).Unix()), "nbf", f.now.Add(59*time.Second).Unix())
	cl["exp"] = f.now.Add(2 * time.Minute).Unix()
	if w := f.post(id, "Bearer "+sign(t, k["p256"], jose.ES256, "", cl), good); w.Code != http.StatusOK {
		t.Fatalf("post: %d %s", w.Code, w.Body)
	}
}

// TestSecretModeRefusesAssertions: with a shared secret configured, a
// signed assertion is just a wrong secret.
func TestSecretModeRefusesAssertions(t *testing.T) {
	f := newFixture(t)
	id, _, _ := f.start()
	if w := f.post(id, "Bearer "+sign(t, testKeys()["ed"], jose.EdDSA, "", f.claims(id)), good); w.Code != http.StatusUnauthorized {
		t.Fatalf("post: %d", w.Code)
	}
	f.wantRefused(ReasonBadSecret)
}

func TestNewAppAuthModes(t *testing.T) {
	k := testKeys()
	edKey := verify.PublicKey{KeyID: "ed", Key: k["ed"].Public()}
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	for _, c := range []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"secret", Options{Secret: []byte(secret)}, ""},
		{"keys", Options{PublicKeys: []verify.PublicKey{edKey}, BaseURL: "https://mcp.example.com"}, ""},
		{"both", Options{Secret: []byte(secret), PublicKeys: []verify.PublicKey{edKey}, BaseURL: "https://mcp.example.com"}, "not both"},
		{"neither", Options{}, "at least 32 bytes"},
		{"no base URL", Options{PublicKeys: []verify.PublicKey{edKey}}, "BaseURL"},
		{"weak RSA", Options{PublicKeys: []verify.PublicKey{{Key: &weak.PublicKey}}, BaseURL: "https://mcp.example.com"}, "not a usable signature key"},
		{"P-521", Options{PublicKeys: []verify.PublicKey{{KeyID: "p521", Key: k["p521"].Public()}}, BaseURL: "https://mcp.example.com"}, "cannot sign login assertions"},
	} {
		_, err := newAppAuth(c.opts)
		if (c.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("%s: %v, want %q", c.name, err, c.wantErr)
		}
	}
}
