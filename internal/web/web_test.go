package web

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/store"
)

func TestSafeReturnTo(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "/account"},
		{"/account/keys", "/account/keys"},
		{"/account/activity?type=login.failed&before=10", "/account/activity?type=login.failed&before=10"},
		{"/admin/users/usr_abc", "/admin/users/usr_abc"},
		{"https://evil.example", "/account"},
		{"https://evil.example/account", "/account"},
		{"//evil.example", "/account"},
		{"//evil.example/account", "/account"},
		{"/\\evil.example", "/account"},
		{"/\\/evil.example", "/account"},
		{"\\\\evil.example", "/account"},
		{"javascript:alert(1)", "/account"},
		{"JavaScript:alert(1)", "/account"},
		{" /account", "/account"},
		{"/account\r\nSet-Cookie: x=y", "/account"},
		{"/\tevil.example", "/account"},
		{"/account\x00", "/account"},
		{"/%2F%2Fevil.example", "/account"}, // decodes to //evil.example
		{"/login", "/account"},
		{"/login?return_to=/account", "/account"},
		{"/logout", "/account"},
		{"account", "/account"},
		{"/" + strings.Repeat("a", 3000), "/account"},
		{"http:/evil.example", "/account"},
		{"/ok#frag", "/ok#frag"},
	}
	for _, tt := range tests {
		if got := SafeReturnTo(tt.in); got != tt.want {
			t.Errorf("SafeReturnTo(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestLoginPage(t *testing.T) {
	s := newStack(t)
	c := s.client()
	r := c.get("/login?return_to=/account/keys")
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, `autocomplete="username"`, `autocomplete="current-password"`, `name="return_to" value="/account/keys"`,
		`action="/login"`, `method="post"`)
	// The root sends a visitor to the login page.
	wantRedirect(t, c.get("/"), "/login")
}

func TestLoginSameAnswerForWrongEmailAndWrongPassword(t *testing.T) {
	s := newStack(t)
	c := s.client()
	wrongPassword := c.post("/login", url.Values{"email": {"alice@example.com"}, "password": {"not the password at all"}})
	unknownEmail := c.post("/login", url.Values{"email": {"nobody@example.com"}, "password": {"not the password at all"}})
	disabled := func() response {
		_, err := s.users.SetDisabled(context.Background(), s.bob.ID, true)
		must(t, err)
		return c.post("/login", url.Values{"email": {"bob@example.com"}, "password": {testPassword}})
	}()
	for _, r := range []response{wrongPassword, unknownEmail, disabled} {
		wantStatus(t, r, http.StatusUnprocessableEntity)
		wantBody(t, r, "Incorrect email or password.")
		if got := r.Header.Get("Set-Cookie"); got != "" {
			t.Errorf("failed login set a cookie: %s", got)
		}
	}
	// The email typed is kept, the password is not echoed.
	wantBody(t, wrongPassword, `value="alice@example.com"`)
	wantNoBody(t, wrongPassword, "not the password at all")

	empty := c.post("/login", url.Values{"email": {""}, "password": {""}})
	wantStatus(t, empty, http.StatusUnprocessableEntity)
	wantBody(t, empty, "Enter your email address and your password.")
}

func TestLoginSuccessAndReturnTo(t *testing.T) {
	s := newStack(t)
	tests := []struct{ returnTo, want string }{
		{"", "/account"},
		{"/account/keys", "/account/keys"},
		{"https://evil.example", "/account"},
		{"//evil.example", "/account"},
		{"/\\evil", "/account"},
		{"javascript:alert(document.cookie)", "/account"},
		{"/account/sessions?x=1", "/account/sessions?x=1"},
	}
	for _, tt := range tests {
		t.Run(tt.returnTo, func(t *testing.T) {
			c := s.client()
			r := c.post("/login", url.Values{"email": {"Alice@Example.com"}, "password": {testPassword}, "return_to": {tt.returnTo}})
			wantRedirect(t, r, tt.want)
			if !strings.Contains(r.Header.Get("Set-Cookie"), s.sessions.CookieName()+"=") {
				t.Errorf("no session cookie set: %q", r.Header.Get("Set-Cookie"))
			}
			// The GET form also refuses the attack, and a logged-in visitor
			// is sent on.
			wantRedirect(t, c.get("/login?return_to="+url.QueryEscape(tt.returnTo)), tt.want)
			wantRedirect(t, c.get("/"), "/account")
		})
	}
}

func TestLoginStartsAFreshSession(t *testing.T) {
	s := newStack(t)
	c := s.loggedIn("alice@example.com")
	first := sessionCookie(t, c)
	c.login("alice@example.com")
	second := sessionCookie(t, c)
	if first == second {
		t.Fatal("a second login kept the session cookie")
	}
	// The old cookie is worthless now.
	old := s.client()
	old.hdr.Set("Cookie", s.sessions.CookieName()+"="+first)
	wantRedirect(t, old.get("/account"), "/login?return_to=%2Faccount")
}

func sessionCookie(t testing.TB, c *client) string {
	t.Helper()
	u, _ := url.Parse(c.s.srv.URL)
	for _, ck := range c.hc.Jar.Cookies(u) {
		if ck.Name == c.s.sessions.CookieName() {
			return ck.Value
		}
	}
	t.Fatal("no session cookie in the jar")
	return ""
}

func TestLoginRateLimited(t *testing.T) {
	s := newStack(t)
	s.users.SetLoginLimiters(ratelimit.NewMemory(time.Hour, 2, 100), nil)
	c := s.client()
	for range 2 {
		wantStatus(t, c.post("/login", url.Values{"email": {"alice@example.com"}, "password": {"wrong password 123"}}), http.StatusUnprocessableEntity)
	}
	r := c.post("/login", url.Values{"email": {"alice@example.com"}, "password": {testPassword}})
	wantStatus(t, r, http.StatusTooManyRequests)
	wantBody(t, r, "Too many attempts. Try again in ")
	if ra := r.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After = %q", ra)
	}
	if !strings.Contains(r.Body, "Try again in "+r.Header.Get("Retry-After")+" s.") {
		t.Errorf("message and Retry-After disagree: %s", r.Header.Get("Retry-After"))
	}
}

