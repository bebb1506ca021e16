package web

import (
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/store"
)

type overviewData struct {
	MCPURL      string
	ActiveKeys  int
	SessionKeys int
	Sessions    int
	// PreviousLogin is the sign-in before the one of this session (zero
	// when there was none): a quick way to notice someone else's.
	PreviousLogin store.AuditEvent
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
	// The newest login.succeeded events; the first one clearly older than
	// this session is the previous sign-in. (This session's own event may
	// not be written yet: the audit log is batched.)
	logins, err := h.opts.Store.ListAudit(r.Context(), store.AuditFilter{UserID: c.user.ID, Type: audit.TypeLoginSucceeded, Limit: 5})
	if err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	for _, e := range logins {
		if e.Time.Before(c.cur.Session.CreatedAt.Add(-2 * time.Second)) {
			d.PreviousLogin = e
			break
		}
	}
	h.page(w, r, c, http.StatusOK, "overview", "overview", "Your account", d, "")
}
