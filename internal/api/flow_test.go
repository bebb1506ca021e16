package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
)

// The web-app scenario of issue 3 end to end: JSON login, the session's MCP
// credential used by an MCP client and through the facade, logout, and the
// credential refused at once.
func TestWebAppFlow(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	want, err := s.db.LedgerBalance(ctx, s.alice.ID)
	must(t, err)

	b := s.browser()
	r := b.login("Alice@Example.com")
	user := r.json(t)["user"].(map[string]any)
	if user["id"] != s.alice.ID || user["email"] != "alice@example.com" || user["name"] != "Alice" {
		t.Errorf("login answered user %v", user)
	}
	cookie := findCookie(r.header, session.CookieNameInsecure)
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" {
		t.Fatalf("login did not set the session cookie properly: %v", r.header.Values("Set-Cookie"))
	}

	cr := b.do("POST", "/api/mcp/credentials", nil)
	if cr.status != http.StatusOK {
		t.Fatalf("credentials: %d %s", cr.status, cr.body)
	}
	cred := cr.json(t)
	key := cred["api_key"].(string)
	if cred["kind"] != "session" || cred["mcp_url"] != s.mcpURL || !strings.HasPrefix(key, "mcpg_") || cred["prefix"] != key[:12] {
		t.Errorf("credential = %v", cred)
	}
	exp, err := time.Parse(time.RFC3339, cred["expires_at"].(string))
	if err != nil || !exp.After(s.clock.Now()) || exp.After(s.clock.Now().Add(7*24*time.Hour+time.Minute)) {
		t.Errorf("credential expires_at = %v (%v): want within the 7-day cap", cred["expires_at"], err)
	}
	if again := b.credential(); again != key {
		t.Errorf("second credentials call returned another key")
	}

	// The credential works with any MCP client …
	cs, err := s.mcpClient(ctx, key)
	if err != nil {
		t.Fatalf("MCP client with the session key: %v", err)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "getAccountBalance", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("getAccountBalance over /mcp: %v %v", err, res)
	}
	if got := balanceOf(t, res.StructuredContent); got != want {
		t.Errorf("balance over /mcp = %d, want %d", got, want)
	}
	cs.Close()

	// … and the facade accepts the cookie.
	fr := b.do("POST", "/api/mcp/tools/call", map[string]any{"name": "getAccountBalance", "arguments": map[string]any{}})
	if fr.status != http.StatusOK {
		t.Fatalf("facade call: %d %s", fr.status, fr.body)
	}
	out := fr.json(t)
	if out["isError"] != false || balanceOf(t, out["structuredContent"]) != want {
		t.Errorf("facade answered %s", fr.body)
	}
	if _, ok := out["error"]; ok {
		t.Errorf("a successful call carries an error field: %s", fr.body)
	}
	tl := b.do("GET", "/api/mcp/tools", nil)
	if tl.status != http.StatusOK {
		t.Fatalf("facade tools: %d %s", tl.status, tl.body)
	}
	if names := toolNames(t, tl); strings.Join(names, ",") != "getAccountBalance,getAllTransactions,getLatestTransactions,transfer" {
		t.Errorf("tools = %v", names)
	}

	// The facade's call went through /mcp as the session key: audited with
	// the key, the user and the browser's address.
	called := s.events(audit.TypeToolCalled, s.alice.ID)
	if len(called) < 2 {
		t.Fatalf("tool.called events = %d, want 2 (direct and facade)", len(called))
	}
	keyID := cred["key_id"].(string)
	for _, e := range called {
		if e.CredentialID != keyID || e.Tool != "getAccountBalance" || e.ClientIP != "127.0.0.1" {
			t.Errorf("tool.called event %+v: want credential %s, client 127.0.0.1", e, keyID)
		}
	}

	// Logout ends it all at once.
	if lr := b.do("POST", "/api/auth/logout", nil); lr.status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", lr.status, lr.body)
	}
	if st := rawMCPStatus(t, s, key); st != http.StatusUnauthorized {
		t.Errorf("session key after logout: /mcp answered %d, want 401", st)
	}
	if _, err := s.mcpClient(ctx, key); err == nil {
		t.Errorf("MCP client connected with the key of an ended session")
	}
	if r := b.do("POST", "/api/mcp/tools/call", map[string]any{"name": "getAccountBalance"}); r.status != http.StatusUnauthorized || r.errorCode(t) != codeUnauthorized {
		t.Errorf("facade after logout: %d %s", r.status, r.body)
	}
	if r := b.do("POST", "/api/mcp/credentials", nil); r.status != http.StatusUnauthorized {
		t.Errorf("credentials after logout: %d %s", r.status, r.body)
	}
	// The old cookie, replayed by hand, is worthless too.
	replay := s.keyClient("")
	if r := replay.do("POST", "/api/mcp/credentials", nil, "Cookie", cookie.Name+"="+cookie.Value); r.status != http.StatusUnauthorized {
		t.Errorf("replayed cookie after logout: %d %s", r.status, r.body)
	}
	// Logging out again is fine.
	if lr := b.do("POST", "/api/auth/logout", nil); lr.status != http.StatusNoContent {
		t.Errorf("second logout: %d %s", lr.status, lr.body)
	}
}

