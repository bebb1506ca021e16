package verify

import (
	"hash/maphash"
	"math"
	"sync"
	"time"
	"unsafe"
)

// The verified-token cache.
//
// Goals: a hit costs no allocation and well under a microsecond, and the
// cache costs the garbage collector nothing to scan however many entries it
// holds.
//
//   - Entries are pointer-free: offsets into a per-shard byte arena plus
//     numbers. A map whose keys and values hold no pointers is never
//     scanned (TestCacheEntryHasNoPointers).
//   - The arena holds, per entry, the token itself followed by the claim
//     strings a hit returns (sub, client_id, scope, gid, jti). Bytes are
//     only ever appended to an arena, never rewritten, so a hit can return
//     strings that alias the arena (unsafe.String) without copying: a
//     returned string stays valid, and unchanged, for as long as it is
//     referenced, even after its entry is evicted or the shard moves to a
//     new arena.
//   - A hit must be the very token that was verified. The map is keyed by
//     a 64-bit maphash of the token (per-cache random seed), and the whole
//     token is then compared with the stored copy: an exact match, so
//     unlike a digest there is no collision to reason about. (A SHA-256 of
//     a 600–900-byte JWT alone costs 0.5–1 µs, more than a whole hit may
//     take.) The price is that the cache holds the tokens themselves, in
//     process memory only, until they expire or are evicted.
//   - An entry is used until the token's exp plus the clock skew, which is
//     exactly how long the slow path would keep accepting it. Revocation
//     is not the verifier's business (tokens carry a grant id for that).
//   - Bounds: at most perShard entries per shard (an arbitrary entry makes
//     room) and maxArena bytes per arena; a full arena is compacted into a
//     fresh one holding the live entries only.
const (
	cacheShards = 16
	// entryBudget is the arena space reserved per entry: a typical
	// mcpgate access token is 600–900 bytes, its strings 100–200.
	entryBudget = 1536
	// maxCachedBytes: larger tokens (and their strings) are verified but
	// not cached.
	maxCachedBytes = 8 << 10
	minArena       = 16 << 10
)

type tokenCache struct {
	seed     maphash.Seed
	perShard int
	maxArena int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu      sync.RWMutex
	entries map[uint64]cacheEntry
	arena   []byte // append-only; bytes below len are never written again
	_       [64]byte
}

// cacheEntry must stay pointer-free (TestCacheEntryHasNoPointers).
type cacheEntry struct {
	off    uint32    // start of the entry's bytes in the arena: token, then strs
	tokLen uint32    // token length
	strLen [5]uint16 // sub, client_id, scope, gid, jti
	iat    int64     // unix seconds
	exp    int64     // unix seconds
	until  int64     // unix ns; the entry is not used from then on
}

func (e *cacheEntry) size() int {
	n := int(e.tokLen)
	for _, l := range e.strLen {
		n += int(l)
	}
	return n
}

func newTokenCache(size int) *tokenCache {
	c := &tokenCache{seed: maphash.MakeSeed()}
	if size <= 0 {
		return c
	}
	c.perShard = max(1, (size+cacheShards-1)/cacheShards)
	c.maxArena = max(minArena, c.perShard*entryBudget)
	for i := range c.shards {
		c.shards[i].entries = make(map[uint64]cacheEntry)
	}
	return c
}

func (c *tokenCache) enabled() bool { return c.perShard > 0 }

// get returns the cached result for token, if a live entry holds exactly
// this token. It does not allocate.
func (c *tokenCache) get(token string, nowNs int64) (Compact, bool) {
	if !c.enabled() || len(token) > maxCachedBytes {
		return Compact{}, false
	}
	h := maphash.String(c.seed, token)
	s := &c.shards[h%cacheShards]
	s.mu.RLock()
	e, ok := s.entries[h]
	arena := s.arena
	s.mu.RUnlock()
	if !ok || nowNs >= e.until || int(e.tokLen) != len(token) {
		return Compact{}, false
	}
	// The entry's bytes were appended before the entry was published under
	// the lock, and are never written again: reading them unlocked is safe.
	b := arena[e.off : int(e.off)+e.size()]
	// A plain (vectorised) comparison: only a token whose keyed 64-bit
	// hash equals a cached token's reaches it, which in practice is that
	// very token, so its timing tells an attacker nothing. (A constant-time
	// byte loop costs ~0.2 µs on a 700-byte JWT, most of a hit.)
	if unsafe.String(&b[0], int(e.tokLen)) != token {
		return Compact{}, false
	}
	b = b[e.tokLen:]
	var strs [5]string
	for i, l := range e.strLen {
		if l > 0 {
			strs[i] = unsafe.String(&b[0], int(l))
			b = b[l:]
		}
	}
	return Compact{
		Subject: strs[0], ClientID: strs[1], Scope: strs[2], GrantID: strs[3], JTI: strs[4],
		IssuedAt:  time.Unix(e.iat, 0).UTC(),
		ExpiresAt: time.Unix(e.exp, 0).UTC(),
		token:     token,
	}, true
}

// put caches a verified token's result until untilNs.
func (c *tokenCache) put(token string, r *Compact, untilNs, nowNs int64) {
	if !c.enabled() || untilNs <= nowNs {
		return
	}
	strs := [5]string{r.Subject, r.ClientID, r.Scope, r.GrantID, r.JTI}
	need := len(token)
	for _, str := range strs {
		if len(str) > math.MaxUint16 {
			return
		}
		need += len(str)
	}
	if need > maxCachedBytes {
		return
	}
	e := cacheEntry{tokLen: uint32(len(token)), iat: r.IssuedAt.Unix(), exp: r.ExpiresAt.Unix(), until: untilNs}
	for i, str := range strs {
		e.strLen[i] = uint16(len(str))
	}

	h := maphash.String(c.seed, token)
	s := &c.shards[h%cacheShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, exists := s.entries[h]; !exists && len(s.entries) >= c.perShard {
		for victim := range s.entries { // Go starts map iteration at random
			delete(s.entries, victim)
			break
		}
	}
	if len(s.arena)+need > cap(s.arena) {
		delete(s.entries, h) // its old bytes are not worth keeping
		c.rebuild(s, need, nowNs)
	}
	e.off = uint32(len(s.arena))
	s.arena = append(s.arena, token...)
	for _, str := range strs {
		s.arena = append(s.arena, str...)
	}
	s.entries[h] = e
}

// rebuild moves the shard's live entries to a fresh arena with room for
// need more bytes, evicting entries if the arena would exceed maxArena.
// The old arena is left untouched: strings handed out earlier still point
// into it.
func (c *tokenCache) rebuild(s *cacheShard, need int, nowNs int64) {
	live := 0
	for h, e := range s.entries {
		if nowNs >= e.until {
			delete(s.entries, h)
			continue
		}
		live += e.size()
	}
	for live+need > c.maxArena && len(s.entries) > 0 {
		for h, e := range s.entries {
			delete(s.entries, h)
			live -= e.size()
			break
		}
	}
	arena := make([]byte, 0, min(c.maxArena, max(minArena, 2*(live+need))))
	for h, e := range s.entries {
		n := e.size()
		old := s.arena[e.off : int(e.off)+n]
		e.off = uint32(len(arena))
		arena = append(arena, old...)
		s.entries[h] = e
	}
	s.arena = arena
}

// purge drops every entry.
func (c *tokenCache) purge() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		if s.entries != nil {
			clear(s.entries)
		}
		s.arena = nil
		s.mu.Unlock()
	}
}

// len returns the number of entries (live or stale).
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.entries)
		s.mu.RUnlock()
	}
	return n
}
