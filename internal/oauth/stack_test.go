package oauth_test

// The whole stack the authorization server lives in, wired the way
// internal/server wires it, behind one httptest server: store, audit,
// identity, sessions, API keys, authn with JWT access tokens, the MCP
// endpoint with the demo tools, tokens, clients, the authorization server,
// and the web login and consent pages. A "browser" (an http.Client with a
// cookie jar) drives login and consent over plain HTTP.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"

	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/mcpserver"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
	"github.com/mcpgate/mcpgate/internal/tokens"
	"github.com/mcpgate/mcpgate/internal/web"
	"github.com/mcpgate/mcpgate/verify"
)

const testPassword = "correct horse battery staple"

// memRecorder keeps audit events in memory.
type memRecorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *memRecorder) Record(ctx context.Context, e audit.Event) {
	info := httpx.InfoFrom(ctx)
	if e.ClientIP == "" {
		e.ClientIP = info.ClientIP
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// of returns the events of type typ (and reason, when given).
func (r *memRecorder) of(typ string, reason ...string) []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []audit.Event
	for _, e := range r.events {
		if e.Type == typ && (len(reason) == 0 || e.Reason == reason[0]) {
			out = append(out, e)
		}
	}
	return out
}

// mustHave fails unless an event of typ (with reason) was recorded.
func (r *memRecorder) mustHave(t testing.TB, typ, reason string) audit.Event {
	t.Helper()
	ev := r.of(typ, reason)
	if len(ev) == 0 {
		r.mu.Lock()
		var seen []string
		for _, e := range r.events {
			seen = append(seen, e.Type+"/"+e.Reason)
		}
		r.mu.Unlock()
		t.Fatalf("no audit event %s with reason %q; recorded: %v", typ, reason, seen)
	}
	return ev[len(ev)-1]
}

// clock is a settable clock for the authorization server and tokens.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// stackOptions tune a stack.
type stackOptions struct {
	accessTTL    time.Duration
	refreshGrace time.Duration
	resources    []oauth.Resource  // extra resources besides /mcp
	authorizeLim ratelimit.Limiter // nil: the server's default
	tokenClaims  []string          // ServerOptions.AccessTokenClaims
	idTokenRoles bool              // ServerOptions.IDTokenRoles
	// sessionLifetime is the browser sessions' absolute lifetime (0: the
	// default). The sessions run on the real clock; the authorization
	// server judges them on the stack's.
	sessionLifetime time.Duration
}

type stack struct {
	t        testing.TB
	db       *sqlstore.DB
	rec      *memRecorder
	clock    *clock
	users    *identity.Service
	sessions *session.Manager
	keys     *apikeys.Service
	tokens   *tokens.Issuer
	clients  *oauth.Clients
	as       *oauth.Server
	authn    *authn.Authenticator
	srv      *httptest.Server
	docs     *httptest.Server // CIMD documents (https, loopback)
	docMu    sync.Mutex
	docBody  map[string]string

	base, mcpURL string
	alice, bob   store.User
}

func newStack(t testing.TB, db *sqlstore.DB, so stackOptions) *stack {
	t.Helper()
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := &stack{t: t, db: db, rec: &memRecorder{}, clock: &clock{}, docBody: map[string]string{}}

	// CIMD documents are served over https from loopback; the clients'
	// test switch allows loopback and a resolver maps every name to it.
	s.docs = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.docMu.Lock()
		body, ok := s.docBody[r.URL.Path]
		s.docMu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}))
	s.docs.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.docs.StartTLS()
	t.Cleanup(s.docs.Close)
	roots := x509.NewCertPool()
	roots.AddCert(s.docs.Certificate())

	s.srv = httptest.NewUnstartedServer(nil)
	t.Cleanup(s.srv.Close)
	s.base = "http://" + s.srv.Listener.Addr().String()
	s.mcpURL = s.base + "/mcp"

	s.keys = apikeys.New(db, s.rec, apikeys.Options{Logger: logger, ServerKey: []byte(strings.Repeat("k", 32))})
	s.users = identity.New(db, s.rec)
	s.users.SetLoginLimiters(nil, nil)
	s.sessions = session.New(db, s.rec, session.Options{Logger: logger, Lifetime: so.sessionLifetime})
	var err error
	s.alice, err = s.users.Create(ctx, identity.NewUser{Email: "alice@example.com", Name: "Alice Liddell", Password: testPassword})
	must(t, err)
	s.bob, err = s.users.Create(ctx, identity.NewUser{Email: "bob@example.com", Name: "Bob", Password: testPassword})
	must(t, err)

	accessTTL := so.accessTTL
	if accessTTL == 0 {
		accessTTL = time.Hour
	}
	s.tokens, err = tokens.NewIssuer(ctx, db, []byte(strings.Repeat("s", 32)), tokens.Options{
		Issuer: s.base, AccessTokenTTL: accessTTL, Now: s.clock.Now, Logger: logger,
	})
	must(t, err)

	reg := mcpserver.NewRegistry()
	demo.Register(reg, db)
	resources := append([]oauth.Resource{{URL: s.mcpURL, Name: "Payments demo", Scopes: reg.AllScopes()}}, so.resources...)
	allScopes := slices.Clone(reg.AllScopes())
	for _, r := range so.resources {
		allScopes = append(allScopes, r.Scopes...)
	}
	s.clients = oauth.NewClients(db, s.rec, oauth.ClientsOptions{
		SupportedScopes:   append(slices.Clone(allScopes), oauth.IdentityScopes...),
		CIMDAllowLoopback: true, CIMDRootCAs: roots,
		Resolver: resolverFunc(func(context.Context, string, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}),
		Logger: logger,
	})

	pages := web.New(web.Options{
		Sessions: s.sessions, Users: s.users, Keys: s.keys, Store: db,
		GrantableScopes: reg.AllScopes(), MCPURL: s.mcpURL, Audit: s.rec, Logger: logger,
	})
	s.as = oauth.NewServer(oauth.ServerOptions{
		Store: db, Clients: s.clients, Tokens: s.tokens, Audit: s.rec, Sessions: s.sessions, Users: s.users,
		Issuer: s.base, Resources: resources, RefreshGrace: so.refreshGrace,
		ErrorPage: pages.ErrorPage, Now: s.clock.Now, Logger: logger, AuthorizeLimiter: so.authorizeLim,
		AccessTokenClaims: so.tokenClaims, IDTokenRoles: so.idTokenRoles,
	})
	verifier, err := verify.New(verify.Options{Issuer: s.base, Audience: s.mcpURL, Keys: s.tokens.KeySet(), Now: s.clock.Now})
	must(t, err)
	mcpHandler := mcpserver.New(mcpserver.Options{
		Registry: reg, Audit: s.rec, ResourceURL: s.mcpURL,
		ResourceMetadataURL: s.base + "/.well-known/oauth-protected-resource/mcp", Logger: logger,
	})
	t.Cleanup(mcpHandler.Close)
	s.authn = authn.New(authn.Options{
		Keys: s.keys, Users: db.GetUser, Audit: s.rec, Resource: s.mcpURL,
		ResourceMetadataURL: s.base + "/.well-known/oauth-protected-resource/mcp",
		Scopes:              reg.AllScopes(), AllowedOrigins: []string{s.base}, Logger: logger, Sessions: s.sessions,
		AccessTokens: &authn.AccessTokens{Verifier: verifier, GrantActive: s.as.GrantActive},
	})

	mux := http.NewServeMux()
	mux.Handle("/mcp", httpx.CORS(s.authn.OriginAllowed, s.authn.Middleware(mcpHandler)))
	prm := oauth.ProtectedResourceHandler(oauth.ProtectedResourceMetadata{
		Resource: s.mcpURL, AuthorizationServers: []string{s.base}, ScopesSupported: reg.AllScopes(),
		BearerMethodsSupported: []string{"header"}, ResourceName: "Payments demo",
	})
	mux.Handle("/.well-known/oauth-protected-resource/mcp", prm)
	mux.Handle("/.well-known/oauth-protected-resource", prm)
	md := oauth.NewServerMetadata(s.base, append(slices.Clone(allScopes), oauth.IdentityScopes...), nil)
	for _, p := range oauth.MetadataPaths(s.base) {
		mux.Handle(p, oauth.MetadataHandler(md))
	}
	mux.Handle("/register", s.clients.RegisterHandler())
	mux.Handle("/jwks", s.tokens.JWKSHandler())
	s.as.Routes(mux)
	pages.Routes(mux)
	pages.OAuthRoutes(mux, s.as)
	s.srv.Config.Handler = httpx.Common(mux, logger, 8<<20, nil)
	s.srv.Start()
	return s
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// resolverFunc adapts a function to oauth.Resolver.
type resolverFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

