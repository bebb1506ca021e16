package web

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/mcpgate/mcpgate/internal/store"
)

type sessionRow struct {
	store.Session
	Current bool
}

type sessionListData struct {
	Sessions []sessionRow
	Others   int
}

func (h *Handler) sessionList(w http.ResponseWriter, r *http.Request, c *caller) {
	list, err := h.opts.Sessions.List(r.Context(), c.user.ID)
	if err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	var d sessionListData
	// The current session first, then the others newest first.
	for _, s := range list {
		if s.ID == c.cur.Session.ID {
			d.Sessions = append([]sessionRow{{Session: s, Current: true}}, d.Sessions...)
		} else {
			d.Sessions = append(d.Sessions, sessionRow{Session: s})
			d.Others++
		}
	}
	h.page(w, r, c, http.StatusOK, "sessions", "sessions", "Sessions", d, "")
}

// ownSession loads one of the caller's live sessions.
func (h *Handler) ownSession(w http.ResponseWriter, r *http.Request, c *caller) (store.Session, bool) {
	id := r.PathValue("id")
	list, err := h.opts.Sessions.List(r.Context(), c.user.ID)
	if err != nil {
		h.unavailable(w, r, c, err)
		return store.Session{}, false
	}
	for _, s := range list {
		if s.ID == id {
			return s, true
		}
	}
	h.errorPage(w, r, c, http.StatusNotFound, "Session not found",
		"There is no active session with this id in your account. It may have ended already.")
	return store.Session{}, false
}

func (h *Handler) sessionRevokeConfirm(w http.ResponseWriter, r *http.Request, c *caller) {
	s, ok := h.ownSession(w, r, c)
	if !ok {
		return
	}
	d := confirmData{
		Heading: "Sign out this session?",
		Message: "The browser using this session is signed out at once, and the MCP credential of the session is revoked with it.",
		Facts: []detail{{"Device", Device(s.UserAgent)}, {"IP address", s.IP},
			{"Signed in", fullDate(s.CreatedAt)}, {"Last seen", fullDate(s.LastSeenAt)}},
		Action: "/account/sessions/" + s.ID + "/revoke", Button: "Sign out session", Cancel: "/account/sessions", Danger: true,
	}
	if s.ID == c.cur.Session.ID {
		d.Heading = "Sign out of this browser?"
		d.Message = "This is the session you are using now: you will be signed out here."
		d.Button = "Sign out"
	}
	h.page(w, r, c, http.StatusOK, "confirm", "sessions", "Sign out session", d, "")
}

func (h *Handler) sessionRevoke(w http.ResponseWriter, r *http.Request, c *caller) {
	id := r.PathValue("id")
	if id == c.cur.Session.ID {
		h.logout(w, r)
		return
	}
	err := h.opts.Sessions.Revoke(r.Context(), c.user.ID, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.errorPage(w, r, c, http.StatusNotFound, "Session not found",
			"There is no session with this id in your account.")
		return
	case err != nil:
		h.unavailable(w, r, c, err)
		return
	}
	http.Redirect(w, r, "/account/sessions?done=session_revoked", http.StatusSeeOther)
}

func (h *Handler) sessionRevokeOthersConfirm(w http.ResponseWriter, r *http.Request, c *caller) {
	list, err := h.opts.Sessions.List(r.Context(), c.user.ID)
	if err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	others := 0
	for _, s := range list {
		if s.ID != c.cur.Session.ID {
			others++
		}
	}
	if others == 0 {
		http.Redirect(w, r, "/account/sessions?done=no_other_sessions", http.StatusSeeOther)
		return
	}
	h.page(w, r, c, http.StatusOK, "confirm", "sessions", "Sign out other sessions", confirmData{
		Heading: "Sign out all other sessions?",
		Message: "Every other browser signed in to your account is signed out at once, and their MCP credentials are revoked. This browser stays signed in.",
		Facts:   []detail{{"Other sessions", plural(others, "session", "sessions")}},
		Action:  "/account/sessions/revoke-others", Button: "Sign out other sessions", Cancel: "/account/sessions", Danger: true,
	}, "")
}

func (h *Handler) sessionRevokeOthers(w http.ResponseWriter, r *http.Request, c *caller) {
	n, err := h.opts.Sessions.RevokeOthers(r.Context(), c.user.ID, c.cur.Session.ID)
	if err != nil {
		h.unavailable(w, r, c, err)
		return
	}
	if n == 0 {
		http.Redirect(w, r, "/account/sessions?done=no_other_sessions", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/account/sessions?done=sessions_revoked", http.StatusSeeOther)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
