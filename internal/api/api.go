// Package api is mcpgate's JSON API for web applications and scripts:
// JSON login and logout, the MCP credential of a browser session, a JSON
// facade for calling MCP tools as the user, account management (API
// keys, sessions, connected OAuth apps, audit events), and the simple
// token login for scripts (/auth/login, /auth/status). docs/api.md
// documents it for users, and
// GET /api/openapi.json describes it (openapi.json, kept in step with the
// route table below by a test).
//
// Authentication is never done here: authn.Authenticator.Account turns a
// session cookie or an API key with the account scope into a principal,
// session.Manager and identity.Service log users in and out, and the
// facade's MCP client goes through mcpgate's own /mcp handler chain. Every
// security-relevant event is audited by those services.
package api

import (
	_ "embed"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
)

// Options configure the API. Every field but the scope lists, the trusted
// origins, Apps and the logger is required.
type Options struct {
	Sessions *session.Manager
	Users    *identity.Service
	Keys     *apikeys.Service
	Store    store.Store
	Authn    *authn.Authenticator
	// MCPHandler is mcpgate's own /mcp handler chain, authn.Middleware
	// included; the tools facade sends its MCP requests through it
	// in-process.
	MCPHandler http.Handler
	// MCPURL is the public URL of the MCP endpoint (returned with session
	// credentials, and the facade's client endpoint).
	MCPURL string
	// GrantableScopes are the scopes users may put on the keys they create
	// through POST /api/api-keys.
	GrantableScopes []string
	// SessionKeyScopes are the scopes of a browser session's MCP key. The
	// account scope is never among them: the session key is for MCP
	// calls, and whoever holds it (a web app's agent) must not manage the
	// account.
	SessionKeyScopes []string
	// CSRFTrustedOrigins are origins whose cross-origin POSTs to the login
	// and logout endpoints are accepted: pass the same list as
	// authn.Options.CSRFTrustedOrigins.
	CSRFTrustedOrigins []string
	// Apps serves the connected-apps endpoints (/api/apps…): pass the
	// OAuth authorization server (*oauth.Server). Optional: without it
	// those endpoints are not mounted (404).
	Apps Apps
	// DirectLogin serves the simple login for scripts (POST /auth/login,
	// GET /auth/status): pass the OAuth authorization server
	// (*oauth.Server). nil: those endpoints are off (404).
	DirectLogin DirectLogin
	Logger      *slog.Logger
}

// API serves the JSON API. Create it with New and mount it with Routes.
type API struct {
	opts          Options
	log           *slog.Logger
	sdkLog        *slog.Logger
	csrf          *http.CrossOriginProtection
	sessionScopes []string
	grantable     map[string]bool
}

// AccountScope is the scope an API key needs for the account endpoints
// (authn.DefaultAccountScope).
const AccountScope = authn.DefaultAccountScope

// AdminRole is the role that sees every user's audit events.
const AdminRole = "admin"

