package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	_ "crypto/sha256" // crypto.SHA256 for ES256, RS256, PS256
	_ "crypto/sha512" // crypto.SHA384 / SHA512
	"encoding/base64"
	"io"
	"math/big"
	"strings"
)

// DefaultAlgorithms are the algorithms a Verifier accepts unless told
// otherwise: the three mcpgate can sign with.
var DefaultAlgorithms = []string{"ES256", "EdDSA", "RS256"}

// keyKind is the family of public key an algorithm needs.
type keyKind uint8

const (
	kindEC keyKind = iota + 1
	kindEd25519
	kindRSA
)

// algorithm is one JWS signature algorithm (RFC 7518 §3.1, RFC 8037 §3.1).
// The table holds asymmetric algorithms only: "none" and the HMAC family
// (HS256…) cannot be named, so a public key can never be used as an HMAC
// secret (the RS256→HS256 confusion attack).
type algorithm struct {
	name  string
	kind  keyKind
	hash  crypto.Hash    // not for EdDSA, which hashes internally
	curve elliptic.Curve // kindEC only
	pss   bool           // kindRSA: RSASSA-PSS instead of PKCS #1 v1.5
}

// algorithms are the signature algorithms this package implements.
var algorithms = map[string]*algorithm{
	"ES256": {name: "ES256", kind: kindEC, hash: crypto.SHA256, curve: elliptic.P256()},
	"ES384": {name: "ES384", kind: kindEC, hash: crypto.SHA384, curve: elliptic.P384()},
	"ES512": {name: "ES512", kind: kindEC, hash: crypto.SHA512, curve: elliptic.P521()},
	"EdDSA": {name: "EdDSA", kind: kindEd25519},
	"RS256": {name: "RS256", kind: kindRSA, hash: crypto.SHA256},
	"RS384": {name: "RS384", kind: kindRSA, hash: crypto.SHA384},
	"RS512": {name: "RS512", kind: kindRSA, hash: crypto.SHA512},
	"PS256": {name: "PS256", kind: kindRSA, hash: crypto.SHA256, pss: true},
	"PS384": {name: "PS384", kind: kindRSA, hash: crypto.SHA384, pss: true},
	"PS512": {name: "PS512", kind: kindRSA, hash: crypto.SHA512, pss: true},
}

// minRSABits is the smallest RSA modulus accepted (RFC 7518 §3.3: 2048 or
// larger); maxRSABits bounds the work a hostile JWKS can demand.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// fits reports whether key is of the type and size alg needs.
func (a *algorithm) fits(key crypto.PublicKey) bool {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		return a.kind == kindEC && k.Curve == a.curve
	case ed25519.PublicKey:
		return a.kind == kindEd25519 && len(k) == ed25519.PublicKeySize
	case *rsa.PublicKey:
		return a.kind == kindRSA && k.N != nil && k.N.BitLen() >= minRSABits && k.N.BitLen() <= maxRSABits
	}
	return false
}

// verify checks sig over signingInput with key, which must fit a.
func (a *algorithm) verify(key crypto.PublicKey, signingInput string, sig []byte) bool {
	if !a.fits(key) {
		return false
	}
	if a.kind == kindEd25519 {
		return ed25519.Verify(key.(ed25519.PublicKey), []byte(signingInput), sig)
	}
	h := a.hash.New()
	io.WriteString(h, signingInput)
	digest := h.Sum(nil)
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		// RFC 7518 §3.4: R and S as fixed-size big-endian octets, concatenated.
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return false
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(k, digest, r, s)
	case *rsa.PublicKey:
		if a.pss {
			// RFC 7518 §3.5: the salt is as long as the hash output.
			return rsa.VerifyPSS(k, a.hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		}
		return rsa.VerifyPKCS1v15(k, a.hash, digest, sig) == nil
	}
	return false
}

// b64 is base64url without padding (RFC 7515 §2), strict: non-zero
// trailing bits are refused, so each token has one spelling.
var b64 = base64.RawURLEncoding.Strict()

// splitCompact splits a JWS compact serialization (RFC 7515 §7.1) into its
// three segments.
func splitCompact(token string) (header, payload, sig string, ok bool) {
	header, rest, ok1 := strings.Cut(token, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(sig, '.') >= 0 || header == "" || payload == "" || sig == "" {
		return "", "", "", false
	}
	return header, payload, sig, true
}

// decodeSegment decodes one base64url segment.
func decodeSegment(s string) ([]byte, error) {
	out := make([]byte, b64.DecodedLen(len(s)))
	n, err := b64.Decode(out, []byte(s))
	if err != nil {
		return nil, err
	}
	return out[:n], nil
}
