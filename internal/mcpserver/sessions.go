package mcpserver

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"sync"
	"time"
)

// Limits on remembered session bindings. They bound the memory an
// authenticated caller can make the endpoint hold; the SDK keeps one session
// object per binding, so they bound that too.
const (
	maxSessionBindings  = 100_000
	maxSessionsPerOwner = 1_000
)

// sessionBindings remembers which caller created each stateful MCP session,
// so that a session id presented by anyone else is refused (and audited)
// before the SDK sees it. The SDK makes the same comparison on its own, but
// answers a plain-text 403 nobody records.
type sessionBindings struct {
	timeout time.Duration
	now     func() time.Time

	mu        sync.Mutex
	m         map[string]*binding
	perOwner  map[string]int
	lastSweep time.Time
}

type binding struct {
	owner    string
	lastSeen time.Time
	active   int // requests in flight; a binding in use is never swept
}

func newSessionBindings(timeout time.Duration, now func() time.Time) *sessionBindings {
	return &sessionBindings{
		timeout:  timeout,
		now:      now,
		m:        make(map[string]*binding),
		perOwner: make(map[string]int),
	}
}

// bindResult is the outcome of acquire.
type bindResult int

const (
	bindUnknown  bindResult = iota // no binding: the SDK decides (usually 404)
	bindOwner                      // the caller owns the session
	bindMismatch                   // the session belongs to someone else
)

// acquire checks that owner may use session id and marks it in use; a
// bindOwner result must be paired with release. It returns the real owner.
func (b *sessionBindings) acquire(id, owner string) (bindResult, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.maybeSweepLocked()
	bd := b.m[id]
	switch {
	case bd == nil:
		return bindUnknown, ""
	case bd.owner != owner:
		return bindMismatch, bd.owner
	}
	bd.active++
	bd.lastSeen = b.now()
	return bindOwner, owner
}

// release ends a request that acquire let through.
func (b *sessionBindings) release(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if bd := b.m[id]; bd != nil {
		if bd.active > 0 {
			bd.active--
		}
		bd.lastSeen = b.now()
	}
}

// admit checks that owner may create one more session. It returns 0, or
// the status and message to refuse with.
func (b *sessionBindings) admit(owner string) (int, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.m) >= maxSessionBindings || b.perOwner[owner] >= maxSessionsPerOwner {
		b.sweepLocked()
	}
	switch {
	case b.perOwner[owner] >= maxSessionsPerOwner:
		return http.StatusTooManyRequests, "too many open MCP sessions for this user; close some (HTTP DELETE) or let them expire"
	case len(b.m) >= maxSessionBindings:
		return http.StatusServiceUnavailable, "too many open MCP sessions; try again later"
	}
	return 0, ""
}

// bind records a session the SDK just created for owner. An id is never
// rebound to another owner.
func (b *sessionBindings) bind(id, owner string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if bd := b.m[id]; bd != nil {
		return
	}
	b.m[id] = &binding{owner: owner, lastSeen: b.now()}
	b.perOwner[owner]++
}

// forget drops a binding (the session was deleted).
func (b *sessionBindings) forget(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deleteLocked(id)
}

func (b *sessionBindings) forgetAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.m)
	clear(b.perOwner)
}

func (b *sessionBindings) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}

func (b *sessionBindings) deleteLocked(id string) {
	bd := b.m[id]
	if bd == nil {
		return
	}
	delete(b.m, id)
	if b.perOwner[bd.owner]--; b.perOwner[bd.owner] <= 0 {
		delete(b.perOwner, bd.owner)
	}
}

// maybeSweepLocked sweeps at most every timeout/4 (lazily, on the request
// path: no goroutine to stop).
func (b *sessionBindings) maybeSweepLocked() {
	if now := b.now(); now.Sub(b.lastSweep) >= b.timeout/4 {
		b.sweepLocked()
	}
}

// sweepLocked drops bindings idle for longer than the session timeout; the
// SDK closes such sessions with the same timeout.
func (b *sessionBindings) sweepLocked() {
	now := b.now()
	b.lastSweep = now
	for id, bd := range b.m {
		if bd.active == 0 && now.Sub(bd.lastSeen) > b.timeout {
			b.deleteLocked(id)
		}
	}
}

// sessionRef names a session in logs and audit details without the id
// itself: together with the owner's credential the id addresses a live
// session, so it is treated like a secret.
func sessionRef(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:8])
}

// sessionWriter watches a response for the Mcp-Session-Id header the SDK
// sets when it creates a session, and binds the session to its owner before
// the client can see the id. It keeps http.Flusher (SSE) working and lets
// http.ResponseController reach the underlying writer.
type sessionWriter struct {
	http.ResponseWriter
	onHeader func(status int, h http.Header)

	mu     sync.Mutex
	status int // 0 until the header is written
}

func (w *sessionWriter) WriteHeader(code int) {
	w.mu.Lock()
	first := w.status == 0
	if first {
		w.status = code
		if w.onHeader != nil {
			w.onHeader(code, w.ResponseWriter.Header())
		}
	}
	w.mu.Unlock()
	if first {
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *sessionWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK) // no-op after the first call, like net/http
	return w.ResponseWriter.Write(p)
}

// Flush sends buffered data; like net/http, it commits the header first.
func (w *sessionWriter) Flush() {
	w.WriteHeader(http.StatusOK)
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *sessionWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Status returns the status written so far (0: none yet).
func (w *sessionWriter) Status() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status
}
