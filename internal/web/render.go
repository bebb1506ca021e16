package web

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/mcpgate/mcpgate/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

// view is what every page template receives.
type view struct {
	Title   string
	Section string // the active navigation entry: "overview", "keys", …
	User    *store.User
	Admin   bool
	Notice  string // a success message (fixed text, never user input)
	Error   string // a page-level error message
	Data    any
}

// pages holds one parsed template set per page: the layout plus the page.
type pages struct {
	byName map[string]*template.Template
}

func loadPages(st *staticFiles) *pages {
	funcs := templateFuncs(st)
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	p := &pages{byName: map[string]*template.Template{}}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t := template.Must(template.Must(base.Clone()).ParseFS(templateFS, n))
		p.byName[name] = t
	}
	return p
}

// render executes a page into a buffer first, so a template failure never
// sends half a page.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, v view) {
	t, ok := h.pages.byName[name]
	if !ok {
		h.log.Error("web: no such page template", "page", name)
		writeFallback(w)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		h.log.LogAttrs(r.Context(), slog.LevelError, "web: rendering a page failed",
			slog.String("page", name), slog.Any("err", err))
		writeFallback(w)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// page renders a page of the logged-in area.
func (h *Handler) page(w http.ResponseWriter, r *http.Request, c *caller, status int, name, section, title string, data any, errMsg string) {
	v := view{Title: title, Section: section, Error: errMsg, Data: data}
	v.setCaller(c)
	v.setNotice(r)
	h.render(w, r, status, name, v)
}

func (v *view) setCaller(c *caller) {
	if c != nil {
		u := c.user
		v.User = &u
		v.Admin = c.admin
	}
}

type errorData struct {
	Status  int
	Message string
}

// errorPage renders a readable error in the site's layout.
func (h *Handler) errorPage(w http.ResponseWriter, r *http.Request, c *caller, status int, title, msg string) {
	v := view{Title: title, Data: errorData{Status: status, Message: msg}}
	v.setCaller(c)
	h.render(w, r, status, "error", v)
}

// writeFallback is the answer when a template itself fails: plain,
// static, still HTML.
func writeFallback(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write([]byte(`<!doctype html><html lang="en"><meta charset="utf-8"><title>Error · mcpgate</title>` +
		`<h1>Something went wrong</h1><p>mcpgate could not show this page. Please try again.</p></html>`))
}

// notices are the success messages a redirect can ask for with ?done=.
// Only these fixed texts are ever shown, so the parameter cannot inject
// content.
var notices = map[string]string{
	"signed_out":             "You have been signed out.",
	"key_revoked":            "The API key was revoked. Clients using it are refused from now on.",
	"key_already_revoked":    "That API key was already revoked.",
	"key_already_created":    "This form was already submitted: the key was created and its secret was shown once. If you did not copy it, revoke the key and create a new one.",
	"session_revoked":        "The session was signed out.",
	"sessions_revoked":       "All your other sessions were signed out.",
	"no_other_sessions":      "There were no other sessions to sign out.",
	"password_changed":       "Your password was changed. All your other sessions were signed out; this browser stays signed in with a new session.",
	"user_created":           "The user was created.",
	"user_disabled":          "The user was disabled and all their sessions were ended. Their API keys stop working at once.",
	"user_enabled":           "The user was enabled again.",
	"roles_saved":            "The roles were saved.",
	"roles_unchanged":        "The roles were already set that way.",
	"user_already_disabled":  "The user was already disabled.",
	"password_reset_no_self": "To change your own password, use this page.",
}

func (v *view) setNotice(r *http.Request) {
	if msg, ok := notices[r.URL.Query().Get("done")]; ok {
		v.Notice = msg
	}
}
