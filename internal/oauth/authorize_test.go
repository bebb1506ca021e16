package oauth_test

// Attacks on the authorization endpoint and the consent page (RFC 9700
// §4.1 redirect manipulation, §4.8 PKCE downgrade, §4.4 mix-up (iss),
// §4.7 CSRF; MCP security best practices: confused deputy, consent).

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
)

// noRedirect fetches without following redirects.
func (s *stack) fetch(b *browser, u string) page {
	s.t.Helper()
	saved := b.c.CheckRedirect
	b.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	defer func() { b.c.CheckRedirect = saved }()
	return b.get(u)
}

func TestAuthorizeRefusesUntrustedRedirects(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	id := s.publicClient("Good app") // registered: http://127.0.0.1/callback, https://app.example.com/cb
	_, ch := pkce()
	b := s.browser()
	b.login("alice@example.com")
	tests := []struct {
		name, redirect string
	}{
		{"open redirect", "https://evil.example/cb"},
		{"path traversal", "https://app.example.com/cb/../evil"},
		{"path suffix", "https://app.example.com/cbx"},
		{"path case", "https://app.example.com/CB"},
		{"subpath", "https://app.example.com/cb/more"},
		{"added query", "https://app.example.com/cb?next=https://evil.example"},
		{"https port", "https://app.example.com:8443/cb"},
		{"fragment", "https://app.example.com/cb#frag"},
		{"userinfo to evil host", "https://app.example.com@evil.example/cb"},
		{"userinfo on the right host", "https://evil.example@app.example.com/cb"},
		{"scheme downgrade", "http://app.example.com/cb"},
		{"loopback host swap", "http://localhost:4711/callback"},
		{"loopback path", "http://127.0.0.1:4711/callback/../x"},
		{"loopback userinfo", "http://evil.example@127.0.0.1:4711/callback"},
		{"backslash", `https://app.example.com\@evil.example/cb`},
		{"encoded host", "https://app.example.com%2eevil.example/cb"},
		{"javascript", "javascript:alert(1)//https://app.example.com/cb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := s.codeRequest(id, ch)
			q.Set("redirect_uri", tc.redirect)
			p := s.fetch(b, s.authURL(q))
			if p.status != http.StatusBadRequest || p.header.Get("Location") != "" {
				t.Fatalf("status %d Location %q; want 400 and no redirect", p.status, p.header.Get("Location"))
			}
			if ct := p.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
				t.Errorf("Content-Type %q, want an HTML page", ct)
			}
			if !strings.Contains(p.body, "Invalid redirect address") {
				t.Errorf("page does not explain the refusal: %s", clipBody(p.body))
			}
		})
	}
	if n := len(s.rec.of(audit.TypeOAuthAuthorizeRefused, audit.ReasonRedirectMismatch)); n != len(tests) {
		t.Errorf("%d redirect_mismatch refusals audited, want %d", n, len(tests))
	}
	// Positive control: the loopback redirect with any port (RFC 8252 §7.3).
	q := s.codeRequest(id, ch)
	q.Set("redirect_uri", "http://127.0.0.1:50123/callback")
	if p := s.fetch(b, s.authURL(q)); p.status != http.StatusSeeOther || !strings.HasPrefix(p.header.Get("Location"), "/oauth/consent?request=") {
		t.Errorf("loopback redirect on another port: status %d Location %q; want the consent page", p.status, p.header.Get("Location"))
	}
}

func TestAuthorizeUnknownClientGetsPageNotRedirect(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	_, ch := pkce()
	b := s.browser()
	for name, clientID := range map[string]string{
		"unknown":        "client_doesnotexist",
		"missing":        "",
		"bad cimd":       "https://127.0.0.1:1/nothing.json",
		"cimd no path":   "https://evil.example",
		"control chars":  "client\x00x",
		"sql":            "' OR 1=1 --",
		"very long name": strings.Repeat("a", 5000),
	} {
		t.Run(name, func(t *testing.T) {
			q := s.codeRequest(clientID, ch)
			q.Set("redirect_uri", "https://evil.example/steal")
			p := s.fetch(b, s.authURL(q))
			if p.status != http.StatusBadRequest || p.header.Get("Location") != "" {
				t.Fatalf("status %d Location %q; want 400 without a redirect", p.status, p.header.Get("Location"))
			}
			if !strings.Contains(p.body, "Unknown application") || strings.Contains(p.body, "evil.example/steal") {
				t.Errorf("page: %s", clipBody(p.body))
			}
			if p.header.Get("X-Frame-Options") != "DENY" {
				t.Error("error page may be framed")
			}
		})
	}
	e := s.rec.mustHave(t, audit.TypeOAuthAuthorizeRefused, audit.ReasonUnknownClient)
	if e.Details["redirected"] != false {
		t.Errorf("unknown client refusal details %v", e.Details)
	}
	s.rec.mustHave(t, audit.TypeOAuthAuthorizeRefused, audit.ReasonInvalidClientMetadata)
}

