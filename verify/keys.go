package verify

import (
	"context"
	"errors"
	"fmt"
)

// KeySource supplies the public keys tokens are checked against.
//
// LookupKey returns the key for a token's "kid" (possibly empty) and
// "alg"; FindKey implements the matching rule. When it has no such key it
// returns an error wrapping ErrUnknownKey; when it cannot tell (its keys
// could not be loaded) one wrapping ErrKeysUnavailable. The Verifier checks
// the returned key's type and Algorithm against alg again, so a source
// cannot cause an algorithm confusion.
type KeySource interface {
	LookupKey(ctx context.Context, kid, alg string) (PublicKey, error)
}

// StaticKeySet is a fixed set of keys.
type StaticKeySet struct {
	keys []PublicKey
}

// StaticKeys returns a key source holding the signature keys of a JWK Set
// document (see ParseJWKS for what is skipped). It is an error when the set
// holds no usable key.
func StaticKeys(jwks []byte) (*StaticKeySet, error) {
	keys, err := ParseJWKS(jwks)
	if err != nil {
		return nil, err
	}
	return NewStaticKeySet(keys...)
}

// NewStaticKeySet returns a key source holding keys, which must be of a
// supported type and size.
func NewStaticKeySet(keys ...PublicKey) (*StaticKeySet, error) {
	if len(keys) == 0 {
		return nil, errors.New("verify: the key set holds no usable signature key")
	}
	for _, k := range keys {
		usable := false
		for _, a := range algorithms {
			if a.fits(k.Key) && (k.Algorithm == "" || k.Algorithm == a.name) {
				usable = true
				break
			}
		}
		if !usable {
			return nil, fmt.Errorf("verify: key %q is not a usable signature key (type %T, alg %q)", k.KeyID, k.Key, k.Algorithm)
		}
	}
	return &StaticKeySet{keys: append([]PublicKey(nil), keys...)}, nil
}

// Keys returns a copy of the set's keys.
func (s *StaticKeySet) Keys() []PublicKey { return append([]PublicKey(nil), s.keys...) }

// LookupKey implements KeySource.
func (s *StaticKeySet) LookupKey(_ context.Context, kid, alg string) (PublicKey, error) {
	if k, ok := FindKey(s.keys, kid, alg); ok {
		return k, nil
	}
	return PublicKey{}, fail(ErrUnknownKey, "no %s key with kid %s", alg, quoteClip(kid))
}
