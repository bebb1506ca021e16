package api

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mcpgate/mcpgate/internal/store"
)

// garbageBodies are request bodies no endpoint should choke on.
var garbageBodies = map[string]string{
	"empty":             "",
	"spaces":            "   \n\t ",
	"null":              "null",
	"array":             "[]",
	"string":            `"hello"`,
	"number":            "42",
	"true":              "true",
	"truncated":         `{"name":`,
	"two objects":       `{}{}`,
	"trailing garbage":  `{} x`,
	"empty object":      "{}",
	"unknown field":     `{"name":"x","scopes":["payments:read"],"admin":true}`,
	"wrong types":       `{"name":123,"scopes":"payments:read","email":false,"password":[1],"arguments":"x","expires_in_days":"7"}`,
	"nested wrong type": `{"scopes":[1,2,3]}`,
	"float days":        `{"name":"x","scopes":["payments:read"],"expires_in_days":1.5}`,
	"huge days":         `{"name":"x","scopes":["payments:read"],"expires_in_days":99999999999999999999}`,
	"sql":               `{"name":"'; DROP TABLE users; --","email":"' OR 1=1 --@example.com","password":"' OR ''='","scopes":["payments:read' OR '1'='1"]}`,
	"unicode":           `{"name":"名前 \u202e\u0000 😀","email":"аlice@example.com","password":"пароль","scopes":["päyments:read"]}`,
	"invalid utf8":      "{\"name\":\"\xff\xfe\",\"email\":\"\xc3\",\"password\":\"\xff\"}",
	"deep nesting":      strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000),
	"tool sql name":     `{"name":"getAccountBalance'; --","arguments":{}}`,
	"tool long name":    `{"name":"` + strings.Repeat("x", 129) + `"}`,
	"tool ctl name":     `{"name":"get\u0000Balance"}`,
	"tool args array":   `{"name":"getAccountBalance","arguments":[1,2]}`,
	"tool args string":  `{"name":"getAccountBalance","arguments":"{}"}`,
	"tool name null":    `{"name":null}`,
	"dup keys":          `{"name":"getAccountBalance","name":"transfer","arguments":{"to":"x","to":"y"}}`,
	"big string":        `{"name":"` + strings.Repeat("a", 60<<10) + `"}`,
	"long password":     `{"email":"bob@example.com","password":"` + strings.Repeat("p", 60<<10) + `"}`,
}

// Every endpoint with garbage: a clear 4xx (listed in openapi.json), a JSON
// error body, never a 500, and nothing changed.
func TestGarbage(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	b := s.browser()
	b.login("bob@example.com")
	keysBefore := len(mustList(t, s, s.bob.ID))

	huge := strings.Repeat("x", 3<<20)
	for _, rt := range routes {
		b := b
		if rt.Path == "/api/auth/logout" {
			// Logout ignores its body and would end the session the other
			// routes use.
			b = s.browser()
		}
		path := strings.ReplaceAll(rt.Path, "{id}", "nothing")
		for name, body := range garbageBodies {
			for _, ct := range []string{"application/json", "text/plain", "application/json; charset=utf-8", ""} {
				r := b.do(rt.Method, path, body, "Content-Type", "", "Content-Type", ct)
				checkErrorShape(t, rt, name+" as "+ct, r)
				if rt.Method == "POST" && ct != "application/json" && ct != "application/json; charset=utf-8" && r.status != http.StatusUnsupportedMediaType &&
					!(rt.Path == "/api/auth/logout" || rt.Path == "/api/mcp/credentials") {
					t.Errorf("%s %s with Content-Type %q: %d, want 415", rt.Method, rt.Path, ct, r.status)
				}
			}
		}
		r := b.do(rt.Method, path, huge)
		checkErrorShape(t, rt, "3 MiB body", r)
		if rt.Method == "POST" && rt.Path != "/api/auth/logout" && rt.Path != "/api/mcp/credentials" && r.status != http.StatusRequestEntityTooLarge {
			t.Errorf("%s %s with 3 MiB: %d, want 413", rt.Method, rt.Path, r.status)
		}
	}
	// What the garbage may have changed: keys with odd but valid names.
	for _, k := range mustList(t, s, s.bob.ID) {
		if k.Kind == store.KeyKindManual && !slices.Equal(k.Scopes, []string{"payments:read"}) {
			t.Errorf("garbage created key %+v", k)
		}
	}
	if n := len(mustList(t, s, s.bob.ID)); n > keysBefore+3 {
		t.Errorf("garbage created %d keys", n-keysBefore)
	}
	if u, err := s.db.GetUserByEmail(ctx, "alice@example.com"); err != nil || u.ID != s.alice.ID {
		t.Errorf("alice is gone: %v", err)
	}
	// The session survived it all.
	if r := b.do("GET", "/api/sessions", nil); r.status != http.StatusOK {
		t.Errorf("session after garbage: %d", r.status)
	}
}

// Ids in paths: other users' ids are 404 and change nothing; ids of any
// shape are a clean 404.
func TestGarbageIDs(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	bob := s.browser()
	bob.login("bob@example.com")
	alice := s.browser()
	alice.login("alice@example.com")
	alice.credential()
	_, aliceKey := s.issue(s.alice, "payments:read")
	aliceSessions, err := s.sessions.List(ctx, s.alice.ID)
	must(t, err)

	ids := []string{
		aliceKey.ID, aliceSessions[0].ID, s.alice.ID,
		"key_' OR '1'='1", "ses_%27%3B%20DROP%20TABLE%20sessions%3B--", "%00", "key_%00aaaaaaaaaaaaaaaaaaaaaaaaa",
		"ключ", "%F0%9F%98%80", "%ff%fe", strings.Repeat("a", 5000), "key_" + strings.Repeat("a", 26), "..%2F..%2Fetc",
	}
	for _, id := range ids {
		for _, p := range []string{"/api/api-keys/", "/api/sessions/", "/api/apps/"} {
			r := bob.do("DELETE", p+id, nil)
			if r.status != http.StatusNotFound || r.errorCode(t) != codeNotFound {
				t.Errorf("DELETE %s%.40s: %d %s", p, id, r.status, r.body)
			}
		}
	}
	if k, _ := s.keys.Get(ctx, aliceKey.ID); !k.RevokedAt.IsZero() {
		t.Errorf("alice's key was revoked")
	}
	if live, _ := s.sessions.List(ctx, s.alice.ID); len(live) != 1 {
		t.Errorf("alice has %d live sessions, want 1", len(live))
	}
	if r := alice.do("POST", "/api/mcp/tools/call", map[string]any{"name": "getAccountBalance"}); r.status != http.StatusOK {
		t.Errorf("alice's session after bob's attempts: %d %s", r.status, r.body)
	}
	// Unknown paths and methods under /api/ answer JSON.
	for _, c := range []struct {
		method, path string
		status       int
	}{{"GET", "/api/nothing", 404}, {"PUT", "/api/api-keys", 405}, {"GET", "/api/api-keys/x", 405}, {"PATCH", "/api/sessions/x", 405}, {"GET", "/api/auth/login", 405}} {
		r := bob.do(c.method, c.path, nil)
		if r.status != c.status || r.errorCode(t) == "" {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, r.status, r.body, c.status)
		}
	}
}