func TestLogout(t *testing.T) {
	s := newStack(t)
	c := s.loggedIn("alice@example.com")
	wantStatus(t, c.get("/account"), http.StatusOK)
	r := c.post("/logout", nil)
	wantRedirect(t, r, "/login?done=signed_out")
	wantBody(t, c.get("/login?done=signed_out"), "You have been signed out.")
	wantRedirect(t, c.get("/account"), "/login?return_to=%2Faccount")
	// Logging out twice is fine.
	wantRedirect(t, c.post("/logout", nil), "/login?done=signed_out")
	// GET /logout is not a way to log someone out.
	wantStatus(t, s.client().get("/logout"), http.StatusMethodNotAllowed)
}

func TestPagesRequireLogin(t *testing.T) {
	s := newStack(t)
	c := s.client()
	for _, path := range []string{
		"/account", "/account/keys", "/account/keys/new", "/account/keys/key_x/revoke",
		"/account/sessions", "/account/activity?type=logout", "/account/password",
		"/admin/users", "/admin/users/new", "/admin/audit",
	} {
		r := c.get(path)
		wantRedirect(t, r, "/login?return_to="+url.QueryEscape(path))
	}
	posts := map[string]string{
		"/account/keys":                   "/account/keys",
		"/account/keys/key_x/revoke":      "/account/keys",
		"/account/sessions/revoke-others": "/account/sessions",
		"/account/password":               "/account/password",
		"/admin/users/usr_x/disable":      "/admin/users",
	}
	for path, back := range posts {
		r := c.post(path, url.Values{"name": {"x"}})
		wantRedirect(t, r, "/login?return_to="+url.QueryEscape(back))
	}
	if n := len(mustKeys(t, s, s.alice.ID)); n != 0 {
		t.Fatalf("%d keys created without a login", n)
	}
}

func TestForgedAndTamperedCookies(t *testing.T) {
	s := newStack(t)
	good := sessionCookie(t, s.loggedIn("alice@example.com"))
	flip := []byte(good)
	if flip[5] == 'A' {
		flip[5] = 'B'
	} else {
		flip[5] = 'A'
	}
	for _, value := range []string{
		"", "x", "null", strings.Repeat("A", 43), string(flip), good + "A", good[:len(good)-1],
		"../../etc/passwd", strings.Repeat("z", 4000), "%00%ff",
	} {
		c := s.client()
		c.hdr.Set("Cookie", s.sessions.CookieName()+"="+value)
		wantRedirect(t, c.get("/account/keys"), "/login?return_to=%2Faccount%2Fkeys")
		r := c.get("/login")
		wantStatus(t, r, http.StatusOK)
	}
	// A revoked session's cookie sends the browser to the login page.
	c := s.loggedIn("bob@example.com")
	must(t, s.sessions.RevokeAll(context.Background(), s.bob.ID, "test"))
	wantRedirect(t, c.get("/account"), "/login?return_to=%2Faccount")
}

func TestSecurityHeaders(t *testing.T) {
	s := newStack(t)
	c := s.loggedIn("alice@example.com")
	for _, path := range []string{"/login", "/account", "/account/keys", "/account/nope"} {
		r := c.get(path)
		if got := r.Header.Get("Content-Security-Policy"); got != ContentSecurityPolicy {
			t.Errorf("%s: CSP %q", path, got)
		}
		if r.Header.Get("X-Frame-Options") != "DENY" || r.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: X-Frame-Options %q Cache-Control %q", path, r.Header.Get("X-Frame-Options"), r.Header.Get("Cache-Control"))
		}
		if !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
			t.Errorf("%s: Content-Type %q", path, r.Header.Get("Content-Type"))
		}
		// No inline script or style anywhere: the CSP would block them.
		for _, bad := range []string{"<script>", "style=", "onclick", "onsubmit", "javascript:"} {
			if strings.Contains(r.Body, bad) {
				t.Errorf("%s: page contains %q", path, bad)
			}
		}
	}
	// Static files have versioned names and a long cache.
	css := s.web.static.URL("app.css")
	if !strings.HasPrefix(css, "/static/app.") || css == "/static/app.css" {
		t.Fatalf("static URL %q is not versioned", css)
	}
	r := c.get(css)
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.Header.Get("Cache-Control"), "immutable") || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/css") {
		t.Errorf("static headers: %v", r.Header)
	}
	wantStatus(t, c.get("/static/app.css"), http.StatusNotFound)
	wantStatus(t, c.get("/static/..%2fweb.go"), http.StatusNotFound)
}

