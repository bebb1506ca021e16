package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/session"
)

func TestLogin(t *testing.T) {
	s := newStack(t)
	b := s.browser()

	wrongPassword := b.do("POST", "/api/auth/login", map[string]string{"email": "bob@example.com", "password": "not the password"})
	unknownUser := b.do("POST", "/api/auth/login", map[string]string{"email": "nobody@example.com", "password": "not the password"})
	for name, r := range map[string]response{"wrong password": wrongPassword, "unknown user": unknownUser} {
		if r.status != http.StatusUnauthorized || r.errorCode(t) != codeInvalidCredentials {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
		if findCookie(r.header, session.CookieNameInsecure) != nil {
			t.Errorf("%s set a session cookie", name)
		}
	}
	if string(wrongPassword.body) != string(unknownUser.body) {
		t.Errorf("wrong password and unknown user answer differently:\n%s\n%s", wrongPassword.body, unknownUser.body)
	}
	if n := len(s.events(audit.TypeLoginFailed, "")); n != 2 {
		t.Errorf("login.failed events = %d, want 2", n)
	}
	// A look-alike address (Cyrillic а) is nobody's account.
	r := b.do("POST", "/api/auth/login", map[string]string{"email": "\u0430lice@example.com", "password": testPassword})
	if r.status != http.StatusUnauthorized || string(r.body) != string(unknownUser.body) {
		t.Errorf("confusable email: %d %s", r.status, r.body)
	}
	// A 1 MB password is refused before any hashing.
	r = b.do("POST", "/api/auth/login", map[string]string{"email": "bob@example.com", "password": strings.Repeat("p", 1<<20)})
	if r.status != http.StatusRequestEntityTooLarge || r.errorCode(t) != codeTooLarge {
		t.Errorf("1 MB password: %d %s", r.status, r.body)
	}

	// A disabled user cannot log in, with the same answer.
	if _, err := s.users.SetDisabled(context.Background(), s.charlie.ID, true); err != nil {
		t.Fatal(err)
	}
	r = b.do("POST", "/api/auth/login", map[string]string{"email": "charlie@example.com", "password": testPassword})
	if r.status != http.StatusUnauthorized || string(r.body) != string(unknownUser.body) {
		t.Errorf("disabled user: %d %s", r.status, r.body)
	}

	// Rate limits answer 429 with Retry-After.
	s.users.SetLoginLimiters(ratelimit.NewMemory(time.Hour, 2, 0), nil)
	for i := range 2 {
		if r := b.do("POST", "/api/auth/login", map[string]string{"email": "bob@example.com", "password": "guess"}); r.status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d %s", i, r.status, r.body)
		}
	}
	r = b.do("POST", "/api/auth/login", map[string]string{"email": "bob@example.com", "password": testPassword})
	if r.status != http.StatusTooManyRequests || r.errorCode(t) != codeRateLimited || r.header.Get("Retry-After") == "" {
		t.Fatalf("rate-limited login: %d %v %s", r.status, r.header, r.body)
	}
	if m := r.json(t); !strings.Contains(m["message"].(string), "too many attempts, try again in") || m["retry_after"] == nil {
		t.Errorf("rate-limited body: %s", r.body)
	}

	// A second login from the same browser replaces its session.
	s.users.SetLoginLimiters(nil, nil)
	b.login("alice@example.com")
	b.login("alice@example.com")
	if live, _ := s.sessions.List(context.Background(), s.alice.ID); len(live) != 1 {
		t.Errorf("after two logins from one browser: %d live sessions, want 1", len(live))
	}
}

