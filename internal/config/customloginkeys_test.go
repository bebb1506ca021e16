package config

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spf13/pflag"
)

func pemBlock(t *testing.T, typ string, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func jwks(t *testing.T, keys ...any) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func jwk(t *testing.T, key any, kid, alg string) map[string]any {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

func TestCustomLoginPublicKeyFile(t *testing.T) {
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ed2, _, _ := ed25519.GenerateKey(rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	x25519, _ := ecdh.X25519().GenerateKey(rand.Reader)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	priv, _ := x509.MarshalPKCS8PrivateKey(edPriv)
	thumb := func(k any) string {
		b, _ := (&jose.JSONWebKey{Key: k}).Thumbprint(crypto.SHA256)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name, file string
		wantKids   []string // on success
		wantErr    string
	}{
		{name: "one PEM key", file: pemBlock(t, "PUBLIC KEY", edPub), wantKids: []string{thumb(edPub)}},
		{name: "several PEM keys", file: "# app keys\n" + pemBlock(t, "PUBLIC KEY", p256.Public()) + pemBlock(t, "PUBLIC KEY", p384.Public()) + pemBlock(t, "PUBLIC KEY", rsa2048.Public()),
			wantKids: []string{thumb(p256.Public()), thumb(p384.Public()), thumb(rsa2048.Public())}},
		{name: "PKCS #1 RSA", file: string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsa2048.PublicKey)})), wantKids: []string{thumb(rsa2048.Public())}},
		{name: "JWKS", file: jwks(t, jwk(t, edPub, "2025", ""), jwk(t, ed2, "", "EdDSA")), wantKids: []string{"2025", thumb(ed2)}},

		{name: "empty", file: "", wantErr: "holds no public key"},
		{name: "garbage", file: "hello", wantErr: "neither PEM nor a JWKS"},
		{name: "weak RSA", file: pemBlock(t, "PUBLIC KEY", rsa1024.Public()), wantErr: "RSA key of 1024 bits is too weak: at least 2048 bits"},
		{name: "P-521", file: pemBlock(t, "PUBLIC KEY", p521.Public()), wantErr: "ECDSA curve P-521 is not accepted"},
		{name: "X25519", file: pemBlock(t, "PUBLIC KEY", x25519.PublicKey()), wantErr: "unsupported key type *ecdh.PublicKey"},
		{name: "private key", file: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv})), wantErr: "PEM block 1: is a private key"},
		{name: "certificate", file: pemBlock(t, "PUBLIC KEY", edPub) + pemBlock(t, "CERTIFICATE", edPub), wantErr: `PEM block 2: type "CERTIFICATE" is not a public key`},
		{name: "same key twice", file: pemBlock(t, "PUBLIC KEY", edPub) + pemBlock(t, "PUBLIC KEY", edPub), wantErr: "is used by two keys"},
		{name: "not a JWKS", file: `{"kty":"OKP"}`, wantErr: "is not a JWKS document"},
		{name: "JWKS symmetric", file: jwks(t, map[string]any{"kty": "oct", "k": "c2VjcmV0"}), wantErr: `key 1: JWK has private member "k"`},
		{name: "JWKS private", file: jwks(t, jwk(t, edPriv, "a", "")), wantErr: `key 1: JWK has private member "d"`},
		{name: "JWKS RS384", file: jwks(t, jwk(t, edPub, "a", ""), jwk(t, rsa2048.Public(), "b", "RS384")), wantErr: `key 2: alg "RS384" is not accepted`},
		{name: "JWKS weak RSA", file: jwks(t, jwk(t, rsa1024.Public(), "a", "")), wantErr: "key 1: RSA modulus of 1024 bits"},
		{name: "JWKS same kid", file: jwks(t, jwk(t, edPub, "a", ""), jwk(t, ed2, "a", "")), wantErr: `kid "a" is used by two keys`},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
		os.WriteFile(path, []byte(tc.file), 0o644)
		c := Defaults()
		c.CustomLoginURL, c.CustomLoginPublicKeyFile = "https://app.example.com/login", path
		keys, err := c.CustomLoginPublicKeys()
		errs := strings.Join(c.validateCustomLogin(), "\n")
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(errs, tc.wantErr) || !strings.Contains(errs, "--custom-login-public-key-file "+path) {
				t.Errorf("%s: validation %q, want %q", tc.name, errs, tc.wantErr)
			}
			continue
		}
		if err != nil || errs != "" {
			t.Errorf("%s: %v / %q", tc.name, err, errs)
			continue
		}
		var kids []string
		for _, k := range keys {
			kids = append(kids, k.KeyID)
		}
		if strings.Join(kids, " ") != strings.Join(tc.wantKids, " ") {
			t.Errorf("%s: kids %q, want %q", tc.name, kids, tc.wantKids)
		}
	}
}

func TestCustomLoginCredentialChoice(t *testing.T) {
	long := strings.Repeat("x", 32)
	key := filepath.Join(t.TempDir(), "app.pub")
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	os.WriteFile(key, []byte(pemBlock(t, "PUBLIC KEY", pub)), 0o644)
	for _, tc := range []struct {
		name, url, secret, keyFile, wantErr string
	}{
		{name: "key pair", url: "https://app.example.com/login", keyFile: key},
		{name: "both", url: "https://app.example.com/login", secret: long, keyFile: key, wantErr: "--custom-login-secret and --custom-login-public-key-file: set only one"},
		{name: "neither", url: "https://app.example.com/login", wantErr: "--custom-login-secret (or --custom-login-secret-file), or --custom-login-public-key-file"},
		{name: "unreadable", url: "https://app.example.com/login", keyFile: key + ".missing", wantErr: "--custom-login-public-key-file: open " + key + ".missing: no such file"},
		{name: "no url", keyFile: key, wantErr: "set --custom-login-url too"},
	} {
		c := Defaults()
		c.CustomLoginURL, c.CustomLoginSecret, c.CustomLoginPublicKeyFile = tc.url, tc.secret, tc.keyFile
		errs := strings.Join(c.validateCustomLogin(), "\n")
		if (tc.wantErr == "") != (errs == "") || !strings.Contains(errs, tc.wantErr) {
			t.Errorf("%s: errors %q, want %q", tc.name, errs, tc.wantErr)
		}
	}

	// The flag and its environment twin; Validate reports the file's problem.
	c := Defaults()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	c.RegisterStorage(fs)
	c.RegisterServe(fs)
	env := map[string]string{"MCPGATE_CUSTOM_LOGIN_URL": "https://app.example.com/login", "MCPGATE_CUSTOM_LOGIN_PUBLIC_KEY_FILE": key + ".missing"}
	if err := ApplyEnv(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	c.DataDir = t.TempDir()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--custom-login-public-key-file: open "+key+".missing") {
		t.Errorf("Validate = %v", err)
	}
}
