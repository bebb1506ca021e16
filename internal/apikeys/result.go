package apikeys

import (
	"slices"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// Id prefixes the compact form of a Result understands.
const (
	keyIDPrefix  = "key"
	userIDPrefix = "usr"
)

// Result flags.
const (
	flagValid   uint8 = 1 << iota // a successful verification (the zero Result is not)
	flagSession                   // Kind() == store.KeyKindSession
)

// Result describes a verified key. The accessors may allocate; producing a
// Result on a cache hit does not.
//
// A Result is compact: ids are kept as their 16 raw bytes, scopes as a bit
// set over a process-wide table, the expiry as unix milliseconds, so the
// verification cache holds no pointers and costs the garbage collector
// nothing to scan, however large it grows. The one pointer, ext, is nil for
// every key the compact form can represent exactly (ids made by
// store.NewID("key"/"usr"), a known kind, scopes that fit the table), which
// is every key mcpgate issues in practice; keys that need it are never
// cached.
type Result struct {
	keyID     [16]byte
	userID    [16]byte
	scopes    scopeSet
	expiresAt int64 // unix ms; 0 = never
	flags     uint8
	ext       *resultExt
}

// resultExt carries what the compact form cannot represent.
type resultExt struct {
	keyID, userID, kind string
	scopes              []string // sorted
}

// newResult builds the Result for a key row. The boolean reports whether
// the Result is compact (and so may be cached).
func newResult(k store.APIKey) (Result, bool) {
	r := Result{flags: flagValid}
	if !k.ExpiresAt.IsZero() {
		r.expiresAt = k.ExpiresAt.UnixMilli()
	}
	compact := true
	var ok bool
	if r.keyID, ok = rawID(k.ID, keyIDPrefix); !ok {
		compact = false
	}
	if r.userID, ok = rawID(k.UserID, userIDPrefix); !ok {
		compact = false
	}
	switch k.Kind {
	case store.KeyKindManual:
	case store.KeyKindSession:
		r.flags |= flagSession
	default:
		compact = false
	}
	if compact {
		// Only keys that can be cached take table entries.
		if r.scopes, ok = scopes.intern(k.Scopes); !ok {
			compact = false
		}
	}
	if !compact {
		sorted := slices.Sorted(slices.Values(k.Scopes))
		r.ext = &resultExt{keyID: k.ID, userID: k.UserID, kind: k.Kind, scopes: slices.Compact(sorted)}
		if sorted == nil {
			r.ext.scopes = []string{}
		}
		r.keyID, r.userID, r.scopes = [16]byte{}, [16]byte{}, 0
	}
	return r, compact
}

// rawID returns the raw bytes of an id made by store.NewID(prefix), if id
// is exactly such an id (it round-trips through store.FormatID).
func rawID(id, prefix string) ([16]byte, bool) {
	p, raw, ok := store.ParseID(id)
	if !ok || p != prefix || store.FormatID(p, raw) != id {
		return [16]byte{}, false
	}
	return raw, true
}

// KeyID returns the id of the key ("key_…"), or "" for the zero Result.
func (r Result) KeyID() string {
	switch {
	case r.ext != nil:
		return r.ext.keyID
	case r.flags&flagValid == 0:
		return ""
	}
	return store.FormatID(keyIDPrefix, r.keyID)
}

// UserID returns the id of the key's owner, or "" for the zero Result.
func (r Result) UserID() string {
	switch {
	case r.ext != nil:
		return r.ext.userID
	case r.flags&flagValid == 0:
		return ""
	}
	return store.FormatID(userIDPrefix, r.userID)
}

// Kind returns store.KeyKindManual or store.KeyKindSession ("" for the zero
// Result).
func (r Result) Kind() string {
	switch {
	case r.ext != nil:
		return r.ext.kind
	case r.flags&flagValid == 0:
		return ""
	case r.flags&flagSession != 0:
		return store.KeyKindSession
	}
	return store.KeyKindManual
}

// Scopes returns the key's scopes, sorted, in a new slice (never nil).
func (r Result) Scopes() []string {
	if r.ext != nil {
		return slices.Clone(r.ext.scopes)
	}
	return scopes.names(r.scopes)
}

// HasScope reports whether the key carries scope. It does not allocate.
func (r Result) HasScope(scope string) bool {
	if r.ext != nil {
		_, found := slices.BinarySearch(r.ext.scopes, scope)
		return found
	}
	return scopes.has(r.scopes, scope)
}

// ExpiresAt returns when the key expires (millisecond precision), or the
// zero time if it never does.
func (r Result) ExpiresAt() time.Time {
	if r.expiresAt == 0 {
		return time.Time{}
	}
	return time.UnixMilli(r.expiresAt).UTC()
}

// expiredAt reports whether the key is expired at nowMs (unix ms). An
// expiry stored with sub-millisecond precision is rounded down, so the key
// expires early rather than late.
func (r Result) expiredAt(nowMs int64) bool {
	return r.expiresAt != 0 && nowMs >= r.expiresAt
}
