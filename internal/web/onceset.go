package web

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// onceSet remembers which one-time form tokens were used, so submitting
// the "create key" form twice (a reload of the result page, a double
// click) creates one key, not two. It is per process and bounded: tokens
// are forgotten after ttl, and beyond max entries the oldest go first.
// Losing a token (restart, another node) only means a resubmission is not
// recognised: it then creates a second key, visible in the list.
type onceSet struct {
	ttl time.Duration
	max int

	mu    sync.Mutex
	seen  map[string]time.Time
	order []string // insertion order, for pruning
}

func newOnceSet(ttl time.Duration, max int) *onceSet {
	return &onceSet{ttl: ttl, max: max, seen: map[string]time.Time{}}
}

// newFormToken returns a fresh random token for a form.
func newFormToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validFormToken reports whether s looks like a token newFormToken made.
func validFormToken(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// reserve marks key as used and reports whether it was free.
func (o *onceSet) reserve(key string, now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.prune(now)
	if _, used := o.seen[key]; used {
		return false
	}
	o.seen[key] = now
	o.order = append(o.order, key)
	return true
}

// release frees a key reserved by a submission that failed validation, so
// the corrected form can be sent again.
func (o *onceSet) release(key string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.seen, key)
}

func (o *onceSet) prune(now time.Time) {
	drop := 0
	for drop < len(o.order) {
		k := o.order[drop]
		at, ok := o.seen[k]
		if ok && now.Sub(at) < o.ttl && len(o.order)-drop <= o.max {
			break
		}
		delete(o.seen, k)
		drop++
	}
	if drop > 0 {
		o.order = append(o.order[:0], o.order[drop:]...)
	}
}
