package server_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mcpgate/mcpgate/examples/custom-login/app"
	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/browsertest"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/customauth"
	"github.com/mcpgate/mcpgate/internal/loginflow"
	"github.com/mcpgate/mcpgate/internal/store"
)

// from sends one request to e's handler from the client address ip, with
// header name, value pairs h.
func (e *env) from(ip, method, path, contentType, body string, h ...string) httpResult {
	return serveFrom(e.srv.Handler(), ip, method, path, contentType, body, h...)
}

// serveFrom sends one request to handler from the client address ip.
func serveFrom(handler http.Handler, ip, method, path, contentType, body string, h ...string) httpResult {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.RemoteAddr = net.JoinHostPort(ip, "4711")
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(h); i += 2 {
		r.Header.Set(h[i], h[i+1])
	}
	w := httptest.NewRecorder()
	handler.ServeHTTP(w, r)
	return httpResult{w.Code, w.Header(), w.Body.Bytes()}
}

// auditEvents returns every audit event of typ, newest first.
func (e *env) auditEvents(typ string) []store.AuditEvent {
	e.t.Helper()
	core := e.srv.Core()
	if err := core.Audit.Flush(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	evs, err := core.DB.ListAudit(context.Background(), store.AuditFilter{Type: typ, Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

// REVIEW-5 F3: refused, unauthenticated requests to the custom-login
// endpoints cost an audit row each. From one address they are limited:
// past the refusal budget the app's API answers 429 in its JSON shape and
// the browser route a readable 429 page, both with Retry-After, and the
// audit log gets one rate_limited note instead of a row per request. A
// valid post from the same address still goes through.
func TestLoginRefusalFlood(t *testing.T) {
	e := customLoginEnv(t)
	const ip, n = "203.0.113.50", 100
	var limitedAPI, limitedPage int
	for i := range n {
		r := e.from(ip, "POST", fmt.Sprintf("/api/login-requests/lr_%d/user", i), "application/json", `{"sub":"x"}`,
			"Authorization", "Bearer wrong")
		if r.status == http.StatusTooManyRequests {
			limitedAPI++
			if m := r.json(t); m["error"] != "too_many_requests" || r.header.Get("Retry-After") == "" || r.header.Get("WWW-Authenticate") != "" {
				t.Fatalf("limited POST: %v %s, want too_many_requests with Retry-After", r.header, r.body)
			}
		} else if r.status != http.StatusUnauthorized {
			t.Fatalf("POST %d: %d %s", i, r.status, r.body)
		}
		r = e.from(ip, "GET", fmt.Sprintf("/login/callback?state=s%d", i), "", "")
		if r.status == http.StatusTooManyRequests {
			limitedPage++
			if !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || r.header.Get("Retry-After") == "" ||
				!strings.Contains(string(r.body), "Too many refused sign-ins") {
				t.Fatalf("limited callback: %v %s, want the 429 page with Retry-After", r.header, r.body)
			}
		} else if r.status != http.StatusBadRequest {
			t.Fatalf("callback %d: %d %s", i, r.status, r.body)
		}
	}
	if limitedAPI == 0 || limitedPage == 0 {
		t.Fatalf("%d of %d posts and %d of %d callbacks were limited; want both limited past the budget", limitedAPI, n, limitedPage, n)
	}
	var refused, notes int
	for _, ev := range e.auditEvents(customauth.TypeRefused) {
		if ev.Reason == audit.ReasonRateLimited {
			notes++
			if ev.Details["last_reason"] == nil || ev.ClientIP != ip {
				t.Errorf("the flood note %+v names neither the refusal nor the address", ev)
			}
		} else {
			refused++
		}
	}
	if audited := 2*n - limitedAPI - limitedPage; refused != audited || refused > 2*loginflow.DefaultRefusalBurst || notes < 1 {
		t.Errorf("%d refusals audited (%d answered unlimited) and %d flood notes for %d requests; want the flood summarised",
			refused, audited, notes, 2*n)
	}
	// Only refusals count: a start and another address are not held back.
	if r := e.from(ip, "GET", "/login/custom", "", ""); r.status != http.StatusSeeOther {
		t.Errorf("a sign-in start from the flooding address: %d", r.status)
	}
	if r := e.from("203.0.113.51", "GET", "/login/callback?state=x", "", ""); r.status != http.StatusBadRequest {
		t.Errorf("a refusal for another address: %d, want its own 400", r.status)
	}
}

// REVIEW-5 F4: every per-IP limit counts an IPv6 /64 as one client, so a
// host cannot take a fresh budget from each of its 2^64 addresses. Each
// limiter is driven from ever new addresses of one /64 until it answers
// 429; another /64 is not held back.
func TestPerClientLimitsCountAnIPv6SlashSixtyFour(t *testing.T) {
	e := customLoginEnv(t)
	for k, c := range []struct {
		name                      string
		method, path, ctype, body string
		header                    []string
		budget                    int
	}{
		{"refused credentials at /mcp", "POST", "/mcp", "application/json", initBody, []string{"Authorization", "Bearer " + apikeys.Generate()}, 120},
		// A new account each time: the per-account limit stays out of it.
		{"password login", "POST", "/auth/login", "application/json", `{"email":"nobody-{i}@example.com","password":"guess"}`, nil, 30},
		{"authorization requests", "GET", "/authorize?client_id=unknown&response_type=code", "", "", nil, 60},
		{"client registration", "POST", "/register", "text/plain", "{}", nil, 100},
		{"sign-in starts", "GET", "/login/custom", "", "", nil, loginflow.DefaultStartBurst},
		{"refused sign-in callbacks", "GET", "/login/callback?state=bogus", "", "", nil, loginflow.DefaultRefusalBurst},
		{"refused posted users", "POST", "/api/login-requests/lr_x/user", "application/json", `{"sub":"x"}`, []string{"Authorization", "Bearer wrong"}, loginflow.DefaultRefusalBurst},
	} {
		t.Run(c.name, func(t *testing.T) {
			status := 0
			for i := 1; i <= c.budget+10 && status != http.StatusTooManyRequests; i++ {
				ip := fmt.Sprintf("2001:db8:64:%x::%x", k, i) // a new address of the same /64 each time
				status = e.from(ip, c.method, c.path, c.ctype, strings.ReplaceAll(c.body, "{i}", strconv.Itoa(i)), c.header...).status
			}
			if status != http.StatusTooManyRequests {
				t.Fatalf("%d addresses of one /64 were never limited (last status %d)", c.budget+10, status)
			}
			if r := e.from(fmt.Sprintf("2001:db8:65:%x::1", k), c.method, c.path, c.ctype, c.body, c.header...); r.status == http.StatusTooManyRequests {
				t.Errorf("another /64 was limited too")
			}
		})
	}
}

// countLoginFlows is how many sign-ins are stored (in progress or used).
func (e *env) countLoginFlows() int {
	e.t.Helper()
	var n int
	if err := e.srv.Core().DB.SQL().QueryRowContext(context.Background(), `SELECT COUNT(*) FROM login_flows`).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// customLoginOnlyEnv: /login goes straight on to the example app's login.
func customLoginOnlyEnv(t *testing.T) (*env, *httptest.Server) {
	exampleApp := &app.App{Users: app.DemoUsers, Secret: strings.Repeat("s3cret-", 6)}
	appSrv := httptest.NewServer(exampleApp)
	t.Cleanup(appSrv.Close)
	e := newEnv(t, func(cfg *config.Config) {
		cfg.CustomLoginURL = appSrv.URL + "/login"
		cfg.CustomLoginName = "Example app"
		cfg.CustomLoginSecret = exampleApp.Secret
		cfg.CustomLoginOnly = true
	})
	exampleApp.MCPGateURL = e.base
	return e, appSrv
}

// REVIEW-5 F4 (3), with --custom-login-only: /login goes straight on to
// the custom login when the user (or an application) opened it, or came
// from mcpgate's own pages; when another site sent the browser there, the
// page with its button is shown instead, since the start would refuse a
// cross-site navigation anyway.
func TestCustomLoginOnlyAndCrossSiteNavigations(t *testing.T) {
	e, _ := customLoginOnlyEnv(t)
	for _, site := range []string{"", "none", "same-origin"} {
		r := e.from("192.0.2.10", "GET", "/login?return_to=%2Faccount", "", "", "Sec-Fetch-Site", site)
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/login/custom?return_to=%2Faccount" {
			t.Errorf("/login with Sec-Fetch-Site %q: %d %q, want straight on to /login/custom", site, r.status, r.header.Get("Location"))
		}
	}
	r := e.from("192.0.2.10", "GET", "/login?return_to=%2Faccount", "", "", "Sec-Fetch-Site", "cross-site")
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `href="/login/custom?return_to=%2Faccount"`) {
		t.Errorf("/login from another site: %d, want the page with the custom login button:\n%s", r.status, r.body)
	}
}

// REVIEW-5 F4 (3) as a browser lives it: a page on another site that
// embeds mcpgate's sign-in start as images starts nothing; a link there
// leads to mcpgate's login page (also with --custom-login-only), whose
// button — a same-origin navigation — starts the sign-in at the app.
func TestCrossSiteSignInStartsInChromium(t *testing.T) {
	e, _ := customLoginOnlyEnv(t)
	start := e.base + "/login/custom?return_to=%2Faccount"
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>elsewhere</title>
<script>let n = 0; function seen() { if (++n == 5) { const p = document.createElement('p'); p.id = 'done'; p.textContent = 'done'; document.body.append(p); } }</script>`)
		for i := range 5 {
			fmt.Fprintf(w, `<img src="%s&img=%d" onerror="seen()" onload="seen()">`, start, i)
		}
		fmt.Fprintf(w, `<a id="go" href="%s">Sign in to the MCP portal</a>`, start)
	}))
	defer evil.Close()
	// localhost and 127.0.0.1 are different sites.
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1)

	browser := browsertest.Start(t)
	ctx, cancel := context.WithTimeout(browser, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(evilURL), chromedp.WaitVisible(chromedp.CSS(`#done`))); err != nil {
		t.Fatalf("the other site's page: %v", err)
	}
	if n := e.countLoginFlows(); n != 0 {
		t.Fatalf("another site's images started %d sign-ins", n)
	}
	button := `a.upstream-login[href^="/login/custom"]`
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#go`)), chromedp.WaitVisible(chromedp.CSS(button))); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("the other site's link did not lead to the login page (at %s): %v", loc, err)
	}
	if n := e.countLoginFlows(); n != 0 {
		t.Fatalf("the other site's link started %d sign-ins", n)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(button)), chromedp.WaitVisible(chromedp.CSS(`#username`))); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("the login page's button did not reach the app (at %s): %v", loc, err)
	}
	if n := e.countLoginFlows(); n != 1 {
		t.Errorf("the button started %d sign-ins, want 1", n)
	}
}