// errorRedirect checks an error answered at the client's redirect URI.
func errorRedirect(t *testing.T, s *stack, p page, wantErr, wantReason string) {
	t.Helper()
	if p.status != http.StatusFound {
		t.Fatalf("status %d, want 302 to the redirect URI; body %s", p.status, clipBody(p.body))
	}
	loc, err := url.Parse(p.header.Get("Location"))
	must(t, err)
	if !strings.HasPrefix(loc.String(), "http://127.0.0.1:4711/callback?") {
		t.Fatalf("redirected to %s, want the registered redirect URI", loc)
	}
	q := loc.Query()
	if q.Get("error") != wantErr || q.Get("error_description") == "" {
		t.Errorf("error %q (%q), want %s with a description", q.Get("error"), q.Get("error_description"), wantErr)
	}
	// RFC 9207 §2 and RFC 6749 §4.1.2.1: iss and state on errors too.
	if q.Get("iss") != s.base || q.Get("state") != "xyz-state" {
		t.Errorf("iss %q state %q; want %q and the request's state", q.Get("iss"), q.Get("state"), s.base)
	}
	s.rec.mustHave(t, audit.TypeOAuthAuthorizeRefused, wantReason)
}

func TestAuthorizeRefusalsGoBackToTheClient(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	id := s.publicClient("App")
	_, ch := pkce()
	b := s.browser()
	tests := []struct {
		name        string
		mutate      func(url.Values)
		err, reason string
	}{
		// RFC 9700 §2.1.1 / OAuth 2.1 §4.1.1: PKCE is required, S256 only.
		{"no code_challenge", func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, "invalid_request", audit.ReasonPKCEMissing},
		{"plain method", func(q url.Values) { q.Set("code_challenge_method", "plain") }, "invalid_request", audit.ReasonPKCEMethod},
		{"method omitted (means plain)", func(q url.Values) { q.Del("code_challenge_method") }, "invalid_request", audit.ReasonPKCEMethod},
		{"lower-case s256", func(q url.Values) { q.Set("code_challenge_method", "s256") }, "invalid_request", audit.ReasonPKCEMethod},
		{"short challenge", func(q url.Values) { q.Set("code_challenge", "abc") }, "invalid_request", audit.ReasonPKCEChallenge},
		{"implicit grant", func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type", audit.ReasonUnsupportedResponseType},
		{"no response_type", func(q url.Values) { q.Del("response_type") }, "invalid_request", audit.ReasonUnsupportedResponseType},
		{"unknown scope", func(q url.Values) { q.Set("scope", "payments:read admin:everything") }, "invalid_scope", audit.ReasonInvalidScope},
		// RFC 8707 §2: a resource mcpgate does not serve.
		{"foreign resource", func(q url.Values) { q.Set("resource", "https://evil.example/mcp") }, "invalid_target", audit.ReasonInvalidTarget},
		{"resource with fragment", func(q url.Values) { q.Set("resource", s.mcpURL+"#x") }, "invalid_target", audit.ReasonInvalidTarget},
		{"two resources", func(q url.Values) { q.Add("resource", s.mcpURL) }, "invalid_target", audit.ReasonInvalidTarget},
		{"repeated parameter", func(q url.Values) { q.Add("scope", "openid") }, "invalid_request", audit.ReasonInvalidRequest},
		{"request object", func(q url.Values) { q.Set("request", "eyJ.x.y") }, "request_not_supported", audit.ReasonInvalidRequest},
		{"prompt none plus login", func(q url.Values) { q.Set("prompt", "none login") }, "invalid_request", audit.ReasonInvalidRequest},
		{"prompt none without session", func(q url.Values) { q.Set("prompt", "none") }, "login_required", audit.ReasonLoginRequired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := s.codeRequest(id, ch)
			tc.mutate(q)
			errorRedirect(t, s, s.fetch(b, s.authURL(q)), tc.err, tc.reason)
		})
	}
}

