package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/mcpserver"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
	"github.com/mcpgate/mcpgate/internal/tokens"
	"github.com/mcpgate/mcpgate/verify"
)

// observed collects, across the package's tests, which status every route
// answered with, so TestMain can check openapi.json against reality.
var observed = struct {
	sync.Mutex
	m map[string]map[int]bool // "METHOD /path" → statuses
}{m: map[string]map[int]bool{}}

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 && runsEverything() {
		if msg := undocumentedOrUnseen(); msg != "" {
			fmt.Fprintln(os.Stderr, msg)
			code = 1
		}
	}
	os.Exit(code)
}

// runsEverything reports whether the whole package's tests ran (no -run
// filter, not -short), so every route had its chance to answer.
func runsEverything() bool {
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-test.run") || strings.HasPrefix(a, "-test.short") || strings.HasPrefix(a, "-test.skip") {
			return false
		}
	}
	return true
}

// undocumentedOrUnseen lists documented statuses no test provoked.
func undocumentedOrUnseen() string {
	observed.Lock()
	defer observed.Unlock()
	var missing []string
	for _, rt := range routes {
		seen := observed.m[rt.Method+" "+rt.Path]
		for _, s := range rt.Statuses {
			if !seen[s] {
				missing = append(missing, fmt.Sprintf("%s %s → %d", rt.Method, rt.Path, s))
			}
		}
	}
	if len(missing) == 0 {
		return ""
	}
	return "documented responses that no test provoked (provoke them, or stop documenting them):\n  " + strings.Join(missing, "\n  ")
}

// clock is a settable time source shared by the services of a stack.
type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type stack struct {
	t        *testing.T
	db       *sqlstore.DB
	audit    *audit.Writer
	users    *identity.Service
	keys     *apikeys.Service
	sessions *session.Manager
	authn    *authn.Authenticator
	api      *API
	srv      *httptest.Server
	clock    *clock
	mcpURL   string
	tokens   *tokens.Issuer
	clients  *oauth.Clients
	as       *oauth.Server // the authorization server behind /api/apps

	alice, bob, charlie store.User
}

const testPassword = "correct horse battery staple"

type stackOptions struct {
	mcpHandler    func(real http.Handler) http.Handler // replaces /mcp for the facade (failure tests)
	noApps        bool                                 // leave Options.Apps unset
	noDirectLogin bool                                 // leave Options.DirectLogin unset (/auth/ off)
}

