package app

// Key-pair mode: instead of sending the shared secret, the app proves it is
// itself with a short-lived JWT signed by its private key. mcpgate holds only
// the public key (--custom-login-public-key-file), so it stores nothing that
// could speak for the app. See docs/custom-login.md for the exact claims.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// LoadPrivateKey reads a PKCS #8 PEM private key as `openssl genpkey`
// writes it: Ed25519, ECDSA P-256 or P-384, or RSA (2048 bits or more).
func LoadPrivateKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: want a PEM \"PRIVATE KEY\" (openssl genpkey -algorithm ed25519 -out app.key)", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	signer, ok := key.(crypto.Signer)
	if _, err := algorithm(signer); !ok || err != nil {
		return nil, fmt.Errorf("%s: not an Ed25519, ECDSA P-256/P-384 or RSA key", path)
	}
	return signer, nil
}

// algorithm is the JWS algorithm mcpgate expects for the key's type.
func algorithm(key crypto.Signer) (jose.SignatureAlgorithm, error) {
	switch k := key.(type) {
	case ed25519.PrivateKey:
		return jose.EdDSA, nil
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		}
	case *rsa.PrivateKey:
		return jose.RS256, nil
	}
	return "", errors.New("unsupported key type")
}

// assertion signs the credential for one call to endpoint, the URL of
// POST /api/login-requests/{id}/user.
func (a *App) assertion(id, endpoint string) (string, error) {
	alg, err := algorithm(a.Key)
	if err != nil {
		return "", err
	}
	// kid: the key's RFC 7638 thumbprint, which is how mcpgate names a key
	// from a PEM file (a JWKS file names its keys with its own "kid"s).
	thumb, err := (&jose.JSONWebKey{Key: a.Key.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: a.Key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", base64.RawURLEncoding.EncodeToString(thumb)))
	if err != nil {
		return "", err
	}
	now := time.Now()
	return jwt.Signed(signer).Claims(map[string]any{
		"aud":              endpoint, // exactly the URL being called
		"login_request_id": id,       // good for this login request only
		"iat":              now.Unix(),
		"exp":              now.Add(time.Minute).Unix(), // at most 5 minutes after iat
		"jti":              rand.Text(),                 // unique per assertion
	}).Serialize()
}
