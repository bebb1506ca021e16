package web

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

const testPassword = "correct horse battery staple"

var testScopes = []string{"payments:read", "payments:write", ScopeAccount}

// stack is the part of mcpgate the pages need, wired the way the server
// wires it, behind an httptest server.
type stack struct {
	t        testing.TB
	db       *sqlstore.DB
	audit    *audit.Writer
	users    *identity.Service
	keys     *apikeys.Service
	sessions *session.Manager
	web      *Handler
	srv      *httptest.Server

	admin, alice, bob store.User
}

func newStack(t testing.TB) *stack {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := &stack{t: t}
	s.db = storetest.SQLite(t)
	s.audit = audit.NewWriter(s.db, audit.Options{Logger: log, Interval: 5 * time.Millisecond})
	t.Cleanup(s.audit.Close)
	s.keys = apikeys.New(s.db, s.audit, apikeys.Options{Logger: log, ServerKey: []byte(strings.Repeat("k", 32))})
	s.users = identity.New(s.db, s.audit)
	s.users.SetLoginLimiters(nil, nil)
	s.sessions = session.New(s.db, s.audit, session.Options{Logger: log})
	s.sessions.OnKeysRevoked(s.keys.Evict)
	s.users.OnCredentialsChanged(s.keys.InvalidateUser)

	var err error
	s.admin, err = s.users.Create(ctx, identity.NewUser{Email: "admin@example.com", Name: "Ada Admin", Password: testPassword, Roles: []string{"admin"}})
	must(t, err)
	s.alice, err = s.users.Create(ctx, identity.NewUser{Email: "alice@example.com", Name: "Alice Liddell", Password: testPassword})
	must(t, err)
	s.bob, err = s.users.Create(ctx, identity.NewUser{Email: "bob@example.com", Password: testPassword})
	must(t, err)

	var handler http.Handler
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(s.srv.Close)
	s.web = New(Options{
		Sessions: s.sessions, Users: s.users, Keys: s.keys, Store: s.db,
		GrantableScopes: testScopes, MCPURL: s.srv.URL + "/mcp", Logger: log, Audit: s.audit,
	})
	mux := http.NewServeMux()
	s.web.Routes(mux)
	// The server's catch-all, to show the pages do not depend on it.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	handler = httpx.Common(mux, log, 8<<20, nil)
	return s
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// client is a browser stand-in: a cookie jar and no automatic redirects.
type client struct {
	t   testing.TB
	s   *stack
	hc  *http.Client
	hdr http.Header // extra headers on every request
}

func (s *stack) client() *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: s.t, s: s, hdr: http.Header{}, hc: &http.Client{
		Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Timeout: 30 * time.Second,
	}}
}

// response is a finished response with its body read.
type response struct {
	*http.Response
	Body string
}

func (c *client) do(req *http.Request) response {
	c.t.Helper()
	for k, vs := range c.hdr {
		req.Header[k] = vs
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return response{Response: resp, Body: string(b)}
}

func (c *client) get(path string) response {
	c.t.Helper()
	req, err := http.NewRequest("GET", c.s.srv.URL+path, nil)
	must(c.t, err)
	return c.do(req)
}

func (c *client) post(path string, form url.Values) response {
	c.t.Helper()
	req, err := http.NewRequest("POST", c.s.srv.URL+path, strings.NewReader(form.Encode()))
	must(c.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req)
}

// login signs the client in and fails the test if that does not work.
func (c *client) login(email string) {
	c.t.Helper()
	r := c.post("/login", url.Values{"email": {email}, "password": {testPassword}})
	if r.StatusCode != http.StatusSeeOther {
		c.t.Fatalf("login %s: status %d, body:\n%s", email, r.StatusCode, r.Body)
	}
}

func (s *stack) loggedIn(email string) *client {
	c := s.client()
	c.login(email)
	return c
}

// sessionKey gives the client's browser session its MCP credential, as
// POST /api/mcp/credentials does.
func (s *stack) sessionKey(cookieValue string) (string, store.APIKey) {
	s.t.Helper()
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: s.sessions.CookieName(), Value: cookieValue})
	cur, err := s.sessions.Current(req)
	must(s.t, err)
	plaintext, key, err := s.keys.SessionKey(context.Background(), cur.Session, cur.Secret, []string{"payments:read", ScopeAccount})
	must(s.t, err)
	return plaintext, key
}

func (s *stack) flushAudit() {
	must(s.t, s.audit.Flush(context.Background()))
}

var formTokenRE = regexp.MustCompile(`name="form_token" value="([0-9a-f]{32})"`)

// formToken opens the new-key form and returns its one-time token.
func (c *client) formToken() string {
	c.t.Helper()
	r := c.get("/account/keys/new")
	m := formTokenRE.FindStringSubmatch(r.Body)
	if m == nil {
		c.t.Fatalf("no form token on /account/keys/new (status %d)", r.StatusCode)
	}
	return m[1]
}

var keyRE = regexp.MustCompile(`mcpg_[A-Za-z0-9_]{20,}`)

func wantStatus(t testing.TB, r response, want int) {
	t.Helper()
	if r.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d; body:\n%s", r.Request.Method, r.Request.URL.Path, r.StatusCode, want, excerpt(r.Body))
	}
}

func wantBody(t testing.TB, r response, substr ...string) {
	t.Helper()
	for _, s := range substr {
		if !strings.Contains(r.Body, s) {
			t.Errorf("%s %s: body lacks %q; body:\n%s", r.Request.Method, r.Request.URL.Path, s, excerpt(r.Body))
		}
	}
}

func wantNoBody(t testing.TB, r response, substr ...string) {
	t.Helper()
	for _, s := range substr {
		if strings.Contains(r.Body, s) {
			t.Errorf("%s %s: body contains %q", r.Request.Method, r.Request.URL.Path, s)
		}
	}
}

func wantRedirect(t testing.TB, r response, location string) {
	t.Helper()
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != location {
		t.Fatalf("%s %s: status %d Location %q, want 303 to %q", r.Request.Method, r.Request.URL.Path,
			r.StatusCode, r.Header.Get("Location"), location)
	}
}

// excerpt keeps failure output readable: the <main> of a page.
func excerpt(body string) string {
	if i := strings.Index(body, "<main"); i >= 0 {
		body = body[i:]
	}
	if len(body) > 3000 {
		body = body[:3000] + "…"
	}
	return body
}