func (f resolverFunc) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return f(ctx, network, host)
}

// serveDoc publishes a Client ID Metadata Document at path and returns
// its URL (client_id) under the host name client.example.com.
func (s *stack) serveDoc(path, extra string) string {
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.docs.URL, "https://"))
	id := "https://client.example.com:" + port + path
	s.docMu.Lock()
	defer s.docMu.Unlock()
	s.docBody[path] = `{"client_id":"` + id + `","client_name":"Example CIMD Client","client_uri":"https://client.example.com",` +
		`"redirect_uris":["http://127.0.0.1/callback"],"grant_types":["authorization_code","refresh_token"],` +
		`"response_types":["code"],"token_endpoint_auth_method":"none"` + extra + `}`
	return id
}

// publicClient registers a public operator client with a loopback
// redirect URI and returns its client_id.
func (s *stack) publicClient(name string) string {
	s.t.Helper()
	cl, _, err := s.clients.CreateStatic(context.Background(), oauth.StaticClient{
		Name: name, RedirectURIs: []string{"http://127.0.0.1/callback", "https://app.example.com/cb"},
	})
	must(s.t, err)
	return cl.ClientID
}

// confidentialClient registers a confidential operator client (with
// client_credentials, asked for explicitly) and returns its client_id and
// secret.
func (s *stack) confidentialClient(name string, scopes ...string) (string, string) {
	s.t.Helper()
	cl, secret, err := s.clients.CreateStatic(context.Background(), oauth.StaticClient{
		Name: name, RedirectURIs: []string{"http://127.0.0.1/callback"}, Confidential: true, Scopes: scopes,
		GrantTypes: []string{oauth.GrantAuthorizationCode, oauth.GrantRefreshToken, oauth.GrantClientCredentials},
	})
	must(s.t, err)
	return cl.ClientID, secret
}