func TestNotFoundAndMethodNotAllowed(t *testing.T) {
	s := newStack(t)
	c := s.loggedIn("alice@example.com")
	r := c.get("/account/no-such-page")
	wantStatus(t, r, http.StatusNotFound)
	wantBody(t, r, "Page not found", `href="/account/keys"`) // in the layout, with the navigation
	r = c.post("/account", nil)
	wantStatus(t, r, http.StatusMethodNotAllowed)
	if r.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("Allow %q", r.Header.Get("Allow"))
	}
	wantBody(t, r, "Method not allowed")
}

func TestOverview(t *testing.T) {
	s := newStack(t)
	c := s.loggedIn("alice@example.com")
	r := c.get("/account")
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, "alice@example.com", "Alice Liddell", s.srv.URL+"/mcp", `action="/logout"`)
	wantNoBody(t, r, `href="/admin/users"`) // no admin links for a plain user
	r = s.loggedIn("admin@example.com").get("/account")
	wantBody(t, r, `href="/admin/users"`, `href="/admin/audit"`, "admin")
}

func mustKeys(t testing.TB, s *stack, userID string) []store.APIKey {
	t.Helper()
	keys, err := s.keys.List(context.Background(), userID)
	must(t, err)
	return keys
}

func TestCreateKeyShownOnce(t *testing.T) {
	s := newStack(t)
	c := s.loggedIn("alice@example.com")
	token := c.formToken()
	form := url.Values{"form_token": {token}, "name": {"Claude Desktop"}, "scopes": {"payments:read", "account"}, "expires": {"30d"}}
	r := c.post("/account/keys", form)
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, "you will not see it again", "Claude Desktop")
	plaintext := keyRE.FindString(r.Body)
	if plaintext == "" {
		t.Fatalf("no key on the result page:\n%s", excerpt(r.Body))
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Error("the key page may be cached")
	}
	// The key works and has what was asked for.
	res, err := s.keys.Verify(context.Background(), plaintext)
	must(t, err)
	if got := res.Scopes(); strings.Join(got, " ") != "account payments:read" {
		t.Errorf("scopes %v", got)
	}
	if d := time.Until(res.ExpiresAt()); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("expires in %v", d)
	}

	// A reload re-posts the form: no second key, and the secret is not shown.
	again := c.post("/account/keys", form)
	wantRedirect(t, again, "/account/keys?done=key_already_created")
	list := c.get("/account/keys?done=key_already_created")
	wantBody(t, list, "its secret was shown once", "Claude Desktop", mustKeys(t, s, s.alice.ID)[0].Prefix)
	wantNoBody(t, list, plaintext)
	if n := len(mustKeys(t, s, s.alice.ID)); n != 1 {
		t.Fatalf("%d keys after a resubmission, want 1", n)
	}
	// Nowhere else shows it either.
	for _, p := range []string{"/account", "/account/keys", "/account/activity"} {
		wantNoBody(t, c.get(p), plaintext)
	}
}

func TestCreateKeyValidation(t *testing.T) {
	s := newStack(t)
	c := s.loggedIn("alice@example.com")
	huge := strings.Repeat("n", 1<<20)
	tests := []struct {
		name string
		form url.Values
		want string
	}{
		{"no name", url.Values{"name": {"  "}, "scopes": {"payments:read"}, "expires": {"7d"}}, "Give the key a name"},
		{"no scopes", url.Values{"name": {"x"}, "expires": {"7d"}}, "Choose at least one scope."},
		{"scope not grantable", url.Values{"name": {"x"}, "scopes": {"admin:everything"}, "expires": {"7d"}}, "Choose scopes from the list."},
		{"bad expiry", url.Values{"name": {"x"}, "scopes": {"payments:read"}, "expires": {"forever"}}, "Choose when the key expires."},
		{"long name", url.Values{"name": {strings.Repeat("x", 101)}, "scopes": {"payments:read"}, "expires": {"7d"}}, "at most 100 characters"},
		{"1 MB name", url.Values{"name": {huge}, "scopes": {"payments:read"}, "expires": {"7d"}}, "at most 100 characters"},
		{"control characters", url.Values{"name": {"evil\u202ename"}, "scopes": {"payments:read"}, "expires": {"7d"}}, "control characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.form.Set("form_token", c.formToken())
			r := c.post("/account/keys", tt.form)
			wantStatus(t, r, http.StatusUnprocessableEntity)
			wantBody(t, r, tt.want, "The key was not created.")
			if len(r.Body) > 100_000 {
				t.Errorf("the page echoes the input: %d bytes", len(r.Body))
			}
		})
	}
	// A missing or forged form token asks to resubmit.
	r := c.post("/account/keys", url.Values{"name": {"x"}, "scopes": {"payments:read"}, "expires": {"7d"}})
	wantStatus(t, r, http.StatusUnprocessableEntity)
	wantBody(t, r, "This form has expired.")
	if n := len(mustKeys(t, s, s.alice.ID)); n != 0 {
		t.Fatalf("%d keys created by invalid forms", n)
	}
	// After an error the same form (same token) can be sent again.
	token := c.formToken()
	wantStatus(t, c.post("/account/keys", url.Values{"form_token": {token}, "name": {""}, "scopes": {"payments:read"}, "expires": {"7d"}}), http.StatusUnprocessableEntity)
	wantStatus(t, c.post("/account/keys", url.Values{"form_token": {token}, "name": {"ok"}, "scopes": {"payments:read"}, "expires": {"never"}}), http.StatusOK)
}

