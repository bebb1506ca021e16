// Package tokens issues mcpgate's JWTs: access tokens (RFC 9068) and
// OpenID Connect ID tokens, signed with keys mcpgate generates, stores
// (private halves encrypted under the server key), rotates and publishes
// as a JWK Set (RFC 7517).
//
// Key lifecycle. Keys form generations (store.SigningKey). The first key
// signs as soon as it exists. Every RotateEvery (30 days) a node creates
// the next generation, published at once but signing only PublishLead (15
// min) later, so that every verifier's cached JWKS (served with max-age 5
// min) knows the key before the first token it signs arrives. The
// previous key stops signing at that moment and stays published until
// every token it signed has expired: retirement + the longest token
// lifetime + clock skew + PublishLead (the latter as a margin for nodes
// that notice late). Then it is deleted. Nodes share the store: the
// generation number is a unique rotation slot, so two nodes rotating at
// once create one key, and each node reloads the keys every RefreshEvery
// (1 min) and whenever a token names a kid it does not know.
//
// Private keys at rest: PKCS #8, sealed with AES-256-GCM under a key
// derived from the server key with HKDF-SHA256 (info "mcpgate signing keys
// v1"); the associated data binds each ciphertext to its kid and
// algorithm. A node with another server key fails to start with
// ErrWrongServerKey instead of signing with keys nobody else can use.
//
// Verification is not here: package verify is the one verification path,
// and Issuer.KeySet feeds it the issuer's keys in process.
package tokens