func TestAuthorizeStateAndIssReturned(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	id := s.publicClient("App")
	_, ch := pkce()
	q := s.codeRequest(id, ch)
	state := `a b&c=d/é?~"<>` // not VSCHAR (é): must be refused, not mangled
	q.Set("state", state)
	cb, err := s.browser().authorize(s.authURL(q), "alice@example.com", "allow")
	must(t, err)
	if cb.err != "invalid_request" || cb.state != "" {
		t.Errorf("non-ASCII state: error %q state %q; want invalid_request without echoing it", cb.err, cb.state)
	}
	state = `a b&c=d/?~"<>+%20`
	q.Set("state", state)
	cb, err = s.browser().authorize(s.authURL(q), "alice@example.com", "allow")
	must(t, err)
	if cb.code == "" || cb.state != state || cb.iss != s.base {
		t.Errorf("callback code %q state %q iss %q; want a code, the state unchanged and iss %s", cb.code, cb.state, cb.iss, s.base)
	}
}

func TestAuthorizeLoginConsentAndMemory(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	id := s.publicClient("Remembered app")
	_, ch := pkce()
	b := s.browser()

	// Not signed in: to the login page, which comes back to the consent page.
	p := s.fetch(b, s.authURL(s.codeRequest(id, ch)))
	loc := p.header.Get("Location")
	if p.status != http.StatusSeeOther || !strings.HasPrefix(loc, "/login?return_to=%2Foauth%2Fconsent%3Frequest%3Dareq_") {
		t.Fatalf("unauthenticated authorize: %d to %q; want the login page returning to the consent page", p.status, loc)
	}
	cb, err := b.authorize(s.authURL(s.codeRequest(id, ch)), "alice@example.com", "allow")
	must(t, err)
	if cb.code == "" {
		t.Fatalf("first authorization: %+v", cb)
	}

	// Consent is remembered: the same request gets a code without a page
	// (at an https redirect URI: see TestAuthorizeNativeRedirectAlwaysAsks).
	q := s.codeRequest(id, ch)
	q.Set("redirect_uri", "https://app.example.com/cb")
	p = s.fetch(b, s.authURL(q))
	if p.status != http.StatusFound || !strings.Contains(p.header.Get("Location"), "code=") {
		t.Fatalf("second authorization: %d %q; want a direct redirect with a code", p.status, p.header.Get("Location"))
	}
	if e := s.rec.of(audit.TypeOAuthCodeIssued); len(e) != 2 || e[1].Details["consent_remembered"] != true {
		t.Errorf("code.issued events %v", e)
	}

	// New scopes: the page asks for the new one only.
	q = s.codeRequest(id, ch)
	q.Set("scope", "payments:read payments:write")
	p = b.get(s.authURL(q))
	if p.status != http.StatusOK || p.url.Path != "/oauth/consent" {
		t.Fatalf("authorization with a new scope: %d at %s", p.status, p.url)
	}
	asks, already, _ := strings.Cut(p.body, "Already allowed")
	if !strings.Contains(asks, "payments:write") || strings.Contains(asks, ">payments:read<") || !strings.Contains(already, "payments:read") {
		t.Errorf("consent page should ask for payments:write only and list payments:read as allowed:\n%s", clipBody(p.body[strings.Index(p.body, "<main"):]))
	}
	// prompt=consent always shows the page.
	q = s.codeRequest(id, ch)
	q.Set("prompt", "consent")
	if p := b.get(s.authURL(q)); p.url.Path != "/oauth/consent" || !strings.Contains(p.body, `value="allow"`) {
		t.Errorf("prompt=consent did not show the consent page (%s)", p.url)
	}
}