func TestOversizedFormIsRefusedReadably(t *testing.T) {
	s := newStack(t)
	c := s.loggedIn("alice@example.com")
	r := c.post("/account/keys", url.Values{"name": {strings.Repeat("x", 5<<20)}})
	wantStatus(t, r, http.StatusRequestEntityTooLarge)
	wantBody(t, r, "Form too large")
}

func TestUserTextIsEscaped(t *testing.T) {
	s := newStack(t)
	c := s.loggedIn("alice@example.com")
	name := `<script>alert("x")</script><img src=x onerror=alert(1)>`
	r := c.post("/account/keys", url.Values{"form_token": {c.formToken()}, "name": {name}, "scopes": {"payments:read"}, "expires": {"7d"}})
	wantStatus(t, r, http.StatusOK)
	for _, p := range []string{"/account/keys", "/account/activity"} {
		r := c.get(p)
		wantNoBody(t, r, "<script>alert", "<img src=x")
	}
	wantBody(t, c.get("/account/keys"), "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;")
	// The display name in the header is escaped too.
	_, err := s.users.Create(context.Background(), identity.NewUser{Email: "mallory@example.com", Name: `<b>Mallory</b>`, Password: testPassword})
	must(t, err)
	wantNoBody(t, s.loggedIn("mallory@example.com").get("/account"), "<b>Mallory</b>")
}

func TestRevokeKey(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	c := s.loggedIn("alice@example.com")
	plaintext, key, err := s.keys.Issue(ctx, apikeys.IssueRequest{UserID: s.alice.ID, Name: "CI runner", Scopes: []string{"payments:read"}})
	must(t, err)
	_, bobKey, err := s.keys.Issue(ctx, apikeys.IssueRequest{UserID: s.bob.ID, Name: "bob's", Scopes: []string{"payments:read"}})
	must(t, err)

	confirm := c.get("/account/keys/" + key.ID + "/revoke")
	wantStatus(t, confirm, http.StatusOK)
	wantBody(t, confirm, "Revoke this API key?", "CI runner", key.Prefix, `action="/account/keys/`+key.ID+`/revoke"`)
	if _, err := s.keys.Verify(ctx, plaintext); err != nil {
		t.Fatal("the confirmation page revoked the key")
	}

	wantRedirect(t, c.post("/account/keys/"+key.ID+"/revoke", nil), "/account/keys?done=key_revoked")
	if _, err := s.keys.Verify(ctx, plaintext); err == nil {
		t.Fatal("the key still works after revocation")
	}
	list := c.get("/account/keys?done=key_revoked")
	wantBody(t, list, "The API key was revoked.", "Revoked and expired keys (1)", "Revoked")
	// Again: already revoked.
	wantRedirect(t, c.post("/account/keys/"+key.ID+"/revoke", nil), "/account/keys?done=key_already_revoked")

	// Another user's key is not found, and stays valid.
	r := c.get("/account/keys/" + bobKey.ID + "/revoke")
	wantStatus(t, r, http.StatusNotFound)
	r = c.post("/account/keys/"+bobKey.ID+"/revoke", nil)
	wantStatus(t, r, http.StatusNotFound)
	if k, _ := s.keys.Get(ctx, bobKey.ID); !k.RevokedAt.IsZero() {
		t.Fatal("alice revoked bob's key")
	}
	wantStatus(t, c.get("/account/keys/nonsense/revoke"), http.StatusNotFound)
}

func TestSessionKeysAreMarked(t *testing.T) {
	s := newStack(t)
	c := s.loggedIn("alice@example.com")
	other := s.loggedIn("alice@example.com")
	_, mine := s.sessionKey(sessionCookie(t, c))
	_, theirs := s.sessionKey(sessionCookie(t, other))
	r := c.get("/account/keys")
	wantBody(t, r, "MCP session key", `badge badge-blue`, "this browser session")
	if strings.Count(r.Body, "this browser session") != 1 {
		t.Error("the other browser's key is marked as this one")
	}
	wantBody(t, c.get("/account"), "2 session keys included")
	confirm := c.get("/account/keys/" + theirs.ID + "/revoke")
	wantBody(t, confirm, "MCP credential of a browser session")
	wantRedirect(t, c.post("/account/keys/"+theirs.ID+"/revoke", nil), "/account/keys?done=key_revoked")
	// Revoking a session key leaves the session signed in.
	wantStatus(t, other.get("/account"), http.StatusOK)
	// Ending a session revokes its key.
	wantRedirect(t, c.post("/logout", nil), "/login?done=signed_out")
	if k, _ := s.keys.Get(context.Background(), mine.ID); k.RevokedAt.IsZero() {
		t.Error("logout left the session key alive")
	}
}

