package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/server"
	"github.com/mcpgate/mcpgate/internal/store"
)

// env is a real mcpgate (demo mode, SQLite in a temp dir) behind a real
// loopback listener.
type env struct {
	t    testing.TB
	srv  *server.Server
	ts   *httptest.Server
	base string
	keys map[string]string // demo email → plaintext key printed at start
	pws  map[string]string // demo email → password printed at start
	ids  map[string]string // demo email → user id
}

func newEnv(t testing.TB, mutate ...func(*config.Config)) *env {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.Demo = true
	cfg.Addr = ln.Addr().String()
	cfg.PublicURL = "http://" + ln.Addr().String()
	for _, m := range mutate {
		m(&cfg)
	}
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := server.New(context.Background(), cfg, log, &out)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.Config = srv.HTTPServer() // the production limits (header size, timeouts)
	ts.Listener.Close()
	ts.Listener = ln
	ts.Start()
	t.Cleanup(func() {
		ts.Close()
		srv.Close()
	})
	e := &env{t: t, srv: srv, ts: ts, base: cfg.PublicURL, keys: map[string]string{}, pws: map[string]string{}, ids: map[string]string{}}
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && strings.HasPrefix(f[2], apikeys.KeyPrefix) {
			e.keys[f[0]] = f[2]
			e.pws[f[0]] = f[1]
		}
	}
	if len(e.keys) != 3 {
		t.Fatalf("demo start-up printed %d keys, want 3:\n%s", len(e.keys), out.String())
	}
	for email := range e.keys {
		u, err := srv.Core().Users.Get(context.Background(), email)
		if err != nil {
			t.Fatal(err)
		}
		e.ids[email] = u.ID
	}
	return e
}

// headerTransport adds fixed headers to every request.
type headerTransport struct{ h http.Header }

func (t headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range t.h {
		r.Header[k] = v
	}
	return http.DefaultTransport.RoundTrip(r)
}

// connect opens a go-sdk client session with the given headers.
func (e *env) connect(h http.Header, version string) (*mcp.ClientSession, error) {
	client := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil)
	tr := &mcp.StreamableClientTransport{Endpoint: e.base + "/mcp", HTTPClient: &http.Client{Transport: headerTransport{h}}}
	var opts *mcp.ClientSessionOptions
	if version != "" {
		opts = &mcp.ClientSessionOptions{ProtocolVersion: version}
	}
	return client.Connect(context.Background(), tr, opts)
}

func bearer(key string) http.Header { return http.Header{"Authorization": {"Bearer " + key}} }

func (e *env) balance(cs *mcp.ClientSession) float64 {
	e.t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "getAccountBalance", Arguments: map[string]any{}})
	if err != nil {
		e.t.Fatal(err)
	}
	if res.IsError {
		e.t.Fatalf("getAccountBalance failed: %+v", res.Content)
	}
	return res.StructuredContent.(map[string]any)["balance"].(float64)
}