// Refusals at the sign-in callbacks spend one per-client budget on every
// node through Redis; when Redis goes away, sign-in starts and refusals
// fail closed (503 with Retry-After) instead of going unlimited.
func TestLoginRefusalsSharedThroughRedis(t *testing.T) {
	proxy, redisURL := proxiedRedis(t)
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir() // both nodes: the same server.key
	cfg.DatabaseURL = filepath.Join(t.TempDir(), "shared.db")
	cfg.RedisURL = redisURL
	cfg.CustomLoginURL = "https://app.example.com/login"
	cfg.CustomLoginSecret = strings.Repeat("s3cret-", 6)
	ip := randomIP()
	nodes := []*limitNode{newLimitNode(t, cfg, ip), newLimitNode(t, cfg, ip)}
	for i := range loginflow.DefaultRefusalBurst {
		if r := nodes[i%2].do("GET", "/login/callback?state=forged", "", ""); r.status != http.StatusBadRequest {
			t.Fatalf("refusal %d on node %d: %d, want 400", i+1, i%2+1, r.status)
		}
	}
	for i, n := range nodes {
		if r := n.do("GET", "/login/callback?state=forged", "", ""); r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
			t.Errorf("node %d after the shared budget: %d %v, want 429 with Retry-After", i+1, r.status, r.header)
		}
	}

	proxy.stop()
	other := nodes[0]
	other.ip = randomIP() // a client with budget left: only the limiter's failure stands in the way
	for _, path := range []string{"/login/callback?state=forged", "/login/custom"} {
		r := other.do("GET", path, "", "")
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), "Temporarily unavailable") {
			t.Errorf("GET %s with Redis down: %d %v, want the 503 page with Retry-After", path, r.status, r.header)
		}
	}
}
