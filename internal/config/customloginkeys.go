package config

// The key-pair mode of bring your own login: --custom-login-public-key-file
// names the public key(s) of the operator's application, which verify the
// short-lived signed assertions it sends instead of a shared secret
// (internal/customauth/assertion.go, docs/custom-login.md). mcpgate then
// holds nothing that could impersonate the application.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpgate/mcpgate/verify"
)

const maxCustomLoginKeyFileBytes = 1 << 20

// customLoginJWKAlgs are the JWS algorithms of login assertions, one or two
// per key type (customauth enforces them; here they judge a JWK's "alg").
var customLoginJWKAlgs = map[string]bool{"RS256": true, "PS256": true, "ES256": true, "ES384": true, "EdDSA": true}

// CustomLoginPublicKeys reads --custom-login-public-key-file: see
// ParseCustomLoginPublicKeys.
func (c *Config) CustomLoginPublicKeys() ([]verify.PublicKey, error) {
	f, err := os.Open(c.CustomLoginPublicKeyFile)
	if err != nil {
		return nil, fmt.Errorf("--custom-login-public-key-file: %v", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCustomLoginKeyFileBytes+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("--custom-login-public-key-file %s: %v", c.CustomLoginPublicKeyFile, err)
	case len(data) > maxCustomLoginKeyFileBytes:
		return nil, fmt.Errorf("--custom-login-public-key-file %s: larger than %d bytes", c.CustomLoginPublicKeyFile, maxCustomLoginKeyFileBytes)
	}
	keys, err := ParseCustomLoginPublicKeys(data)
	if err != nil {
		return nil, fmt.Errorf("--custom-login-public-key-file %s: %w", c.CustomLoginPublicKeyFile, err)
	}
	return keys, nil
}

// ParseCustomLoginPublicKeys reads the application's public keys: PEM
// ("PUBLIC KEY" blocks as `openssl pkey -pubout` writes them, or PKCS #1
// "RSA PUBLIC KEY") or a JWK Set (RFC 7517 §5) when the document starts
// with "{". Accepted: RSA of 2048–8192 bits, ECDSA P-256 and P-384,
// Ed25519. Unlike a JWKS fetched from an issuer, where unusable keys are
// skipped (RFC 7517 §5), every problem here is an error: this file is
// written by the operator, who should hear about a weak or wrong key, and a
// private key in it is refused outright. A key's kid is its JWK "kid", or
// else its RFC 7638 JWK thumbprint (SHA-256, base64url), which is what a
// PEM key is called.
func ParseCustomLoginPublicKeys(data []byte) ([]verify.PublicKey, error) {
	var (
		keys []verify.PublicKey
		errs []string
	)
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		keys, errs = parseJWKSKeys(trimmed)
	} else {
		keys, errs = parsePEMKeys(data)
	}
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k.KeyID] {
			errs = append(errs, fmt.Sprintf("kid %q is used by two keys", k.KeyID))
		}
		seen[k.KeyID] = true
	}
	if len(errs) == 0 && len(keys) == 0 {
		errs = append(errs, `holds no public key (want PEM "PUBLIC KEY" blocks, e.g. from openssl pkey -pubout, or a JWKS {"keys":[…]})`)
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	return keys, nil
}

func parsePEMKeys(data []byte) ([]verify.PublicKey, []string) {
	var (
		keys []verify.PublicKey
		errs []string
	)
	rest := data
	for i := 1; ; i++ {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		var (
			key any
			err error
		)
		switch {
		case block.Type == "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case block.Type == "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case strings.Contains(block.Type, "PRIVATE KEY"):
			err = errors.New("is a private key: give mcpgate only the public key (openssl pkey -in app.key -pubout)")
		default:
			err = fmt.Errorf("type %q is not a public key", block.Type)
		}
		if err == nil {
			err = checkCustomLoginKey(key)
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("PEM block %d: %v", i, err))
			continue
		}
		keys = append(keys, verify.PublicKey{KeyID: thumbprint(key), Key: key})
	}
	if len(keys) == 0 && len(errs) == 0 && len(bytes.TrimSpace(data)) > 0 {
		errs = append(errs, "is neither PEM nor a JWKS document")
	}
	return keys, errs
}

func parseJWKSKeys(data []byte) ([]verify.PublicKey, []string) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil || doc.Keys == nil {
		return nil, []string{`is not a JWKS document (a JSON object with a "keys" array)`}
	}
	var (
		keys []verify.PublicKey
		errs []string
	)
	for i, raw := range doc.Keys {
		k, err := verify.ParseJWK(raw) // refuses private members, symmetric keys, points off their curve
		if err == nil {
			err = checkCustomLoginKey(k.Key)
		}
		if err == nil && k.Algorithm != "" && !customLoginJWKAlgs[k.Algorithm] {
			err = fmt.Errorf("alg %q is not accepted (RS256, PS256, ES256, ES384 or EdDSA)", k.Algorithm)
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("key %d: %s", i+1, strings.TrimPrefix(err.Error(), "verify: ")))
			continue
		}
		if k.KeyID == "" {
			k.KeyID = thumbprint(k.Key)
		}
		keys = append(keys, k)
	}
	return keys, errs
}

// checkCustomLoginKey accepts the key types login assertions may be signed
// with (RFC 7518 §3.3: RSA keys of 2048 bits or more).
func checkCustomLoginKey(key any) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < 2048 {
			return fmt.Errorf("RSA key of %d bits is too weak: at least 2048 bits", bits)
		} else if bits > 8192 {
			return fmt.Errorf("RSA key of %d bits is larger than 8192 bits", bits)
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("ECDSA curve %s is not accepted (P-256 or P-384)", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("unsupported key type %T (RSA, ECDSA P-256 or P-384, or Ed25519)", key)
	}
	return nil
}

// thumbprint is the RFC 7638 JWK thumbprint of key: SHA-256, base64url.
func thumbprint(key any) string {
	t, err := (&jose.JSONWebKey{Key: key}).Thumbprint(crypto.SHA256)
	if err != nil { // only for key types checkCustomLoginKey refuses
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(t)
}