func TestConsentPage(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	b := s.browser()
	b.login("alice@example.com")
	_, ch := pkce()

	// A CIMD client shows its document's host.
	cimd := s.serveDoc("/c.json", "")
	p := b.get(s.authURL(s.codeRequest(cimd, ch)))
	if p.status != http.StatusOK || !strings.Contains(p.body, "client.example.com") || !strings.Contains(p.body, "Example CIMD Client") {
		t.Fatalf("CIMD consent page (%d) lacks the client's name or host:\n%s", p.status, clipBody(p.body))
	}
	// Headers: no framing, no caching, form-action widened to the client only.
	for k, want := range map[string]string{"X-Frame-Options": "DENY", "Cache-Control": "no-store"} {
		if got := p.header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	csp := p.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "form-action 'self' http://127.0.0.1:4711;") {
		t.Errorf("CSP %q: want frame-ancestors 'none' and form-action limited to this origin and the redirect origin", csp)
	}
	for _, want := range []string{"Payments demo", s.mcpURL, "127.0.0.1:4711", "Read your payments data", "See your email address", "Allow", "Deny"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}

	// A DCR client is "unverified".
	dcr := registerDCR(t, s, "Sneaky Name")
	p = b.get(s.authURL(s.codeRequest(dcr, ch)))
	if !strings.Contains(p.body, "Unverified") || !strings.Contains(p.body, "Sneaky Name") {
		t.Errorf("DCR consent page does not mark the client unverified")
	}
	reqID := reRequest.FindStringSubmatch(p.body)[1]

	// Consent CSRF: a cross-origin POST is refused and decides nothing.
	x := b.post(s.base+"/oauth/consent", url.Values{"request": {reqID}, "decision": {"allow"}}, "https://evil.example")
	if x.status != http.StatusForbidden {
		t.Fatalf("cross-origin consent POST: %d, want 403", x.status)
	}
	s.rec.mustHave(t, audit.TypeAuthRejected, audit.ReasonCSRF)
	if n := len(s.rec.of(audit.TypeOAuthCodeIssued)); n != 0 {
		t.Fatalf("a code was issued after a cross-origin POST")
	}
	// Deny goes back with access_denied, state and iss.
	d := b.post(s.base+"/oauth/consent", url.Values{"request": {reqID}, "decision": {"deny"}})
	loc, _ := url.Parse(d.header.Get("Location"))
	if d.status != http.StatusSeeOther || loc.Query().Get("error") != "access_denied" || loc.Query().Get("iss") != s.base || loc.Query().Get("state") != "xyz-state" {
		t.Fatalf("deny: %d to %s", d.status, loc)
	}
	s.rec.mustHave(t, audit.TypeOAuthConsentDenied, audit.ReasonUserDenied)
	// The request is used up.
	again := b.post(s.base+"/oauth/consent", url.Values{"request": {reqID}, "decision": {"allow"}})
	if again.status != http.StatusNotFound {
		t.Errorf("second decision on one request: %d, want 404", again.status)
	}

	// Expired requests cannot be approved.
	p = b.get(s.authURL(s.codeRequest(dcr, ch)))
	reqID = reRequest.FindStringSubmatch(p.body)[1]
	s.clock.Advance(11 * time.Minute)
	exp := b.post(s.base+"/oauth/consent", url.Values{"request": {reqID}, "decision": {"allow"}})
	if exp.status != http.StatusGone {
		t.Errorf("approving an expired request: %d, want 410", exp.status)
	}
	s.rec.mustHave(t, audit.TypeOAuthAuthorizeRefused, audit.ReasonRequestExpired)
}

