// Package web serves mcpgate's HTML pages: login and logout, the account
// area (overview, API keys, browser sessions, activity, password) and the
// admin area (users, audit log).
//
// Pages are rendered on the server with html/template from embedded files;
// one small stylesheet and one small script (the copy button) are served
// under /static with content-hashed names. Everything works without
// JavaScript: destructive actions go through a confirmation page.
//
// Security, in one place (wrap):
//   - every state-changing request passes net/http.CrossOriginProtection
//     first; a cross-origin form post gets a readable 403 page;
//   - every page carries a strict Content-Security-Policy (no inline
//     script or style), X-Frame-Options DENY and Cache-Control no-store;
//   - request bodies are parsed with a size cap; user text is escaped by
//     html/template and echoed back truncated.
//
// The handlers authenticate with the session cookie through
// session.Manager.Current and never parse credentials themselves; the
// caller is put into the request context as a principal (Method
// "session"), so the services' audit events name the acting user.
package web

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
)

// Options configure the pages. Sessions, Users, Keys and Store are
// required.
type Options struct {
	Sessions *session.Manager
	Users    *identity.Service
	Keys     *apikeys.Service
	Store    store.Store
	// GrantableScopes are the scopes a user may put on a key: the
	// resource scopes and "account". They are offered as checkboxes, in
	// this order, and nothing else is accepted.
	GrantableScopes []string
	// MCPURL is the MCP endpoint users paste into their clients.
	MCPURL string
	Logger *slog.Logger
	// Audit, when set, records cross-origin form posts refused on a live
	// session as auth.rejected (reason csrf), like authn does for the JSON
	// API. Everything else is audited by the services the pages call.
	Audit audit.Recorder
	// LoginProviders are the upstream identity providers the login page
	// offers as "Continue with <DisplayName>" (/login/upstream/{Name}).
	LoginProviders []LoginProvider
	// CustomLogin, when set, adds "Continue with <DisplayName>" for the
	// operator's own login application (/login/custom).
	CustomLogin *CustomLogin
	// IdentitySources name the external identity sources (upstream
	// providers, the custom login, trusted token issuers) by the issuer
	// their accounts are linked under, so that pages say "Instance B"
	// rather than an issuer URL.
	IdentitySources []IdentitySource
}

// CustomLogin is the operator's login application as the login page shows
// it. Only: /login goes straight there, except /login?local=1, the
// password form for local accounts (administrators).
type CustomLogin struct {
	DisplayName string
	Only        bool
}

// LoginProvider is an upstream identity provider as the login page shows it.
type LoginProvider struct{ Name, DisplayName string }

// RoleAdmin is the role that opens the admin area.
const RoleAdmin = "admin"

// ScopeAccount is the scope that lets a key manage the account through the
// JSON API.
const ScopeAccount = "account"

// ContentSecurityPolicy is sent with every page: scripts, styles and
// images only from this origin (so no inline script or style), no framing,
// forms only post here, no <base>.
const ContentSecurityPolicy = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"

// maxFormBytes caps a form body. It is well above what a form with two
// 1 MiB password fields (new + repeat) needs, so an oversized field gets
// the field's own message (for a password: the length policy) rather than
// a generic refusal; anything bigger gets a readable 413 page.
const maxFormBytes = 4 << 20

// Handler serves the pages. Build it with New and mount it with Routes.
type Handler struct {
	opts   Options
	log    *slog.Logger
	pages  *pages
	static *staticFiles
	cop    *http.CrossOriginProtection
	forms  *onceSet
	now    func() time.Time
	// oauth is the authorization server once OAuthRoutes mounted it: the
	// overview and the key form say which sign-in claims its tokens carry.
	oauth OAuth
}

// New builds the handler. It panics when a required option is missing or
// an embedded template does not parse (a programming error).
func New(opts Options) *Handler {
	if opts.Sessions == nil || opts.Users == nil || opts.Keys == nil || opts.Store == nil {
		panic("web.New: Sessions, Users, Keys and Store are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.GrantableScopes = slices.Clone(opts.GrantableScopes)
	h := &Handler{
		opts:   opts,
		log:    opts.Logger,
		static: loadStatic(),
		cop:    http.NewCrossOriginProtection(),
		forms:  newOnceSet(time.Hour, 100_000),
		now:    time.Now,
	}
	h.pages = loadPages(h.static)
	return h
}

// Routes mounts the pages on mux. Paths are registered without a method so
// that a wrong method gets a readable 405 page (with Allow) instead of the
// mux's plain-text one.
func (h *Handler) Routes(mux *http.ServeMux) {
	type m = methods
	h.route(mux, "/{$}", m{get: h.root})
	mux.Handle("/static/{file}", h.secure(http.HandlerFunc(h.serveStatic)))

	h.route(mux, "/login", m{get: h.loginForm, post: h.login})
	h.route(mux, "/logout", m{post: h.logout})

	h.route(mux, "/account", m{get: h.user(h.overview)})
	h.route(mux, "/account/keys", m{get: h.user(h.keyList), post: h.user(h.keyCreate)})
	h.route(mux, "/account/keys/new", m{get: h.user(h.keyNew)})
	h.route(mux, "/account/keys/{id}/revoke", m{get: h.user(h.keyRevokeConfirm), post: h.user(h.keyRevoke)})
	h.route(mux, "/account/sessions", m{get: h.user(h.sessionList)})
	h.route(mux, "/account/sessions/{id}/revoke", m{get: h.user(h.sessionRevokeConfirm), post: h.user(h.sessionRevoke)})
	h.route(mux, "/account/sessions/revoke-others", m{get: h.user(h.sessionRevokeOthersConfirm), post: h.user(h.sessionRevokeOthers)})
	h.route(mux, "/account/activity", m{get: h.user(h.activity)})
	h.route(mux, "/account/password", m{get: h.user(h.passwordForm), post: h.user(h.passwordChange)})

	h.route(mux, "/admin", m{get: h.admin(func(w http.ResponseWriter, r *http.Request, _ *caller) {
		http.Redirect(w, r, "/admin/users", http.StatusSeeOther)
	})})
	h.route(mux, "/admin/users", m{get: h.admin(h.adminUsers), post: h.admin(h.adminUserCreate)})
	h.route(mux, "/admin/users/new", m{get: h.admin(h.adminUserNew)})
	h.route(mux, "/admin/users/{id}", m{get: h.admin(h.adminUser)})
	h.route(mux, "/admin/users/{id}/roles", m{post: h.admin(h.adminUserRoles)})
	h.route(mux, "/admin/users/{id}/disable", m{get: h.admin(h.adminUserDisableConfirm), post: h.admin(h.adminUserDisable)})
	h.route(mux, "/admin/users/{id}/enable", m{post: h.admin(h.adminUserEnable)})
	h.route(mux, "/admin/users/{id}/reset-password", m{get: h.admin(h.adminUserResetConfirm), post: h.admin(h.adminUserReset)})
	h.route(mux, "/admin/audit", m{get: h.admin(h.adminAudit)})

	// Anything else under the HTML areas is a readable 404.
	notFound := methods{any: h.notFound}
	h.route(mux, "/account/", notFound)
	h.route(mux, "/admin/", notFound)
}

// methods maps request methods to handlers; any, when set, takes every
// method.
type methods struct {
	get, post, any http.HandlerFunc
}

// route mounts one path with per-method handlers behind the security
// wrapper.
func (h *Handler) route(mux *http.ServeMux, pattern string, ms methods) {
	mux.Handle(pattern, h.secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case ms.any != nil:
			ms.any(w, r)
		case (r.Method == http.MethodGet || r.Method == http.MethodHead) && ms.get != nil:
			ms.get(w, r)
		case r.Method == http.MethodPost && ms.post != nil:
			ms.post(w, r)
		default:
			var allow []string
			if ms.get != nil {
				allow = append(allow, "GET", "HEAD")
			}
			if ms.post != nil {
				allow = append(allow, "POST")
			}
			w.Header().Set("Allow", strings.Join(allow, ", "))
			h.errorPage(w, r, nil, http.StatusMethodNotAllowed, "Method not allowed",
				"This address does not accept "+r.Method+" requests.")
		}
	})))
}

