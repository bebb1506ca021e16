package tokens

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// sealInfo is the HKDF info string of the key that seals signing keys.
// Changing it makes every stored signing key unreadable.
const sealInfo = "mcpgate signing keys v1"

// MinServerKeyBytes is the shortest server key NewIssuer accepts.
const MinServerKeyBytes = 32

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
	if len(serverKey) < MinServerKeyBytes {
		return nil, fmt.Errorf("tokens: the server key must be at least %d bytes, got %d", MinServerKeyBytes, len(serverKey))
	}
	k, err := hkdf.Key(sha256.New, serverKey, nil, sealInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("tokens: derive the sealing key: %w", err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

// ad binds a ciphertext to the key it belongs to: a sealed private key
// copied to another row does not open there.
func sealAD(kid, alg string) []byte {
	return []byte("mcpgate signing key\x00" + kid + "\x00" + alg)
}

func (s *sealer) seal(plaintext []byte, kid, alg string) []byte {
	ns := s.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plaintext)+s.aead.Overhead())
	out[0] = sealVersion
	rand.Read(out[1 : 1+ns])
	return s.aead.Seal(out, out[1:1+ns], plaintext, sealAD(kid, alg))
}

func (s *sealer) open(sealed []byte, kid, alg string) ([]byte, error) {
	ns := s.aead.NonceSize()
	if len(sealed) < 1+ns+s.aead.Overhead() || sealed[0] != sealVersion {
		return nil, fmt.Errorf("tokens: signing key %s: unknown sealed format", kid)
	}
	pt, err := s.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], sealAD(kid, alg))
	if err != nil {
		return nil, fmt.Errorf("tokens: signing key %s: %w (was the server key changed? every node must use the same --server-key)", kid, ErrWrongServerKey)
	}
	return pt, nil
}