// lastAudit returns the newest audit event of a type after flushing the writer.
func (e *env) lastAudit(typ string) store.AuditEvent {
	e.t.Helper()
	core := e.srv.Core()
	if err := core.Audit.Flush(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	evs, err := core.DB.ListAudit(context.Background(), store.AuditFilter{Type: typ, Limit: 1})
	if err != nil {
		e.t.Fatal(err)
	}
	if len(evs) == 0 {
		e.t.Fatalf("no %s audit event", typ)
	}
	return evs[0]
}

func TestUsersSeeOnlyTheirOwnData(t *testing.T) {
	e := newEnv(t)
	for _, version := range []string{"", "2025-06-18", "2025-11-25"} {
		t.Run("protocol="+version, func(t *testing.T) {
			want := map[string]float64{"alice@example.com": 180, "bob@example.com": -375 + 150 + 25, "charlie@example.com": 50 + 75 - 25 - 80}
			// The classic ledger: each user sees exactly the transactions they take part in.
			wantTx := map[string][]float64{"alice@example.com": {1, 2, 5, 6, 7}, "bob@example.com": {1, 3, 4, 5, 6}, "charlie@example.com": {2, 3, 4, 7}}
			for email, key := range e.keys {
				cs, err := e.connect(bearer(key), version)
				if err != nil {
					t.Fatalf("%s: connect: %v", email, err)
				}
				if got := e.balance(cs); got != want[email] {
					t.Errorf("%s balance = %v, want %v", email, got, want[email])
				}
				res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "getAllTransactions", Arguments: map[string]any{}})
				if err != nil {
					t.Fatal(err)
				}
				var ids []float64
				for _, tx := range res.StructuredContent.(map[string]any)["transactions"].([]any) {
					m := tx.(map[string]any)
					if m["counterparty"] == email {
						t.Errorf("%s: transaction with oneself: %v", email, m)
					}
					ids = append(ids, m["id"].(float64))
				}
				slices.Sort(ids)
				if diff := cmp.Diff(wantTx[email], ids); diff != "" {
					t.Errorf("%s sees transactions (-want +got):\n%s", email, diff)
				}
				cs.Close()
			}
		})
	}
	// The tool call is audited as the caller, with the credential id.
	ev := e.lastAudit(audit.TypeToolCalled)
	if ev.UserID == "" || !strings.HasPrefix(ev.CredentialID, "key_") || ev.Tool == "" || ev.Outcome != store.OutcomeAllow {
		t.Errorf("tool.called event = %+v", ev)
	}
}

