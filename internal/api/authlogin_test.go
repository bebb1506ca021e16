package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
)

// POST /auth/login gives a normal access token for /mcp; GET /auth/status
// describes it.
func TestDirectLogin(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	script := s.keyClient("") // no Origin, no cookies: a script

	r := script.do("POST", "/auth/login", map[string]string{"email": "Bob@Example.com", "password": testPassword})
	if r.status != http.StatusOK {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q", cc)
	}
	if c := r.header.Get("Set-Cookie"); c != "" {
		t.Errorf("login set a cookie: %q", c)
	}
	m := r.json(t)
	at, _ := m["access_token"].(string)
	if at == "" || m["token_type"] != "bearer" || m["message"] != "Login successful" || m["client_id"] != oauth.DirectLoginClientID ||
		m["scope"] != "payments:read payments:write" || m["expires_in"].(float64) < 3500 || !strings.HasPrefix(m["refresh_token"].(string), "mcpgr_") {
		t.Fatalf("login answer: %s", r.body)
	}

	// The token works on /mcp as bob.
	cs, err := s.mcpClient(ctx, at)
	must(t, err)
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "getAccountBalance", Arguments: map[string]any{}})
	must(t, err)
	if res.IsError || res.StructuredContent.(map[string]any)["email"] != "bob@example.com" {
		t.Errorf("balance with the login token: %+v", res)
	}
	cs.Close()

	// /auth/status with the token, and with an API key.
	st := s.keyClient(at).do("GET", "/auth/status", nil)
	if st.status != http.StatusOK || st.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("status: %d %s", st.status, st.body)
	}
	sm := st.json(t)
	user, _ := sm["user"].(map[string]any)
	if sm["authenticated"] != true || sm["method"] != "oauth" || sm["client_id"] != oauth.DirectLoginClientID ||
		user["id"] != s.bob.ID || user["email"] != "bob@example.com" || user["name"] != "Bob" || sm["expires_at"] == nil ||
		len(sm["scopes"].([]any)) != 2 {
		t.Errorf("status answer: %s", st.body)
	}
	key, _ := s.issue(s.alice, "payments:read")
	st = s.keyClient(key).do("GET", "/auth/status", nil)
	sm = st.json(t)
	if st.status != http.StatusOK || sm["method"] != "api_key" || sm["user"].(map[string]any)["email"] != "alice@example.com" {
		t.Errorf("status with an API key: %d %s", st.status, st.body)
	}
	st = s.keyClient("").do("GET", "/auth/status", nil, "X-API-Key", key)
	if st.status != http.StatusOK {
		t.Errorf("status with X-API-Key: %d %s", st.status, st.body)
	}

	// Audited: the login and the token.
	if ev := s.events("login.succeeded", s.bob.ID); len(ev) != 1 {
		t.Errorf("login.succeeded events: %d", len(ev))
	}
	issued := s.events("oauth.token_issued", s.bob.ID)
	if len(issued) != 1 || issued[0].Details["grant_type"] != "direct_login" || issued[0].Resource != s.mcpURL {
		t.Errorf("oauth.token_issued: %+v", issued)
	}

	// The grant is a connected app bob can see and revoke; revoking it
	// stops the token.
	b := s.browser()
	b.login("bob@example.com")
	apps := b.do("GET", "/api/apps", nil).json(t)["apps"].([]any)
	if len(apps) != 1 || apps[0].(map[string]any)["client_id"] != oauth.DirectLoginClientID {
		t.Fatalf("connected apps: %v", apps)
	}
	if r := b.do("DELETE", "/api/apps/"+apps[0].(map[string]any)["id"].(string), nil); r.status != http.StatusNoContent {
		t.Fatalf("revoke app: %d %s", r.status, r.body)
	}
	st = s.keyClient(at).do("GET", "/auth/status", nil)
	if st.status != http.StatusUnauthorized || st.errorCode(t) != codeUnauthorized || !strings.Contains(st.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("status after revocation: %d %v %s", st.status, st.header, st.body)
	}

	// A second login reuses the built-in client.
	if r := script.do("POST", "/auth/login", map[string]string{"email": "alice@example.com", "password": testPassword}); r.status != http.StatusOK {
		t.Fatalf("second login: %d %s", r.status, r.body)
	}
	if cls, _ := s.clients.List(ctx, ""); len(cls) != 1 || cls[0].ClientID != oauth.DirectLoginClientID {
		t.Errorf("clients after two logins: %+v", cls)
	}
}

