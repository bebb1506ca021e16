package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/store"
)

type sessionJSON struct {
	ID         string    `json:"id"`
	CreatedAt  time.Time `json:"created_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	IP         string    `json:"ip"`
	UserAgent  string    `json:"user_agent"`
	// Current marks the session the request came with (cookie callers).
	Current bool `json:"current"`
}

// listSessions serves GET /api/sessions: the caller's live browser
// sessions, newest first.
func (a *API) listSessions(w http.ResponseWriter, r *http.Request) {
	p := principal.From(r.Context())
	list, err := a.opts.Sessions.List(r.Context(), p.UserID)
	if err != nil {
		writeError(w, a.unavailable(err))
		return
	}
	current := ""
	if p.Method == principal.MethodSession {
		current = p.CredentialID
	}
	out := make([]sessionJSON, 0, len(list))
	for _, s := range list {
		out = append(out, sessionJSON{
			ID: s.ID, CreatedAt: s.CreatedAt.UTC(), LastSeenAt: s.LastSeenAt.UTC(), ExpiresAt: s.ExpiresAt.UTC(),
			IP: s.IP, UserAgent: s.UserAgent, Current: s.ID == current,
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": out})
}

// revokeSession serves DELETE /api/sessions/{id}: ends one of the caller's
// sessions with its MCP key. Another user's session, or an unknown id, is
// 404 and nothing changes. Ending the current session also clears its
// cookie (a logout).
func (a *API) revokeSession(w http.ResponseWriter, r *http.Request) {
	p := principal.From(r.Context())
	id := r.PathValue("id")
	notFound := errorf(http.StatusNotFound, codeNotFound, "you have no session with this id")
	if !validID(id, "ses") {
		writeError(w, notFound)
		return
	}
	err := a.opts.Sessions.Revoke(r.Context(), p.UserID, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, notFound)
		return
	case err != nil:
		writeError(w, a.unavailable(err))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if p.Method == principal.MethodSession && p.CredentialID == id {
		// Already revoked above; this clears the cookie.
		if err := a.opts.Sessions.End(r.Context(), w, r); err != nil {
			a.log.Warn("api: clearing the cookie of a revoked session", "err", err)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}