// ---- the browser ----

// browser is a user agent with a cookie jar that follows redirects within
// mcpgate and stops at anything else (the client's redirect URI).
type browser struct {
	t    testing.TB
	s    *stack
	c    *http.Client
	host string
}

func (s *stack) browser() *browser {
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(s.base)
	b := &browser{t: s.t, s: s, host: u.Host}
	b.c = &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != b.host || req.URL.Scheme != "http" {
			return http.ErrUseLastResponse
		}
		if len(via) > 10 {
			return fmt.Errorf("too many redirects")
		}
		return nil
	}}
	return b
}

// page is a fetched response with its body.
type page struct {
	status int
	url    *url.URL // where the response came from (after redirects)
	header http.Header
	body   string
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, url: resp.Request.URL, header: resp.Header, body: string(body)}
}

func (b *browser) get(u string) page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	must(b.t, err)
	return b.do(req)
}

// post sends a form as a same-origin browser would (Origin and
// Sec-Fetch-Site headers), or from origin when given.
func (b *browser) post(u string, form url.Values, origin ...string) page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	must(b.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.s.base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if len(origin) > 0 {
		req.Header.Set("Origin", origin[0])
		req.Header.Set("Sec-Fetch-Site", "cross-site")
	}
	return b.do(req)
}

var (
	reReturnTo = regexp.MustCompile(`name="return_to" value="([^"]*)"`)
	reRequest  = regexp.MustCompile(`name="request" value="([^"]*)"`)
	reContinue = regexp.MustCompile(`id="continue" href="([^"]*)"`)
)

// login signs the browser in as email.
func (b *browser) login(email string) {
	b.t.Helper()
	p := b.post(b.s.base+"/login", url.Values{"email": {email}, "password": {testPassword}, "return_to": {"/account"}})
	if p.status != http.StatusOK || p.url.Path != "/account" {
		b.t.Fatalf("login as %s: status %d at %s", email, p.status, p.url)
	}
}

// callback is what reached the client's redirect URI.
type callback struct {
	url                            *url.URL
	code, state, iss, err, errDesc string
}

// authorize drives an authorization URL through login (as email, when
// the browser is not signed in) and the consent page (pressing decision:
// "allow" or "deny") and returns what reached the redirect URI.
func (b *browser) authorize(authURL, email, decision string) (callback, error) {
	p := b.get(authURL)
	for range 5 {
		switch {
		case p.status == http.StatusFound || p.status == http.StatusSeeOther:
			loc, err := p.url.Parse(p.header.Get("Location"))
			if err != nil {
				return callback{}, err
			}
			q := loc.Query()
			return callback{url: loc, code: q.Get("code"), state: q.Get("state"), iss: q.Get("iss"), err: q.Get("error"), errDesc: q.Get("error_description")}, nil
		case p.status != http.StatusOK:
			return callback{}, fmt.Errorf("%s answered %d: %s", p.url, p.status, clipBody(p.body))
		case p.url.Path == "/login":
			m := reReturnTo.FindStringSubmatch(p.body)
			if m == nil {
				return callback{}, fmt.Errorf("login page without return_to")
			}
			p = b.post(b.s.base+"/login", url.Values{"email": {email}, "password": {testPassword}, "return_to": {html.UnescapeString(m[1])}})
		case p.url.Path == "/oauth/consent" && reContinue.MatchString(p.body):
			loc, err := url.Parse(html.UnescapeString(reContinue.FindStringSubmatch(p.body)[1]))
			if err != nil {
				return callback{}, err
			}
			q := loc.Query()
			return callback{url: loc, code: q.Get("code"), state: q.Get("state"), iss: q.Get("iss"), err: q.Get("error")}, nil
		case p.url.Path == "/oauth/consent":
			m := reRequest.FindStringSubmatch(p.body)
			if m == nil {
				return callback{}, fmt.Errorf("consent page without a request id: %s", clipBody(p.body))
			}
			p = b.post(b.s.base+"/oauth/consent", url.Values{"request": {html.UnescapeString(m[1])}, "decision": {decision}})
		default:
			return callback{}, fmt.Errorf("unexpected page %s (%d): %s", p.url, p.status, clipBody(p.body))
		}
	}
	return callback{}, fmt.Errorf("authorization did not finish")
}