func TestXAPIKeyHeaderWorks(t *testing.T) {
	e := newEnv(t)
	cs, err := e.connect(http.Header{"X-Api-Key": {e.keys["bob@example.com"]}}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if got := e.balance(cs); got != -200 {
		t.Errorf("bob balance = %v", got)
	}
}

func post(t *testing.T, url string, h http.Header, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

const initBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`

func TestRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	core := e.srv.Core()
	alice := e.ids["alice@example.com"]
	rm := `resource_metadata="` + e.base + `/.well-known/oauth-protected-resource/mcp"`
	invalid := `Bearer error="invalid_token", error_description="the access token is invalid", ` + rm

	revokedKey, k, err := core.Keys.Issue(ctx, apikeys.IssueRequest{UserID: alice, Name: "to revoke", Scopes: []string{"payments:read"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := core.Keys.Revoke(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	// An expired key: written straight to the store, since Issue refuses a past expiry.
	expiredKey := apikeys.Generate()
	h := apikeys.Hash(expiredKey)
	if err := core.DB.CreateAPIKey(ctx, store.APIKey{ID: store.NewID("key"), UserID: alice, Name: "old", Prefix: expiredKey[:12],
		Hash: h[:], Kind: store.KeyKindManual, Scopes: []string{"payments:read"},
		CreatedAt: time.Now().Add(-48 * time.Hour), ExpiresAt: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// charlie gets disabled: his key must stop working at once.
	if _, err := core.Users.SetDisabled(ctx, e.ids["charlie@example.com"], true); err != nil {
		t.Fatal(err)
	}
	unknown := apikeys.Generate()
	flipped := []byte(e.keys["bob@example.com"])
	flipped[20] ^= 0x01 // a typo: caught by the checksum, no database read

	for _, tc := range []struct {
		name      string
		h         http.Header
		url       string
		status    int
		challenge string
		reason    string
	}{
		{"missing", nil, "", 401, `Bearer scope="payments:read payments:write", ` + rm, audit.ReasonMissing},
		{"malformed", bearer("not-a-key"), "", 401, invalid, audit.ReasonMalformed},
		{"typo", bearer(string(flipped)), "", 401, invalid, audit.ReasonMalformed},
		// RFC 6750 §3.1: another scheme is "no bearer credential": no error code.
		{"basic scheme", http.Header{"Authorization": {"Basic YWxpY2U6cHc="}}, "", 401, `Bearer scope="payments:read payments:write", ` + rm, audit.ReasonMalformed},
		{"query with semicolon", nil, "?x=1;token=abc", 400, "", audit.ReasonQueryCredential},
		{"query key under any name", nil, "?q=" + e.keys["bob@example.com"], 400, "", audit.ReasonQueryCredential},
		{"unknown", bearer(unknown), "", 401, invalid, audit.ReasonUnknown},
		{"revoked", bearer(revokedKey), "", 401, invalid, audit.ReasonRevoked},
		{"expired", bearer(expiredKey), "", 401, invalid, audit.ReasonExpired},
		{"disabled user", bearer(e.keys["charlie@example.com"]), "", 401, invalid, audit.ReasonDisabledUser},
		{"query credential", nil, "?api_key=" + e.keys["bob@example.com"], 400, "", audit.ReasonQueryCredential},
		{"query access_token", bearer(e.keys["bob@example.com"]), "?access_token=x", 400, "", audit.ReasonQueryCredential},
		{"two credentials", http.Header{"Authorization": {"Bearer " + e.keys["bob@example.com"]}, "X-Api-Key": {e.keys["alice@example.com"]}}, "", 400, "", audit.ReasonAmbiguous},
		{"two authorization headers", http.Header{"Authorization": {"Bearer " + e.keys["bob@example.com"], "Bearer " + e.keys["alice@example.com"]}}, "", 400, "", audit.ReasonAmbiguous},
		{"foreign origin", http.Header{"Authorization": {"Bearer " + e.keys["bob@example.com"]}, "Origin": {"https://evil.example"}}, "", 403, "", audit.ReasonOrigin},
		{"null origin", http.Header{"Authorization": {"Bearer " + e.keys["bob@example.com"]}, "Origin": {"null"}}, "", 403, "", audit.ReasonOrigin},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, e.base+"/mcp"+tc.url, tc.h, initBody)
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.challenge != "" {
				if got := resp.Header.Get("WWW-Authenticate"); got != tc.challenge {
					t.Errorf("WWW-Authenticate:\n got %s\nwant %s", got, tc.challenge)
				}
			}
			ev := e.lastAudit(audit.TypeAuthRejected)
			if ev.Reason != tc.reason || ev.Outcome != store.OutcomeDeny || ev.ClientIP != "127.0.0.1" {
				t.Errorf("audit event = %+v, want reason %s", ev, tc.reason)
			}
			for k, v := range ev.Details {
				if s, ok := v.(string); ok && strings.Contains(s, apikeys.KeyPrefix) && len(s) > apikeys.DisplayPrefixLen {
					t.Errorf("audit detail %s holds a whole key", k)
				}
			}
		})
	}
	// Allowed origin: the public URL's own.
	resp := post(t, e.base+"/mcp", http.Header{"Authorization": {"Bearer " + e.keys["bob@example.com"]}, "Origin": {e.base}}, initBody)
	if resp.StatusCode != 200 {
		t.Errorf("own origin refused: %d", resp.StatusCode)
	}
	// Revoked and disabled refusals name the key's owner in the audit log.
	post(t, e.base+"/mcp", bearer(e.keys["charlie@example.com"]), initBody)
	if ev := e.lastAudit(audit.TypeAuthRejected); ev.UserID != e.ids["charlie@example.com"] || ev.CredentialID == "" {
		t.Errorf("disabled-user refusal does not name the user and key: %+v", ev)
	}
}

func TestInsufficientScopeStepUp(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	readOnly, _, err := e.srv.Core().Keys.Issue(ctx, apikeys.IssueRequest{UserID: e.ids["alice@example.com"], Name: "ro", Scopes: []string{"payments:read"}})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := e.connect(bearer(readOnly), "")
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range tools.Tools {
		names = append(names, tl.Name)
	}
	if diff := cmp.Diff([]string{"getAccountBalance", "getAllTransactions", "getLatestTransactions"}, names); diff != "" {
		t.Errorf("read-only key sees tools (-want +got):\n%s", diff)
	}
	// A raw 2025-06-18 session so the HTTP status and header are visible.
	sid := initSession(t, e, bearer(readOnly))
	req, _ := http.NewRequest("POST", e.base+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"transfer","arguments":{"to":"bob@example.com","amount":1,"idempotency_key":"k1"}}}`))
	req.Header = http.Header{"Authorization": {"Bearer " + readOnly}, "Content-Type": {"application/json"},
		"Accept": {"application/json, text/event-stream"}, "Mcp-Session-Id": {sid}, "Mcp-Protocol-Version": {"2025-06-18"}}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := `Bearer error="insufficient_scope", scope="payments:write", resource_metadata="` + e.base + `/.well-known/oauth-protected-resource/mcp"`
	if resp.StatusCode != 403 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Bearer error="insufficient_scope"`) ||
		!strings.Contains(resp.Header.Get("WWW-Authenticate"), `scope="payments:write"`) || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "resource_metadata=") {
		t.Fatalf("transfer with read-only key: %d %q, want 403 %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
	}
	ev := e.lastAudit(audit.TypeToolDenied)
	if ev.Tool != "transfer" || ev.Reason != audit.ReasonMissingScopes {
		t.Errorf("tool.denied event = %+v", ev)
	}
	// Nothing moved.
	bal, _ := e.srv.Core().DB.LedgerBalance(ctx, e.ids["alice@example.com"])
	if bal != 180 {
		t.Errorf("alice balance after refused transfer = %d", bal)
	}
}

// initSession performs a 2025-06-18 initialize and returns the session id.
func initSession(t *testing.T, e *env, h http.Header) string {
	t.Helper()
	req, _ := http.NewRequest("POST", e.base+"/mcp", strings.NewReader(initBody))
	req.Header = h.Clone()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != 200 || sid == "" {
		t.Fatalf("initialize: %d, session %q", resp.StatusCode, sid)
	}
	req, _ = http.NewRequest("POST", e.base+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	req.Header = h.Clone()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return sid
}

func TestSessionOfAnotherUserIsRefused(t *testing.T) {
	e := newEnv(t)
	sid := initSession(t, e, bearer(e.keys["alice@example.com"]))
	req, _ := http.NewRequest("POST", e.base+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"getAccountBalance","arguments":{}}}`))
	req.Header = http.Header{"Authorization": {"Bearer " + e.keys["bob@example.com"]}, "Content-Type": {"application/json"},
		"Accept": {"application/json, text/event-stream"}, "Mcp-Session-Id": {sid}, "Mcp-Protocol-Version": {"2025-06-18"}}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || strings.Contains(string(body), "180") {
		t.Fatalf("bob using alice's session: %d %s", resp.StatusCode, body)
	}
	ev := e.lastAudit(audit.TypeSessionRefused)
	if ev.UserID != e.ids["bob@example.com"] || ev.Reason != audit.ReasonSessionOwner {
		t.Errorf("session refusal event = %+v", ev)
	}
}