// newStack builds the whole of mcpgate that the API needs, wired the way
// the server wires it, behind an httptest server.
func newStack(t *testing.T, so ...stackOptions) *stack {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := &stack{t: t, clock: &clock{}}
	s.clock.ns.Store(time.Now().UnixNano())
	s.db = storetest.SQLite(t)
	s.audit = audit.NewWriter(s.db, audit.Options{Logger: log, Now: s.clock.Now})
	t.Cleanup(s.audit.Close)
	s.keys = apikeys.New(s.db, s.audit, apikeys.Options{
		Logger: log, Now: s.clock.Now, ServerKey: bytes.Repeat([]byte("k"), 32),
		SessionIdleTimeout: session.DefaultIdleTimeout,
	})
	s.users = identity.New(s.db, s.audit)
	s.users.SetLoginLimiters(nil, nil)
	s.users.OnCredentialsChanged(s.keys.InvalidateUser)
	s.sessions = session.New(s.db, s.audit, session.Options{Now: s.clock.Now, Logger: log})
	s.sessions.OnKeysRevoked(s.keys.Evict)

	var err error
	s.alice, err = s.users.Create(ctx, identity.NewUser{Email: "alice@example.com", Name: "Alice", Password: testPassword, Roles: []string{"admin"}})
	must(t, err)
	s.bob, err = s.users.Create(ctx, identity.NewUser{Email: "bob@example.com", Name: "Bob", Password: testPassword})
	must(t, err)
	s.charlie, err = s.users.Create(ctx, identity.NewUser{Email: "charlie@example.com", Name: "Charlie", Password: testPassword})
	must(t, err)
	must(t, demo.SeedLedger(ctx, s.db, s.alice.ID, s.bob.ID, s.charlie.ID))

	var handler http.Handler
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(s.srv.Close)
	s.mcpURL = s.srv.URL + "/mcp"

	reg := mcpserver.NewRegistry()
	demo.Register(reg, s.db)
	must(t, apikeys.RegisterScopes(reg.AllScopes()...))
	mcpH := mcpserver.New(mcpserver.Options{Registry: reg, Audit: s.audit, ResourceURL: s.mcpURL,
		ResourceMetadataURL: s.srv.URL + "/.well-known/oauth-protected-resource/mcp", Logger: log})
	t.Cleanup(mcpH.Close)
	// The OAuth authorization server, wired as internal/server wires it:
	// its grants are the connected apps of /api/apps, and /mcp accepts
	// its access tokens.
	s.tokens, err = tokens.NewIssuer(ctx, s.db, bytes.Repeat([]byte("s"), 32), tokens.Options{Issuer: s.srv.URL, Now: s.clock.Now, Logger: log})
	must(t, err)
	s.clients = oauth.NewClients(s.db, s.audit, oauth.ClientsOptions{
		SupportedScopes: append(reg.AllScopes(), oauth.IdentityScopes...), Now: s.clock.Now, Logger: log,
	})
	s.as = oauth.NewServer(oauth.ServerOptions{
		Store: s.db, Clients: s.clients, Tokens: s.tokens, Audit: s.audit, Sessions: s.sessions, Users: s.users,
		Issuer: s.srv.URL, Resources: []oauth.Resource{{URL: s.mcpURL, Name: "Payments demo", Scopes: reg.AllScopes()}},
		Now: s.clock.Now, Logger: log,
	})
	verifier, err := verify.New(verify.Options{Issuer: s.srv.URL, Audience: s.mcpURL, Keys: s.tokens.KeySet(), Now: s.clock.Now})
	must(t, err)
	s.authn = authn.New(authn.Options{
		Keys: s.keys, Users: s.db.GetUser, Audit: s.audit, Resource: s.mcpURL,
		ResourceMetadataURL: s.srv.URL + "/.well-known/oauth-protected-resource/mcp",
		Scopes:              reg.AllScopes(), AllowedOrigins: []string{s.srv.URL}, Logger: log, Sessions: s.sessions,
		AccessTokens: &authn.AccessTokens{Verifier: verifier, GrantActive: s.as.GrantActive},
	})
	s.users.OnCredentialsChanged(s.authn.InvalidateUser)
	mcpChain := s.authn.Middleware(mcpH)
	facadeMCP := http.Handler(mcpChain)
	if len(so) > 0 && so[0].mcpHandler != nil {
		facadeMCP = so[0].mcpHandler(mcpChain)
	}
	var apps Apps = s.as
	if len(so) > 0 && so[0].noApps {
		apps = nil
	}
	var direct DirectLogin = s.as
	if len(so) > 0 && so[0].noDirectLogin {
		direct = nil
	}
	s.api = New(Options{
		Sessions: s.sessions, Users: s.users, Keys: s.keys, Store: s.db, Authn: s.authn,
		MCPHandler: facadeMCP, MCPURL: s.mcpURL,
		GrantableScopes:  []string{demo.ScopeRead, demo.ScopeWrite, AccountScope},
		SessionKeyScopes: []string{demo.ScopeRead, demo.ScopeWrite},
		Apps:             apps,
		DirectLogin:      direct,
		Logger:           log,
	})
	mux := http.NewServeMux()
	mux.Handle("/mcp", mcpChain)
	s.as.Routes(mux)
	s.api.Routes(mux)
	handler = httpx.Common(mux, log, 4<<20, func(r *http.Request, pattern string, status int, d time.Duration) {
		if status == http.StatusInternalServerError {
			t.Errorf("%s %s answered 500", r.Method, r.URL.Path)
		}
		idx := slices.IndexFunc(routes, func(rt route) bool { return rt.Method+" "+rt.Path == pattern })
		if idx < 0 {
			return // /mcp, or the /api/ and /auth/ catch-alls
		}
		if !slices.Contains(routes[idx].Statuses, status) {
			t.Errorf("%s %s answered %d, which the route table (and openapi.json) does not list", r.Method, r.URL.Path, status)
		}
		observed.Lock()
		if observed.m[pattern] == nil {
			observed.m[pattern] = map[int]bool{}
		}
		observed.m[pattern][status] = true
		observed.Unlock()
	})
	return s
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// browser is an HTTP client with a cookie jar that sends same-origin
// browser headers, like a page of mcpgate's own origin would.
type browser struct {
	s      *stack
	c      *http.Client
	origin string // Origin sent on every request; "" for none
}

func (s *stack) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{s: s, c: &http.Client{Jar: jar}, origin: s.srv.URL}
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object (status %d): %v\n%s", r.status, err, r.body)
	}
	return m
}

