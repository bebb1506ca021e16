package apikeys

import (
	"errors"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
)

// Scope limits enforced by Issue.
const (
	MaxScopes   = 32 // distinct scopes per key
	MaxScopeLen = 64 // bytes (scope tokens are ASCII)
	// maxInterned is how many distinct scopes the process-wide table holds:
	// one bit each in a scopeSet.
	maxInterned = 64
)

// ValidScope reports whether s is an RFC 6749 §3.3 scope-token no longer
// than MaxScopeLen:
//
//	scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
//
// that is printable ASCII without space, double quote and backslash.
func ValidScope(s string) bool {
	if len(s) == 0 || len(s) > MaxScopeLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// scopeSet is a set of interned scopes, one bit per entry of the
// process-wide scope table. It holds no pointers, so cache entries holding
// one are invisible to the garbage collector's scan.
type scopeSet uint64

// scopeTable interns scope names to bit positions. Entries are never
// removed or renumbered, so a scopeSet stays meaningful for the life of the
// process. Readers load an immutable snapshot without locking; the rare
// writer (a scope seen for the first time) copies it under mu.
type scopeTable struct {
	mu   sync.Mutex
	snap atomic.Pointer[scopeSnapshot]
}

type scopeSnapshot struct {
	names []string         // bit i ↔ names[i]
	index map[string]uint8 // names[i] → i
}

func newScopeTable() *scopeTable {
	t := &scopeTable{}
	t.snap.Store(&scopeSnapshot{index: map[string]uint8{}})
	return t
}

// scopes is the process-wide table. Tests may swap it (never in parallel).
var scopes = newScopeTable()

// errScopeTableFull is returned by RegisterScopes.
var errScopeTableFull = errors.New("apikeys: scope table full (64 distinct scopes)")

// RegisterScopes reserves table entries for scopes the server checks
// (for example those configured on tools) before any key is verified.
//
// Background: verified keys are cached in a compact form in which scopes
// are bits of a 64-entry process-wide table, filled on first sight. A key
// whose scopes do not fit is still verified correctly, with all its scopes,
// but is not cached, so every use costs a database read. Users choose the
// scopes of their own keys, so a user could fill the table with invented
// scopes; registering the real ones at startup keeps the keys that matter
// cacheable whatever users do. Invalid scope tokens are rejected.
func RegisterScopes(names ...string) error {
	for _, n := range names {
		if !ValidScope(n) {
			return &ValidationError{Field: "scopes", Message: "not an RFC 6749 scope-token of at most 64 characters"}
		}
	}
	if _, ok := scopes.intern(names); !ok {
		return errScopeTableFull
	}
	return nil
}

// lookup returns the set for names if every name is already interned.
func (t *scopeTable) lookup(names []string) (scopeSet, bool) {
	snap := t.snap.Load()
	var set scopeSet
	for _, n := range names {
		i, ok := snap.index[n]
		if !ok {
			return 0, false
		}
		set |= 1 << i
	}
	return set, true
}

// intern returns the set for names, adding the missing ones to the table.
// It adds nothing and returns false when they would not all fit.
func (t *scopeTable) intern(names []string) (scopeSet, bool) {
	if set, ok := t.lookup(names); ok {
		return set, true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.snap.Load()
	var missing []string
	for _, n := range names {
		if _, ok := old.index[n]; !ok && !slices.Contains(missing, n) {
			missing = append(missing, n)
		}
	}
	if len(old.names)+len(missing) > maxInterned {
		return 0, false
	}
	if len(missing) > 0 {
		next := &scopeSnapshot{
			names: append(slices.Clip(old.names), missing...),
			index: make(map[string]uint8, len(old.names)+len(missing)),
		}
		for i, n := range next.names {
			next.index[n] = uint8(i)
		}
		t.snap.Store(next)
	}
	return t.lookup(names)
}

// names returns the scopes in set, sorted.
func (t *scopeTable) names(set scopeSet) []string {
	if set == 0 {
		return []string{}
	}
	snap := t.snap.Load()
	out := make([]string, 0, bits.OnesCount64(uint64(set)))
	for s := uint64(set); s != 0; s &= s - 1 {
		out = append(out, snap.names[bits.TrailingZeros64(s)])
	}
	slices.Sort(out)
	return out
}

// has reports whether set contains scope.
func (t *scopeTable) has(set scopeSet, scope string) bool {
	i, ok := t.snap.Load().index[scope]
	return ok && set&(1<<i) != 0
}
