// Package apikeys issues, verifies, lists and revokes mcpgate API keys.
//
// # Key format
//
// A key is 54 ASCII characters in three parts:
//
//	mcpg_ + 43 characters [0-9A-Za-z] (random) + 6 characters [0-9A-Za-z] (checksum)
//
// The parts are:
//
//   - "mcpg_": a fixed prefix, so people and secret scanners recognise a key.
//   - body: 32 bytes from crypto/rand, read as one big-endian 256-bit number
//     and written in base62 with the alphabet 0-9A-Za-z, left-padded with '0'
//     to exactly 43 characters (62^43 > 2^256). Bodies above 2^256-1 are
//     never generated and are rejected by Parse.
//   - checksum: CRC-32 (IEEE polynomial, as hash/crc32.ChecksumIEEE) of the
//     first 48 characters (prefix and body), in the same base62 alphabet,
//     left-padded to 6 characters.
//
// A scanner matches the regular expression
//
//	\bmcpg_[0-9A-Za-z]{49}\b
//
// and confirms a hit by recomputing the checksum, which leaves about one
// false positive in four billion random matches. Parse does the same
// without touching the database, so a typo or a truncated paste is told
// apart from an unknown key, and garbage never costs a query.
//
// Only the SHA-256 of the whole key (Hash) is stored, with a display prefix
// of the first 12 characters ("mcpg_" + 7 body characters, about 41 bits)
// that lets a person recognise a key in a list but leaves more than 210
// random bits unknown.
//
// # Verification and caching
//
// Service.Verify checks the format, then a bounded in-memory cache of
// recently verified keys, and only on a miss reads the database. Only
// successful verifications are cached, so unknown keys cannot fill the
// cache. Expiry is checked on every hit. A revocation or user disable made
// through this process takes effect at once (Revoke and InvalidateUser
// evict the cache); one made by another process sharing the database is
// noticed within Options.CacheTTL.
//
// Cache entries hold no pointers (ids as raw bytes, scopes as a bit set over
// a process-wide table of up to 64 scopes; see RegisterScopes), so a cache
// of any size costs the garbage collector nothing to scan, and a cache hit
// allocates nothing.
//
// Last-used times are kept in memory and written in batches (Flush, Run,
// Close), at most once per Options.TouchInterval per key, so a verification
// never writes to the database.
package apikeys
