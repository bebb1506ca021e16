package web

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/store"
)

// auditPageSize is how many events one page of the activity and audit
// lists shows.
const auditPageSize = 50

type typeChoice struct{ Type, Label string }

// auditData drives both the user's activity page and the admin audit log.
type auditData struct {
	Events []store.AuditEvent
	Names  map[string]string // user id → email (admin view); nil on the activity page
	Admin  bool              // show the user column and the admin filters

	Types   []typeChoice
	Type    string
	Outcome string
	User    string // email filter (admin)
	Since   string // since filter (admin)
	Sinces  []typeChoice

	FirstPage string // URL of the newest page, when not on it
	NextPage  string // URL of the next (older) page, when there is one
	Filtered  bool
}

var sinceChoices = []struct {
	Value, Label string
	D            time.Duration
}{
	{"", "Any time", 0},
	{"1h", "Last hour", time.Hour},
	{"24h", "Last 24 hours", 24 * time.Hour},
	{"7d", "Last 7 days", 7 * 24 * time.Hour},
	{"30d", "Last 30 days", 30 * 24 * time.Hour},
}

func eventTypeChoices() []typeChoice {
	out := make([]typeChoice, 0, len(eventTypes))
	for _, e := range eventTypes {
		out = append(out, typeChoice{e.Type, e.Label})
	}
	return out
}

// beforeID reads the keyset cursor; anything but a positive integer is
// the first page.
func beforeID(q url.Values) int64 {
	n, err := strconv.ParseInt(q.Get("before"), 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	return n
}

// page fetches one page of events with f (Limit and BeforeID set here)
// and fills the paging links; base holds the filter parameters.
func (h *Handler) auditPage(r *http.Request, f store.AuditFilter, d *auditData, path string, base url.Values) error {
	f.Limit = auditPageSize + 1
	f.BeforeID = beforeID(r.URL.Query())
	events, err := h.opts.Store.ListAudit(r.Context(), f)
	if err != nil {
		return err
	}
	if len(events) > auditPageSize {
		events = events[:auditPageSize]
		next := cloneValues(base)
		next.Set("before", strconv.FormatInt(events[len(events)-1].ID, 10))
		d.NextPage = path + "?" + next.Encode()
	}
	if f.BeforeID != 0 {
		d.FirstPage = path
		if q := base.Encode(); q != "" {
			d.FirstPage += "?" + q
		}
	}
	d.Events = events
	return nil
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// activity lists the caller's own audit events, newest first.
func (h *Handler) activity(w http.ResponseWriter, r *http.Request, c *caller) {
	q := r.URL.Query()
	d := auditData{Types: eventTypeChoices()}
	f := store.AuditFilter{UserID: c.user.ID}
	base := url.Values{}
	if t := q.Get("type"); knownEventType(t) {
		d.Type, f.Type, d.Filtered = t, t, true
		base.Set("type", t)
	}
	if err := h.auditPage(r, f, &d, "/account/activity", base); err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	h.page(w, r, c, http.StatusOK, "activity", "activity", "Activity", d, "")
}

// adminAudit is the full audit log with filters.
func (h *Handler) adminAudit(w http.ResponseWriter, r *http.Request, c *caller) {
	q := r.URL.Query()
	d := auditData{Types: eventTypeChoices(), Admin: true}
	for _, s := range sinceChoices {
		d.Sinces = append(d.Sinces, typeChoice{s.Value, s.Label})
	}
	f := store.AuditFilter{}
	base := url.Values{}
	if t := q.Get("type"); knownEventType(t) {
		d.Type, f.Type, d.Filtered = t, t, true
		base.Set("type", t)
	}
	if o := q.Get("outcome"); o == store.OutcomeAllow || o == store.OutcomeDeny {
		d.Outcome, f.Outcome, d.Filtered = o, o, true
		base.Set("outcome", o)
	}
	for _, s := range sinceChoices {
		if s.Value != "" && s.Value == q.Get("since") {
			d.Since, d.Filtered = s.Value, true
			f.Since = h.now().Add(-s.D)
			base.Set("since", s.Value)
		}
	}
	users, err := h.opts.Users.List(r.Context())
	if err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	d.Names = make(map[string]string, len(users))
	for _, u := range users {
		d.Names[u.ID] = u.Email
	}
	if email := strings.TrimSpace(q.Get("user")); email != "" {
		d.User, d.Filtered = truncate(email, 254), true
		var u store.User
		var err error
		if strings.Contains(email, "@") {
			u, err = h.opts.Users.Get(r.Context(), email)
		} else {
			err = &identity.ValidationError{Field: "email", Message: "is not a valid email address"}
		}
		switch {
		case err == nil:
			f.UserID = u.ID
			base.Set("user", u.Email)
		case errors.Is(err, store.ErrNotFound):
			h.page(w, r, c, http.StatusOK, "audit", "audit", "Audit log", d, "No user has the email address "+d.User+".")
			return
		default:
			if _, ok := errors.AsType[*identity.ValidationError](err); ok {
				h.page(w, r, c, http.StatusOK, "audit", "audit", "Audit log", d, "Filter by a full email address, for example alice@example.com.")
				return
			}
			h.unavailable(w, r, c, err)
			return
		}
	}
	if err := h.auditPage(r, f, &d, "/admin/audit", base); err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	h.page(w, r, c, http.StatusOK, "audit", "audit", "Audit log", d, "")
}