// registerDCR registers a public client dynamically and returns its id.
func registerDCR(t *testing.T, s *stack, name string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.base+"/register", strings.NewReader(
		`{"client_name":"`+name+`","redirect_uris":["http://127.0.0.1/callback"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"]}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	var out struct {
		ClientID string `json:"client_id"`
	}
	if err := jsonDecode(resp.Body, &out); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("register: %d %v", resp.StatusCode, err)
	}
	return out.ClientID
}

// refusedOnPage checks an error shown on mcpgate's own page, not
// redirected to the client.
func refusedOnPage(t *testing.T, s *stack, p page, wantErr, wantReason string) {
	t.Helper()
	if p.status != http.StatusBadRequest || p.header.Get("Location") != "" {
		t.Fatalf("status %d Location %q; want 400 on mcpgate's page, no redirect", p.status, p.header.Get("Location"))
	}
	if ct := p.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q, want an HTML page", ct)
	}
	if !strings.Contains(p.body, "Request refused") || !strings.Contains(p.body, wantErr) || strings.Contains(p.body, "xyz-state") {
		t.Errorf("page does not explain the refusal: %s", clipBody(p.body))
	}
	evs := s.rec.of(audit.TypeOAuthAuthorizeRefused, wantReason)
	if len(evs) == 0 || evs[len(evs)-1].Details["redirected"] != false || evs[len(evs)-1].Details["error"] != wantErr {
		t.Errorf("refusal audit %v", evs)
	}
}

// M1 (RFC 9700 §4.11.2): errors of clients nobody vouched for (dcr, cimd)
// are shown on mcpgate's page before the user interacted; operator
// (static) clients keep RFC 6749 error redirects; Deny still goes back.
func TestAuthorizeUnverifiedClientErrorsAreNotRedirected(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	dcr := registerDCR(t, s, "Self-registered")
	cimd := s.serveDoc("/c.json", "")
	static := s.publicClient("Operator app")
	_, ch := pkce()
	b := s.browser()
	tests := []struct {
		name        string
		mutate      func(url.Values)
		err, reason string
	}{
		{"plain PKCE", func(q url.Values) { q.Set("code_challenge_method", "plain") }, "invalid_request", audit.ReasonPKCEMethod},
		{"unknown scope", func(q url.Values) { q.Set("scope", "admin:everything") }, "invalid_scope", audit.ReasonInvalidScope},
		{"implicit grant", func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type", audit.ReasonUnsupportedResponseType},
		{"prompt none without session", func(q url.Values) { q.Set("prompt", "none") }, "login_required", audit.ReasonLoginRequired},
	}
	for _, tc := range tests {
		for kind, id := range map[string]string{"dcr": dcr, "cimd": cimd} {
			t.Run(kind+" "+tc.name, func(t *testing.T) {
				q := s.codeRequest(id, ch)
				tc.mutate(q)
				refusedOnPage(t, s, s.fetch(b, s.authURL(q)), tc.err, tc.reason)
			})
		}
		t.Run("static "+tc.name, func(t *testing.T) {
			q := s.codeRequest(static, ch)
			tc.mutate(q)
			errorRedirect(t, s, s.fetch(b, s.authURL(q)), tc.err, tc.reason)
		})
	}

	// After the user clicked Deny, going back with access_denied is fine.
	b.login("alice@example.com")
	cb, err := b.authorize(s.authURL(s.codeRequest(dcr, ch)), "alice@example.com", "deny")
	must(t, err)
	if cb.err != "access_denied" || cb.url.Host != "127.0.0.1:4711" {
		t.Errorf("deny for a DCR client: %+v, want access_denied at its redirect URI", cb)
	}
}

// M3 (RFC 8252 §8.6): a signed-in user is never silently re-authorized
// for a public client at a loopback or private-use redirect; the consent
// page shows the remembered scopes as allowed and one click continues.
func TestAuthorizeNativeRedirectAlwaysAsks(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	static := s.publicClient("Desktop app") // loopback and https redirects
	dcr := registerDCR(t, s, "Native DCR")
	cursor, _, err := s.clients.CreateStatic(context.Background(), oauth.StaticClient{
		Name: "Cursor", RedirectURIs: []string{"cursor://anysphere.cursor-mcp/oauth/callback"},
	})
	must(t, err)
	conf, _ := s.confidentialClient("Server app")
	withRedirect := func(uri string) func(url.Values) {
		return func(q url.Values) {
			if uri != "" {
				q.Set("redirect_uri", uri)
			}
		}
	}
	b := s.browser()
	b.login("alice@example.com")
	cases := []struct {
		name, id, redirect string
	}{
		{"static public loopback", static, ""},
		{"dcr public loopback", dcr, ""},
		{"static public private-use scheme", cursor.ClientID, "cursor://anysphere.cursor-mcp/oauth/callback"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.codeFor(b, tc.id, withRedirect(tc.redirect)) // consent given once
			_, ch := pkce()
			q := s.codeRequest(tc.id, ch)
			withRedirect(tc.redirect)(q)
			p := s.fetch(b, s.authURL(q))
			if p.status != http.StatusSeeOther || !strings.HasPrefix(p.header.Get("Location"), "/oauth/consent?request=") {
				t.Fatalf("remembered consent: %d to %q; want the consent page, not a code", p.status, p.header.Get("Location"))
			}
			p = b.get(s.authURL(q))
			if p.status != http.StatusOK || p.url.Path != "/oauth/consent" || p.header.Get("Refresh") != "" || reContinue.MatchString(p.body) {
				t.Fatalf("consent page: %d at %s (Refresh %q); want a question", p.status, p.url, p.header.Get("Refresh"))
			}
			if !strings.Contains(p.body, "Already allowed") || strings.Contains(p.body, "It asks to") || !strings.Contains(p.body, `value="allow"`) {
				t.Errorf("consent page should list every scope as already allowed, with Allow: %s", clipBody(p.body[strings.Index(p.body, "<main"):]))
			}
			// One click gives the code.
			s.codeFor(b, tc.id, withRedirect(tc.redirect))
			// prompt=none cannot skip the question: consent_required.
			q.Set("prompt", "none")
			p = s.fetch(b, s.authURL(q))
			if tc.id == dcr {
				refusedOnPage(t, s, p, "consent_required", audit.ReasonConsentRequired)
			} else {
				loc, _ := url.Parse(p.header.Get("Location"))
				if p.status != http.StatusFound || loc == nil || loc.Query().Get("error") != "consent_required" {
					t.Errorf("prompt=none: %d to %q; want consent_required at the redirect URI", p.status, p.header.Get("Location"))
				}
			}
		})
	}
	for _, e := range s.rec.of(audit.TypeOAuthCodeIssued) {
		if e.Details["consent_remembered"] == true {
			t.Errorf("a code was issued without the user: %v", e.Details)
		}
	}
	// Not affected: the public client at its https redirect, and a
	// confidential client at loopback (it proves itself at /token).
	for _, tc := range []struct{ id, redirect string }{{static, "https://app.example.com/cb"}, {conf, ""}} {
		s.codeFor(b, tc.id, withRedirect(tc.redirect))
		_, ch := pkce()
		q := s.codeRequest(tc.id, ch)
		withRedirect(tc.redirect)(q)
		if p := s.fetch(b, s.authURL(q)); p.status != http.StatusFound || !strings.Contains(p.header.Get("Location"), "code=") {
			t.Errorf("%s at %q: %d to %q; want the code at once", tc.id, tc.redirect, p.status, p.header.Get("Location"))
		}
	}
}

// M4: /authorize is rate-limited per client IP (burst 60, then 1/s) with
// a readable 429 page and Retry-After.
func TestAuthorizeRateLimited(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	id := s.publicClient("App")
	_, ch := pkce()
	b := s.browser()
	u := s.authURL(s.codeRequest(id, ch)) // unauthenticated: each would store a pending request
	var p page
	n := 0
	for ; n < 200; n++ {
		if p = s.fetch(b, u); p.status == http.StatusTooManyRequests {
			break
		}
		if p.status != http.StatusSeeOther {
			t.Fatalf("request %d: %d", n, p.status)
		}
	}
	if n < oauth.DefaultAuthorizeBurst || n >= 200 {
		t.Fatalf("first 429 after %d requests, want after the burst of %d", n, oauth.DefaultAuthorizeBurst)
	}
	if ra := p.header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After %q", ra)
	}
	if ct := p.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") || !strings.Contains(p.body, "Too many requests") {
		t.Errorf("429 page: %q %s", ct, clipBody(p.body))
	}
	// The page says the same wait as Retry-After, in proper English.
	wait := "Wait " + p.header.Get("Retry-After") + " seconds,"
	if p.header.Get("Retry-After") == "1" {
		wait = "Wait 1 second,"
	}
	if !strings.Contains(p.body, wait) {
		t.Errorf("429 page lacks %q: %s", wait, clipBody(p.body))
	}

	// A limiter that cannot decide fails closed.
	s = newStack(t, storeSQLite(t), stackOptions{authorizeLim: failingLimiter{}})
	if p := s.fetch(s.browser(), s.authURL(s.codeRequest(s.publicClient("App"), ch))); p.status != http.StatusServiceUnavailable ||
		p.header.Get("Retry-After") == "" || !strings.Contains(p.body, "Temporarily unavailable") {
		t.Errorf("failing limiter: %d %v %s, want the 503 page with Retry-After", p.status, p.header, clipBody(p.body))
	}
}

type failingLimiter struct{}

func (failingLimiter) Allow(context.Context, string) (ratelimit.Decision, error) {
	return ratelimit.Decision{}, errors.New("limiter backend down")
}
