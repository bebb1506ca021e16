package server_test

import (
	"context"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mcpgate/mcpgate/examples/custom-login/app"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/customauth"
	"github.com/mcpgate/mcpgate/internal/loginflow"
	"github.com/mcpgate/mcpgate/internal/server"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// cluster is several mcpgate nodes — each a server.New of its own, as a
// separate process would be — over one SQLite file and one server key
// (the data directory's server.key), behind a front that stands for the
// load balancer: its address is their public URL, and the test says which
// node it sends each request to. No sticky routing.
type cluster struct {
	t     *testing.T
	cfg   config.Config
	base  string // the public URL (the front)
	nodes []*node
	to    atomic.Int32 // the node the front sends requests to
}

type node struct {
	srv *server.Server
	ts  *httptest.Server
}

func newCluster(t *testing.T, n int, mutate ...func(*config.Config)) *cluster {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.Demo = true
	cfg.Addr = "127.0.0.1:0"
	cfg.PublicURL = "http://" + ln.Addr().String()
	for _, m := range mutate {
		m(&cfg)
	}
	c := &cluster{t: t, cfg: cfg, base: cfg.PublicURL}
	for range n {
		c.nodes = append(c.nodes, c.startNode())
	}
	front := httptest.NewUnstartedServer(&httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			target, _ := url.Parse(c.nodes[c.to.Load()].ts.URL)
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		},
		ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	})
	front.Listener.Close()
	front.Listener = ln
	front.Start()
	t.Cleanup(front.Close)
	return c
}

