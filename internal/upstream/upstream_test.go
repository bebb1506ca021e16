package upstream

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/loginflow"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Record(_ context.Context, e audit.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// last returns the newest event of typ.
func (r *recorder) last(t *testing.T, typ string) audit.Event {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if r.events[i].Type == typ {
			return r.events[i]
		}
	}
	t.Fatalf("no %s event", typ)
	return audit.Event{}
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// idp is a fake OIDC provider: discovery, JWKS and a token endpoint whose
// ID token the test shapes.
type idp struct {
	srv    *httptest.Server
	key    *rsa.PrivateKey
	mu     sync.Mutex
	claims func(c map[string]any) // edits the ID token's claims
	sign   *rsa.PrivateKey        // nil: key
	delay  time.Duration
	token  func(w http.ResponseWriter) bool // answers instead, when it returns true
	// challenge is the PKCE challenge of the last authorization request.
	challenge string
	form      url.Values
	clk       *clock
}

func newIDP(t *testing.T, clk *clock) *idp {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &idp{key: key, clk: clk}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": p.srv.URL, "authorization_endpoint": p.srv.URL + "/authorize", "token_endpoint": p.srv.URL + "/token",
			"jwks_uri": p.srv.URL + "/jwks", "id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	// Entra ID style multi-tenant discovery: the issuer is a template.
	mux.HandleFunc("/common/v2.0/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": p.srv.URL + "/{tenantid}/v2.0", "authorization_endpoint": p.srv.URL + "/authorize", "token_endpoint": p.srv.URL + "/token",
			"jwks_uri": p.srv.URL + "/jwks", "id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		delay, tokenFn, edit, signer, challenge := p.delay, p.token, p.claims, p.sign, p.challenge
		p.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		if tokenFn != nil && tokenFn(w) {
			return
		}
		r.ParseForm()
		p.mu.Lock()
		p.form = r.PostForm
		p.mu.Unlock()
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if base64.RawURLEncoding.EncodeToString(sum[:]) != challenge || r.PostForm.Get("code") != "good-code" {
			w.WriteHeader(400)
			json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant"})
			return
		}
		now := clk.Now()
		c := map[string]any{
			"iss": p.srv.URL, "sub": "user-1", "aud": "client-a", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
			"nonce": r.PostForm.Get("test_nonce"), "email": "pat@example.com", "email_verified": true, "name": "Pat",
		}
		if edit != nil {
			edit(c)
		}
		if signer == nil {
			signer = key
		}
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: signer}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
		raw, _ := jwt.Signed(s).Claims(c).Serialize()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": "upstream-at", "token_type": "Bearer", "expires_in": 60, "id_token": raw})
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

type env struct {
	t     *testing.T
	h     *Handler
	srv   *httptest.Server
	rec   *recorder
	db    store.Store
	clk   *clock
	idp   *idp
	list  []config.UpstreamProvider
	nonce string // of the last started login
}

var serverKey = []byte("0123456789abcdef0123456789abcdef")

func newEnv(t *testing.T, providers ...func(p *idp) config.UpstreamProvider) *env {
	return newEnvWith(t, loginflow.Options{Store: storetest.SQLite(t), ServerKey: serverKey}, providers...)
}

// newEnvWith builds the handler over fo.Store (a *sqlstore.DB).
func newEnvWith(t *testing.T, fo loginflow.Options, providers ...func(p *idp) config.UpstreamProvider) *env {
	clk := &clock{now: time.Now()}
	p := newIDP(t, clk)
	e := &env{t: t, rec: &recorder{}, db: fo.Store.(*sqlstore.DB), clk: clk, idp: p}
	if len(providers) == 0 {
		providers = append(providers, oidcProvider)
	}
	for _, f := range providers {
		e.list = append(e.list, f(p))
	}
	e.srv, e.h = e.node(fo)
	return e
}

// node starts a handler for the env's providers over fo.Store, with its
// own Flows: another mcpgate node on the same database.
func (e *env) node(fo loginflow.Options) (*httptest.Server, *Handler) {
	return e.nodeAt(fo, "")
}

// nodeAt is node with the public URL base ("": the test server's URL).
func (e *env) nodeAt(fo loginflow.Options, base string) (*httptest.Server, *Handler) {
	t := e.t
	fo.Logger = quiet
	flows, err := loginflow.New(fo)
	if err != nil {
		t.Fatal(err)
	}
	db := fo.Store.(*sqlstore.DB)
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	if base == "" {
		base = srv.URL
	}
	h, err := New(Options{
		Providers: e.list, BaseURL: base, Flows: flows,
		Accounts: identity.NewProvisioner(identity.New(db, e.rec), db),
		Sessions: session.New(db, e.rec, session.Options{Logger: quiet}),
		Audit:    e.rec,
		ErrorPage: func(w http.ResponseWriter, r *http.Request, status int, title, message string) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(status)
			fmt.Fprintf(w, "<h1>%s</h1><p>%s</p>", title, message)
		},
		SafeReturnTo: func(s string) string {
			if strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "//") {
				return s
			}
			return "/account"
		},
		Timeout: 500 * time.Millisecond, Now: e.clk.Now, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.Routes(mux)
	return srv, h
}

func oidcProvider(p *idp) config.UpstreamProvider {
	return config.UpstreamProvider{Name: "corp", DisplayName: "Corp", Type: config.UpstreamOIDC, Issuer: p.srv.URL,
		ClientID: "client-a", ClientSecret: "s3cret", Scopes: []string{"openid", "email"}}
}

// browser is a cookie-keeping client that does not follow redirects.
func browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// start begins a login for provider name in b and returns the state; the
// fake IdP learns the PKCE challenge and the nonce.
func (e *env) start(b *http.Client, name string) string {
	e.t.Helper()
	resp, err := b.Get(e.srv.URL + "/login/upstream/" + name + "?return_to=" + url.QueryEscape("/oauth/consent?x=1"))
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("start: %d", resp.StatusCode)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	q := loc.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("redirect_uri") != e.srv.URL+"/login/upstream/"+name+"/callback" || q.Get("state") == "" {
		e.t.Fatalf("authorization URL %s", loc)
	}
	e.idp.mu.Lock()
	e.idp.challenge = q.Get("code_challenge")
	e.idp.mu.Unlock()
	e.nonce = q.Get("nonce")
	return q.Get("state")
}

// finish calls the callback; the fake IdP echoes the nonce unless told
// otherwise.
func (e *env) finish(b *http.Client, name, state, code string) (*http.Response, string) {
	e.t.Helper()
	return e.finishAt(e.srv.URL, b, name, state, code)
}

// finishAt calls the callback at the node serving base.
func (e *env) finishAt(base string, b *http.Client, name, state, code string) (*http.Response, string) {
	e.t.Helper()
	e.idp.mu.Lock()
	edit := e.idp.claims
	nonce := e.nonce
	e.idp.claims = func(c map[string]any) {
		c["nonce"] = nonce
		if edit != nil {
			edit(c)
		}
	}
	e.idp.mu.Unlock()
	defer func() { e.idp.mu.Lock(); e.idp.claims = edit; e.idp.mu.Unlock() }()
	resp, err := b.Get(base + "/login/upstream/" + name + "/callback?code=" + url.QueryEscape(code) + "&state=" + url.QueryEscape(state))
	if err != nil {
		e.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// login runs a whole login and returns the callback's answer.
func (e *env) login(name string) (*http.Response, string) {
	b := browser()
	return e.finish(b, name, e.start(b, name), "good-code")
}

func (e *env) refused(t *testing.T, resp *http.Response, body string, status int, reason string) {
	t.Helper()
	if resp.StatusCode != status || !strings.Contains(body, "<h1>") {
		t.Errorf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ev := e.rec.last(t, TypeLogin); ev.Outcome != store.OutcomeDeny || ev.Reason != reason {
		t.Errorf("upstream.login = %s/%s %v, want deny/%s", ev.Outcome, ev.Reason, ev.Details, reason)
	}
	for _, c := range resp.Cookies() {
		if strings.Contains(c.Name, "session") && c.MaxAge >= 0 {
			t.Errorf("a refused login set the session cookie %s", c.Name)
		}
	}
}

func TestLoginSucceeds(t *testing.T) {
	e := newEnv(t)
	resp, body := e.login("corp")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/oauth/consent?x=1" {
		t.Fatalf("callback: %d %s %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	var sess bool
	for _, c := range resp.Cookies() {
		if c.Name == session.CookieNameInsecure && c.Value != "" {
			sess = true
		}
		if strings.Contains(c.Value, "upstream-at") {
			t.Errorf("cookie %s carries the upstream's token", c.Name)
		}
	}
	if !sess {
		t.Errorf("no session cookie: %v", resp.Cookies())
	}
	ev := e.rec.last(t, TypeLogin)
	if ev.Outcome != store.OutcomeAllow || ev.Details["provider"] != "corp" || ev.Details["subject"] != "user-1" || ev.UserID == "" {
		t.Errorf("upstream.login = %+v", ev)
	}
	if pv := e.rec.last(t, identity.TypeUserProvisioned); pv.UserID != ev.UserID || pv.Details["email"] != "pat@example.com" {
		t.Errorf("user.provisioned = %+v", pv)
	}
	link, err := e.db.GetIdentity(context.Background(), e.idp.srv.URL, "user-1")
	if err != nil || link.UserID != ev.UserID {
		t.Errorf("identity link = %+v, %v", link, err)
	}
	// A second login finds the same user.
	e.login("corp")
	if again := e.rec.last(t, TypeLogin); again.UserID != ev.UserID {
		t.Errorf("second login went to %s, first to %s", again.UserID, ev.UserID)
	}
}

// stateRefused: the callback was refused as state_mismatch, for the
// given problem (audit detail state_problem).
func (e *env) stateRefused(t *testing.T, resp *http.Response, body, problem string) {
	t.Helper()
	e.refused(t, resp, body, http.StatusBadRequest, ReasonStateMismatch)
	if got := e.rec.last(t, TypeLogin).Details["state_problem"]; got != problem {
		t.Errorf("state_problem = %v, want %s", got, problem)
	}
}

func TestStateReplayMismatchAndExpiry(t *testing.T) {
	e := newEnv(t)
	b := browser()
	state := e.start(b, "corp")
	if resp, body := e.finish(b, "corp", state, "good-code"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("first use: %d %s", resp.StatusCode, body)
	}
	// Back after signing in: the signed-in browser goes on to "/" (the
	// replay is still audited); without a session it is an error page.
	resp, body := e.finish(b, "corp", state, "good-code")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Errorf("Back to the used callback while signed in: %d %q %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if ev := e.rec.last(t, TypeLogin); ev.Reason != ReasonStateMismatch || ev.Details["state_problem"] != "replayed" {
		t.Errorf("the Back replay was audited as %s %v", ev.Reason, ev.Details)
	}
	b = browser() // signed out from here on
	resp, body = e.finish(b, "corp", "made-up-state", "good-code")
	e.stateRefused(t, resp, body, "unknown")

	// A state started in another browser (login CSRF): refused, and used up.
	state = e.start(b, "corp")
	resp, body = e.finish(browser(), "corp", state, "good-code")
	e.stateRefused(t, resp, body, "browser_mismatch")
	resp, body = e.finish(b, "corp", state, "good-code")
	e.stateRefused(t, resp, body, "replayed")

	// Older than 10 minutes.
	state = e.start(b, "corp")
	e.clk.add(FlowTTL + time.Second)
	resp, body = e.finish(b, "corp", state, "good-code")
	e.stateRefused(t, resp, body, "expired")
}

// cookieClient sends cookie with every request (a browser on an https
// origin; the test servers speak http) and does not follow redirects.
type cookieClient string

func (c cookieClient) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Cookie", string(c))
	return http.DefaultTransport.RoundTrip(r)
}

// TestBindingCookieOnHTTPS (review #5, F5): on an https public URL the
// binding cookie is __Host-mcpgate_upstream (Path=/, Secure), which a
// sibling subdomain cannot set; a planted cookie under the plain name
// binds nothing. On http it keeps its plain name and path.
func TestBindingCookieOnHTTPS(t *testing.T) {
	db := storetest.SQLite(t)
	e := newEnvWith(t, loginflow.Options{Store: db, ServerKey: serverKey})
	srv, _ := e.nodeAt(loginflow.Options{Store: db, ServerKey: serverKey}, "https://mcp.example.com")
	start := func() (state string, c *http.Cookie) {
		t.Helper()
		resp, err := browser().Get(srv.URL + "/login/upstream/corp")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		cs := resp.Cookies()
		if len(cs) != 1 || cs[0].Name != "__Host-mcpgate_upstream" || cs[0].Path != "/" || !cs[0].Secure || !cs[0].HttpOnly || cs[0].Domain != "" {
			t.Fatalf("binding cookie on https: %+v", cs)
		}
		q := resp.Header.Get("Location")
		loc, _ := url.Parse(q)
		e.idp.mu.Lock()
		e.idp.challenge = loc.Query().Get("code_challenge")
		e.idp.mu.Unlock()
		e.nonce = loc.Query().Get("nonce")
		return loc.Query().Get("state"), cs[0]
	}
	noFollow := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	state, c := start()
	planted := &http.Client{Transport: cookieClient("mcpgate_upstream=" + c.Value), CheckRedirect: noFollow}
	resp, body := e.finishAt(srv.URL, planted, "corp", state, "good-code")
	e.stateRefused(t, resp, body, "browser_mismatch")

	state, c = start()
	real := &http.Client{Transport: cookieClient(c.Name + "=" + c.Value), CheckRedirect: noFollow}
	if resp, body := e.finishAt(srv.URL, real, "corp", state, "good-code"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback with the __Host- cookie: %d %s", resp.StatusCode, body)
	}

	resp, err := browser().Get(e.srv.URL + "/login/upstream/corp")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cs := resp.Cookies(); len(cs) != 1 || cs[0].Name != "mcpgate_upstream" || cs[0].Path != "/login/upstream/" || cs[0].Secure {
		t.Errorf("binding cookie on http: %+v", cs)
	}
}

func TestStateOfAnotherProvider(t *testing.T) {
	e := newEnv(t, oidcProvider, func(p *idp) config.UpstreamProvider {
		c := oidcProvider(p)
		c.Name = "other"
		return c
	})
	b := browser()
	state := e.start(b, "corp")
	resp, body := e.finish(b, "other", state, "good-code")
	e.stateRefused(t, resp, body, "other_provider")
}

// TestTwoNodes: a login started on one node finishes on another node of
// the same database and server key (the PKCE verifier and nonce are
// opened there); the stored row holds neither the state, the verifier nor
// the nonce in clear; racing callbacks on both nodes sign in once.
func TestTwoNodes(t *testing.T) {
	db := storetest.SQLite(t)
	e := newEnvWith(t, loginflow.Options{Store: db, ServerKey: serverKey})
	second, _ := e.node(loginflow.Options{Store: db, ServerKey: serverKey})

	b := browser()
	state := e.start(b, "corp")
	var (
		row    string
		sealed []byte
	)
	if err := db.SQL().QueryRowContext(t.Context(),
		`SELECT id || kind || provider || return_to || posted_user, sealed FROM login_flows`).Scan(&row, &sealed); err != nil {
		t.Fatal(err)
	}
	if len(sealed) == 0 || e.nonce == "" {
		t.Fatal("nothing sealed, or no nonce sent")
	}
	for _, secret := range []string{state, e.nonce} {
		if strings.Contains(row, secret) || bytes.Contains(sealed, []byte(secret)) {
			t.Fatalf("the stored login flow holds a secret in clear")
		}
	}

	if resp, body := e.finishAt(second.URL, b, "corp", state, "good-code"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/oauth/consent?x=1" {
		t.Fatalf("callback at the other node: %d %s %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if ev := e.rec.last(t, TypeLogin); ev.Outcome != store.OutcomeAllow || ev.Details["subject"] != "user-1" {
		t.Fatalf("upstream.login = %+v", ev)
	}

	state = e.start(b, "corp")
	const n = 8
	codes := make([]string, n)
	var wg sync.WaitGroup
	// The provider's ID token carries this login's nonce for all of them
	// (set once: finishAt's own set-and-restore would race here).
	e.idp.mu.Lock()
	nonce := e.nonce
	e.idp.claims = func(c map[string]any) { c["nonce"] = nonce }
	e.idp.mu.Unlock()
	defer func() { e.idp.mu.Lock(); e.idp.claims = nil; e.idp.mu.Unlock() }()
	for i := range n {
		base := []string{e.srv.URL, second.URL}[i%2]
		wg.Go(func() {
			resp, err := b.Get(base + "/login/upstream/corp/callback?code=good-code&state=" + url.QueryEscape(state))
			if err != nil {
				codes[i] = err.Error()
				return
			}
			resp.Body.Close()
			codes[i] = fmt.Sprintf("%d %s", resp.StatusCode, resp.Header.Get("Location"))
		})
	}
	wg.Wait()
	won := 0
	for _, c := range codes {
		switch c {
		case "303 /oauth/consent?x=1":
			won++
		case "400 ", "303 /": // replayed: an error page, or on to "/" for a browser still signed in
		default:
			t.Errorf("callback answered %q", c)
		}
	}
	if won != 1 {
		t.Errorf("racing callbacks on two nodes: %d signed in (codes %v), want exactly 1", won, codes)
	}
}

// TestStartLimits: starts are limited per client IP (429 with
// Retry-After, audited once, before any discovery) and in total (503 when
// too many logins are in progress).
func TestStartLimits(t *testing.T) {
	e := newEnvWith(t, loginflow.Options{Store: storetest.SQLite(t), ServerKey: serverKey,
		StartLimiter: ratelimit.NewMemory(time.Hour, 3, 0), MaxPending: 2})
	get := func() (*http.Response, string) {
		resp, err := browser().Get(e.srv.URL + "/login/upstream/corp")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(body)
	}
	e.start(browser(), "corp")
	e.start(browser(), "corp")
	resp, body := get()
	e.refused(t, resp, body, http.StatusServiceUnavailable, loginflow.ReasonTooManyPending)
	if resp.Header.Get("Retry-After") != "60" {
		t.Errorf("Retry-After %q over the cap", resp.Header.Get("Retry-After"))
	}
	for range 3 {
		resp, body = get()
		e.refused(t, resp, body, http.StatusTooManyRequests, loginflow.ReasonRateLimited)
		if resp.Header.Get("Retry-After") == "" || resp.Header.Get("Location") != "" || len(resp.Cookies()) != 0 {
			t.Errorf("429: Retry-After %q, Location %q, cookies %v", resp.Header.Get("Retry-After"), resp.Header.Get("Location"), resp.Cookies())
		}
	}
	e.rec.mu.Lock()
	limited := 0
	for _, ev := range e.rec.events {
		if ev.Reason == loginflow.ReasonRateLimited {
			limited++
		}
	}
	e.rec.mu.Unlock()
	if limited != 1 {
		t.Errorf("%d rate_limited events for one flood, want 1", limited)
	}
}

func TestIDTokenChecks(t *testing.T) {
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	cases := []struct {
		name   string
		edit   func(c map[string]any)
		forged bool
		reason string
	}{
		{"nonce mismatch", func(c map[string]any) { c["nonce"] = "another-login" }, false, ReasonNonceMismatch},
		{"no nonce", func(c map[string]any) { delete(c, "nonce") }, false, ReasonNonceMismatch},
		{"for another client", func(c map[string]any) { c["aud"] = "client-b" }, false, ReasonBadIDToken},
		{"expired", func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }, false, ReasonBadIDToken},
		{"other issuer", func(c map[string]any) { c["iss"] = "https://evil.example" }, false, ReasonBadIDToken},
		{"forged signature", nil, true, ReasonBadIDToken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.idp.claims = tc.edit
			if tc.forged {
				e.idp.sign = other
			}
			resp, body := e.login("corp")
			e.refused(t, resp, body, http.StatusForbidden, tc.reason)
			if _, err := e.db.GetIdentity(context.Background(), e.idp.srv.URL, "user-1"); err == nil {
				t.Errorf("a refused login provisioned the account")
			}
		})
	}
	t.Run("no id_token", func(t *testing.T) {
		e := newEnv(t)
		e.idp.token = func(w http.ResponseWriter) bool {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"access_token":"x","token_type":"Bearer"}`)
			return true
		}
		resp, body := e.login("corp")
		e.refused(t, resp, body, http.StatusForbidden, ReasonBadIDToken)
	})
}

func TestUpstreamSlowOrGarbage(t *testing.T) {
	t.Run("slow token endpoint", func(t *testing.T) {
		e := newEnv(t)
		e.idp.delay = 5 * time.Second
		start := time.Now()
		resp, body := e.login("corp")
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("the callback took %s; the timeout is 500ms", d)
		}
		e.refused(t, resp, body, http.StatusBadGateway, ReasonUpstreamError)
	})
	t.Run("garbage token answer", func(t *testing.T) {
		e := newEnv(t)
		e.idp.token = func(w http.ResponseWriter) bool {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"access_token": [1,2`)
			return true
		}
		resp, body := e.login("corp")
		e.refused(t, resp, body, http.StatusBadGateway, ReasonUpstreamError)
	})
	t.Run("garbage id_token", func(t *testing.T) {
		e := newEnv(t)
		e.idp.token = func(w http.ResponseWriter) bool {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"access_token":"x","token_type":"Bearer","id_token":"not.a.jwt"}`)
			return true
		}
		resp, body := e.login("corp")
		e.refused(t, resp, body, http.StatusForbidden, ReasonBadIDToken)
	})
	t.Run("garbage discovery", func(t *testing.T) {
		junk := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>hello") }))
		defer junk.Close()
		e := newEnv(t, func(p *idp) config.UpstreamProvider {
			c := oidcProvider(p)
			c.Issuer = junk.URL
			return c
		})
		resp, err := browser().Get(e.srv.URL + "/login/upstream/corp")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		e.refused(t, resp, string(body), http.StatusBadGateway, ReasonUpstreamError)
	})
	t.Run("provider says no", func(t *testing.T) {
		e := newEnv(t)
		b := browser()
		state := e.start(b, "corp")
		resp, err := b.Get(e.srv.URL + "/login/upstream/corp/callback?error=access_denied&state=" + url.QueryEscape(state))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		e.refused(t, resp, string(body), http.StatusForbidden, ReasonDenied)
	})
	t.Run("wrong code", func(t *testing.T) {
		e := newEnv(t)
		b := browser()
		resp, body := e.finish(b, "corp", e.start(b, "corp"), "bad-code")
		e.refused(t, resp, body, http.StatusBadGateway, ReasonUpstreamError)
	})
}

func TestAllowRules(t *testing.T) {
	acct := account{Email: "pat@Example.com", EmailVerified: true, Groups: []string{"eng", "ops"},
		Claims: map[string]any{"dept": "r&d", "roles": []any{"a", "b"}, "staff": true}}
	cases := []struct {
		allow config.UpstreamAllow
		edit  func(a *account)
		ok    bool
	}{
		{config.UpstreamAllow{}, nil, true},
		{config.UpstreamAllow{EmailDomains: []string{"example.com"}}, nil, true},
		{config.UpstreamAllow{EmailDomains: []string{"example.org"}}, nil, false},
		{config.UpstreamAllow{EmailDomains: []string{"example.com"}}, func(a *account) { a.EmailVerified = false }, false},
		{config.UpstreamAllow{EmailDomains: []string{"example.com"}}, func(a *account) { a.Email = "pat@evil.com@example.com" }, false},
		// U+212A KELVIN SIGN lower-cases to "k": a look-alike domain is not kelvin.example.
		{config.UpstreamAllow{EmailDomains: []string{"kelvin.example"}}, func(a *account) { a.Email = "pat@\u212Aelvin.example" }, false},
		{config.UpstreamAllow{Groups: []string{"ops"}}, nil, true},
		{config.UpstreamAllow{Groups: []string{"finance"}}, nil, false},
		{config.UpstreamAllow{Claims: map[string][]string{"dept": {"r&d"}, "roles": {"b"}, "staff": {"true"}}}, nil, true},
		{config.UpstreamAllow{Claims: map[string][]string{"roles": {"c"}}}, nil, false},
		{config.UpstreamAllow{Claims: map[string][]string{"missing": {"x"}}}, nil, false},
		{config.UpstreamAllow{EmailDomains: []string{"example.com"}, Groups: []string{"finance"}}, nil, false},
	}
	for i, tc := range cases {
		a := acct
		if tc.edit != nil {
			tc.edit(&a)
		}
		if _, ok := allowed(tc.allow, a); ok != tc.ok {
			t.Errorf("case %d: allowed = %v, want %v", i, ok, tc.ok)
		}
	}
	// End to end: refused, audited, nothing provisioned.
	e := newEnv(t, func(p *idp) config.UpstreamProvider {
		c := oidcProvider(p)
		c.Allow = config.UpstreamAllow{EmailDomains: []string{"example.org"}}
		return c
	})
	resp, body := e.login("corp")
	e.refused(t, resp, body, http.StatusForbidden, ReasonNotAllowed)
	if _, err := e.db.GetIdentity(context.Background(), e.idp.srv.URL, "user-1"); err == nil {
		t.Errorf("a refused account was provisioned")
	}
}

func TestQuirkParams(t *testing.T) {
	e := newEnv(t, func(p *idp) config.UpstreamProvider {
		c := oidcProvider(p)
		c.Quirks = config.UpstreamQuirks{Audience: "https://api.example.com", Resource: "https://api.example.com/r"}
		return c
	})
	resp, err := browser().Get(e.srv.URL + "/login/upstream/corp")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if q := loc.Query(); q.Get("audience") != "https://api.example.com" || q.Get("resource") != "https://api.example.com/r" || q.Get("nonce") == "" {
		t.Errorf("authorization URL %s", loc)
	}
}

func TestMultitenantIssuerTemplate(t *testing.T) {
	tmpl := "https://login.microsoftonline.com/{tenantid}/v2.0"
	for iss, want := range map[string]string{
		"https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0": "9188040d-6c67-4c5b-b112-36a304b66dad",
		"https://login.microsoftonline.com/x/y/v2.0":                                  "",
		"https://evil.example/9188040d/v2.0":                                          "",
		"https://login.microsoftonline.com//v2.0":                                     "",
		"https://login.microsoftonline.com/abc/v2.0/extra":                            "",
		"https://login.microsoftonline.com/\u212A/v2.0":                               "",
	} {
		if got, ok := issuerTenant(tmpl, iss); got != want || ok != (want != "") {
			t.Errorf("issuerTenant(%s) = %q, %v; want %q", iss, got, ok, want)
		}
	}
	if _, ok := issuerTenant("https://login.microsoftonline.com/common/v2.0", "https://login.microsoftonline.com/common/v2.0"); ok {
		t.Error("a template without {tenantid} names a tenant")
	}
}

// REVIEW-5 F2: a multi-tenant provider (Entra /common) signs in only the
// accounts of allowed_tenants. Anybody can create a tenant and assign
// themselves app roles in it; such an account is refused before anything
// is stored, and the audit names the tenant.
func TestMultitenantAllowedTenants(t *testing.T) {
	const (
		ours  = "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"
		other = "0b9b4e36-2c5b-4c5e-9d43-5b8a7c1e0f11" // the attacker's own tenant
	)
	entra := func(p *idp) config.UpstreamProvider {
		return config.UpstreamProvider{Name: "entra", DisplayName: "Microsoft", Type: config.UpstreamOIDC, Issuer: p.srv.URL + "/common/v2.0",
			ClientID: "client-a", ClientSecret: "s", Scopes: []string{"openid"}, RolesClaim: "roles",
			Quirks: config.UpstreamQuirks{AllowIssuerMismatchForMultitenant: true, AllowedTenants: []string{ours}}}
	}
	signIn := func(e *env, iss string, tid any) (*http.Response, string) {
		e.idp.claims = func(c map[string]any) {
			c["iss"], c["sub"], c["roles"] = iss, "evil", []any{"auditor"}
			if tid != nil {
				c["tid"] = tid
			}
		}
		return e.login("entra")
	}
	t.Run("allowed tenant", func(t *testing.T) {
		e := newEnv(t, entra)
		iss := e.idp.srv.URL + "/" + ours + "/v2.0"
		resp, body := signIn(e, iss, ours)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("callback %d %s", resp.StatusCode, body)
		}
		// Linked under the tenant's own issuer, with the tenant's roles.
		if _, err := e.db.GetIdentity(context.Background(), iss, "evil"); err != nil {
			t.Errorf("link under %s: %v", iss, err)
		}
		if ev := e.rec.last(t, TypeLogin); ev.Outcome != store.OutcomeAllow || fmt.Sprint(ev.Details["claims"]) != "[roles]" {
			t.Errorf("upstream.login = %s %v", ev.Outcome, ev.Details)
		}
	})
	for _, tc := range []struct {
		name   string
		tenant string
		tid    any
		reason string
		detail string
	}{
		{"another tenant", other, other, ReasonTenantNotAllowed, other},
		{"another tenant, no tid", other, nil, ReasonTenantNotAllowed, other},
		{"the configured /common issuer itself", "common", nil, ReasonTenantNotAllowed, "common"},
		{"allowed tenant in iss, another in tid", ours, other, ReasonBadIDToken, ""},
		{"tid not a string", ours, 7, ReasonBadIDToken, ""},
		{"iss outside the template", ours + "/x", ours, ReasonBadIDToken, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, entra)
			iss := e.idp.srv.URL + "/" + tc.tenant + "/v2.0"
			resp, body := signIn(e, iss, tc.tid)
			e.refused(t, resp, body, http.StatusForbidden, tc.reason)
			ev := e.rec.last(t, TypeLogin)
			if tc.detail != "" && ev.Details["tenant"] != tc.detail {
				t.Errorf("audit details %v, want tenant %s", ev.Details, tc.detail)
			}
			if _, err := e.db.GetIdentity(context.Background(), iss, "evil"); err == nil {
				t.Error("a refused tenant's account was provisioned")
			}
		})
	}
}

// githubDouble imitates github.com's OAuth endpoints and user API.
func githubDouble(t *testing.T, verified bool) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login/oauth/access_token", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		if r.PostForm.Get("code") != "good-code" || r.PostForm.Get("client_secret") != "gh-secret" || r.PostForm.Get("code_verifier") == "" {
			json.NewEncoder(w).Encode(map[string]string{"error": "bad_verification_code"})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"gho_x","token_type":"bearer","scope":"read:user,user:email"}`)
	})
	auth := func(next http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer gho_x" {
				w.WriteHeader(401)
				return
			}
			next(w, r)
		}
	}
	mux.HandleFunc("GET /api/user", auth(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"id": 4242, "login": "octo", "name": "Octo Cat", "email": "public@example.com"}`)
	}))
	mux.HandleFunc("GET /api/user/emails", auth(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `[{"email":"old@example.com","primary":false,"verified":true},{"email":"octo@example.com","primary":true,"verified":%v}]`, verified)
	}))
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func TestGitHub(t *testing.T) {
	for _, verified := range []bool{true, false} {
		t.Run(fmt.Sprintf("verified=%v", verified), func(t *testing.T) {
			gh := githubDouble(t, verified)
			e := newEnv(t, func(*idp) config.UpstreamProvider {
				return config.UpstreamProvider{Name: "github", DisplayName: "GitHub", Type: config.UpstreamGitHub,
					Issuer: "https://github.com", ClientID: "gh-client", ClientSecret: "gh-secret", Scopes: []string{"read:user", "user:email"},
					AuthURL: gh.URL + "/login/oauth/authorize", TokenURL: gh.URL + "/login/oauth/access_token", APIURL: gh.URL + "/api"}
			})
			resp, body := e.login("github")
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("callback: %d %s", resp.StatusCode, body)
			}
			link, err := e.db.GetIdentity(context.Background(), "https://github.com", "4242")
			if err != nil {
				t.Fatal(err)
			}
			u, err := e.db.GetUser(context.Background(), link.UserID)
			if err != nil {
				t.Fatal(err)
			}
			want := identity.PlaceholderEmail("https://github.com", "4242")
			if verified {
				want = "octo@example.com"
			}
			if u.Email != want || u.DisplayName != "Octo Cat" || link.EmailVerified != verified {
				t.Errorf("user %s %q, link verified %v; want %s", u.Email, u.DisplayName, link.EmailVerified, want)
			}
		})
	}
	t.Run("API garbage", func(t *testing.T) {
		gh := githubDouble(t, true)
		e := newEnv(t, func(*idp) config.UpstreamProvider {
			return config.UpstreamProvider{Name: "github", DisplayName: "GitHub", Type: config.UpstreamGitHub,
				Issuer: "https://github.com", ClientID: "gh-client", ClientSecret: "gh-secret",
				AuthURL: gh.URL + "/login/oauth/authorize", TokenURL: gh.URL + "/login/oauth/access_token", APIURL: gh.URL + "/nothing"}
		})
		resp, body := e.login("github")
		e.refused(t, resp, body, http.StatusBadGateway, ReasonUpstreamError)
	})
}

func TestUnknownProviderAndMethod(t *testing.T) {
	e := newEnv(t)
	resp, err := http.Get(e.srv.URL + "/login/upstream/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown provider: %d", resp.StatusCode)
	}
	resp, err = http.Post(e.srv.URL+"/login/upstream/corp/callback", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST callback: %d", resp.StatusCode)
	}
}

// TestRolesClaimAndCustomClaims: a provider's roles_claim becomes the
// session's "roles" custom claim (bounded, never "admin") and its
// custom_claims are kept with the session like bring-your-own-login's, so
// they reach tools and, where configured, access tokens; claims that do
// not fit refuse the sign-in before anything is stored.
func TestRolesClaimAndCustomClaims(t *testing.T) {
	withClaims := func(p *idp) config.UpstreamProvider {
		c := oidcProvider(p)
		c.RolesClaim = "realm_access.roles"
		c.CustomClaims = []string{"organization_id", "seats", "absent"}
		return c
	}
	sessionClaimsOf := func(t *testing.T, e *env) (audit.Event, map[string]any) {
		t.Helper()
		ev := e.rec.last(t, TypeLogin)
		if ev.Outcome != store.OutcomeAllow {
			t.Fatalf("upstream.login = %+v", ev)
		}
		sess, err := e.db.GetSession(context.Background(), ev.CredentialID)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if sess.Claims != "" {
			if err := json.Unmarshal([]byte(sess.Claims), &m); err != nil {
				t.Fatalf("session claims %q: %v", sess.Claims, err)
			}
		}
		return ev, m
	}

	t.Run("kept", func(t *testing.T) {
		e := newEnv(t, withClaims)
		e.idp.claims = func(c map[string]any) {
			c["realm_access"] = map[string]any{"roles": []string{"auditor", "admin", "support", "auditor"}}
			c["organization_id"], c["seats"], c["department"] = "org_1", 12, "not kept"
		}
		if resp, body := e.login("corp"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("callback: %d %s", resp.StatusCode, body)
		}
		ev, got := sessionClaimsOf(t, e)
		want := map[string]any{"roles": []any{"auditor", "support"}, "organization_id": "org_1", "seats": 12.0}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("session claims (-want +got):\n%s", d)
		}
		if d := cmp.Diff([]string{"organization_id", "roles", "seats"}, ev.Details["claims"]); d != "" {
			t.Errorf("audit claim names (-want +got):\n%s", d)
		}
	})
	t.Run("groups as one string", func(t *testing.T) {
		e := newEnv(t, func(p *idp) config.UpstreamProvider {
			c := oidcProvider(p)
			c.RolesClaim = "groups"
			return c
		})
		e.idp.claims = func(c map[string]any) { c["groups"] = "mcp-users auditor" }
		e.login("corp")
		if _, got := sessionClaimsOf(t, e); !cmp.Equal(got, map[string]any{"roles": []any{"mcp-users", "auditor"}}) {
			t.Errorf("session claims = %v", got)
		}
	})
	t.Run("nothing to keep", func(t *testing.T) {
		e := newEnv(t, withClaims)
		e.login("corp")
		if ev, got := sessionClaimsOf(t, e); got != nil || ev.Details["claims"] != nil {
			t.Errorf("session claims = %v, audit %v; want none", got, ev.Details["claims"])
		}
	})
	for name, edit := range map[string]func(c map[string]any){
		"roles longer than 1 KiB": func(c map[string]any) {
			var many []any
			for i := range 40 {
				many = append(many, fmt.Sprintf("group-%02d-%s", i, strings.Repeat("g", 30)))
			}
			c["realm_access"] = map[string]any{"roles": many}
		},
		"custom claim is an object": func(c map[string]any) { c["organization_id"] = map[string]any{"id": "org_1"} },
		"custom claim too long":     func(c map[string]any) { c["organization_id"] = strings.Repeat("o", 2000) },
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, withClaims)
			e.idp.claims = edit
			resp, body := e.login("corp")
			e.refused(t, resp, body, http.StatusForbidden, ReasonInvalidClaims)
			if !strings.Contains(body, "Ask your mcpgate administrator") {
				t.Errorf("page: %s", body)
			}
			if _, err := e.db.GetIdentity(context.Background(), e.idp.srv.URL, "user-1"); err == nil {
				t.Error("a refused sign-in provisioned the account")
			}
		})
	}
}

func TestDenyRules(t *testing.T) {
	acct := account{Email: "pat@Contractors.Example.com", EmailVerified: false, Groups: []string{"eng", "interns"},
		Claims: map[string]any{"dept": "r&d", "roles": []any{"a", "b"}, "suspended": true}}
	email := func(e string) func(a *account) { return func(a *account) { a.Email = e } }
	overage := func(claims map[string]any) func(a *account) {
		return func(a *account) { a.Groups, a.Claims = nil, claims }
	}
	cases := []struct {
		name string
		deny config.UpstreamRules
		edit func(a *account)
		rule string // "" when the account passes
	}{
		{"no deny rules", config.UpstreamRules{}, nil, ""},
		{"denied domain, even unverified, any case", config.UpstreamRules{EmailDomains: []string{"contractors.example.com"}}, nil, "denied email domain"},
		{"parent domain is another domain", config.UpstreamRules{EmailDomains: []string{"example.com"}}, nil, ""},
		{"no email, nothing to deny", config.UpstreamRules{EmailDomains: []string{"contractors.example.com"}}, email(""), ""},
		// An address the domain cannot be read from reliably is refused
		// rather than waved through: it might be in a denied domain.
		{"two @: refused", config.UpstreamRules{EmailDomains: []string{"example.com"}}, email("pat@evil.com@example.com"), "unreadable email address"},
		{"non-ASCII look-alike: refused", config.UpstreamRules{EmailDomains: []string{"other.example"}}, email("pat@\u212Aelvin.example"), "unreadable email address"},
		{"unreadable address, no domain rule", config.UpstreamRules{Groups: []string{"finance"}}, email("pat@evil.com@example.com"), ""},
		{"denied group", config.UpstreamRules{Groups: []string{"finance", "interns"}}, nil, "denied group"},
		{"other group", config.UpstreamRules{Groups: []string{"finance"}}, nil, ""},
		{"denied claim value in a list", config.UpstreamRules{Claims: map[string][]string{"roles": {"b"}}}, nil, "denied claim roles"},
		{"denied boolean claim", config.UpstreamRules{Claims: map[string][]string{"suspended": {"true"}}}, nil, "denied claim suspended"},
		{"claim absent", config.UpstreamRules{Claims: map[string][]string{"missing": {"x"}}}, nil, ""},
		// Entra "groups overage": a user in too many groups gets no groups
		// claim, only a pointer to it (OIDC Core §5.6.2 _claim_names), or
		// hasgroups. A deny rule that cannot see the groups refuses.
		{"groups overage, _claim_names", config.UpstreamRules{Groups: []string{"finance"}}, overage(map[string]any{"_claim_names": map[string]any{"groups": "src1"}}), "group list not in the ID token"},
		{"groups overage, hasgroups", config.UpstreamRules{Groups: []string{"finance"}}, overage(map[string]any{"hasgroups": true}), "group list not in the ID token"},
		{"groups overage, no group rule", config.UpstreamRules{Claims: map[string][]string{"missing": {"x"}}}, overage(map[string]any{"hasgroups": true}), ""},
		{"distributed claim", config.UpstreamRules{Claims: map[string][]string{"dept": {"sales"}}}, overage(map[string]any{"_claim_names": map[string]any{"dept": "src1"}}), "claim dept not in the ID token"},
		{"hasgroups false", config.UpstreamRules{Groups: []string{"finance"}}, overage(map[string]any{"hasgroups": false}), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := acct
			if tc.edit != nil {
				tc.edit(&a)
			}
			rule, ok := notDenied(tc.deny, a)
			if ok != (tc.rule == "") || rule != tc.rule {
				t.Errorf("notDenied = %q, %v; want %q", rule, ok, tc.rule)
			}
		})
	}
	// End to end: allowed by the allow rules, refused by a deny rule,
	// audited with the rule, nobody provisioned.
	e := newEnv(t, func(p *idp) config.UpstreamProvider {
		c := oidcProvider(p)
		c.Allow = config.UpstreamAllow{EmailDomains: []string{"example.com"}}
		c.Deny = config.UpstreamRules{Groups: []string{"interns"}}
		return c
	})
	e.idp.claims = func(c map[string]any) { c["groups"] = []any{"eng", "interns"} }
	resp, body := e.login("corp")
	e.refused(t, resp, body, http.StatusForbidden, ReasonNotAllowed)
	if !strings.Contains(body, "denied group") {
		t.Errorf("the page does not say which rule refused: %s", body)
	}
	if _, err := e.db.GetIdentity(context.Background(), e.idp.srv.URL, "user-1"); err == nil {
		t.Errorf("a denied account was provisioned")
	}
	// Groups overage: no groups claim, a pointer to them instead.
	e.idp.claims = func(c map[string]any) {
		c["_claim_names"] = map[string]any{"groups": "src1"}
		c["_claim_sources"] = map[string]any{"src1": map[string]any{"endpoint": "https://graph.example/getMemberObjects"}}
	}
	resp, body = e.login("corp")
	e.refused(t, resp, body, http.StatusForbidden, ReasonNotAllowed)
	if !strings.Contains(body, "group list not in the ID token") {
		t.Errorf("the page does not say why: %s", body)
	}
	// The same account outside the denied group signs in.
	e.idp.claims = func(c map[string]any) { c["groups"] = []any{"eng"} }
	if resp, body := e.login("corp"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("an account outside the denied group: %d %s", resp.StatusCode, body)
	}
}

// A provider that never says email_verified (another mcpgate): its email
// fails the email-domain allow rule — and the audit says it was the
// verification, not the domain — until the operator vouches for its
// addresses with treat_email_as_verified; then the user also gets the
// real address instead of a placeholder.
func TestTreatEmailAsVerified(t *testing.T) {
	for _, trust := range []bool{false, true} {
		e := newEnv(t, func(p *idp) config.UpstreamProvider {
			c := oidcProvider(p)
			c.Allow = config.UpstreamAllow{EmailDomains: []string{"example.com"}}
			c.TreatEmailAsVerified = trust
			return c
		})
		e.idp.claims = func(c map[string]any) { delete(c, "email_verified") }
		resp, body := e.login("corp")
		if !trust {
			e.refused(t, resp, body, http.StatusForbidden, ReasonNotAllowed)
			if ev := e.rec.last(t, TypeLogin); ev.Details["email_verified"] != false || ev.Details["email_domain"] != "example.com" {
				t.Errorf("refusal details %v: want email_verified false and email_domain example.com", ev.Details)
			}
			continue
		}
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("trusted provider: %d %s", resp.StatusCode, body)
		}
		if pv := e.rec.last(t, identity.TypeUserProvisioned); pv.Details["email"] != "pat@example.com" {
			t.Errorf("user.provisioned = %v, want the provider's address", pv.Details)
		}
	}
}