// Cross-origin browser requests that would change state with the cookie
// are refused and change nothing; reading is allowed.
func TestCrossOrigin(t *testing.T) {
	s := newStack(t)
	b := s.browser()
	b.login("bob@example.com")
	b.credential()
	sessions, _ := s.sessions.List(context.Background(), s.bob.ID)
	keysBefore := mustList(t, s, s.bob.ID)

	evil := []string{"Origin", "", "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"}
	for _, rt := range routes {
		if rt.Method == "GET" {
			continue
		}
		body := validBody(rt)
		path := strings.ReplaceAll(rt.Path, "{id}", keysBefore[0].ID)
		if strings.HasPrefix(rt.Path, "/api/sessions/") {
			path = "/api/sessions/" + sessions[0].ID
		}
		r := b.do(rt.Method, path, body, evil...)
		if r.status != http.StatusForbidden || r.errorCode(t) != codeForbidden {
			t.Errorf("cross-origin %s %s: %d %s", rt.Method, rt.Path, r.status, r.body)
		}
		// Same result with only an Origin header (older browsers).
		r = b.do(rt.Method, path, body, "Origin", "", "Origin", "https://evil.example")
		if r.status != http.StatusForbidden {
			t.Errorf("cross-origin (Origin only) %s %s: %d %s", rt.Method, rt.Path, r.status, r.body)
		}
	}
	if diffKeys := mustList(t, s, s.bob.ID); len(diffKeys) != len(keysBefore) || !diffKeys[0].RevokedAt.IsZero() {
		t.Errorf("cross-origin requests changed the keys")
	}
	if live, _ := s.sessions.List(context.Background(), s.bob.ID); len(live) != 1 {
		t.Errorf("cross-origin requests ended the session")
	}
	if csrf := s.events("auth.rejected", s.bob.ID); len(csrf) == 0 {
		t.Errorf("no auth.rejected events for CSRF")
	}
	// Reads are allowed (the same-origin policy keeps the answer from the
	// foreign page) …
	for _, p := range []string{"/api/api-keys", "/api/sessions", "/api/audit", "/api/apps"} {
		if r := b.do("GET", p, nil, evil...); r.status != http.StatusOK {
			t.Errorf("cross-origin GET %s: %d %s", p, r.status, r.body)
		}
	}
	// … except through the facade, where /mcp's origin policy applies as
	// it does to every MCP client.
	if r := b.do("GET", "/api/mcp/tools", nil, evil...); r.status != http.StatusForbidden || r.errorCode(t) != codeForbidden {
		t.Errorf("cross-origin GET /api/mcp/tools: %d %s", r.status, r.body)
	}
	// Same-origin writes work.
	if r := b.do("POST", "/api/mcp/tools/call", map[string]any{"name": "getAccountBalance"}); r.status != http.StatusOK {
		t.Errorf("same-origin facade call: %d %s", r.status, r.body)
	}
}

func TestConcurrentLogouts(t *testing.T) {
	s := newStack(t)
	b := s.browser()
	b.login("bob@example.com")
	key := b.credential()
	var wg sync.WaitGroup
	statuses := make(chan int, 20)
	for range 20 {
		wg.Go(func() { statuses <- b.do("POST", "/api/auth/logout", nil).status })
	}
	wg.Wait()
	close(statuses)
	for st := range statuses {
		if st != http.StatusNoContent {
			t.Errorf("concurrent logout: %d", st)
		}
	}
	if n := len(s.events("logout", s.bob.ID)); n != 1 {
		t.Errorf("logout events = %d, want 1", n)
	}
	if st := rawMCPStatus(t, s, key); st != http.StatusUnauthorized {
		t.Errorf("session key after logout: %d", st)
	}
}

// With the database down every endpoint answers 503 with Retry-After,
// never a 500.
func TestStoreDown(t *testing.T) {
	s := newStack(t)
	b := s.browser()
	b.login("bob@example.com")
	key, _ := s.issue(s.bob, "account", "payments:read")
	s.db.Close()
	kc := s.keyClient(key)
	// Logout last: it clears the cookie even when the store is down.
	rts := slices.Clone(routes)
	slices.SortStableFunc(rts, func(a, b route) int {
		return cmpBool(a.Path == "/api/auth/logout", b.Path == "/api/auth/logout")
	})
	for _, rt := range rts {
		if rt.Path == "/api/openapi.json" {
			continue
		}
		path := strings.ReplaceAll(rt.Path, "{id}", "key_"+strings.Repeat("a", 26))
		if strings.HasPrefix(rt.Path, "/api/sessions/") {
			path = "/api/sessions/ses_" + strings.Repeat("a", 26)
		}
		if strings.HasPrefix(rt.Path, "/api/apps/") {
			path = "/api/apps/ocn_" + strings.Repeat("a", 26)
		}
		body := validBody(rt)
		for _, name := range []string{"key", "cookie"} {
			c := map[string]*browser{"cookie": b, "key": kc}[name]
			if (rt.Path == "/api/auth/login" || rt.Path == "/api/auth/logout" || rt.Path == "/auth/login") && name == "key" {
				continue
			}
			if rt.Path == "/auth/status" && name == "cookie" {
				continue // bearer credentials only: the cookie is not looked at
			}
			r := c.do(rt.Method, path, body)
			if r.status != http.StatusServiceUnavailable || r.errorCode(t) != codeUnavailable || r.header.Get("Retry-After") == "" {
				t.Errorf("%s %s (%s) with the database down: %d %s", rt.Method, rt.Path, name, r.status, r.body)
			}
		}
	}
}

func checkErrorShape(t *testing.T, rt route, what string, r response) {
	t.Helper()
	if r.status >= 500 && r.status != http.StatusBadGateway && r.status != http.StatusServiceUnavailable {
		t.Errorf("%s %s with %s: %d %s", rt.Method, rt.Path, what, r.status, r.body)
	}
	if r.status >= 400 {
		if code := r.errorCode(t); code == "" {
			t.Errorf("%s %s with %s: %d without an error code: %s", rt.Method, rt.Path, what, r.status, r.body)
		}
		if m := r.json(t); m["message"] == "" || m["message"] == nil {
			t.Errorf("%s %s with %s: no message: %s", rt.Method, rt.Path, what, r.body)
		}
	}
}

// validBody is a well-formed body for a route (nil for routes without one).
func validBody(rt route) any {
	switch rt.Method + " " + rt.Path {
	case "POST /api/auth/login", "POST /auth/login":
		return map[string]any{"email": "bob@example.com", "password": testPassword}
	case "POST /api/mcp/tools/call":
		return map[string]any{"name": "getAccountBalance", "arguments": map[string]any{}}
	case "POST /api/api-keys":
		return map[string]any{"name": "k", "scopes": []string{"payments:read"}}
	}
	return nil
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// Without a credential every protected route answers 401; a credential in
// the query string is refused with 400 (it would end up in logs).
func TestUnauthenticated(t *testing.T) {
	s := newStack(t)
	anon := s.keyClient("")
	key, _ := s.issue(s.bob, "account", "payments:read")
	for _, rt := range routes {
		path := strings.ReplaceAll(rt.Path, "{id}", "key_"+strings.Repeat("a", 26))
		body := validBody(rt)
		switch rt.Path {
		case "/api/auth/login", "/api/auth/logout", "/api/openapi.json", "/auth/login":
			continue
		}
		r := anon.do(rt.Method, path, body)
		if r.status != http.StatusUnauthorized || r.errorCode(t) != codeUnauthorized || r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s without credentials: %d %v %s", rt.Method, rt.Path, r.status, r.header, r.body)
		}
		r = anon.do(rt.Method, path, body, "Cookie", "mcpgate_session=forged-"+strings.Repeat("A", 40))
		if r.status != http.StatusUnauthorized {
			t.Errorf("%s %s with a forged cookie: %d %s", rt.Method, rt.Path, r.status, r.body)
		}
		for _, q := range []string{"?api_key=" + key, "?x=1;token=abc", "?q=" + key, "?ACCESS_TOKEN=x"} {
			for _, c := range []*browser{anon, s.keyClient(key)} {
				r = c.do(rt.Method, path+q, body)
				if r.status != http.StatusBadRequest || r.errorCode(t) != codeInvalidRequest {
					t.Errorf("%s %s%s: %d %s", rt.Method, rt.Path, q, r.status, r.body)
				}
			}
		}
	}
}