// secure sets the security headers of every response and refuses
// cross-origin state-changing requests before any handler runs.
func (h *Handler) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", ContentSecurityPolicy)
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cache-Control", "no-store")
		if err := h.cop.Check(r); err != nil {
			h.log.LogAttrs(r.Context(), slog.LevelWarn, "web: cross-origin request refused",
				slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.String("origin", truncate(r.Header.Get("Origin"), 200)),
				slog.String("sec_fetch_site", truncate(r.Header.Get("Sec-Fetch-Site"), 40)))
			// Show the page in the user's layout when they are signed in,
			// and record the attempt on their account. (Without a session
			// there is nobody to attack; the log line is enough.)
			var c *caller
			if cur, err := h.opts.Sessions.Current(r); err == nil {
				c = &caller{cur: cur, user: cur.User, admin: slices.Contains(cur.User.Roles, RoleAdmin)}
				if h.opts.Audit != nil {
					h.opts.Audit.Record(r.Context(), audit.Event{
						Type: audit.TypeAuthRejected, Outcome: store.OutcomeDeny, Reason: audit.ReasonCSRF,
						UserID: cur.User.ID, CredentialID: cur.Session.ID, Resource: truncate(r.URL.Path, 200),
						Details: map[string]any{
							"origin":         truncate(r.Header.Get("Origin"), 200),
							"sec_fetch_site": truncate(r.Header.Get("Sec-Fetch-Site"), 50),
							"method":         truncate(r.Method, 20),
						},
					})
				}
			}
			h.errorPage(w, r, c, http.StatusForbidden, "Request refused",
				"This form was sent from another website, so mcpgate refused it to protect your account. "+
					"If you were using mcpgate, go back, reload the page and try again.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// caller is the logged-in user of a request.
type caller struct {
	cur   *session.Current
	user  store.User
	admin bool
}

type callerHandler func(w http.ResponseWriter, r *http.Request, c *caller)

// user requires a live session. Without one, a GET goes to the login page
// (and comes back after it); other methods go to the login page with the
// section they came from.
func (h *Handler) user(next callerHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cur, err := h.opts.Sessions.Current(r)
		if errors.Is(err, session.ErrNoSession) {
			back := r.URL.RequestURI()
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				back = sectionOf(r.URL.Path)
			}
			http.Redirect(w, r, "/login?return_to="+url.QueryEscape(back), http.StatusSeeOther)
			return
		}
		if err != nil {
			h.unavailable(w, r, nil, err)
			return
		}
		c := &caller{cur: cur, user: cur.User, admin: slices.Contains(cur.User.Roles, RoleAdmin)}
		p := &principal.Principal{
			UserID: cur.User.ID, Email: cur.User.Email, Name: cur.User.DisplayName,
			Roles: slices.Clone(cur.User.Roles), Scopes: []string{ScopeAccount},
			Method: principal.MethodSession, CredentialID: cur.Session.ID, ExpiresAt: cur.Session.ExpiresAt,
		}
		next(w, r.WithContext(principal.With(r.Context(), p)), c)
	}
}

// admin requires a live session of a user with the admin role.
func (h *Handler) admin(next callerHandler) http.HandlerFunc {
	return h.user(func(w http.ResponseWriter, r *http.Request, c *caller) {
		if !c.admin {
			h.errorPage(w, r, c, http.StatusForbidden, "Administrators only",
				"This page is for administrators. Your account does not have the admin role; ask an administrator if you need access.")
			return
		}
		next(w, r, c)
	})
}

// sectionOf returns the page a form under path belongs to, for coming
// back after a login: /account/keys/x/revoke → /account/keys.
func sectionOf(path string) string {
	parts := strings.SplitN(strings.TrimPrefix(path, "/"), "/", 3)
	switch {
	case len(parts) >= 2 && (parts[0] == "account" || parts[0] == "admin") && parts[1] != "":
		return "/" + parts[0] + "/" + parts[1]
	case len(parts) >= 1 && parts[0] == "admin":
		return "/admin/users"
	}
	return "/account"
}

// root sends visitors to their account, or to the login page.
func (h *Handler) root(w http.ResponseWriter, r *http.Request) {
	if _, err := h.opts.Sessions.Current(r); err == nil {
		http.Redirect(w, r, "/account", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request) {
	var c *caller
	if cur, err := h.opts.Sessions.Current(r); err == nil {
		c = &caller{cur: cur, user: cur.User, admin: slices.Contains(cur.User.Roles, RoleAdmin)}
	}
	h.errorPage(w, r, c, http.StatusNotFound, "Page not found", "There is no page at this address.")
}

// clientIP is the request's client address as the audit log sees it.
func clientIP(r *http.Request) string {
	if ip := httpx.InfoFrom(r.Context()).ClientIP; ip != "" {
		return ip
	}
	return httpx.ClientIP(r)
}

// parseForm reads a POST body of at most maxFormBytes. On failure it has
// answered (413 or 400) and returns false.
func (h *Handler) parseForm(w http.ResponseWriter, r *http.Request, c *caller) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			h.errorPage(w, r, c, http.StatusRequestEntityTooLarge, "Form too large",
				"The form you sent is larger than mcpgate accepts. Shorten what you typed and try again.")
			return false
		}
		h.errorPage(w, r, c, http.StatusBadRequest, "Unreadable form",
			"mcpgate could not read the form you sent. Go back, reload the page and try again.")
		return false
	}
	return true
}

// unavailable answers a storage failure: the store or a service could not
// answer. The error goes to the log, not to the page.
func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request, c *caller, err error) {
	if errors.Is(err, context.Canceled) {
		return // the client went away
	}
	h.log.LogAttrs(r.Context(), slog.LevelError, "web: request failed",
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
	w.Header().Set("Retry-After", "5")
	h.errorPage(w, r, c, http.StatusServiceUnavailable, "Temporarily unavailable",
		"mcpgate could not complete this request right now. Please try again in a moment.")
}

// truncate shortens s to at most n runes (for echoing input back).
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}
