package api

import (
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/store"
)

// Audit listing limits.
const (
	defaultAuditLimit = 50
	maxAuditLimit     = 1000
	maxAuditType      = 64
)

// auditJSON is an audit event as the API shows it (the same shape as the
// CLI's `mcpgate audit list --json`).
type auditJSON struct {
	ID           int64          `json:"id"`
	Time         time.Time      `json:"time"`
	Type         string         `json:"type"`
	Outcome      string         `json:"outcome"`
	Reason       string         `json:"reason,omitempty"`
	UserID       string         `json:"user_id,omitempty"`
	CredentialID string         `json:"credential_id,omitempty"`
	ClientIP     string         `json:"client_ip,omitempty"`
	UserAgent    string         `json:"user_agent,omitempty"`
	Resource     string         `json:"resource,omitempty"`
	Tool         string         `json:"tool,omitempty"`
	Details      map[string]any `json:"details,omitempty"`
}

// listAudit serves GET /api/audit?type=&outcome=&before=&limit=&user=:
// the caller's own events, newest first; admins see every user's events
// and may filter by user. Pages: pass the next_before of one answer as
// before of the next.
func (a *API) listAudit(w http.ResponseWriter, r *http.Request) {
	p := principal.From(r.Context())
	f, e := a.auditFilter(p, r)
	if e != nil {
		writeError(w, e)
		return
	}
	events, err := a.opts.Store.ListAudit(r.Context(), f)
	if err != nil {
		writeError(w, a.unavailable(err))
		return
	}
	out := make([]auditJSON, 0, len(events))
	for _, ev := range events {
		out = append(out, auditJSON{
			ID: ev.ID, Time: ev.Time.UTC(), Type: ev.Type, Outcome: ev.Outcome, Reason: ev.Reason,
			UserID: ev.UserID, CredentialID: ev.CredentialID, ClientIP: ev.ClientIP, UserAgent: ev.UserAgent,
			Resource: ev.Resource, Tool: ev.Tool, Details: ev.Details,
		})
	}
	resp := map[string]any{"events": out}
	if len(events) == f.Limit && len(events) > 0 {
		resp["next_before"] = events[len(events)-1].ID
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *API) auditFilter(p *principal.Principal, r *http.Request) (store.AuditFilter, *apiError) {
	q := r.URL.Query()
	f := store.AuditFilter{Limit: defaultAuditLimit}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxAuditLimit {
			return f, queryField("limit", "limit must be a whole number from 1 to %d", maxAuditLimit)
		}
		f.Limit = n
	}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return f, queryField("before", "before must be an event id (a positive whole number)")
		}
		f.BeforeID = n
	}
	if v := q.Get("type"); v != "" {
		if len(v) > maxAuditType || !printableASCII(v) {
			return f, queryField("type", "type must be an event type such as key.created")
		}
		f.Type = v
	}
	switch v := q.Get("outcome"); v {
	case "", store.OutcomeAllow, store.OutcomeDeny:
		f.Outcome = v
	default:
		return f, queryField("outcome", "outcome must be allow or deny")
	}
	user := q.Get("user")
	admin := slices.Contains(p.Roles, AdminRole)
	switch {
	case admin && user != "":
		if !validID(user, "usr") {
			return f, queryField("user", "user must be a user id (usr_…)")
		}
		f.UserID = user
	case admin:
		// every user's events
	case user != "" && user != p.UserID:
		return f, errorf(http.StatusForbidden, codeForbidden, "only admins may read other users' events")
	default:
		f.UserID = p.UserID
	}
	return f, nil
}

func queryField(field, format string, args ...any) *apiError {
	return badField(field, format, args...)
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