// Failures: one answer for unknown email, wrong password and disabled
// user; clear 400s for missing fields; 429 past the limit.
func TestDirectLoginRefusals(t *testing.T) {
	s := newStack(t)
	script := s.keyClient("")
	login := func(body any) response { return script.do("POST", "/auth/login", body) }

	wrong := login(map[string]string{"email": "bob@example.com", "password": "nope"})
	unknown := login(map[string]string{"email": "nobody@example.com", "password": "nope"})
	if wrong.status != http.StatusUnauthorized || wrong.errorCode(t) != codeInvalidCredentials || string(wrong.body) != string(unknown.body) || unknown.status != wrong.status {
		t.Errorf("wrong password %d %s vs unknown email %d %s", wrong.status, wrong.body, unknown.status, unknown.body)
	}
	if _, err := s.users.SetDisabled(context.Background(), s.charlie.ID, true); err != nil {
		t.Fatal(err)
	}
	if r := login(map[string]string{"email": "charlie@example.com", "password": testPassword}); r.status != wrong.status || string(r.body) != string(wrong.body) {
		t.Errorf("disabled user: %d %s", r.status, r.body)
	}
	for _, c := range []struct {
		body  any
		field string
	}{
		{map[string]string{"password": testPassword}, "email"},
		{map[string]string{"email": " ", "password": testPassword}, "email"},
		{map[string]string{"email": "bob@example.com"}, "password"},
		{map[string]any{"email": "bob@example.com", "password": testPassword, "scope": "admin"}, "scope"},
		{map[string]any{"email": "bob@example.com", "password": 1}, "password"},
	} {
		r := login(c.body)
		if r.status != http.StatusBadRequest || r.errorCode(t) != codeInvalidRequest || r.json(t)["field"] != c.field {
			t.Errorf("%v: %d %s", c.body, r.status, r.body)
		}
	}
	if r := login("{"); r.status != http.StatusBadRequest {
		t.Errorf("garbage JSON: %d %s", r.status, r.body)
	}
	if r := script.do("POST", "/auth/login", "email=bob", "Content-Type", "", "Content-Type", "application/x-www-form-urlencoded"); r.status != http.StatusUnsupportedMediaType {
		t.Errorf("form body: %d %s", r.status, r.body)
	}
	if r := login(`{"email":"bob@example.com","password":"` + strings.Repeat("p", 100<<10) + `"}`); r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("huge body: %d %s", r.status, r.body)
	}
	if r := script.do("GET", "/auth/login", nil); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST" {
		t.Errorf("GET /auth/login: %d %v", r.status, r.header)
	}

	// The login page's limits apply.
	s.users.SetLoginLimiters(ratelimit.NewMemory(time.Hour, 2, 0), nil)
	for range 2 {
		login(map[string]string{"email": "alice@example.com", "password": "guess"})
	}
	r := login(map[string]string{"email": "alice@example.com", "password": testPassword})
	if r.status != http.StatusTooManyRequests || r.errorCode(t) != codeRateLimited || r.header.Get("Retry-After") == "" {
		t.Errorf("rate-limited: %d %v %s", r.status, r.header, r.body)
	}
	if n := len(s.events("oauth.token_issued", "")); n != 0 {
		t.Errorf("%d tokens issued by refused logins", n)
	}
}

// GET /auth/status refuses like /mcp: a challenge, the origin policy, and
// flood control.
func TestAuthStatusRefusals(t *testing.T) {
	s := newStack(t)
	anon := s.keyClient("")
	r := anon.do("GET", "/auth/status", nil)
	if r.status != http.StatusUnauthorized || r.errorCode(t) != codeUnauthorized ||
		!strings.Contains(r.header.Get("WWW-Authenticate"), `resource_metadata="`+s.srv.URL+`/.well-known/oauth-protected-resource/mcp"`) {
		t.Errorf("no credential: %d %v %s", r.status, r.header, r.body)
	}
	key, _ := s.issue(s.bob, "payments:read")
	if r := s.keyClient(key).do("GET", "/auth/status", nil, "Origin", "https://evil.example"); r.status != http.StatusForbidden || r.errorCode(t) != codeForbidden {
		t.Errorf("foreign origin: %d %s", r.status, r.body)
	}
	bad := s.keyClient("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
	var last response
	for range 130 {
		if last = bad.do("GET", "/auth/status", nil); last.status == http.StatusTooManyRequests {
			break
		}
	}
	if last.status != http.StatusTooManyRequests || last.errorCode(t) != "too_many_requests" || last.header.Get("Retry-After") == "" {
		t.Errorf("refusal flood: %d %v %s", last.status, last.header, last.body)
	}
}

// Switched off, both endpoints are 404 (JSON).
func TestDirectLoginOff(t *testing.T) {
	s := newStack(t, stackOptions{noDirectLogin: true})
	for _, c := range []struct{ method, path string }{{"POST", "/auth/login"}, {"GET", "/auth/status"}, {"GET", "/auth/other"}} {
		r := s.keyClient("").do(c.method, c.path, map[string]string{"email": "bob@example.com", "password": testPassword})
		if r.status != http.StatusNotFound || r.errorCode(t) != codeNotFound {
			t.Errorf("%s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}
}