func TestCredentialsNeedTheCookie(t *testing.T) {
	s := newStack(t)
	accountKey, _ := s.issue(s.bob, "account", "payments:read")
	r := s.keyClient(accountKey).do("POST", "/api/mcp/credentials", nil)
	if r.status != http.StatusForbidden || r.errorCode(t) != codeForbidden {
		t.Errorf("credentials with an account key: %d %s", r.status, r.body)
	}
	r = s.keyClient("").do("POST", "/api/mcp/credentials", nil)
	if r.status != http.StatusUnauthorized || r.errorCode(t) != codeUnauthorized {
		t.Errorf("credentials without anything: %d %s", r.status, r.body)
	}
	// A session whose key the user revoked gets no second key.
	b := s.browser()
	b.login("bob@example.com")
	b.credential()
	var keyID string
	for _, k := range mustList(t, s, s.bob.ID) {
		if k.Kind == "session" {
			keyID = k.ID
		}
	}
	if r := b.do("DELETE", "/api/api-keys/"+keyID, nil); r.status != http.StatusOK {
		t.Fatalf("revoking the session key: %d %s", r.status, r.body)
	}
	r = b.do("POST", "/api/mcp/credentials", nil)
	if r.status != http.StatusUnauthorized || !strings.Contains(r.json(t)["message"].(string), "log in again") {
		t.Errorf("credentials after revoking the session key: %d %s", r.status, r.body)
	}
	if r := b.do("GET", "/api/mcp/tools", nil); r.status != http.StatusUnauthorized {
		t.Errorf("facade after revoking the session key: %d %s", r.status, r.body)
	}
	// The session itself is fine.
	if r := b.do("GET", "/api/sessions", nil); r.status != http.StatusOK {
		t.Errorf("sessions: %d %s", r.status, r.body)
	}
}

func TestAPIKeys(t *testing.T) {
	s := newStack(t)
	b := s.browser()
	b.login("bob@example.com")

	r := b.do("POST", "/api/api-keys", map[string]any{"name": "laptop", "scopes": []string{"payments:read", "account"}, "expires_in_days": 30})
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	created := r.json(t)
	plain := created["api_key"].(string)
	key := created["key"].(map[string]any)
	if key["name"] != "laptop" || key["kind"] != "manual" || key["status"] != "active" || key["prefix"] != plain[:12] ||
		!jsonEqual(key["scopes"], []string{"account", "payments:read"}) {
		t.Errorf("created key = %v", key)
	}
	exp, _ := time.Parse(time.RFC3339, key["expires_at"].(string))
	if d := exp.Sub(s.clock.Now()); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("expires_at %v is not 30 days away", exp)
	}
	// The new key manages the account and calls tools.
	kc := s.keyClient(plain)
	r = kc.do("GET", "/api/api-keys", nil)
	if r.status != http.StatusOK || strings.Contains(string(r.body), plain) || strings.Contains(string(r.body), "hash") {
		t.Fatalf("list with the key: %d %s", r.status, r.body)
	}
	if n := len(r.json(t)["api_keys"].([]any)); n != 1 {
		t.Errorf("bob has %d keys listed, want 1", n)
	}
	if r := kc.do("POST", "/api/mcp/tools/call", map[string]any{"name": "getAccountBalance"}); r.status != http.StatusOK {
		t.Errorf("tool call with the new key: %d %s", r.status, r.body)
	}
	// A key can only grant scopes it holds; a session grants any grantable one.
	r = kc.do("POST", "/api/api-keys", map[string]any{"name": "more", "scopes": []string{"payments:write"}})
	if r.status != http.StatusForbidden || r.errorCode(t) != codeInsufficientScope || !jsonEqual(r.json(t)["required_scopes"], []string{"payments:write"}) {
		t.Errorf("key granting more than it holds: %d %s", r.status, r.body)
	}
	r = kc.do("POST", "/api/api-keys", map[string]any{"name": "ci", "scopes": []string{"payments:read"}, "expires_at": s.clock.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)})
	if r.status != http.StatusCreated {
		t.Errorf("key creating a narrower key: %d %s", r.status, r.body)
	}
	for name, body := range map[string]map[string]any{
		"ungrantable scope": {"name": "x", "scopes": []string{"admin"}},
		"no scopes":         {"name": "x", "scopes": []string{}},
		"no name":           {"scopes": []string{"payments:read"}},
		"empty name":        {"name": "  ", "scopes": []string{"payments:read"}},
		"both expiries":     {"name": "x", "scopes": []string{"payments:read"}, "expires_in_days": 1, "expires_at": "2099-01-01T00:00:00Z"},
		"past expiry":       {"name": "x", "scopes": []string{"payments:read"}, "expires_at": "2001-01-01T00:00:00Z"},
		"zero days":         {"name": "x", "scopes": []string{"payments:read"}, "expires_in_days": 0},
		"bad date":          {"name": "x", "scopes": []string{"payments:read"}, "expires_at": "tomorrow"},
	} {
		r := b.do("POST", "/api/api-keys", body)
		if r.status != http.StatusBadRequest || r.errorCode(t) != codeInvalidRequest || r.json(t)["field"] == nil {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}

	// Revoke: own keys only.
	_, aliceKey := s.issue(s.alice, "payments:read")
	r = b.do("DELETE", "/api/api-keys/"+aliceKey.ID, nil)
	if r.status != http.StatusNotFound || r.errorCode(t) != codeNotFound {
		t.Errorf("revoking alice's key as bob: %d %s", r.status, r.body)
	}
	if k, _ := s.keys.Get(context.Background(), aliceKey.ID); !k.RevokedAt.IsZero() {
		t.Errorf("bob revoked alice's key")
	}
	id := key["id"].(string)
	for i := range 2 {
		r = b.do("DELETE", "/api/api-keys/"+id, nil)
		if r.status != http.StatusOK || r.json(t)["key"].(map[string]any)["status"] != "revoked" {
			t.Errorf("revoke #%d: %d %s", i, r.status, r.body)
		}
	}
	if r := kc.do("GET", "/api/api-keys", nil); r.status != http.StatusUnauthorized {
		t.Errorf("revoked key still manages the account: %d %s", r.status, r.body)
	}
	if n := len(s.events(audit.TypeKeyRevoked, s.bob.ID)); n != 1 {
		t.Errorf("key.revoked events = %d, want 1", n)
	}
}