func TestSessionsListAndRevoke(t *testing.T) {
	s := newStack(t)
	laptop := s.client()
	laptop.hdr.Set("User-Agent", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36")
	laptop.login("alice@example.com")
	phone := s.client()
	phone.hdr.Set("User-Agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")
	phone.login("alice@example.com")
	script := s.loggedIn("alice@example.com") // Go-http-client

	r := laptop.get("/account/sessions")
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, "Chrome on macOS", "Safari on iPhone", "Go-http-client", "This session", "127.0.0.1", "Sign out all other sessions")
	if strings.Count(r.Body, "This session") != 1 {
		t.Error("more than one session is marked as this one")
	}

	list, err := s.sessions.List(context.Background(), s.alice.ID)
	must(t, err)
	var phoneID string
	for _, ss := range list {
		if strings.Contains(ss.UserAgent, "iPhone") {
			phoneID = ss.ID
		}
	}
	confirm := laptop.get("/account/sessions/" + phoneID + "/revoke")
	wantStatus(t, confirm, http.StatusOK)
	wantBody(t, confirm, "Sign out this session?", "Safari on iPhone")
	wantStatus(t, phone.get("/account"), http.StatusOK) // the confirmation changed nothing
	wantRedirect(t, laptop.post("/account/sessions/"+phoneID+"/revoke", nil), "/account/sessions?done=session_revoked")
	wantRedirect(t, phone.get("/account"), "/login?return_to=%2Faccount")
	wantStatus(t, laptop.get("/account"), http.StatusOK)

	// Bob cannot see or end alice's sessions.
	bob := s.loggedIn("bob@example.com")
	wantStatus(t, bob.get("/account/sessions/"+list[0].ID+"/revoke"), http.StatusNotFound)
	wantStatus(t, bob.post("/account/sessions/"+list[0].ID+"/revoke", nil), http.StatusNotFound)

	// Sign out all the others.
	wantBody(t, laptop.get("/account/sessions/revoke-others"), "Sign out all other sessions?", "1 session")
	wantRedirect(t, laptop.post("/account/sessions/revoke-others", nil), "/account/sessions?done=sessions_revoked")
	wantRedirect(t, script.get("/account"), "/login?return_to=%2Faccount")
	wantStatus(t, laptop.get("/account"), http.StatusOK)
	wantRedirect(t, laptop.get("/account/sessions/revoke-others"), "/account/sessions?done=no_other_sessions")

	// Ending the current session from the list is a logout.
	cur, err := s.sessions.List(context.Background(), s.alice.ID)
	must(t, err)
	wantRedirect(t, laptop.post("/account/sessions/"+cur[0].ID+"/revoke", nil), "/login?done=signed_out")
	wantRedirect(t, laptop.get("/account"), "/login?return_to=%2Faccount")
}

func TestActivityPaginationAndFilter(t *testing.T) {
	s := newStack(t)
	c := s.loggedIn("alice@example.com")
	ctx := context.Background()
	var events []store.AuditEvent
	base := time.Now().Add(-time.Hour)
	for i := range 70 {
		events = append(events, store.AuditEvent{Time: base.Add(time.Duration(i) * time.Second), Type: audit.TypeToolCalled,
			Outcome: store.OutcomeAllow, UserID: s.alice.ID, Tool: fmt.Sprintf("tool-%02d", i)})
	}
	events = append(events, store.AuditEvent{Time: base, Type: audit.TypeToolCalled, Outcome: store.OutcomeAllow, UserID: s.bob.ID, Tool: "bobs-secret-tool"})
	must(t, s.db.AppendAudit(ctx, events))
	s.flushAudit()

	first := c.get("/account/activity")
	wantStatus(t, first, http.StatusOK)
	wantBody(t, first, "Signed in", "tool-69", "Older →")
	wantNoBody(t, first, "bobs-secret-tool", "← Newest")
	m := regexpFind(`href="(/account/activity\?before=\d+)"`, first.Body)
	if m == "" {
		t.Fatal("no link to older events")
	}
	older := c.get(strings.ReplaceAll(m, "&amp;", "&"))
	wantStatus(t, older, http.StatusOK)
	wantBody(t, older, "← Newest", "tool-00")
	wantNoBody(t, older, "tool-69", "bobs-secret-tool")

	tools := c.get("/account/activity?type=tool.called")
	wantNoBody(t, tools, `<span class="strong">Signed in</span>`)
	wantBody(t, tools, "tool-69", `href="/account/activity?before=`, `type=tool.called`)
	logins := c.get("/account/activity?type=login.succeeded")
	wantBody(t, logins, "Signed in")
	wantNoBody(t, logins, "tool-69")
	// Nonsense filters are ignored, not errors.
	for _, q := range []string{"?type=%3Cscript%3E", "?before=-5", "?before=abc", "?before=99999999999999999999"} {
		r := c.get("/account/activity" + q)
		wantStatus(t, r, http.StatusOK)
		wantNoBody(t, r, "<script>")
	}
}