func (r response) errorCode(t testing.TB) string {
	t.Helper()
	code, _ := r.json(t)["error"].(string)
	return code
}

// do sends a request; body may be nil, a string (sent as is) or a value
// (JSON-encoded). Headers are pairs.
func (b *browser) do(method, path string, body any, headers ...string) response {
	b.s.t.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	case []byte:
		rd = bytes.NewReader(v)
	default:
		buf, err := json.Marshal(v)
		must(b.s.t, err)
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, b.s.srv.URL+path, rd)
	must(b.s.t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if b.origin != "" {
		req.Header.Set("Origin", b.origin)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := b.c.Do(req)
	must(b.s.t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	must(b.s.t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

func (b *browser) login(email string) response {
	b.s.t.Helper()
	r := b.do("POST", "/api/auth/login", map[string]string{"email": email, "password": testPassword})
	if r.status != http.StatusOK {
		b.s.t.Fatalf("login %s: %d %s", email, r.status, r.body)
	}
	return r
}

// credential asks for the session's MCP key.
func (b *browser) credential() string {
	b.s.t.Helper()
	r := b.do("POST", "/api/mcp/credentials", nil)
	if r.status != http.StatusOK {
		b.s.t.Fatalf("credentials: %d %s", r.status, r.body)
	}
	key, _ := r.json(b.s.t)["api_key"].(string)
	if key == "" {
		b.s.t.Fatalf("credentials without api_key: %s", r.body)
	}
	return key
}

// keyClient sends an API key and no cookies or Origin.
func (s *stack) keyClient(key string) *browser {
	b := &browser{s: s, c: &http.Client{}}
	if key != "" {
		b.c.Transport = bearerTransport{key}
	}
	return b
}

type bearerTransport struct{ key string }

func (t bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if r.Header.Get("X-Api-Key") == "" && r.Header.Get("Authorization") == "" {
		r.Header.Set("Authorization", "Bearer "+t.key)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// issue creates a key directly through the service.
func (s *stack) issue(u store.User, scopes ...string) (string, store.APIKey) {
	s.t.Helper()
	plain, k, err := s.keys.Issue(context.Background(), apikeys.IssueRequest{UserID: u.ID, Name: "test key", Scopes: scopes})
	must(s.t, err)
	return plain, k
}

// mcpClient connects the go-sdk client to /mcp with key.
func (s *stack) mcpClient(ctx context.Context, key string) (*mcp.ClientSession, error) {
	client := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil)
	return client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:             s.mcpURL,
		HTTPClient:           &http.Client{Transport: bearerTransport{key}, Timeout: 30 * time.Second},
		MaxRetries:           -1,
		DisableStandaloneSSE: true,
	}, nil)
}

// events returns the stored audit events of a type, after a flush.
func (s *stack) events(typ string, userID string) []store.AuditEvent {
	s.t.Helper()
	must(s.t, s.audit.Flush(context.Background()))
	ev, err := s.db.ListAudit(context.Background(), store.AuditFilter{Type: typ, UserID: userID, Limit: 1000})
	must(s.t, err)
	return ev
}