func clipBody(s string) string {
	if len(s) > 600 {
		return s[:600] + "…"
	}
	return s
}

// fetcher is an AuthorizationCodeFetcher that signs in as email and
// allows.
func (b *browser) fetcher(email string) auth.AuthorizationCodeFetcher {
	return func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
		cb, err := b.authorize(args.URL, email, "allow")
		if err != nil {
			return nil, err
		}
		if cb.err != "" {
			return nil, fmt.Errorf("authorization refused: %s: %s", cb.err, cb.errDesc)
		}
		return &auth.AuthorizationResult{Code: cb.code, State: cb.state, Iss: cb.iss}, nil
	}
}

// ---- raw protocol helpers ----

// pkce returns a fresh verifier (RFC 7636 §4.1) and its S256 challenge.
func pkce() (string, string) {
	var b [32]byte
	rand.Read(b[:])
	v := base64.RawURLEncoding.EncodeToString(b[:])
	return v, s256(v)
}

// s256 is BASE64URL(SHA256(v)) (RFC 7636 §4.2).
func s256(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// authURL builds an authorization request.
func (s *stack) authURL(params url.Values) string {
	return s.base + "/authorize?" + params.Encode()
}

// codeRequest is a complete authorization request for clientID.
func (s *stack) codeRequest(clientID, challenge string) url.Values {
	return url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {"http://127.0.0.1:4711/callback"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "state": {"xyz-state"},
		"scope": {"payments:read openid email profile"}, "resource": {s.mcpURL}, "nonce": {"n-123"},
	}
}

// tokenResp is a token endpoint answer.
type tokenResp struct {
	status int
	header http.Header
	body   map[string]any
}

func (r tokenResp) str(k string) string { s, _ := r.body[k].(string); return s }

// post sends a form to an endpoint; basic = [id, secret] for
// client_secret_basic.
func (s *stack) post(path string, form url.Values, basic ...string) tokenResp {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.base+path, strings.NewReader(form.Encode()))
	must(s.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(url.QueryEscape(basic[0]), url.QueryEscape(basic[1]))
	}
	resp, err := http.DefaultClient.Do(req)
	must(s.t, err)
	defer resp.Body.Close()
	out := tokenResp{status: resp.StatusCode, header: resp.Header, body: map[string]any{}}
	raw, _ := io.ReadAll(resp.Body)
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &out.body)
	}
	return out
}

// codeFor runs a full authorization for clientID as alice and returns the
// code and the verifier.
func (s *stack) codeFor(b *browser, clientID string, mutate ...func(url.Values)) (string, string) {
	s.t.Helper()
	v, ch := pkce()
	q := s.codeRequest(clientID, ch)
	for _, m := range mutate {
		m(q)
	}
	cb, err := b.authorize(s.authURL(q), "alice@example.com", "allow")
	must(s.t, err)
	if cb.code == "" {
		s.t.Fatalf("no code: error %q %q", cb.err, cb.errDesc)
	}
	return cb.code, v
}

// exchange redeems a code for a public client.
func (s *stack) exchange(clientID, code, verifier string) tokenResp {
	s.t.Helper()
	return s.post("/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
		"redirect_uri": {"http://127.0.0.1:4711/callback"}, "client_id": {clientID}, "resource": {s.mcpURL},
	})
}

// mcpStatus calls /mcp (tools/list) with a bearer token and returns the
// HTTP status.
func (s *stack) mcpStatus(token string) int {
	s.t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}`
	req, err := http.NewRequest(http.MethodPost, s.mcpURL, strings.NewReader(body))
	must(s.t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/list")
	resp, err := http.DefaultClient.Do(req)
	must(s.t, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// eachStore runs fn on SQLite, and on PostgreSQL when configured.
func eachStore(t *testing.T, fn func(t *testing.T, db *sqlstore.DB)) {
	storetest.Each(t, fn)
}

func storeSQLite(t testing.TB) *sqlstore.DB { return storetest.SQLite(t) }

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }
