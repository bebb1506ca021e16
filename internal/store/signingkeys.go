package store

import (
	"context"
	"time"
)

// SigningKey is one of the keys that sign the JWTs mcpgate issues (access
// tokens, ID tokens). Keys form a chain of generations: generation 1 is the
// first key ever created, and every rotation adds generation n+1, which
// takes over signing at its ActivatesAt. The public half is published in the
// JWKS until every token the key signed has expired; the private half is
// stored only encrypted (sealed by internal/tokens under a key derived from
// the server key), never in plaintext.
type SigningKey struct {
	ID          string // the key id ("kid"): RFC 7638 JWK thumbprint (SHA-256, base64url) of the public key
	Generation  int64  // rotation slot: 1 for the first key, previous + 1 for each rotation; unique
	Algorithm   string // JWS "alg" (RFC 7518 §3.1 / RFC 8037): "ES256", "EdDSA", "RS256"
	PublicJWK   []byte // the public key as a JWK (RFC 7517 §4), JSON
	PrivateKey  []byte // the private key, sealed (AES-256-GCM); opaque to the store
	CreatedAt   time.Time
	ActivatesAt time.Time // the key signs from then on, until the next generation activates
	// RetiresAt is when the next generation took over signing (that
	// generation's ActivatesAt); zero for the newest generation. Set by
	// CreateSigningKey of the next generation, never by the caller.
	RetiresAt time.Time
}

// SigningKeyStore persists signing keys. Several nodes share one store: the
// generation number is the rotation slot that makes concurrent rotations
// safe, as only one node can create a given generation.
type SigningKeyStore interface {
	// CreateSigningKey stores k as the next generation and, in the same
	// transaction, sets RetiresAt = k.ActivatesAt on the generation before
	// it. k.Generation must be exactly one more than the highest stored
	// generation (1 when there is none), and k.RetiresAt must be zero.
	// ErrConflict when the generation is taken or is not the next one (the
	// answer a node gets when another node rotated first), or when k.ID is
	// taken.
	CreateSigningKey(ctx context.Context, k SigningKey) error
	// ListSigningKeys returns every stored key, newest generation first.
	ListSigningKeys(ctx context.Context) ([]SigningKey, error)
	// DeleteSigningKeysRetiredBefore deletes the keys whose RetiresAt is
	// before cutoff and returns how many it deleted. The newest generation
	// (RetiresAt zero) is never deleted. Safe to run on several nodes at
	// once.
	DeleteSigningKeysRetiredBefore(ctx context.Context, cutoff time.Time) (int, error)
}
