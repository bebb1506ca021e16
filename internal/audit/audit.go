// Package audit records every security decision in the append-only audit
// table. Record is the one entry point: handlers and middleware describe the
// decision, the Writer stamps the time and the request's client IP and user
// agent, and batches the rows into the store.
package audit

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/store"
)

// Event is one audit row.
type Event = store.AuditEvent

// Event types.
const (
	TypeUserCreated    = "user.created"
	TypeUserDisabled   = "user.disabled"
	TypeUserEnabled    = "user.enabled"
	TypeUserPassword   = "user.password_changed"
	TypeKeyCreated     = "key.created"
	TypeKeyRevoked     = "key.revoked"
	TypeAuthRejected   = "auth.rejected"
	TypeToolCalled     = "tool.called"
	TypeToolDenied     = "tool.denied"
	TypeSessionRefused = "mcp.session_refused"

	TypeUserRoles      = "user.roles_changed"
	TypeLoginSucceeded = "login.succeeded"
	TypeLoginFailed    = "login.failed"
	TypeLogout         = "logout"
	TypeSessionCreated = "session.created"
	TypeSessionRevoked = "session.revoked"
	TypeSessionExpired = "session.expired"
)

// Reasons for rejected requests. They are precise on purpose: clients are told
// only "invalid_token", the audit log tells the operator why.
const (
	ReasonMissing         = "missing"
	ReasonMalformed       = "malformed"
	ReasonUnknown         = "unknown"
	ReasonRevoked         = "revoked"
	ReasonExpired         = "expired"
	ReasonDisabledUser    = "disabled_user"
	ReasonOrigin          = "origin"
	ReasonQueryCredential = "query_credential"
	ReasonAmbiguous       = "ambiguous_credentials"
	ReasonMissingScopes   = "missing_scopes"
	ReasonMissingRoles    = "missing_roles" // tool.denied: the user lacks a role the tool requires
	ReasonSessionOwner    = "session_owner_mismatch"

	// login.failed
	ReasonUnknownUser  = "unknown_user"
	ReasonBadPassword  = "bad_password"
	ReasonRateLimited  = "rate_limited"
	ReasonInvalidInput = "invalid_input"
	// (ReasonDisabledUser is shared with auth.rejected.)

	// auth.rejected on cookie-authenticated routes
	ReasonCSRF           = "csrf"            // cross-origin state-changing request with a session cookie
	ReasonInvalidSession = "invalid_session" // session cookie unknown, forged, expired or revoked
)

// Recorder is what components depend on; *Writer implements it.
type Recorder interface {
	Record(ctx context.Context, e Event)
}

// Options configure a Writer.
type Options struct {
	Logger    *slog.Logger
	Now       func() time.Time
	Buffer    int           // queued events before Record blocks; default 4096
	BatchSize int           // rows per insert transaction; default 256
	Interval  time.Duration // longest time an event waits in the queue; default 200ms
	OnEvent   func(e Event) // called synchronously for every event (metrics)
}

// Writer batches events into the store from one goroutine. Record never
// drops an event: when the queue is full it waits (an audit trail with holes
// is worse than a slow request).
type Writer struct {
	st   store.Store
	opts Options
	ch   chan Event
	sync chan chan struct{}
	done chan struct{}
	stop chan struct{}

	mu     sync.RWMutex // guards closed; see Record
	closed bool
}

// NewWriter starts a writer; Close stops it after writing what is queued.
func NewWriter(st store.Store, opts Options) *Writer {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 4096
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 256
	}
	if opts.Interval <= 0 {
		opts.Interval = 200 * time.Millisecond
	}
	w := &Writer{
		st:   st,
		opts: opts,
		ch:   make(chan Event, opts.Buffer),
		sync: make(chan chan struct{}),
		done: make(chan struct{}),
		stop: make(chan struct{}),
	}
	go w.loop()
	return w
}

// Record stamps e with the time and the request's client IP and user agent
// (unless already set) and queues it.
func (w *Writer) Record(ctx context.Context, e Event) {
	if e.Time.IsZero() {
		e.Time = w.opts.Now()
	}
	info := httpx.InfoFrom(ctx)
	if e.ClientIP == "" {
		e.ClientIP = info.ClientIP
	}
	if e.UserAgent == "" {
		e.UserAgent = info.UserAgent
	}
	if w.opts.OnEvent != nil {
		w.opts.OnEvent(e)
	}
	// The read lock orders every send before Close's drain: once closed is
	// set no send can start, and every send that started has landed in the
	// channel, which the loop drains before it exits.
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		// Closed: write directly so nothing is lost during shutdown races.
		w.write([]Event{e})
		return
	}
	w.ch <- e
}

// Flush waits until every event recorded before the call is in the store.
func (w *Writer) Flush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case w.sync <- ack:
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close writes everything queued and stops the writer. Events recorded
// after Close are written synchronously.
func (w *Writer) Close() {
	w.mu.Lock()
	already := w.closed
	w.closed = true
	w.mu.Unlock()
	if already {
		<-w.done
		return
	}
	close(w.stop)
	<-w.done
}

func (w *Writer) loop() {
	defer close(w.done)
	ticker := time.NewTicker(w.opts.Interval)
	defer ticker.Stop()
	batch := make([]Event, 0, w.opts.BatchSize)
	flush := func() {
		if len(batch) > 0 {
			w.write(batch)
			batch = batch[:0]
		}
	}
	drain := func() {
		for {
			select {
			case e := <-w.ch:
				batch = append(batch, e)
				if len(batch) >= w.opts.BatchSize {
					flush()
				}
			default:
				flush()
				return
			}
		}
	}
	for {
		select {
		case e := <-w.ch:
			batch = append(batch, e)
			if len(batch) >= w.opts.BatchSize {
				flush()
			}
		case <-ticker.C:
			flush()
		case ack := <-w.sync:
			drain()
			close(ack)
		case <-w.stop:
			drain()
			return
		}
	}
}

// write stores a batch, retrying once; a batch that still fails is logged
// with its events' types and reasons (never secrets: events hold none).
func (w *Writer) write(batch []Event) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := w.st.AppendAudit(ctx, batch)
	if err != nil {
		time.Sleep(100 * time.Millisecond)
		err = w.st.AppendAudit(ctx, batch)
	}
	if err != nil {
		for _, e := range batch {
			w.opts.Logger.Error("audit event not stored", "err", err, "type", e.Type, "outcome", e.Outcome, "reason", e.Reason, "user", e.UserID)
		}
	}
}
