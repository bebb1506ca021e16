package apikeys

import (
	"crypto/subtle"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// numShards splits the cache so that concurrent verifications rarely share
// a lock. A power of two.
const numShards = 16

// cache holds recently verified keys by hash, and the uses of keys noted
// for the last-used batch. Everything in a shard's compact maps is
// pointer-free, so however many entries they hold, the garbage collector
// never scans them.
//
// Consistency with revocation: every eviction (Revoke, InvalidateUser)
// bumps the generation of the shards it touches, and a verification that
// read the database only caches its result if the generation it saw
// before the read is unchanged. An eviction that follows a committed
// database change therefore cannot be undone by a verification that read
// the row before that change.
type cache struct {
	shards   [numShards]shard
	perShard int   // entry limit per shard; 0 = nothing is cached
	ttl      int64 // nanoseconds an entry is trusted
	interval int64 // nanoseconds between two noted uses of one key
}

type shard struct {
	mu      sync.RWMutex
	entries map[[16]byte]entry // key: first half of the key hash
	gen     uint64
	uses    map[[16]byte]use // raw key id → its last noted use
	usesExt map[string]use   // the same for key ids the compact form cannot hold
	_       [64]byte         // keep neighbouring shards' locks off one cache line
}

// entry is a cached successful verification. It must stay pointer-free
// (TestCacheEntryHasNoPointers).
type entry struct {
	hash        [32]byte // full key hash, compared in constant time on every hit
	keyID       [16]byte
	userID      [16]byte
	scopes      scopeSet
	expiresAt   int64 // unix ms; 0 = never
	cachedUntil int64 // unix ns; the entry is ignored from then on
	notedAt     int64 // copy of the key's use.notedAt, so hits can skip the uses map
	flags       uint8
}

// use is the last use of a key noted for the last-used batch.
type use struct {
	notedAt int64 // unix ns
	pending bool  // not yet written by Flush
}

func (e *entry) result() Result {
	return Result{keyID: e.keyID, userID: e.userID, scopes: e.scopes, expiresAt: e.expiresAt, flags: e.flags}
}

func newCache(size int, ttl, touchInterval time.Duration) *cache {
	c := &cache{ttl: int64(ttl), interval: int64(touchInterval)}
	if size > 0 && ttl > 0 {
		c.perShard = max(1, (size+numShards-1)/numShards)
	}
	for i := range c.shards {
		s := &c.shards[i]
		if c.perShard > 0 {
			s.entries = make(map[[16]byte]entry)
		}
		s.uses = make(map[[16]byte]use)
		s.usesExt = make(map[string]use)
	}
	return c
}

func (c *cache) enabled() bool { return c.perShard > 0 }

func mapKey(h *[32]byte) (k [16]byte) {
	copy(k[:], h[:16])
	return k
}

func (c *cache) shard(h *[32]byte) *shard {
	return &c.shards[h[16]&(numShards-1)]
}

// get returns the live entry for h, if any, and the shard generation to
// pass to record after a database read.
func (s *shard) get(h *[32]byte, nowNs int64) (e entry, gen uint64, ok bool) {
	s.mu.RLock()
	e, ok = s.entries[mapKey(h)]
	gen = s.gen
	s.mu.RUnlock()
	if !ok || subtle.ConstantTimeCompare(e.hash[:], h[:]) != 1 || nowNs >= e.cachedUntil {
		return entry{}, gen, false
	}
	return e, gen, true
}

// noteHit notes a use of a cached key whose entry says the last noted use
// is at least an interval old.
func (c *cache) noteHit(s *shard, h *[32]byte, keyID [16]byte, nowNs int64) {
	k := mapKey(h)
	s.mu.Lock()
	notedAt := c.noteLocked(s, keyID, nowNs)
	if e, ok := s.entries[k]; ok && e.hash == *h {
		e.notedAt = notedAt
		s.entries[k] = e
	}
	s.mu.Unlock()
}

// record notes a use of a key read from the database and, if cacheIt and
// no eviction happened in the shard since gen, caches it. When the shard is
// full an arbitrary entry makes room (Go randomises where map iteration
// starts).
func (c *cache) record(s *shard, h *[32]byte, r Result, cacheIt bool, gen uint64, nowNs int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.ext != nil {
		c.noteExtLocked(s, r.ext.keyID, nowNs)
		return
	}
	notedAt := c.noteLocked(s, r.keyID, nowNs)
	if !cacheIt || !c.enabled() || s.gen != gen {
		return
	}
	k := mapKey(h)
	if _, exists := s.entries[k]; !exists && len(s.entries) >= c.perShard {
		for victim := range s.entries {
			delete(s.entries, victim)
			break
		}
	}
	s.entries[k] = entry{
		hash:        *h,
		keyID:       r.keyID,
		userID:      r.userID,
		scopes:      r.scopes,
		expiresAt:   r.expiresAt,
		flags:       r.flags,
		cachedUntil: nowNs + c.ttl,
		notedAt:     notedAt,
	}
}

// noteLocked notes a use of keyID at nowNs unless one was noted less than
// an interval ago, and returns the time of the key's last noted use.
func (c *cache) noteLocked(s *shard, keyID [16]byte, nowNs int64) int64 {
	u, ok := s.uses[keyID]
	if ok && nowNs-u.notedAt < c.interval {
		return u.notedAt
	}
	s.uses[keyID] = use{notedAt: nowNs, pending: true}
	return nowNs
}

func (c *cache) noteExtLocked(s *shard, keyID string, nowNs int64) {
	u, ok := s.usesExt[keyID]
	if ok && nowNs-u.notedAt < c.interval {
		return
	}
	s.usesExt[keyID] = use{notedAt: nowNs, pending: true}
}

// evict removes the entry for h and invalidates concurrent fills.
func (s *shard) evict(h *[32]byte) {
	k := mapKey(h)
	s.mu.Lock()
	if e, ok := s.entries[k]; ok && e.hash == *h {
		delete(s.entries, k)
	}
	s.gen++
	s.mu.Unlock()
}

// evictWhere removes every entry matching drop, in every shard, and
// invalidates concurrent fills.
func (c *cache) evictWhere(drop func(entry) bool) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, e := range s.entries {
			if drop(e) {
				delete(s.entries, k)
			}
		}
		s.gen++
		s.mu.Unlock()
	}
}

