package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
)

// PublicKey is one verification key of a key set.
type PublicKey struct {
	KeyID string // JWK "kid"; may be empty
	// Algorithm is the JWK "alg"; empty means any allowed algorithm that
	// fits the key's type.
	Algorithm string
	// Key is *ecdsa.PublicKey (P-256, P-384, P-521), ed25519.PublicKey or
	// *rsa.PublicKey (2048–8192 bits). Never a symmetric key.
	Key crypto.PublicKey
}

// ParseJWKS reads a JWK Set (RFC 7517 §5) and returns its public
// signature keys. Following §5, keys it cannot use are skipped rather than
// failing the set: other key types ("oct" symmetric keys above all, which
// could turn a public value into an HMAC secret), encryption keys ("use"
// other than "sig"), keys whose "alg" does not fit their type, curves other
// than P-256/384/521 and Ed25519, RSA moduli outside 2048–8192 bits, points
// not on their curve, and any key carrying private members. Only a
// document that is not a JWK Set at all is an error.
func ParseJWKS(data []byte) ([]PublicKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return nil, fmt.Errorf("verify: JWKS is not valid JSON: %w", err)
		}
		return nil, errors.New(`verify: JWKS is not a JSON object with a "keys" array`)
	}
	if doc.Keys == nil {
		return nil, errors.New("verify: JWKS has no \"keys\" array")
	}
	var out []PublicKey
	for _, raw := range doc.Keys {
		if k, err := ParseJWK(raw); err == nil {
			out = append(out, k)
		}
	}
	return out, nil
}

// privateMembers are JWK members that only private (or symmetric) keys have.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// ParseJWK reads one public signature key (RFC 7517 §4, RFC 7518 §6,
// RFC 8037 §2) with the restrictions described at ParseJWKS.
func ParseJWK(data []byte) (PublicKey, error) {
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return PublicKey{}, fmt.Errorf("verify: JWK is not a JSON object: %w", err)
	}
	for _, name := range privateMembers {
		if _, ok := m[name]; ok {
			return PublicKey{}, fmt.Errorf("verify: JWK has private member %q; refusing it", name)
		}
	}
	get := func(name string) (string, error) {
		v, ok := m[name]
		if !ok {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("verify: JWK member %q is not a string", name)
		}
		return s, nil
	}
	var (
		kty, crv, kid, alg, use string
		err                     error
	)
	for _, f := range []struct {
		name string
		dst  *string
	}{{"kty", &kty}, {"crv", &crv}, {"kid", &kid}, {"alg", &alg}, {"use", &use}} {
		if *f.dst, err = get(f.name); err != nil {
			return PublicKey{}, err
		}
	}
	if use != "" && use != "sig" {
		return PublicKey{}, fmt.Errorf("verify: JWK use %q is not \"sig\"", use)
	}
	if ops, ok := m["key_ops"]; ok {
		list, _ := ops.([]any)
		if !slices.Contains(list, any("verify")) {
			return PublicKey{}, errors.New(`verify: JWK key_ops does not include "verify"`)
		}
	}
	bytesOf := func(name string) ([]byte, error) {
		s, err := get(name)
		if err != nil {
			return nil, err
		}
		if s == "" {
			return nil, fmt.Errorf("verify: JWK member %q is missing", name)
		}
		b, err := b64.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("verify: JWK member %q is not base64url: %w", name, err)
		}
		return b, nil
	}

	var key crypto.PublicKey
	switch kty {
	case "EC":
		var curve elliptic.Curve
		switch crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return PublicKey{}, fmt.Errorf("verify: unsupported EC curve %q", crv)
		}
		x, err := bytesOf("x")
		if err != nil {
			return PublicKey{}, err
		}
		y, err := bytesOf("y")
		if err != nil {
			return PublicKey{}, err
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(x) != size || len(y) != size { // RFC 7518 §6.2.1.2: full coordinate size
			return PublicKey{}, fmt.Errorf("verify: EC coordinates must be %d bytes", size)
		}
		// ParseUncompressedPublicKey refuses points not on the curve.
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
		if err != nil {
			return PublicKey{}, fmt.Errorf("verify: invalid EC public key: %w", err)
		}
		key = pub
	case "OKP":
		if crv != "Ed25519" {
			return PublicKey{}, fmt.Errorf("verify: unsupported OKP curve %q", crv)
		}
		x, err := bytesOf("x")
		if err != nil {
			return PublicKey{}, err
		}
		if len(x) != ed25519.PublicKeySize {
			return PublicKey{}, fmt.Errorf("verify: Ed25519 key must be %d bytes", ed25519.PublicKeySize)
		}
		key = ed25519.PublicKey(x)
	case "RSA":
		n, err := bytesOf("n")
		if err != nil {
			return PublicKey{}, err
		}
		e, err := bytesOf("e")
		if err != nil {
			return PublicKey{}, err
		}
		if len(e) == 0 || len(e) > 4 {
			return PublicKey{}, errors.New("verify: RSA exponent out of range")
		}
		var exp int
		for _, b := range e {
			exp = exp<<8 | int(b)
		}
		if exp < 3 || exp%2 == 0 {
			return PublicKey{}, errors.New("verify: RSA exponent out of range")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}
		if bits := pub.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return PublicKey{}, fmt.Errorf("verify: RSA modulus of %d bits is outside %d–%d", bits, minRSABits, maxRSABits)
		}
		key = pub
	default:
		return PublicKey{}, fmt.Errorf("verify: unsupported key type %q", kty)
	}
	if alg != "" {
		a, ok := algorithms[alg]
		if !ok || !a.fits(key) {
			return PublicKey{}, fmt.Errorf("verify: JWK alg %q does not fit a %s key", alg, kty)
		}
	}
	return PublicKey{KeyID: kid, Algorithm: alg, Key: key}, nil
}

// FindKey picks the key for a token's "kid" and "alg" from keys: one whose
// KeyID equals kid and whose type (and Algorithm, when set) fits alg. A
// token without a kid matches only when exactly one key fits alg, so a
// verifier never tries key after key.
func FindKey(keys []PublicKey, kid, alg string) (PublicKey, bool) {
	a, ok := algorithms[alg]
	if !ok {
		return PublicKey{}, false
	}
	var (
		found PublicKey
		n     int
	)
	for _, k := range keys {
		if (kid != "" && k.KeyID != kid) || (k.Algorithm != "" && k.Algorithm != alg) || !a.fits(k.Key) {
			continue
		}
		if kid != "" {
			return k, true
		}
		found = k
		n++
	}
	return found, n == 1
}