func TestAccountNeedsAccountScope(t *testing.T) {
	s := newStack(t)
	key, _ := s.issue(s.bob, "payments:read", "payments:write")
	c := s.keyClient(key)
	for _, rt := range routes {
		if !strings.HasPrefix(rt.Path, "/api/api-keys") && !strings.HasPrefix(rt.Path, "/api/sessions") && !strings.HasPrefix(rt.Path, "/api/apps") &&
			rt.Path != "/api/audit" && rt.Path != "/api/mcp/credentials" {
			continue
		}
		path := strings.ReplaceAll(rt.Path, "{id}", "key_aaaaaaaaaaaaaaaaaaaaaaaaaa")
		var body any
		if rt.Method == "POST" {
			body = map[string]any{"name": "x", "scopes": []string{"payments:read"}}
		}
		r := c.do(rt.Method, path, body)
		if r.status != http.StatusForbidden || r.errorCode(t) != codeInsufficientScope || !jsonEqual(r.json(t)["required_scopes"], []string{"account"}) {
			t.Errorf("%s %s with a key without the account scope: %d %s", rt.Method, rt.Path, r.status, r.body)
		}
	}
	if n := len(mustList(t, s, s.bob.ID)); n != 1 {
		t.Errorf("bob has %d keys, want 1", n)
	}
}

