// Package serverkey derives purpose-bound keys from the server key
// (--server-key, the same on every node) and seals small secrets with
// them. Each use names its own HKDF info string, so no two uses share a
// key: the signing keys at rest (internal/tokens), refresh-token
// successors and the authorization-request browser binding
// (internal/oauth), pending sign-ins (internal/loginflow).
//
// A sealed value is version (1 byte) || nonce (12 bytes) || AES-256-GCM
// ciphertext and tag; the associated data binds it to the row it belongs
// to, so a sealed value copied elsewhere does not open.
package serverkey

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// MinBytes is the shortest server key accepted.
const MinBytes = 32

var (
	// ErrFormat: the sealed value is too short or has another version.
	ErrFormat = errors.New("unknown sealed format")
	// ErrOpen: the sealed value does not open under this key and
	// associated data (another server key, or tampering).
	ErrOpen = errors.New("sealed value does not open with this server key")
)

// Derive returns the 32-byte key of one purpose: HKDF-SHA256 (RFC 5869)
// of the server key with info as the context string.
func Derive(serverKey []byte, info string) ([]byte, error) {
	if len(serverKey) < MinBytes {
		return nil, fmt.Errorf("the server key must be at least %d bytes, got %d", MinBytes, len(serverKey))
	}
	k, err := hkdf.Key(sha256.New, serverKey, nil, info, 32)
	if err != nil {
		return nil, fmt.Errorf("derive the %q key: %w", info, err)
	}
	return k, nil
}

// NewAEAD returns AES-256-GCM keyed by Derive(serverKey, info).
func NewAEAD(serverKey []byte, info string) (cipher.AEAD, error) {
	k, err := Derive(serverKey, info)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal encrypts plaintext with a fresh random nonce.
func Seal(aead cipher.AEAD, version byte, plaintext, ad []byte) []byte {
	ns := aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plaintext)+aead.Overhead())
	out[0] = version
	rand.Read(out[1 : 1+ns])
	return aead.Seal(out, out[1:1+ns], plaintext, ad)
}

// Open decrypts what Seal made with the same version and associated data.
func Open(aead cipher.AEAD, version byte, sealed, ad []byte) ([]byte, error) {
	ns := aead.NonceSize()
	if len(sealed) < 1+ns+aead.Overhead() || sealed[0] != version {
		return nil, ErrFormat
	}
	pt, err := aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], ad)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}