func TestChangePassword(t *testing.T) {
	s := newStack(t)
	c := s.loggedIn("alice@example.com")
	other := s.loggedIn("alice@example.com")
	r := c.get("/account/password")
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, `autocomplete="current-password"`, `autocomplete="new-password"`, `autocomplete="username"`)

	const next = "a brand new passphrase"
	tests := []struct {
		name          string
		current, n, c string
		want          string
	}{
		{"mismatch", testPassword, next, next + "x", "The two new passwords do not match."},
		{"too short", testPassword, "short", "short", "Password is too short"},
		{"1 MB", testPassword, strings.Repeat("p", 1<<20), strings.Repeat("p", 1<<20), "Password is too long: at most 1024 bytes."},
		{"wrong current", "not my password!", next, next, "This is not your current password."},
		{"1 MB current", strings.Repeat("c", 1<<20), next, next, "This is not your current password."},
		{"empty", "", "", "", "Enter your current password."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.post("/account/password", url.Values{"current_password": {tt.current}, "new_password": {tt.n}, "confirm_password": {tt.c}})
			wantStatus(t, r, http.StatusUnprocessableEntity)
			wantBody(t, r, tt.want, "Your password was not changed.")
		})
	}
	wantStatus(t, other.get("/account"), http.StatusOK) // nothing changed yet

	before := sessionCookie(t, c)
	r = c.post("/account/password", url.Values{"current_password": {testPassword}, "new_password": {next}, "confirm_password": {next}})
	wantRedirect(t, r, "/account/password?done=password_changed")
	if sessionCookie(t, c) == before {
		t.Error("the session was not renewed")
	}
	wantBody(t, c.get("/account/password?done=password_changed"), "Your password was changed.")
	wantStatus(t, c.get("/account"), http.StatusOK)                       // still signed in here
	wantRedirect(t, other.get("/account"), "/login?return_to=%2Faccount") // signed out elsewhere
	list, err := s.sessions.List(context.Background(), s.alice.ID)
	must(t, err)
	if len(list) != 1 {
		t.Errorf("%d live sessions after a password change, want 1", len(list))
	}
	// The new password works, the old one does not.
	wantStatus(t, s.client().post("/login", url.Values{"email": {"alice@example.com"}, "password": {testPassword}}), http.StatusUnprocessableEntity)
	wantStatus(t, s.client().post("/login", url.Values{"email": {"alice@example.com"}, "password": {next}}), http.StatusSeeOther)
}