func (c *cluster) startNode() *node {
	c.t.Helper()
	srv, err := server.New(context.Background(), c.cfg, slog.New(slog.DiscardHandler), io.Discard)
	if err != nil {
		c.t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.Config = srv.HTTPServer()
	ts.Start()
	n := &node{srv: srv, ts: ts}
	c.t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	if n.ts != nil {
		n.ts.Close()
		n.srv.Close()
		n.ts = nil
	}
}

// via sends the front's next requests to node i.
func (c *cluster) via(i int) { c.to.Store(int32(i)) }

// restart stops node i, as a deploy does, and starts a new process in its
// place: nothing of the old one's memory survives.
func (c *cluster) restart(i int) {
	c.nodes[i].stop()
	c.nodes[i] = c.startNode()
}

// audit returns the events of typ, newest first, after every node flushed
// its audit writer.
func (c *cluster) audit(typ string) []store.AuditEvent {
	c.t.Helper()
	for _, n := range c.nodes {
		if err := n.srv.Core().Audit.Flush(context.Background()); err != nil {
			c.t.Fatal(err)
		}
	}
	evs, err := c.nodes[0].srv.Core().DB.ListAudit(context.Background(), store.AuditFilter{Type: typ, Limit: 100})
	if err != nil {
		c.t.Fatal(err)
	}
	return evs
}

// browserClient keeps cookies and does not follow redirects.
func browserClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func fetch(t *testing.T, c *http.Client, method, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// signedIn asserts that the browser's session works at the node the
// front sends to: the account page answers instead of the login page.
func (c *cluster) signedIn(b *http.Client, email string) {
	c.t.Helper()
	resp, body := fetch(c.t, b, "GET", c.base+"/account", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, email) {
		c.t.Fatalf("the account page at node %d: %d %s\n%s", c.to.Load(), resp.StatusCode, resp.Header.Get("Location"), body)
	}
}

// TestCustomLoginAcrossNodesAndRestart: with two nodes behind a load
// balancer without sticky routing, a custom login started on node 0
// survives node 0's restart, the operator's app posts the user to node 1,
// and the browser's callback lands on the restarted node 0 and signs in;
// the session works on both nodes; a replay is refused as replayed.
func TestCustomLoginAcrossNodesAndRestart(t *testing.T) {
	secret := strings.Repeat("s3cret-", 6)
	exampleApp := &app.App{Secret: secret, Users: app.DemoUsers}
	appSrv := httptest.NewServer(exampleApp)
	defer appSrv.Close()
	c := newCluster(t, 2, func(cfg *config.Config) {
		cfg.CustomLoginURL = appSrv.URL + "/login"
		cfg.CustomLoginSecret = secret
	})
	exampleApp.MCPGateURL = c.base
	b := browserClient()

	c.via(0)
	resp, _ := fetch(t, b, "GET", c.base+"/login/custom?return_to=%2Faccount", nil)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc.String(), appSrv.URL+"/login?") {
		t.Fatalf("start: %d %s", resp.StatusCode, loc)
	}
	c.restart(0)

	// The user signs in at the app; the app posts the user to mcpgate
	// (through the front, to node 1) and sends the browser back.
	c.via(1)
	resp, body := fetch(t, b, "POST", appSrv.URL+"/login", url.Values{
		"login_request_id": {loc.Query().Get("login_request_id")}, "state": {loc.Query().Get("state")},
		"username": {"carol@acme.example"}, "password": {"carol-password"},
	})
	callback := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(callback, c.base+"/login/callback?") {
		t.Fatalf("the app's sign-in: %d %s %s", resp.StatusCode, callback, body)
	}
	c.via(0)
	resp, body = fetch(t, b, "GET", callback, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/account" {
		t.Fatalf("callback at the restarted node: %d %s %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	c.signedIn(b, "carol@acme.example")
	c.via(1)
	c.signedIn(b, "carol@acme.example")
	if evs := c.audit(customauth.TypeCompleted); len(evs) != 1 || evs[0].Details["subject"] != "u-100" {
		t.Fatalf("login_request.completed events: %+v", evs)
	}

	// The replay at the other node is refused there too (the signed-in
	// browser is sent on to "/" rather than shown an error page).
	resp, _ = fetch(t, b, "GET", callback, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("replayed callback at the other node: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if evs := c.audit(customauth.TypeRefused); len(evs) == 0 || evs[0].Reason != customauth.ReasonReplayed {
		t.Fatalf("login_request.refused events: %+v", evs)
	}
}

// TestCustomLoginRacingCallbacks: the same callback (state and cookie)
// sent to both nodes at once signs in exactly once.
func TestCustomLoginRacingCallbacks(t *testing.T) {
	secret := strings.Repeat("s3cret-", 6)
	c := newCluster(t, 2, func(cfg *config.Config) {
		cfg.CustomLoginURL = "http://127.0.0.1:9/login"
		cfg.CustomLoginSecret = secret
	})
	b := browserClient()
	resp, _ := fetch(t, b, "GET", c.base+"/login/custom", nil)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	q := loc.Query()
	callback, err := url.Parse(postLoginUser(t, c.base, q.Get("login_request_id"), secret, `{"sub":"u-7","name":"Racer"}`))
	if err != nil || callback.Query().Get("code") == "" {
		t.Fatalf("redirect_to %v: %v", callback, err)
	}
	front, _ := url.Parse(c.base)
	var cookie string
	for _, ck := range b.Jar.Cookies(&url.URL{Scheme: "http", Host: front.Host, Path: "/login/callback"}) {
		cookie += ck.Name + "=" + ck.Value + "; "
	}

	const n = 8
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		target := c.nodes[i%2].ts.URL
		wg.Go(func() {
			req, _ := http.NewRequest("GET", target+"/login/callback?"+callback.RawQuery, nil)
			req.Header.Set("Cookie", cookie)
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		})
	}
	wg.Wait()
	won := 0
	for _, code := range codes {
		if code == http.StatusSeeOther {
			won++
		}
	}
	if won != 1 {
		t.Fatalf("racing callbacks on two nodes: %d signed in (codes %v), want exactly 1", won, codes)
	}
	replayed := 0
	for _, ev := range c.audit(customauth.TypeRefused) {
		if ev.Reason == customauth.ReasonReplayed {
			replayed++
		}
	}
	if got := len(c.audit(customauth.TypeCompleted)); got != 1 || replayed != n-1 {
		t.Errorf("audit: %d completed, %d replayed; want 1 and %d", got, replayed, n-1)
	}
}

// TestUpstreamLoginAcrossNodesAndRestart: instance B is the upstream OIDC
// provider of a two-node instance A. The login starts on A's node 0, node
// 0 restarts while the user is at B, and B's redirect back lands on node
// 1, which verifies the ID token with the stored nonce and redeems the
// code with the stored PKCE verifier.
func TestUpstreamLoginAcrossNodesAndRestart(t *testing.T) {
	b := newEnv(t)
	a := newCluster(t, 2, upstreamFromB(t, b, nil, nil))
	br := browserClient()

	a.via(0)
	resp, _ := fetch(t, br, "GET", a.base+"/login/upstream/instance-b?return_to=%2Faccount", nil)
	authz := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(authz, b.base+"/authorize?") {
		t.Fatalf("start: %d %s", resp.StatusCode, authz)
	}
	a.restart(0)

	// At B: sign in as bob and allow A.
	resp, _ = fetch(t, br, "GET", authz, nil)
	for resp.StatusCode == http.StatusSeeOther && strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		resp, _ = fetch(t, br, "GET", b.base+resp.Header.Get("Location"), nil)
	}
	if resp.Request.URL.Path != "/login" || resp.StatusCode != http.StatusOK {
		t.Fatalf("B did not show its login page: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	resp, body := fetch(t, br, "POST", b.base+"/login", url.Values{
		"email": {"bob@example.com"}, "password": {b.pws["bob@example.com"]},
		"return_to": {resp.Request.URL.Query().Get("return_to")},
	})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("signing in at B: %d %s", resp.StatusCode, body)
	}
	resp, body = fetch(t, br, "GET", b.base+resp.Header.Get("Location"), nil)
	m := hiddenRequest.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("B's consent page has no request field: %d\n%s", resp.StatusCode, body)
	}
	resp, body = fetch(t, br, "POST", b.base+"/oauth/consent", url.Values{"request": {html.UnescapeString(m[1])}, "decision": {"allow"}})
	callback := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(callback, a.base+"/login/upstream/instance-b/callback?") {
		t.Fatalf("B's answer: %d %s %s", resp.StatusCode, callback, body)
	}

	a.via(1)
	resp, body = fetch(t, br, "GET", callback, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/account" {
		t.Fatalf("callback at node 1: %d %s %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	bobAtB := b.ids["bob@example.com"]
	evs := a.audit(upstream.TypeLogin)
	if len(evs) != 1 || evs[0].Outcome != store.OutcomeAllow || evs[0].Details["subject"] != bobAtB {
		t.Fatalf("upstream.login events: %+v", evs)
	}
	link, err := a.nodes[1].srv.Core().DB.GetIdentity(context.Background(), b.base, bobAtB)
	if err != nil || link.UserID != evs[0].UserID {
		t.Fatalf("identity link %+v, %v", link, err)
	}
	a.via(0)
	resp, _ = fetch(t, br, "GET", a.base+"/account", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the new session at node 0: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestLoginStartRateLimit: GET /login/custom and GET
// /login/upstream/{name} share one per-IP budget; past the burst they
// answer 429 with Retry-After and a readable page, audited once per
// endpoint however long the flood.
func TestLoginStartRateLimit(t *testing.T) {
	doc := `{"providers":[{"name":"corp","display_name":"Corp","type":"oidc","issuer":"http://127.0.0.1:9","client_id":"a","client_secret":"b"}]}`
	path := filepath.Join(t.TempDir(), "upstreams.json")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(cfg *config.Config) {
		cfg.CustomLoginURL = "http://127.0.0.1:9/login"
		cfg.CustomLoginSecret = strings.Repeat("s3cret-", 6)
		cfg.UpstreamProvidersFile = path
	})
	c := browserClient()
	for i := range loginflow.DefaultStartBurst {
		if resp, body := fetch(t, c, "GET", e.base+"/login/custom", nil); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("start %d within the burst: %d %s", i+1, resp.StatusCode, body)
		}
	}
	for _, path := range []string{"/login/custom", "/login/upstream/corp", "/login/custom", "/login/upstream/corp"} {
		resp, body := fetch(t, c, "GET", e.base+path, nil)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "Too many sign-ins") {
			t.Fatalf("%s past the burst: %d Retry-After %q %s\n%s", path, resp.StatusCode, resp.Header.Get("Retry-After"),
				resp.Header.Get("Content-Type"), body)
		}
	}
	count := func(typ string) int {
		if err := e.srv.Core().Audit.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		evs, err := e.srv.Core().DB.ListAudit(context.Background(), store.AuditFilter{Type: typ, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, ev := range evs {
			if ev.Reason == loginflow.ReasonRateLimited {
				n++
			}
		}
		return n
	}
	if n := count(customauth.TypeRefused); n != 1 {
		t.Errorf("%d login_request.refused rate_limited events, want 1", n)
	}
	if n := count(upstream.TypeLogin); n != 1 {
		t.Errorf("%d upstream.login rate_limited events, want 1", n)
	}
}