// A web app with an API key (no browser) uses the facade with the key, and
// the key's scopes decide exactly as on /mcp.
func TestFacadeWithKey(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	readKey, _ := s.issue(s.bob, "payments:read")
	writeKey, _ := s.issue(s.alice, "payments:read", "payments:write")
	rc := s.keyClient(readKey)

	r := rc.do("GET", "/api/mcp/tools", nil)
	if r.status != http.StatusOK {
		t.Fatalf("tools: %d %s", r.status, r.body)
	}
	if names := strings.Join(toolNames(t, r), ","); names != "getAccountBalance,getAllTransactions,getLatestTransactions" {
		t.Errorf("read-only key sees tools %s", names)
	}
	r = rc.do("POST", "/api/mcp/tools/call", map[string]any{"name": "getAccountBalance"})
	want, _ := s.db.LedgerBalance(ctx, s.bob.ID)
	if r.status != http.StatusOK || balanceOf(t, r.json(t)["structuredContent"]) != want {
		t.Errorf("getAccountBalance: %d %s", r.status, r.body)
	}
	// X-API-Key works as well.
	r = s.keyClient("").do("POST", "/api/mcp/tools/call", map[string]any{"name": "getLatestTransactions", "arguments": map[string]any{"limit": 1}}, "X-API-Key", readKey)
	if r.status != http.StatusOK || r.json(t)["isError"] != false {
		t.Errorf("X-API-Key call: %d %s", r.status, r.body)
	}

	transfer := map[string]any{"name": "transfer", "arguments": map[string]any{"to": "charlie@example.com", "amount": 1, "idempotency_key": "k1"}}
	r = rc.do("POST", "/api/mcp/tools/call", transfer)
	if r.status != http.StatusForbidden || r.errorCode(t) != codeInsufficientScope {
		t.Fatalf("transfer with a read key: %d %s", r.status, r.body)
	}
	if got := r.json(t)["required_scopes"]; !jsonEqual(got, []any{"payments:write"}) {
		t.Errorf("required_scopes = %v", got)
	}
	if denied := s.events(audit.TypeToolDenied, s.bob.ID); len(denied) != 1 {
		t.Errorf("tool.denied events = %d, want 1", len(denied))
	}

	wc := s.keyClient(writeKey)
	r = wc.do("POST", "/api/mcp/tools/call", transfer)
	if r.status != http.StatusOK || r.json(t)["isError"] != false {
		t.Errorf("transfer with a write key: %d %s", r.status, r.body)
	}
	// The tool runs and refuses: 200, isError, error tool_error.
	r = wc.do("POST", "/api/mcp/tools/call", map[string]any{"name": "transfer", "arguments": map[string]any{"to": "charlie@example.com", "amount": 12.5, "idempotency_key": "k2"}})
	if m := r.json(t); r.status != http.StatusOK || m["isError"] != true || m["error"] != codeToolError {
		t.Errorf("failing tool: %d %s", r.status, r.body)
	}
	// Arguments that do not fit the schema: 400 invalid_arguments.
	r = rc.do("POST", "/api/mcp/tools/call", map[string]any{"name": "getLatestTransactions", "arguments": map[string]any{"limit": "ten"}})
	if r.status != http.StatusBadRequest || r.errorCode(t) != codeInvalidArguments {
		t.Errorf("bad arguments: %d %s", r.status, r.body)
	}
	r = rc.do("POST", "/api/mcp/tools/call", map[string]any{"name": "getLatestTransactions", "arguments": map[string]any{"limit": 1, "bogus": true}})
	if r.status != http.StatusBadRequest || r.errorCode(t) != codeInvalidArguments {
		t.Errorf("unknown argument: %d %s", r.status, r.body)
	}
	r = rc.do("POST", "/api/mcp/tools/call", map[string]any{"name": "noSuchTool"})
	if r.status != http.StatusNotFound || r.errorCode(t) != codeUnknownTool {
		t.Errorf("unknown tool: %d %s", r.status, r.body)
	}

	// Credentials that /mcp refuses are refused here, with /mcp's reasons.
	for name, c := range map[string]*browser{
		"unknown key":     s.keyClient("mcpg_" + strings.Repeat("A", 49)),
		"not a key":       s.keyClient("hello"),
		"basic scheme":    s.keyClient(""),
		"empty X-API-Key": s.keyClient(""),
	} {
		var hdr []string
		switch name {
		case "basic scheme":
			hdr = []string{"Authorization", "Basic Ym9iOmJvYg=="}
		case "empty X-API-Key":
			hdr = []string{"X-API-Key", " "}
		}
		r := c.do("GET", "/api/mcp/tools", nil, hdr...)
		if r.status != http.StatusUnauthorized || r.errorCode(t) != codeUnauthorized {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	r = s.keyClient("").do("GET", "/api/mcp/tools", nil, "Authorization", "Bearer "+readKey, "X-API-Key", readKey)
	if r.status != http.StatusBadRequest || r.errorCode(t) != codeInvalidRequest {
		t.Errorf("two credentials: %d %s", r.status, r.body)
	}
	// A foreign page cannot use the facade with a key either: /mcp's
	// origin policy applies.
	r = s.keyClient(readKey).do("GET", "/api/mcp/tools", nil, "Origin", "https://evil.example")
	if r.status != http.StatusForbidden || r.errorCode(t) != codeForbidden {
		t.Errorf("foreign origin with a key: %d %s", r.status, r.body)
	}

	// Revocation applies at once.
	var keyID string
	for _, kk := range mustList(t, s, s.bob.ID) {
		if kk.Prefix == readKey[:12] {
			keyID = kk.ID
		}
	}
	if _, err := s.keys.Revoke(ctx, keyID); err != nil {
		t.Fatal(err)
	}
	r = rc.do("POST", "/api/mcp/tools/call", map[string]any{"name": "getAccountBalance"})
	if r.status != http.StatusUnauthorized {
		t.Errorf("revoked key: %d %s", r.status, r.body)
	}
}

// The facade never leaves a server-side MCP session behind and refuses
// nothing that is not MCP's to refuse: a broken endpoint is upstream_error.
func TestFacadeUpstreamFailure(t *testing.T) {
	broken := func(real http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html>proxy error</html>"))
		})
	}
	s := newStack(t, stackOptions{mcpHandler: broken})
	key, _ := s.issue(s.alice, "payments:read")
	c := s.keyClient(key)
	for _, tc := range []struct{ method, path string }{{"GET", "/api/mcp/tools"}, {"POST", "/api/mcp/tools/call"}} {
		var body any
		if tc.method == "POST" {
			body = map[string]any{"name": "getAccountBalance"}
		}
		r := c.do(tc.method, tc.path, body)
		if r.status != http.StatusBadGateway || r.errorCode(t) != codeUpstreamError {
			t.Errorf("%s %s with a broken MCP endpoint: %d %s", tc.method, tc.path, r.status, r.body)
		}
	}
	panicking := func(real http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("boom") })
	}
	s = newStack(t, stackOptions{mcpHandler: panicking})
	key, _ = s.issue(s.alice, "payments:read")
	if r := s.keyClient(key).do("GET", "/api/mcp/tools", nil); r.status != http.StatusBadGateway {
		t.Errorf("panicking MCP endpoint: %d %s", r.status, r.body)
	}
}

// rawMCPStatus posts a tools/call to /mcp with key and returns the status.
func rawMCPStatus(t *testing.T, s *stack, key string) int {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"getAccountBalance","arguments":{},` +
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}`
	r := s.keyClient(key).do("POST", "/mcp", body, "Accept", "application/json, text/event-stream",
		"Mcp-Protocol-Version", "2026-07-28", "Mcp-Method", "tools/call", "Mcp-Name", "getAccountBalance")
	return r.status
}

func findCookie(h http.Header, name string) *http.Cookie {
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func balanceOf(t *testing.T, v any) int64 {
	t.Helper()
	b, _ := json.Marshal(v)
	var out struct {
		Balance *int64 `json:"balance"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Balance == nil {
		t.Fatalf("no balance in %s", b)
	}
	return *out.Balance
}

func toolNames(t *testing.T, r response) []string {
	t.Helper()
	var out struct {
		Tools []struct {
			Name        string         `json:"name"`
			InputSchema map[string]any `json:"inputSchema"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatalf("tools body: %v %s", err, r.body)
	}
	var names []string
	for _, tl := range out.Tools {
		if tl.InputSchema["type"] != "object" {
			t.Errorf("tool %s has input schema %v", tl.Name, tl.InputSchema)
		}
		names = append(names, tl.Name)
	}
	return names
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func mustList(t *testing.T, s *stack, userID string) []store.APIKey {
	t.Helper()
	keys, err := s.keys.List(context.Background(), userID)
	must(t, err)
	return keys
}