func TestCrossOriginPostsAreRefused(t *testing.T) {
	s := newStack(t)
	c := s.loggedIn("alice@example.com")
	token := c.formToken()
	keysBefore := len(mustKeys(t, s, s.alice.ID))
	attacks := []struct {
		name    string
		headers map[string]string
	}{
		{"sec-fetch-site cross-site", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}},
		{"sec-fetch-site same-site", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://sub.127.0.0.1"}},
		{"origin only", map[string]string{"Origin": "https://evil.example"}},
		{"null origin", map[string]string{"Origin": "null"}},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			for _, path := range []string{"/account/keys", "/logout", "/login", "/account/password", "/account/sessions/revoke-others"} {
				req, err := http.NewRequest("POST", s.srv.URL+path, strings.NewReader(url.Values{
					"form_token": {token}, "name": {"csrf"}, "scopes": {"account"}, "expires": {"never"},
					"email": {"alice@example.com"}, "password": {testPassword},
				}.Encode()))
				must(t, err)
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				for k, v := range a.headers {
					req.Header.Set(k, v)
				}
				r := c.do(req)
				wantStatus(t, r, http.StatusForbidden)
				wantBody(t, r, "Request refused", "sent from another website")
			}
		})
	}
	if n := len(mustKeys(t, s, s.alice.ID)); n != keysBefore {
		t.Fatal("a cross-origin post created a key")
	}
	wantStatus(t, c.get("/account"), http.StatusOK) // the cross-origin logout did nothing
	s.flushAudit()
	refused, err := s.db.ListAudit(context.Background(), store.AuditFilter{UserID: s.alice.ID, Type: audit.TypeAuthRejected})
	must(t, err)
	if len(refused) == 0 || refused[0].Reason != audit.ReasonCSRF || refused[0].Outcome != store.OutcomeDeny {
		t.Errorf("cross-origin posts not audited: %+v", refused)
	}
	// The same form from this origin works.
	same := url.Values{"form_token": {token}, "name": {"same origin"}, "scopes": {"account"}, "expires": {"never"}}
	req, _ := http.NewRequest("POST", s.srv.URL+"/account/keys", strings.NewReader(same.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Origin", s.srv.URL)
	wantStatus(t, c.do(req), http.StatusOK)
}

func TestAdminOnly(t *testing.T) {
	s := newStack(t)
	c := s.loggedIn("alice@example.com")
	for _, path := range []string{"/admin", "/admin/users", "/admin/users/new", "/admin/users/" + s.bob.ID, "/admin/audit",
		"/admin/users/" + s.bob.ID + "/disable", "/admin/users/" + s.bob.ID + "/reset-password"} {
		r := c.get(path)
		wantStatus(t, r, http.StatusForbidden)
		wantBody(t, r, "Administrators only", "does not have the admin role")
	}
	for _, path := range []string{"/admin/users", "/admin/users/" + s.bob.ID + "/disable", "/admin/users/" + s.bob.ID + "/roles",
		"/admin/users/" + s.bob.ID + "/reset-password"} {
		r := c.post(path, url.Values{"email": {"new@example.com"}, "roles": {"admin"}})
		wantStatus(t, r, http.StatusForbidden)
	}
	u, err := s.users.Get(context.Background(), s.bob.ID)
	must(t, err)
	if u.Disabled || len(u.Roles) != 0 {
		t.Fatal("a non-admin changed a user")
	}
	if _, err := s.users.Get(context.Background(), "new@example.com"); err == nil {
		t.Fatal("a non-admin created a user")
	}
	a := s.loggedIn("admin@example.com")
	wantRedirect(t, a.get("/admin"), "/admin/users")
	wantStatus(t, a.get("/admin/users"), http.StatusOK)
}

func TestAdminUsers(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	a := s.loggedIn("admin@example.com")

	list := a.get("/admin/users")
	wantBody(t, list, "alice@example.com", "bob@example.com", "Alice Liddell", "3 accounts")

	// Create with a generated password, shown once.
	r := a.post("/admin/users", url.Values{"email": {"Carol@Example.com"}, "name": {"Carol"}, "roles": {"support, auditor"}})
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, "User created", "carol@example.com", "shown only once")
	pw := regexpFind(`id="new-password" class="copy-value secret">([^<]+)<`, r.Body)
	if len(pw) != 20 {
		t.Fatalf("no generated password on the page:\n%s", excerpt(r.Body))
	}
	carol := s.client()
	wantStatus(t, carol.post("/login", url.Values{"email": {"carol@example.com"}, "password": {pw}}), http.StatusSeeOther)
	cu, err := s.users.Get(ctx, "carol@example.com")
	must(t, err)
	if strings.Join(cu.Roles, " ") != "auditor support" {
		t.Errorf("roles %v", cu.Roles)
	}
	wantNoBody(t, a.get("/admin/users/"+cu.ID), pw)

	// Create with a typed password.
	r = a.post("/admin/users", url.Values{"email": {"dan@example.com"}, "password": {"dan's long password"}})
	dan, err := s.users.Get(ctx, "dan@example.com")
	must(t, err)
	wantRedirect(t, r, "/admin/users/"+dan.ID+"?done=user_created")

	// Validation.
	for _, tt := range []struct {
		form url.Values
		want string
	}{
		{url.Values{"email": {"alice@example.com"}}, "A user with this email address already exists."},
		{url.Values{"email": {"not-an-email"}}, "The email address is not a valid email address."},
		{url.Values{"email": {""}}, "The email address is required."},
		{url.Values{"email": {"аlice@example.com"}}, "plain ASCII"}, // Cyrillic а
		{url.Values{"email": {"e@example.com"}, "password": {"short"}}, "too short"},
		{url.Values{"email": {"e@example.com"}, "password": {strings.Repeat("p", 1<<20)}}, "Password is too long: at most 1024 bytes."},
		{url.Values{"email": {"e@example.com"}, "roles": {"Admin!"}}, "may only contain"},
		{url.Values{"email": {strings.Repeat("e", 1<<20) + "@example.com"}}, "too long"},
	} {
		r := a.post("/admin/users", tt.form)
		wantStatus(t, r, http.StatusUnprocessableEntity)
		wantBody(t, r, tt.want)
		if len(r.Body) > 100_000 {
			t.Errorf("the page echoes the input: %d bytes", len(r.Body))
		}
	}

	// Roles.
	wantRedirect(t, a.post("/admin/users/"+s.bob.ID+"/roles", url.Values{"roles": {"admin support"}}), "/admin/users/"+s.bob.ID+"?done=roles_saved")
	bob, _ := s.users.Get(ctx, s.bob.ID)
	if strings.Join(bob.Roles, " ") != "admin support" {
		t.Errorf("bob's roles %v", bob.Roles)
	}
	r = a.post("/admin/users/"+s.admin.ID+"/roles", url.Values{"roles": {"support"}})
	wantStatus(t, r, http.StatusUnprocessableEntity)
	wantBody(t, r, "You cannot remove the admin role from your own account")

	// Disable ends the user's sessions and stops logins; enable again.
	alice := s.loggedIn("alice@example.com")
	plaintext, _, err := s.keys.Issue(ctx, apikeys.IssueRequest{UserID: s.alice.ID, Name: "k", Scopes: []string{"payments:read"}})
	must(t, err)
	confirm := a.get("/admin/users/" + s.alice.ID + "/disable")
	wantStatus(t, confirm, http.StatusOK)
	wantBody(t, confirm, "Disable alice@example.com?")
	wantRedirect(t, a.post("/admin/users/"+s.alice.ID+"/disable", nil), "/admin/users/"+s.alice.ID+"?done=user_disabled")
	wantRedirect(t, alice.get("/account"), "/login?return_to=%2Faccount")
	if _, err := s.keys.Verify(ctx, plaintext); err == nil {
		t.Error("a disabled user's key still works")
	}
	wantStatus(t, s.client().post("/login", url.Values{"email": {"alice@example.com"}, "password": {testPassword}}), http.StatusUnprocessableEntity)
	wantBody(t, a.get("/admin/users/"+s.alice.ID), "Disabled", "Enable user")
	wantRedirect(t, a.post("/admin/users/"+s.alice.ID+"/enable", nil), "/admin/users/"+s.alice.ID+"?done=user_enabled")
	s.loggedIn("alice@example.com")

	// No disabling yourself.
	wantStatus(t, a.get("/admin/users/"+s.admin.ID+"/disable"), http.StatusBadRequest)
	wantStatus(t, a.post("/admin/users/"+s.admin.ID+"/disable", nil), http.StatusBadRequest)

	// Reset password: shown once, sessions end.
	alice = s.loggedIn("alice@example.com")
	wantBody(t, a.get("/admin/users/"+s.alice.ID+"/reset-password"), "Reset the password of alice@example.com?")
	r = a.post("/admin/users/"+s.alice.ID+"/reset-password", nil)
	wantStatus(t, r, http.StatusOK)
	newPW := regexpFind(`id="new-password" class="copy-value secret">([^<]+)<`, r.Body)
	if len(newPW) != 20 {
		t.Fatalf("no new password on the page")
	}
	wantRedirect(t, alice.get("/account"), "/login?return_to=%2Faccount")
	wantStatus(t, s.client().post("/login", url.Values{"email": {"alice@example.com"}, "password": {newPW}}), http.StatusSeeOther)
	wantRedirect(t, a.get("/admin/users/"+s.admin.ID+"/reset-password"), "/account/password?done=password_reset_no_self")

	// Unknown users.
	for _, p := range []string{"/admin/users/usr_nope", "/admin/users/alice@example.com", "/admin/users/usr_nope/disable"} {
		wantStatus(t, a.get(p), http.StatusNotFound)
	}
	wantStatus(t, a.post("/admin/users/usr_nope/roles", url.Values{"roles": {"x"}}), http.StatusNotFound)
}

