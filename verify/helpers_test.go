package verify_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/verify"
)

// The tests mint their own tokens with the standard library, independently
// of the code under test, so that they can build every kind of broken or
// hostile token.

const (
	testIssuer   = "https://auth.example.com"
	testAudience = "https://tools.example.com/mcp"
)

// t0 is the fixed "now" of the tests.
var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

// clock is an adjustable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// testKey is a signing key of the test issuer.
type testKey struct {
	kid  string
	alg  string
	priv crypto.Signer
}

var (
	keyOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

// sharedRSAKey: RSA generation is slow; the tests share one key.
func sharedRSAKey() *rsa.PrivateKey {
	keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		rsaKey = k
	})
	return rsaKey
}

func newTestKey(t testing.TB, alg, kid string) testKey {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "RS256", "PS256":
		priv = sharedRSAKey()
	default:
		t.Fatalf("newTestKey: unsupported alg %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return testKey{kid: kid, alg: alg, priv: priv}
}

// jwk returns the public JWK of k as a JSON object.
func (k testKey) jwk() map[string]any {
	b := base64.RawURLEncoding.EncodeToString
	m := map[string]any{"kid": k.kid, "alg": k.alg, "use": "sig"}
	switch p := k.priv.Public().(type) {
	case *ecdsa.PublicKey:
		raw, _ := p.Bytes() // 0x04 || X || Y
		size := (len(raw) - 1) / 2
		m["kty"], m["crv"], m["x"], m["y"] = "EC", p.Curve.Params().Name, b(raw[1:1+size]), b(raw[1+size:])
	case ed25519.PublicKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", b(p)
	case *rsa.PublicKey:
		m["kty"], m["n"], m["e"] = "RSA", b(p.N.Bytes()), b([]byte{1, 0, 1})
	}
	return m
}

func jwks(keys ...testKey) []byte {
	var list []map[string]any
	for _, k := range keys {
		list = append(list, k.jwk())
	}
	b, _ := json.Marshal(map[string]any{"keys": list})
	return b
}

func staticKeys(t testing.TB, keys ...testKey) *verify.StaticKeySet {
	t.Helper()
	ks, err := verify.StaticKeys(jwks(keys...))
	if err != nil {
		t.Fatalf("StaticKeys: %v", err)
	}
	return ks
}

// header returns the standard header for k.
func (k testKey) header() map[string]any {
	return map[string]any{"alg": k.alg, "kid": k.kid, "typ": "at+jwt"}
}

// claims returns a valid claim set issued at now.
func claims(now time.Time) map[string]any {
	return map[string]any{
		"iss":       testIssuer,
		"sub":       "usr_alice",
		"aud":       testAudience,
		"client_id": "https://client.example.com/metadata.json",
		"scope":     "payments:read payments:write",
		"iat":       now.Unix(),
		"exp":       now.Add(time.Hour).Unix(),
		"jti":       "jti-1",
		"gid":       "grt_1",
	}
}

func b64json(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// signRaw signs header.payload (already encoded) with k as alg names.
func signRaw(t testing.TB, k testKey, alg, signingInput string) string {
	t.Helper()
	var sig []byte
	switch alg {
	case "ES256", "ES384":
		h := crypto.SHA256
		if alg == "ES384" {
			h = crypto.SHA384
		}
		d := h.New()
		d.Write([]byte(signingInput))
		priv := k.priv.(*ecdsa.PrivateKey)
		r, s, err := ecdsa.Sign(rand.Reader, priv, d.Sum(nil))
		if err != nil {
			t.Fatal(err)
		}
		size := (priv.Curve.Params().BitSize + 7) / 8
		sig = make([]byte, 2*size)
		r.FillBytes(sig[:size])
		s.FillBytes(sig[size:])
	case "EdDSA":
		sig = ed25519.Sign(k.priv.(ed25519.PrivateKey), []byte(signingInput))
	case "RS256":
		d := sha256.Sum256([]byte(signingInput))
		var err error
		sig, err = rsa.SignPKCS1v15(rand.Reader, k.priv.(*rsa.PrivateKey), crypto.SHA256, d[:])
		if err != nil {
			t.Fatal(err)
		}
	case "PS256":
		d := sha256.Sum256([]byte(signingInput))
		var err error
		sig, err = rsa.SignPSS(rand.Reader, k.priv.(*rsa.PrivateKey), crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("signRaw: unsupported alg %s", alg)
	}
	return base64.RawURLEncoding.EncodeToString(sig)
}

// mint returns a token with the given header and claims, signed by k with
// the alg the header names.
func mint(t testing.TB, k testKey, header, claims map[string]any) string {
	t.Helper()
	in := b64json(header) + "." + b64json(claims)
	alg, _ := header["alg"].(string)
	return in + "." + signRaw(t, k, alg, in)
}

// hmacToken signs header.claims with HMAC-SHA256 under secret.
func hmacToken(header, claims map[string]any, secret []byte) string {
	in := b64json(header) + "." + b64json(claims)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// newVerifier returns a verifier for the test issuer and audience at t0.
func newVerifier(t testing.TB, keys verify.KeySource, mod ...func(*verify.Options)) *verify.Verifier {
	t.Helper()
	opts := verify.Options{Issuer: testIssuer, Audience: testAudience, Keys: keys, Now: fixedClock(t0)}
	for _, m := range mod {
		m(&opts)
	}
	v, err := verify.New(opts)
	if err != nil {
		t.Fatalf("verify.New: %v", err)
	}
	return v
}

// wantErr checks that err wraps want, and that the cache did not make a
// refused token acceptable on a second try.
func wantErr(t *testing.T, v *verify.Verifier, token string, want error) {
	t.Helper()
	for try := range 2 {
		_, err := v.Verify(t.Context(), token)
		if !errors.Is(err, want) {
			t.Fatalf("Verify (try %d) = %v, want %v", try+1, err, want)
		}
		if _, err := v.VerifyCompact(t.Context(), token); !errors.Is(err, want) {
			t.Fatalf("VerifyCompact (try %d) = %v, want %v", try+1, err, want)
		}
	}
}

func mustVerify(t *testing.T, v *verify.Verifier, token string) *verify.Claims {
	t.Helper()
	c, err := v.Verify(t.Context(), token)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return c
}

func with(m map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func b64str(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// countingKeys counts lookups.
type countingKeys struct {
	verify.KeySource
	mu sync.Mutex
	n  int
}

func (c *countingKeys) LookupKey(ctx context.Context, kid, alg string) (verify.PublicKey, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.KeySource.LookupKey(ctx, kid, alg)
}

// quiet is a logger that drops everything.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
