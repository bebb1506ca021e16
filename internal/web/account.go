package web

import (
	"context"
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/customauth"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

type overviewData struct {
	MCPURL      string
	ActiveKeys  int
	SessionKeys int
	Sessions    int
	// PreviousLogin is the sign-in before the one of this session (zero
	// when there was none): a quick way to notice someone else's.
	PreviousLogin store.AuditEvent
	// SignIn: the roles and claims this session's sign-in brought; nil
	// when none.
	SignIn *signIn
}

// signInTypes are the audit events of a successful sign-in: with a
// password, through an upstream provider, through the custom login.
var signInTypes = []string{audit.TypeLoginSucceeded, upstream.TypeLogin, customauth.TypeCompleted}

// previousSignIn is the newest sign-in clearly older than the caller's
// session (zero when there is none). This session's own event may not be
// written yet (the audit log is batched), hence "clearly".
func (h *Handler) previousSignIn(ctx context.Context, c *caller) (store.AuditEvent, error) {
	var prev store.AuditEvent
	before := c.cur.Session.CreatedAt.Add(-2 * time.Second)
	for _, t := range signInTypes {
		events, err := h.opts.Store.ListAudit(ctx, store.AuditFilter{UserID: c.user.ID, Type: t, Outcome: store.OutcomeAllow, Limit: 5})
		if err != nil {
			return store.AuditEvent{}, err
		}
		for _, e := range events {
			if e.Time.Before(before) {
				if e.Time.After(prev.Time) {
					prev = e
				}
				break
			}
		}
	}
	return prev, nil
}

// overview: who you are, what you hold, where MCP clients connect.
func (h *Handler) overview(w http.ResponseWriter, r *http.Request, c *caller) {
	keys, err := h.opts.Keys.List(r.Context(), c.user.ID)
	if err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	sessions, err := h.opts.Sessions.List(r.Context(), c.user.ID)
	if err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	d := overviewData{MCPURL: h.opts.MCPURL, Sessions: len(sessions)}
	now := h.now()
	for _, k := range keys {
		if k.Active(now) {
			d.ActiveKeys++
			if k.SessionID != "" {
				d.SessionKeys++
			}
		}
	}
	if d.PreviousLogin, err = h.previousSignIn(r.Context(), c); err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	if d.SignIn, err = h.signInOf(r.Context(), c); err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	h.page(w, r, c, http.StatusOK, "overview", "overview", "Your account", d, "")
}