func TestSessions(t *testing.T) {
	s := newStack(t)
	laptop, phone := s.browser(), s.browser()
	laptop.login("alice@example.com")
	phone.login("alice@example.com")
	phone.credential()

	r := laptop.do("GET", "/api/sessions", nil, "User-Agent", "laptop-browser")
	if r.status != http.StatusOK {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	list := r.json(t)["sessions"].([]any)
	if len(list) != 2 {
		t.Fatalf("sessions = %d, want 2", len(list))
	}
	var current, other string
	for _, x := range list {
		m := x.(map[string]any)
		if m["current"] == true {
			current = m["id"].(string)
		} else {
			other = m["id"].(string)
		}
		if m["ip"] != "127.0.0.1" || m["created_at"] == nil || m["expires_at"] == nil {
			t.Errorf("session %v", m)
		}
	}
	if current == "" || other == "" {
		t.Fatalf("no current session marked: %s", r.body)
	}
	// A key caller has no current session.
	key, _ := s.issue(s.alice, "account")
	if r := s.keyClient(key).do("GET", "/api/sessions", nil); strings.Contains(string(r.body), `"current":true`) {
		t.Errorf("key caller sees a current session: %s", r.body)
	}

	// Another user cannot end alice's sessions, nor learn they exist.
	bob := s.browser()
	bob.login("bob@example.com")
	if r := bob.do("DELETE", "/api/sessions/"+other, nil); r.status != http.StatusNotFound {
		t.Errorf("bob ending alice's session: %d %s", r.status, r.body)
	}
	if r := phone.do("GET", "/api/sessions", nil); r.status != http.StatusOK {
		t.Errorf("alice's phone after bob's attempt: %d", r.status)
	}

	// The laptop ends the phone's session: the phone is logged out and its
	// MCP key stops working.
	phoneKey := phone.credential()
	if r := laptop.do("DELETE", "/api/sessions/"+other, nil); r.status != http.StatusNoContent {
		t.Fatalf("ending the other session: %d %s", r.status, r.body)
	}
	if r := phone.do("GET", "/api/sessions", nil); r.status != http.StatusUnauthorized {
		t.Errorf("phone after its session ended: %d %s", r.status, r.body)
	}
	if st := rawMCPStatus(t, s, phoneKey); st != http.StatusUnauthorized {
		t.Errorf("phone's MCP key after its session ended: %d", st)
	}
	if r := laptop.do("DELETE", "/api/sessions/"+other, nil); r.status != http.StatusNoContent {
		t.Errorf("ending an ended session again: %d %s", r.status, r.body)
	}
	// Ending the current session logs out.
	r = laptop.do("DELETE", "/api/sessions/"+current, nil)
	if r.status != http.StatusNoContent {
		t.Fatalf("ending the current session: %d %s", r.status, r.body)
	}
	if c := findCookie(r.header, session.CookieNameInsecure); c == nil || c.MaxAge >= 0 {
		t.Errorf("ending the current session did not clear the cookie: %v", r.header.Values("Set-Cookie"))
	}
	if r := laptop.do("GET", "/api/sessions", nil); r.status != http.StatusUnauthorized {
		t.Errorf("laptop after ending its session: %d", r.status)
	}
}

func TestAudit(t *testing.T) {
	s := newStack(t)
	alice, bob := s.browser(), s.browser()
	alice.login("alice@example.com")
	bob.login("bob@example.com")
	for i := range 5 {
		bob.do("POST", "/api/api-keys", map[string]any{"name": fmt.Sprintf("k%d", i), "scopes": []string{"payments:read"}})
	}
	must(t, s.audit.Flush(context.Background()))

	r := bob.do("GET", "/api/audit", nil)
	if r.status != http.StatusOK {
		t.Fatalf("audit: %d %s", r.status, r.body)
	}
	for _, e := range r.json(t)["events"].([]any) {
		if e.(map[string]any)["user_id"] != s.bob.ID {
			t.Errorf("bob sees an event of someone else: %v", e)
		}
	}
	// Pages of two key.created events, newest first.
	var seen []float64
	before := ""
	for range 3 {
		r := bob.do("GET", "/api/audit?type=key.created&limit=2"+before, nil)
		m := r.json(t)
		for _, e := range m["events"].([]any) {
			em := e.(map[string]any)
			if em["type"] != "key.created" {
				t.Errorf("type filter let through %v", em)
			}
			seen = append(seen, em["id"].(float64))
		}
		nb, ok := m["next_before"].(float64)
		if !ok {
			break
		}
		before = fmt.Sprintf("&before=%d", int64(nb))
	}
	if len(seen) != 5 {
		t.Errorf("paged through %d key.created events, want 5", len(seen))
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] >= seen[i-1] {
			t.Errorf("events not newest first: %v", seen)
		}
	}
	if r := bob.do("GET", "/api/audit?user="+s.alice.ID, nil); r.status != http.StatusForbidden || r.errorCode(t) != codeForbidden {
		t.Errorf("bob asking for alice's events: %d %s", r.status, r.body)
	}
	if r := bob.do("GET", "/api/audit?user="+s.bob.ID, nil); r.status != http.StatusOK {
		t.Errorf("bob asking for his own events by id: %d %s", r.status, r.body)
	}
	// The admin sees everyone's, and can filter by user.
	r = alice.do("GET", "/api/audit?user="+s.bob.ID+"&type=key.created", nil)
	if n := len(r.json(t)["events"].([]any)); r.status != http.StatusOK || n != 5 {
		t.Errorf("admin filtering bob's key.created: %d, %d events", r.status, n)
	}
	users := map[any]bool{}
	for _, e := range alice.do("GET", "/api/audit?limit=1000", nil).json(t)["events"].([]any) {
		users[e.(map[string]any)["user_id"]] = true
	}
	if !users[s.alice.ID] || !users[s.bob.ID] {
		t.Errorf("admin does not see every user's events: %v", users)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "before=0", "before=-5", "before=1e3", "type=%00", "type=" + strings.Repeat("a", 65), "outcome=maybe"} {
		if r := bob.do("GET", "/api/audit?"+q, nil); r.status != http.StatusBadRequest || r.errorCode(t) != codeInvalidRequest {
			t.Errorf("audit?%s: %d %s", q, r.status, r.body)
		}
	}
	if r := alice.do("GET", "/api/audit?user=usr_'%20OR%201=1", nil); r.status != http.StatusBadRequest {
		t.Errorf("admin with a garbage user filter: %d %s", r.status, r.body)
	}
}