func TestAdminAudit(t *testing.T) {
	s := newStack(t)
	a := s.loggedIn("admin@example.com")
	bob := s.client()
	wantStatus(t, bob.post("/login", url.Values{"email": {"bob@example.com"}, "password": {"wrong password!!"}}), http.StatusUnprocessableEntity)
	bob.login("bob@example.com")
	s.flushAudit()

	all := a.get("/admin/audit")
	wantStatus(t, all, http.StatusOK)
	wantBody(t, all, "Sign-in failed", "wrong password", "bob@example.com", "admin@example.com", "Denied")

	denied := a.get("/admin/audit?outcome=deny")
	wantBody(t, denied, "Sign-in failed")
	wantNoBody(t, denied, `<span class="strong">Signed in</span>`)

	byUser := a.get("/admin/audit?user=Admin@Example.com&type=login.succeeded")
	wantBody(t, byUser, "Signed in", "admin@example.com")
	wantNoBody(t, byUser, `href="/admin/audit?user=bob%40example.com"`)

	since := a.get("/admin/audit?since=1h&type=login.failed")
	wantBody(t, since, "Sign-in failed")

	unknown := a.get("/admin/audit?user=ghost@example.com")
	wantStatus(t, unknown, http.StatusOK)
	wantBody(t, unknown, "No user has the email address ghost@example.com.")
	notEmail := a.get("/admin/audit?user=" + url.QueryEscape(s.bob.ID))
	wantBody(t, notEmail, "Filter by a full email address")
	for _, q := range []string{"?outcome=maybe", "?since=forever", "?type=x", "?user=%3Cscript%3E@x.y"} {
		r := a.get("/admin/audit" + q)
		wantStatus(t, r, http.StatusOK)
		wantNoBody(t, r, "<script>")
	}
}

func TestDevice(t *testing.T) {
	tests := []struct{ ua, want string }{
		{"", "Unknown device"},
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36", "Chrome on Windows"},
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0", "Edge on Windows"},
		{"Mozilla/5.0 (Macintosh; Intel Mac OS X 14.1; rv:131.0) Gecko/20100101 Firefox/131.0", "Firefox on macOS"},
		{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15", "Safari on macOS"},
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1", "Safari on iPhone"},
		{"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36", "Chrome on Android"},
		{"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/130.0.0.0 Safari/537.36", "Headless Chrome on Linux"},
		{"curl/8.5.0", "curl"},
		{"Go-http-client/1.1", "Go-http-client"},
		{"Mozilla/5.0 (X11; Linux x86_64)", "Browser on Linux"},
		{"\x01\x02weird", "weird"},
	}
	for _, tt := range tests {
		if got := Device(tt.ua); got != tt.want {
			t.Errorf("Device(%q) = %q, want %q", tt.ua, got, tt.want)
		}
	}
}

func TestTimeFormatting(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		t    time.Time
		ago  string
		till string
	}{
		{time.Time{}, "never", "never"},
		{now.Add(-10 * time.Second), "just now", "expired"},
		{now.Add(-5 * time.Minute), "5 min ago", "expired"},
		{now.Add(-3 * time.Hour), "3 h ago", "expired"},
		{now.Add(-30 * time.Hour), "yesterday", "expired"},
		{now.Add(-5 * 24 * time.Hour), "5 days ago", "expired"},
		{now.Add(-90 * 24 * time.Hour), "10 Dec 2025", "expired"},
		{now.Add(30 * 24 * time.Hour), "just now", "in 30 days"},
		{now.Add(90 * time.Minute), "just now", "in 1 h"},
	} {
		if got := ago(tt.t, now); got != tt.ago {
			t.Errorf("ago(%v) = %q, want %q", tt.t, got, tt.ago)
		}
		if got := until(tt.t, now); got != tt.till {
			t.Errorf("until(%v) = %q, want %q", tt.t, got, tt.till)
		}
	}
}

func regexpFind(expr, s string) string {
	m := regexp.MustCompile(expr).FindStringSubmatch(s)
	if len(m) < 2 {
		return ""
	}
	return m[1]
}
