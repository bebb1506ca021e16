package tokens

import (
	"crypto/cipher"
	"errors"
	"fmt"

	"github.com/mcpgate/mcpgate/internal/serverkey"
)

// sealInfo is the HKDF info string of the key that seals signing keys.
// Changing it makes every stored signing key unreadable.
const sealInfo = "mcpgate signing keys v1"

// MinServerKeyBytes is the shortest server key NewIssuer accepts.
const MinServerKeyBytes = serverkey.MinBytes

// sealVersion is the first byte of a sealed key: the format
// version || nonce (12 bytes) || AES-256-GCM ciphertext and tag.
const sealVersion = 1

// ErrWrongServerKey: a stored signing key cannot be decrypted with the
// configured server key (it was changed, or nodes disagree on it).
var ErrWrongServerKey = errors.New("signing key cannot be decrypted with this server key")

// sealer encrypts private signing keys at rest.
type sealer struct {
	aead cipher.AEAD
}

func newSealer(serverKey []byte) (*sealer, error) {
	aead, err := serverkey.NewAEAD(serverKey, sealInfo)
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// ad binds a ciphertext to the key it belongs to: a sealed private key
// copied to another row does not open there.
func sealAD(kid, alg string) []byte {
	return []byte("mcpgate signing key\x00" + kid + "\x00" + alg)
}

func (s *sealer) seal(plaintext []byte, kid, alg string) []byte {
	return serverkey.Seal(s.aead, sealVersion, plaintext, sealAD(kid, alg))
}

func (s *sealer) open(sealed []byte, kid, alg string) ([]byte, error) {
	pt, err := serverkey.Open(s.aead, sealVersion, sealed, sealAD(kid, alg))
	switch {
	case errors.Is(err, serverkey.ErrFormat):
		return nil, fmt.Errorf("tokens: signing key %s: unknown sealed format", kid)
	case err != nil:
		return nil, fmt.Errorf("tokens: signing key %s: %w (was the server key changed? every node must use the same --server-key)", kid, ErrWrongServerKey)
	}
	return pt, nil
}