func TestProtectedResourceMetadata(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"} {
		resp, err := http.Get(e.base + path)
		if err != nil {
			t.Fatal(err)
		}
		var md map[string]any
		json.NewDecoder(resp.Body).Decode(&md)
		resp.Body.Close()
		if resp.StatusCode != 200 || md["resource"] != e.base+"/mcp" || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: %d %v", path, resp.StatusCode, md)
		}
		if diff := cmp.Diff([]any{"header"}, md["bearer_methods_supported"]); diff != "" {
			t.Errorf("%s bearer_methods_supported: %s", path, diff)
		}
	}
}

func TestHealthAndBodyLimit(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.MaxBodyBytes = 4096 })
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(e.base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s = %d", path, resp.StatusCode)
		}
	}
	big := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"getAccountBalance","arguments":{"pad":"` + strings.Repeat("x", 8192) + `"}}}`
	resp := post(t, e.base+"/mcp", bearer(e.keys["alice@example.com"]), big)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d, want 413", resp.StatusCode)
	}
}

func TestRevocationTakesEffectAtOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	core := e.srv.Core()
	key, k, err := core.Keys.Issue(ctx, apikeys.IssueRequest{UserID: e.ids["bob@example.com"], Name: "short-lived", Scopes: []string{"payments:read"}})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := e.connect(bearer(key), "")
	if err != nil {
		t.Fatal(err)
	}
	e.balance(cs) // cached now
	if _, err := core.Keys.Revoke(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "getAccountBalance", Arguments: map[string]any{}}); err == nil {
		t.Fatal("revoked key still works on the node that revoked it")
	}
	if ev := e.lastAudit(audit.TypeAuthRejected); ev.Reason != audit.ReasonRevoked || ev.CredentialID != k.ID {
		t.Errorf("refusal event = %+v", ev)
	}
}

// TestHostileCredentials: whatever a caller puts in the credential headers,
// the answer is a clean 401/400/431, never a 500, and the audit log gets a
// precise reason without the hostile value's secret part.
func TestHostileCredentials(t *testing.T) {
	e := newEnv(t)
	bob := e.keys["bob@example.com"]
	for _, tc := range []struct {
		name   string
		h      http.Header
		status int
	}{
		{"sql metacharacters", bearer("mcpg_' OR '1'='1' --"), 401},
		{"right length, sql inside", bearer("mcpg_" + strings.Repeat("'", 49)), 401},
		{"unicode look-alike", bearer(strings.Replace(bob, bob[10:11], "ѕ", 1)), 401},
		{"key plus junk", bearer(bob + "x"), 401},
		{"bearer without token", http.Header{"Authorization": {"Bearer"}}, 401},
		{"bearer spaces", http.Header{"Authorization": {"Bearer    "}}, 401},
		{"lower-case scheme works", http.Header{"Authorization": {"bearer " + bob}}, 200},
		{"empty x-api-key", http.Header{"X-Api-Key": {""}}, 401},
		{"60 KB key", bearer("mcpg_" + strings.Repeat("A", 60<<10)), 401},
		{"200 KB header", bearer("mcpg_" + strings.Repeat("A", 200<<10)), 431},
		{"NUL in key", bearer("mcpg_\x00" + strings.Repeat("A", 48)), 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", e.base+"/mcp", strings.NewReader(initBody))
			req.Header = tc.h.Clone()
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				// The client itself refuses some values (NUL): nothing reached the server.
				if strings.Contains(err.Error(), "invalid header field value") {
					return
				}
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
}

func TestGarbageJSONRPC(t *testing.T) {
	e := newEnv(t)
	h := bearer(e.keys["alice@example.com"])
	for _, body := range []string{
		``, `{`, `[]`, `null`, `"x"`, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"nope"}`,
		`{"jsonrpc":"2.0","id":{"a":1},"method":"tools/call","params":{"name":"transfer"}}`,
		strings.Repeat("[", 100000) + strings.Repeat("]", 100000),
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"transfer","NAME":"getAccountBalance"}} trailing`,
	} {
		resp := post(t, e.base+"/mcp", h, body)
		if resp.StatusCode >= 500 || resp.StatusCode == 200 && strings.Contains(body, "transfer") {
			t.Errorf("body %.40q: status %d", body, resp.StatusCode)
		}
	}
	bal, _ := e.srv.Core().DB.LedgerBalance(context.Background(), e.ids["alice@example.com"])
	if bal != 180 {
		t.Errorf("garbage moved money: balance %d", bal)
	}
}

// TestCORSForBrowserClients: a browser client on an allowed origin gets its
// preflight answered and can read the session id; other origins get nothing.
func TestCORSForBrowserClients(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.AllowedOrigins = []string{"http://localhost:6274"} })
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest("OPTIONS", e.base+"/mcp", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type, mcp-protocol-version")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := preflight("http://localhost:6274")
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:6274" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("allowed preflight: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := preflight("https://evil.example"); resp.StatusCode != 403 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("foreign preflight: %d %v", resp.StatusCode, resp.Header)
	}
	// The JSON API answers the same web app (with credentials, for the
	// cookie flow).
	req, _ := http.NewRequest("OPTIONS", e.base+"/api/mcp/tools/call", nil)
	req.Header.Set("Origin", "http://localhost:6274")
	req.Header.Set("Access-Control-Request-Method", "POST")
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("API preflight: %d %v", resp.StatusCode, resp.Header)
	}
	h := bearer(e.keys["alice@example.com"])
	h.Set("Origin", "http://localhost:6274")
	req, _ = http.NewRequest("POST", e.base+"/mcp", strings.NewReader(initBody))
	req.Header = h
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != 200 || !strings.Contains(r2.Header.Get("Access-Control-Expose-Headers"), "Mcp-Session-Id") {
		t.Errorf("allowed origin request: %d %v", r2.StatusCode, r2.Header)
	}
}

// TestPolicyBypassAttempts replays the review's parser-differential payloads
// and a batch flood against the real server with a read-only key: every one
// is refused before any tool runs, and nothing is audited as a tool call.
func TestPolicyBypassAttempts(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ro, _, err := e.srv.Core().Keys.Issue(ctx, apikeys.IssueRequest{UserID: e.ids["alice@example.com"], Name: "ro", Scopes: []string{"payments:read"}})
	if err != nil {
		t.Fatal(err)
	}
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"x","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}`
	stateless := http.Header{"Authorization": {"Bearer " + ro}, "Mcp-Protocol-Version": {"2026-07-28"}, "Mcp-Method": {"tools/call"}, "Mcp-Name": {"transfer"}}
	for _, tc := range []struct{ name, params string }{
		{"duplicate name, null last", `{"name":"transfer","name":null,"arguments":{"to":"bob@example.com","amount":1,"idempotency_key":"k1"},` + meta + `}`},
		{"duplicate name, bad args", `{"name":"transfer","name":null,"arguments":{"amount":"x"},` + meta + `}`},
		{"duplicate arguments", `{"name":"transfer","arguments":{"to":"bob@example.com","amount":1,"amount":1,"idempotency_key":"k2"},` + meta + `}`},
		{"name not a string", `{"name":["transfer"],` + meta + `}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, e.base+"/mcp", stateless, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":`+tc.params+`}`)
			if resp.StatusCode != 400 && resp.StatusCode != 403 {
				t.Errorf("status = %d, want a refusal", resp.StatusCode)
			}
		})
	}
	t.Run("batch over the cap", func(t *testing.T) {
		sid := initSession(t, e, bearer(e.keys["alice@example.com"]))
		calls := make([]string, 21)
		for i := range calls {
			calls[i] = fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"getAllTransactions","arguments":{}}}`, i+1)
		}
		h := bearer(e.keys["alice@example.com"])
		h.Set("Mcp-Session-Id", sid)
		h.Set("Mcp-Protocol-Version", "2025-03-26")
		if resp := post(t, e.base+"/mcp", h, "["+strings.Join(calls, ",")+"]"); resp.StatusCode != 400 {
			t.Errorf("21-call batch: status %d, want 400", resp.StatusCode)
		}
	})
	core := e.srv.Core()
	core.Audit.Flush(ctx)
	called, _ := core.DB.ListAudit(ctx, store.AuditFilter{Type: audit.TypeToolCalled})
	if len(called) != 0 {
		t.Errorf("refused requests were audited as tool calls: %+v", called)
	}
	if bal, _ := core.DB.LedgerBalance(ctx, e.ids["alice@example.com"]); bal != 180 {
		t.Errorf("money moved: alice's balance is %d", bal)
	}
}

// TestRefusalFlood: a client that keeps being refused is slowed down (429)
// and stops costing an audit row per request, while a valid key from the
// same address keeps working.
func TestRefusalFlood(t *testing.T) {
	e := newEnv(t)
	var limited int
	for i := 0; i < 140; i++ {
		resp := post(t, e.base+"/mcp", bearer(apikeys.Generate()), initBody)
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		}
	}
	if limited == 0 || limited > 25 {
		t.Errorf("%d of 140 refusals were rate-limited; want the ones past the burst of 120", limited)
	}
	if resp := post(t, e.base+"/mcp", bearer(e.keys["alice@example.com"]), initBody); resp.StatusCode != 200 {
		t.Errorf("a valid key from the flooding address: %d", resp.StatusCode)
	}
	core := e.srv.Core()
	core.Audit.Flush(context.Background())
	rows, _ := core.DB.ListAudit(context.Background(), store.AuditFilter{Type: audit.TypeAuthRejected, Limit: 1000})
	if len(rows) > 140-limited+1 {
		t.Errorf("%d audit rows for %d audited refusals: the flood is not summarised", len(rows), 140-limited)
	}
}