// New returns the API. It panics when a required option is missing (a
// wiring bug).
func New(opts Options) *API {
	switch {
	case opts.Sessions == nil, opts.Users == nil, opts.Keys == nil, opts.Store == nil, opts.Authn == nil, opts.MCPHandler == nil:
		panic("api.New: Sessions, Users, Keys, Store, Authn and MCPHandler are required")
	case opts.MCPURL == "":
		panic("api.New: MCPURL is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &API{opts: opts, log: opts.Logger, grantable: map[string]bool{}}
	// The SDK client logs at Info per connection; keep warnings only.
	a.sdkLog = slog.New(minLevel{opts.Logger.Handler().WithAttrs([]slog.Attr{slog.String("component", "api-mcp-client")}), slog.LevelWarn})
	for _, s := range opts.SessionKeyScopes {
		if s == AccountScope {
			a.log.Warn("api: the account scope is never given to session keys; dropping it from SessionKeyScopes")
			continue
		}
		if !slices.Contains(a.sessionScopes, s) {
			a.sessionScopes = append(a.sessionScopes, s)
		}
	}
	for _, s := range opts.GrantableScopes {
		a.grantable[s] = true
	}
	a.csrf = http.NewCrossOriginProtection()
	for _, o := range opts.CSRFTrustedOrigins {
		if err := a.csrf.AddTrustedOrigin(o); err != nil {
			a.log.Warn("api: ignoring an invalid CSRF trusted origin", "origin", o, "err", err)
		}
	}
	return a
}

// route is one endpoint. The table below is the single list of endpoints:
// Routes mounts it, and the tests compare it with openapi.json (paths,
// methods and response codes).
type route struct {
	Method, Path string
	// Statuses are every HTTP status the endpoint answers with (documented
	// in openapi.json; the tests check both directions).
	Statuses []int
	handler  func(a *API) http.Handler
}

// Status sets shared by many routes.
var (
	// accountStatuses: what authn.Account may answer before the handler
	// runs (400 credential in the query or two credentials, 401, 403
	// missing account scope or CSRF, 503 storage down).
	accountStatuses = []int{400, 401, 403, 503}
)

func statuses(base []int, more ...int) []int {
	out := slices.Concat(base, more)
	slices.Sort(out)
	return slices.Compact(out)
}

// routes is the API. Keep openapi.json in step (TestOpenAPIMatchesRoutes).
var routes = []route{
	{"POST", "/api/auth/login", statuses([]int{200, 400, 401, 403, 413, 415, 429, 503}), func(a *API) http.Handler { return http.HandlerFunc(a.login) }},
	{"POST", "/api/auth/logout", statuses([]int{204, 403, 503}), func(a *API) http.Handler { return http.HandlerFunc(a.logout) }},
	{"POST", "/api/mcp/credentials", statuses(accountStatuses, 200), func(a *API) http.Handler { return a.account(http.HandlerFunc(a.credentials)) }},
	{"GET", "/api/mcp/tools", statuses(accountStatuses, 200, 502), func(a *API) http.Handler { return a.facade(a.listTools) }},
	{"POST", "/api/mcp/tools/call", statuses(accountStatuses, 200, 404, 413, 415, 502), func(a *API) http.Handler { return a.facade(a.callTool) }},
	{"GET", "/api/api-keys", statuses(accountStatuses, 200), func(a *API) http.Handler { return a.account(http.HandlerFunc(a.listKeys)) }},
	{"POST", "/api/api-keys", statuses(accountStatuses, 201, 413, 415), func(a *API) http.Handler { return a.account(http.HandlerFunc(a.createKey)) }},
	{"DELETE", "/api/api-keys/{id}", statuses(accountStatuses, 200, 404), func(a *API) http.Handler { return a.account(http.HandlerFunc(a.revokeKey)) }},
	{"GET", "/api/sessions", statuses(accountStatuses, 200), func(a *API) http.Handler { return a.account(http.HandlerFunc(a.listSessions)) }},
	{"DELETE", "/api/sessions/{id}", statuses(accountStatuses, 204, 404), func(a *API) http.Handler { return a.account(http.HandlerFunc(a.revokeSession)) }},
	{"GET", "/api/audit", statuses(accountStatuses, 200), func(a *API) http.Handler { return a.account(http.HandlerFunc(a.listAudit)) }},
	{"GET", "/api/apps", statuses(accountStatuses, 200), func(a *API) http.Handler { return a.account(http.HandlerFunc(a.listApps)) }},
	{"DELETE", "/api/apps/{id}", statuses(accountStatuses, 204, 404), func(a *API) http.Handler { return a.account(http.HandlerFunc(a.revokeApp)) }},
	{"GET", "/api/openapi.json", []int{200}, func(a *API) http.Handler { return http.HandlerFunc(serveOpenAPI) }},
	// Simple login for scripts (authlogin.go); mounted with Options.DirectLogin.
	{"POST", "/auth/login", statuses([]int{200, 400, 401, 403, 413, 415, 429, 503}), func(a *API) http.Handler { return http.HandlerFunc(a.directLogin) }},
	{"GET", "/auth/status", statuses([]int{200, 400, 401, 403, 429, 503}), func(a *API) http.Handler { return a.bearer(http.HandlerFunc(a.authStatus)) }},
}

// Routes mounts every endpoint on mux, plus a JSON 404/405 for any other
// path under /api/ and /auth/ (mount both prefixes on this mux).
func (a *API) Routes(mux *http.ServeMux) {
	for _, rt := range routes {
		if a.mounted(rt) {
			mux.Handle(rt.Method+" "+rt.Path, rt.handler(a))
		}
	}
	mux.HandleFunc("/api/", a.notFound)
	mux.HandleFunc(directLoginPrefix, a.notFound)
}

// mounted reports whether the API serves rt: the connected-apps endpoints
// need Options.Apps, the simple-login ones Options.DirectLogin.
func (a *API) mounted(rt route) bool {
	switch {
	case strings.HasPrefix(rt.Path, "/api/apps"):
		return a.opts.Apps != nil
	case strings.HasPrefix(rt.Path, directLoginPrefix):
		return a.opts.DirectLogin != nil
	}
	return true
}

// notFound answers paths under /api/ that no route serves.
func (a *API) notFound(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, rt := range routes {
		if a.mounted(rt) && matchPath(rt.Path, r.URL.Path) && !slices.Contains(allow, rt.Method) {
			allow = append(allow, rt.Method)
		}
	}
	if len(allow) > 0 {
		if slices.Contains(allow, "GET") {
			allow = append(allow, "HEAD")
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, errorf(http.StatusMethodNotAllowed, codeMethodNotAllowed, "this endpoint accepts %s", strings.Join(allow, ", ")))
		return
	}
	writeError(w, errorf(http.StatusNotFound, codeNotFound, "no such API endpoint; see /api/openapi.json"))
}

// matchPath reports whether path matches a route pattern whose {name}
// segments match any one non-empty segment.
func matchPath(pattern, path string) bool {
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return false
	}
	for i := range ps {
		if strings.HasPrefix(ps[i], "{") {
			if xs[i] == "" {
				return false
			}
			continue
		}
		if ps[i] != xs[i] {
			return false
		}
	}
	return true
}

//go:embed openapi.json
var openAPIDoc []byte

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(openAPIDoc)
}