// len returns the number of cached entries (live or stale).
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.entries)
		s.mu.RUnlock()
	}
	return n
}

// pendingUse is a noted use handed to Flush.
type pendingUse struct {
	shard uint8
	raw   [16]byte // compact key id, or
	ext   string   // the key id the compact form cannot hold
	at    int64    // unix ns
}

// takePending returns the uses not yet written and marks them written.
// Records older than an interval are dropped, as they no longer hold back
// a note: the uses maps hold only keys used within about one interval.
func (c *cache) takePending(nowNs int64) []pendingUse {
	var out []pendingUse
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for id, u := range s.uses {
			if u.pending {
				out = append(out, pendingUse{shard: uint8(i), raw: id, at: u.notedAt})
				s.uses[id] = use{notedAt: u.notedAt}
			} else if nowNs-u.notedAt >= c.interval {
				delete(s.uses, id)
			}
		}
		for id, u := range s.usesExt {
			if u.pending {
				out = append(out, pendingUse{shard: uint8(i), ext: id, at: u.notedAt})
				s.usesExt[id] = use{notedAt: u.notedAt}
			} else if nowNs-u.notedAt >= c.interval {
				delete(s.usesExt, id)
			}
		}
		s.mu.Unlock()
	}
	return out
}

// restorePending marks uses whose write failed as pending again, so the
// next Flush retries them; a newer use noted meanwhile is kept.
func (c *cache) restorePending(uses []pendingUse) {
	for _, p := range uses {
		s := &c.shards[p.shard]
		s.mu.Lock()
		if p.ext == "" {
			if u, ok := s.uses[p.raw]; !ok || u.notedAt <= p.at {
				s.uses[p.raw] = use{notedAt: p.at, pending: true}
			}
		} else if u, ok := s.usesExt[p.ext]; !ok || u.notedAt <= p.at {
			s.usesExt[p.ext] = use{notedAt: p.at, pending: true}
		}
		s.mu.Unlock()
	}
}

// lastUsedBatch turns pending uses into the argument of TouchAPIKeys.
func lastUsedBatch(uses []pendingUse) map[string]time.Time {
	m := make(map[string]time.Time, len(uses))
	for _, p := range uses {
		id := p.ext
		if id == "" {
			id = store.FormatID(keyIDPrefix, p.raw)
		}
		if t, ok := m[id]; !ok || t.UnixNano() < p.at {
			m[id] = time.Unix(0, p.at).UTC()
		}
	}
	return m
}
