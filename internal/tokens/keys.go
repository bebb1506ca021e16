package tokens

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"slices"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/verify"
)

// Signing algorithms mcpgate can generate keys for (RFC 7518 §3.1, RFC 8037 §3.1).
const (
	AlgES256 = "ES256" // ECDSA P-256 with SHA-256: the default, small and fast
	AlgEdDSA = "EdDSA" // Ed25519
	AlgRS256 = "RS256" // RSA PKCS #1 v1.5 with SHA-256, 2048-bit keys: for verifiers that know nothing else
)

// Algorithms lists the selectable signing algorithms.
var Algorithms = []string{AlgES256, AlgEdDSA, AlgRS256}

// rsaBits is the modulus size of generated RSA keys.
const rsaBits = 2048

// generateKey makes a new private key for alg.
func generateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case AlgES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case AlgEdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	case AlgRS256:
		return rsa.GenerateKey(rand.Reader, rsaBits)
	}
	return nil, fmt.Errorf("tokens: unsupported signing algorithm %q (want one of %v)", alg, Algorithms)
}

// thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url) of pub:
// the key id.
func thumbprint(pub crypto.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("tokens: JWK thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// newSigningKey generates a key for alg and returns its store record
// (private key sealed) with the given generation and activation.
func newSigningKey(s *sealer, alg string, gen int64, k store.SigningKey) (store.SigningKey, crypto.Signer, error) {
	priv, err := generateKey(alg)
	if err != nil {
		return store.SigningKey{}, nil, err
	}
	kid, err := thumbprint(priv.Public())
	if err != nil {
		return store.SigningKey{}, nil, err
	}
	jwk, err := jose.JSONWebKey{Key: priv.Public(), KeyID: kid, Algorithm: alg, Use: "sig"}.MarshalJSON()
	if err != nil {
		return store.SigningKey{}, nil, fmt.Errorf("tokens: public JWK: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return store.SigningKey{}, nil, fmt.Errorf("tokens: encode private key: %w", err)
	}
	k.ID, k.Generation, k.Algorithm, k.PublicJWK = kid, gen, alg, jwk
	k.PrivateKey = s.seal(der, kid, alg)
	clear(der)
	return k, priv, nil
}

// openSigningKey decrypts a stored key's private half and checks that it
// belongs to the stored public key and id.
func openSigningKey(s *sealer, k store.SigningKey, pub verify.PublicKey) (crypto.Signer, error) {
	der, err := s.open(k.PrivateKey, k.ID, k.Algorithm)
	if err != nil {
		return nil, err
	}
	defer clear(der)
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("tokens: signing key %s: decode private key: %w", k.ID, err)
	}
	priv, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("tokens: signing key %s: private key of type %T cannot sign", k.ID, parsed)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if eq, ok := priv.Public().(equaler); !ok || !eq.Equal(pub.Key) {
		return nil, fmt.Errorf("tokens: signing key %s: private key does not match the public key", k.ID)
	}
	return priv, nil
}

// parseStoredKey reads a stored key's public JWK and checks that the
// stored id is its thumbprint and the algorithm fits it (a row edited in
// the database is refused, not published).
func parseStoredKey(k store.SigningKey) (verify.PublicKey, error) {
	if !slices.Contains(Algorithms, k.Algorithm) {
		return verify.PublicKey{}, fmt.Errorf("tokens: signing key %s: unsupported algorithm %q", k.ID, k.Algorithm)
	}
	pub, err := verify.ParseJWK(k.PublicJWK)
	if err != nil {
		return verify.PublicKey{}, fmt.Errorf("tokens: signing key %s: %w", k.ID, err)
	}
	kid, err := thumbprint(pub.Key)
	if err != nil {
		return verify.PublicKey{}, err
	}
	if subtle.ConstantTimeCompare([]byte(kid), []byte(k.ID)) != 1 || pub.KeyID != k.ID || pub.Algorithm != k.Algorithm {
		return verify.PublicKey{}, fmt.Errorf("tokens: signing key %s: stored public key does not match its id or algorithm", k.ID)
	}
	if _, ok := verify.FindKey([]verify.PublicKey{pub}, k.ID, k.Algorithm); !ok {
		return verify.PublicKey{}, fmt.Errorf("tokens: signing key %s: key does not fit %s", k.ID, k.Algorithm)
	}
	return pub, nil
}

// keySigner signs with one key.
type keySigner struct {
	kid, alg string
	access   jose.Signer // typ at+jwt (RFC 9068 §2.1)
	id       jose.Signer // typ JWT (ID tokens)
}

func newKeySigner(kid, alg string, priv crypto.Signer) (*keySigner, error) {
	sk := jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: jose.JSONWebKey{Key: priv, KeyID: kid}}
	access, err := jose.NewSigner(sk, (&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		return nil, fmt.Errorf("tokens: signer for key %s: %w", kid, err)
	}
	id, err := jose.NewSigner(sk, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("tokens: signer for key %s: %w", kid, err)
	}
	return &keySigner{kid: kid, alg: alg, access: access, id: id}, nil
}
