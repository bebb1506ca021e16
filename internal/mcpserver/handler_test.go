package mcpserver_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/mcpserver"
	"github.com/mcpgate/mcpgate/internal/mcpserver/mcptest"
	"github.com/mcpgate/mcpgate/internal/principal"
)

const (
	resourceURL = "https://mcp.example.com/mcp"
	metadataURL = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
)

var users = map[string]*principal.Principal{
	"alice":  {UserID: "usr_alice", Email: "alice@example.com", Scopes: []string{"t:read", "t:write"}, CredentialID: "key_alice", Method: principal.MethodAPIKey},
	"bob":    {UserID: "usr_bob", Email: "bob@example.com", Scopes: []string{"t:read"}, CredentialID: "key_bob", Method: principal.MethodAPIKey},
	"nobody": {UserID: "usr_nobody", Email: "nobody@example.com", CredentialID: "key_nobody", Method: principal.MethodAPIKey},
	// authn refuses expired credentials; the endpoint does too, should one slip through.
	"expired": {UserID: "usr_exp", Scopes: []string{"t:read"}, ExpiresAt: time.Unix(1, 0)},
}

type whoami struct {
	UserID string   `json:"user_id"`
	Email  string   `json:"email"`
	Scopes []string `json:"scopes"`
	// Credential headers the tool could see in RequestExtra.Header.
	SawHeaders []string `json:"saw_headers"`
}

type env struct {
	srv    *httptest.Server
	h      *mcpserver.Handler
	audit  *mcptest.Recorder
	writes atomic.Int64 // how often the write tool ran
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{audit: &mcptest.Recorder{}}
	reg := mcpserver.NewRegistry()
	mcpserver.AddTool(reg, &mcp.Tool{Name: "whoami", Description: "who am I"}, []string{"t:read"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, whoami, error) {
			p := principal.From(ctx)
			var saw []string
			for _, k := range []string{"Authorization", "X-Api-Key", "Cookie", "Proxy-Authorization"} {
				if req.Extra != nil && req.Extra.Header.Get(k) != "" {
					saw = append(saw, k)
				}
			}
			return nil, whoami{UserID: p.UserID, Email: p.Email, Scopes: p.Scopes, SawHeaders: saw}, nil
		})
	mcpserver.AddTool(reg, &mcp.Tool{Name: "write", Description: "writes"}, []string{"t:write"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, map[string]string, error) {
			e.writes.Add(1)
			return nil, map[string]string{"written_by": principal.From(ctx).UserID}, nil
		})
	mcpserver.AddTool(reg, &mcp.Tool{Name: "both"}, []string{"t:read", "t:write"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, map[string]string, error) {
			e.writes.Add(1)
			return nil, map[string]string{"ok": "yes"}, nil
		})
	mcpserver.AddTool(reg, &mcp.Tool{Name: "fails"}, []string{"t:read"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			return nil, nil, errors.New("pq: password authentication failed for user \"ledger\"")
		})
	mcpserver.AddTool(reg, &mcp.Tool{Name: "refuses"}, []string{"t:read"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			return nil, nil, mcpserver.Errorf("you asked for %d things", 3)
		})
	mcpserver.AddTool(reg, &mcp.Tool{Name: "panics"}, []string{"t:read"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			panic("boom")
		})
	e.h = mcpserver.New(mcpserver.Options{
		Name: "test", Version: "1", Registry: reg, Audit: e.audit, Logger: testLogger(t),
		ResourceURL: resourceURL, ResourceMetadataURL: metadataURL,
	})
	e.srv = httptest.NewServer(mcptest.Auth(users, e.h))
	t.Cleanup(func() {
		e.srv.Close()
		e.h.Close()
	})
	return e
}

// testLogger logs warnings and errors through t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Protocol generations the go-sdk client can speak: "" is its latest, the
// stateless 2026-07-28 protocol; the others use initialize and a session.
var protocols = []struct{ request, negotiated string }{
	{"", "2026-07-28"},
	{"2025-11-25", "2025-11-25"},
	{"2025-06-18", "2025-06-18"},
	{"2025-03-26", "2025-03-26"},
}

func protoName(v string) string {
	if v == "" {
		return "latest"
	}
	return v
}

func callTool(t *testing.T, cs *mcp.ClientSession, name string, args any) *mcp.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("CallTool(%s): %v", name, err)
	}
	return res
}

func text(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func decode[T any](t *testing.T, res *mcp.CallToolResult) T {
	t.Helper()
	var v T
	if res.IsError {
		t.Fatalf("tool returned an error: %s", text(res))
	}
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return v
}

func TestBothProtocolGenerations(t *testing.T) {
	for _, pv := range protocols {
		t.Run(protoName(pv.request), func(t *testing.T) {
			e := newEnv(t)
			cs := mcptest.Connect(t, e.srv.URL, "alice", pv.request)
			if got := cs.InitializeResult().ProtocolVersion; got != pv.negotiated {
				t.Errorf("negotiated protocol %q, want %q", got, pv.negotiated)
			}
			stateless := pv.negotiated >= "2026-07-28"
			if got := cs.ID() != ""; got == stateless {
				t.Errorf("session id %q: want a session only before 2026-07-28", cs.ID())
			}
			got := decode[whoami](t, callTool(t, cs, "whoami", nil))
			want := whoami{UserID: "usr_alice", Email: "alice@example.com", Scopes: []string{"t:read", "t:write"}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("whoami (-want +got):\n%s", diff)
			}
			// Same session, second call, other tool.
			if got := decode[map[string]string](t, callTool(t, cs, "write", nil)); got["written_by"] != "usr_alice" {
				t.Errorf("write ran as %q", got["written_by"])
			}

			called := e.audit.OfType(audit.TypeToolCalled)
			if len(called) != 2 {
				t.Fatalf("tool.called events = %d, want 2: %+v", len(called), called)
			}
			ev := called[0]
			if ev.Tool != "whoami" || ev.Outcome != "allow" || ev.UserID != "usr_alice" || ev.CredentialID != "key_alice" ||
				ev.Resource != resourceURL || ev.Details["is_error"] != false || ev.ClientIP != "127.0.0.1" {
				t.Errorf("tool.called event = %+v", ev)
			}
		})
	}
}

func TestToolsListFilteredByScope(t *testing.T) {
	for _, pv := range protocols {
		t.Run(protoName(pv.request), func(t *testing.T) {
			e := newEnv(t)
			for _, tc := range []struct {
				user string
				want []string
			}{
				{"alice", []string{"both", "fails", "panics", "refuses", "whoami", "write"}},
				{"bob", []string{"fails", "panics", "refuses", "whoami"}},
				{"nobody", []string{}},
			} {
				cs := mcptest.Connect(t, e.srv.URL, tc.user, pv.request)
				res, err := cs.ListTools(context.Background(), nil)
				if err != nil {
					t.Fatalf("%s: ListTools: %v", tc.user, err)
				}
				got := []string{}
				for _, tool := range res.Tools {
					got = append(got, tool.Name)
				}
				slices.Sort(got)
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("%s sees (-want +got):\n%s", tc.user, diff)
				}
			}
		})
	}
}

func TestListToolsIsPrivatelyCacheable(t *testing.T) {
	e := newEnv(t)
	resp, body := post(t, e.srv.URL, "alice", newProtocolHeaders("tools/list", ""), `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":`+meta2026+`}}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if !strings.Contains(body, `"cacheScope":"private"`) {
		t.Errorf("tools/list result is not marked private: %s", body)
	}
}

func TestInsufficientScopeRefusedBeforeTheToolRuns(t *testing.T) {
	for _, pv := range protocols {
		t.Run(protoName(pv.request), func(t *testing.T) {
			e := newEnv(t)
			cs := mcptest.Connect(t, e.srv.URL, "bob", pv.request)

			_, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "write"})
			if err == nil || !strings.Contains(err.Error(), "insufficient_scope: tool write requires scope t:write") {
				t.Fatalf("CallTool(write) as bob: err = %v, want insufficient_scope", err)
			}
			if n := e.writes.Load(); n != 0 {
				t.Errorf("the write tool ran %d times", n)
			}
			denied := e.audit.OfType(audit.TypeToolDenied)
			if len(denied) != 1 {
				t.Fatalf("tool.denied events = %+v, want 1", denied)
			}
			d := denied[0]
			want := audit.Event{
				Type: audit.TypeToolDenied, Outcome: "deny", Reason: audit.ReasonMissingScopes, Tool: "write",
				UserID: "usr_bob", CredentialID: "key_bob", Resource: resourceURL, ClientIP: "127.0.0.1", UserAgent: d.UserAgent,
				Details: map[string]any{"missing": []string{"t:write"}, "required": []string{"t:write"}},
			}
			if diff := cmp.Diff(want, d); diff != "" {
				t.Errorf("tool.denied event (-want +got):\n%s", diff)
			}
			if len(e.audit.OfType(audit.TypeToolCalled)) != 0 {
				t.Errorf("a refused call was audited as tool.called")
			}

			// The refusal is per call: the session keeps working.
			if got := decode[whoami](t, callTool(t, cs, "whoami", nil)); got.UserID != "usr_bob" {
				t.Errorf("whoami after refusal = %+v", got)
			}
		})
	}
}

func TestInsufficientScopeChallenge(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name, tool, scope, missing string
	}{
		{"one scope", "write", "t:write", `["t:write"]`},
		// The challenge names every scope the call needs, not only the missing one.
		{"all scopes", "both", "t:read t:write", `["t:write"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"` + tc.tool + `","arguments":{},"_meta":` + meta2026 + `}}`
			resp, got := post(t, e.srv.URL, "bob", newProtocolHeaders("tools/call", tc.tool), body)
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("status = %d, want 403: %s", resp.StatusCode, got)
			}
			wantChallenge := `Bearer error="insufficient_scope", error_description="tool ` + tc.tool + ` requires scope ` + tc.scope +
				`", scope="` + tc.scope + `", resource_metadata="` + metadataURL + `"`
			if h := resp.Header.Get("WWW-Authenticate"); h != wantChallenge {
				t.Errorf("WWW-Authenticate =\n  %s\nwant\n  %s", h, wantChallenge)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q", cc)
			}
			wantBody := `{"jsonrpc":"2.0","id":7,"error":{"code":-32003,"message":"insufficient_scope: tool ` + tc.tool + ` requires scope ` + tc.scope +
				`","data":{"error":"insufficient_scope","missing":` + tc.missing + `,"required":` + jsonList(tc.scope) + `}}}`
			if strings.TrimSpace(got) != wantBody {
				t.Errorf("body =\n  %s\nwant\n  %s", got, wantBody)
			}
		})
	}
	if n := e.writes.Load(); n != 0 {
		t.Errorf("a refused tool ran %d times", n)
	}
}

func jsonList(scopes string) string {
	b, _ := json.Marshal(strings.Fields(scopes))
	return string(b)
}

func TestBatchWithOneDeniedCallIsRefusedWhole(t *testing.T) {
	e := newEnv(t)
	body := `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"}},
	          {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"write"}}]`
	resp, got := post(t, e.srv.URL, "bob", http.Header{"Mcp-Protocol-Version": {"2025-03-26"}}, body)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status = %d, want 403: %s", resp.StatusCode, got)
	}
	want := `Bearer error="insufficient_scope", error_description="tool write requires scope t:write", scope="t:read t:write", resource_metadata="` + metadataURL + `"`
	if h := resp.Header.Get("WWW-Authenticate"); h != want {
		t.Errorf("WWW-Authenticate = %s\nwant %s", h, want)
	}
	if !strings.Contains(got, `"error":"insufficient_scope"`) {
		t.Errorf("body = %s", got)
	}
	denied := e.audit.OfType(audit.TypeToolDenied)
	if len(denied) != 1 || denied[0].Tool != "write" || denied[0].Details["batch"] != true {
		t.Errorf("tool.denied events = %+v", denied)
	}
	if len(e.audit.OfType(audit.TypeToolCalled)) != 0 || e.writes.Load() != 0 {
		t.Errorf("part of a refused batch ran")
	}
}

// The SDK decodes JSON-RPC with case-sensitive field names and keeps the
// last of duplicate keys; the policy must read the same tool name, or a
// caller could have one tool checked and another run.
func TestPolicyReadsTheToolNameTheSDKRuns(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name, params string
		status       int
	}{
		{"case variant after", `{"name":"write","NAME":"whoami"}`, http.StatusForbidden},
		{"case variant before", `{"Name":"whoami","name":"write"}`, http.StatusForbidden},
		{"duplicate key", `{"name":"whoami","name":"write"}`, http.StatusBadRequest},
		{"duplicate key with null", `{"name":"write","name":null}`, http.StatusBadRequest},
		{"null name", `{"name":null}`, http.StatusBadRequest},
		{"numeric name", `{"name":7}`, http.StatusBadRequest},
		{"escaped", `{"name":"\u0077rite"}`, http.StatusForbidden},
		{"allowed tool", `{"Name":"write","name":"whoami"}`, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":` + tc.params + `}`
			sid := initialize(t, e.srv.URL, "bob", "2025-03-26")
			h := http.Header{"Mcp-Protocol-Version": {"2025-03-26"}, "Mcp-Session-Id": {sid}}
			resp, got := post(t, e.srv.URL, "bob", h, body)
			if resp.StatusCode != tc.status {
				t.Errorf("status = %d, want %d: %s", resp.StatusCode, tc.status, got)
			}
		})
	}
	if n := e.writes.Load(); n != 0 {
		t.Errorf("write ran %d times for bob", n)
	}
}

func TestSessionOfAnotherUserIsRefused(t *testing.T) {
	e := newEnv(t)
	alice := mcptest.Connect(t, e.srv.URL, "alice", "2025-06-18")
	sid := alice.ID()
	if sid == "" {
		t.Fatal("no session id")
	}
	callTool(t, alice, "whoami", nil)

	call := `{"jsonrpc":"2.0","id":99,"method":"tools/call","params":{"name":"whoami"}}`
	for _, method := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
		t.Run(method, func(t *testing.T) {
			e.audit.Reset()
			h := http.Header{"Mcp-Protocol-Version": {"2025-06-18"}, "Mcp-Session-Id": {sid}}
			var resp *http.Response
			var body string
			if method == http.MethodPost {
				resp, body = post(t, e.srv.URL, "bob", h, call)
			} else {
				resp, body = do(t, method, e.srv.URL, "bob", h, "")
			}
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("status = %d, want 403: %s", resp.StatusCode, body)
			}
			if want := `{"error":"forbidden","error_description":"session belongs to another user"}`; strings.TrimSpace(body) != want {
				t.Errorf("body = %s, want %s", body, want)
			}
			refused := e.audit.OfType(audit.TypeSessionRefused)
			if len(refused) != 1 {
				t.Fatalf("session refusals = %+v", refused)
			}
			r := refused[0]
			if r.Outcome != "deny" || r.Reason != audit.ReasonSessionOwner || r.UserID != "usr_bob" ||
				r.Details["session_owner"] != nil || strings.Contains(fmt.Sprint(r.Details), "usr_alice") ||
				r.Details["session"] == sid || r.Details["session"] == "" {
				t.Errorf("refusal event = %+v", r)
			}
		})
	}
	// alice's session survived all of it.
	if got := decode[whoami](t, callTool(t, alice, "whoami", nil)); got.UserID != "usr_alice" {
		t.Errorf("whoami = %+v", got)
	}
}

func TestCredentialsNeverReachTools(t *testing.T) {
	for _, pv := range protocols {
		t.Run(protoName(pv.request), func(t *testing.T) {
			e := newEnv(t)
			client := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil)
			rt := &mcptest.Bearer{Token: "alice", Base: headerAdder{"X-API-Key": "mcpg_secret", "Cookie": "__Host-mcpgate=secret", "Proxy-Authorization": "Basic c2VjcmV0"}}
			cs, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{
				Endpoint: e.srv.URL, HTTPClient: &http.Client{Transport: rt}, DisableStandaloneSSE: true, MaxRetries: -1,
			}, &mcp.ClientSessionOptions{ProtocolVersion: pv.request})
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()
			if got := decode[whoami](t, callTool(t, cs, "whoami", nil)); len(got.SawHeaders) != 0 {
				t.Errorf("the tool saw credential headers %v", got.SawHeaders)
			}
		})
	}
}

type headerAdder map[string]string

func (h headerAdder) RoundTrip(r *http.Request) (*http.Response, error) {
	for k, v := range h {
		r.Header.Set(k, v)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func TestToolErrors(t *testing.T) {
	e := newEnv(t)
	cs := mcptest.Connect(t, e.srv.URL, "alice", "")
	for _, tc := range []struct{ tool, want string }{
		{"refuses", "you asked for 3 things"},
		// Internal errors never leak (here: a database message) ...
		{"fails", "internal error: the request could not be completed"},
		// ... and a panicking tool does not take the server down.
		{"panics", "internal error: the request could not be completed"},
	} {
		res := callTool(t, cs, tc.tool, nil)
		if !res.IsError || text(res) != tc.want {
			t.Errorf("%s: isError=%v text=%q, want %q", tc.tool, res.IsError, text(res), tc.want)
		}
	}
	called := e.audit.OfType(audit.TypeToolCalled)
	if len(called) != 3 {
		t.Fatalf("tool.called = %+v; all: %+v", called, e.audit.Events())
	}
	for _, ev := range called {
		if ev.Details["is_error"] != true {
			t.Errorf("%s: is_error = %v", ev.Tool, ev.Details["is_error"])
		}
	}
	if got := decode[whoami](t, callTool(t, cs, "whoami", nil)); got.UserID != "usr_alice" {
		t.Errorf("server unusable after a panic: %+v", got)
	}
}

func TestUnknownToolIsAnsweredByTheSDK(t *testing.T) {
	e := newEnv(t)
	cs := mcptest.Connect(t, e.srv.URL, "nobody", "2025-06-18")
	_, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "nope"})
	if err == nil || !strings.Contains(err.Error(), `unknown tool "nope"`) {
		t.Errorf("err = %v", err)
	}
	if ev := e.audit.Events(); len(ev) != 0 {
		t.Errorf("audit events for an unknown tool: %+v", ev)
	}
}

func TestBodyTooLarge(t *testing.T) {
	e := newEnv(t)
	big := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{"pad":"` + strings.Repeat("x", 2<<20) + `"}}}`
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			var r io.Reader = strings.NewReader(big)
			if chunked {
				r = io.MultiReader(r) // hides the length: sent chunked
			}
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL, r)
			setMCPHeaders(req.Header, "alice")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("status = %d, want 413: %s", resp.StatusCode, body)
			}
			if want := `{"error":"request_too_large","error_description":"request body exceeds 1048576 bytes"}`; strings.TrimSpace(string(body)) != want {
				t.Errorf("body = %s", body)
			}
		})
	}
}

func TestMalformedBodiesDoNotReachTools(t *testing.T) {
	e := newEnv(t)
	deep := strings.Repeat("[", 200_000) + strings.Repeat("]", 200_000)
	deepObj := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write","arguments":` + strings.Repeat(`{"a":`, 50_000) + "1" + strings.Repeat("}", 50_000) + "}}"
	for name, body := range map[string]string{
		"empty":       "",
		"truncated":   `{"jsonrpc":"2.0","id":1,"method":"tools/call"`,
		"not json":    "hello",
		"null":        "null",
		"number":      "42",
		"empty batch": "[]",
		"deep array":  deep,
		"deep object": deepObj,
		"bad params":  `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["write"]}`,
		"name number": `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}`,
		// The SDK's decoder ignores data after the first value: these would
		// run write if they got past the policy unparsed.
		"trailing data": `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write"}} x`,
		"two messages":  `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write"}}{"jsonrpc":"2.0","id":2,"method":"tools/list"}`,
	} {
		t.Run(name, func(t *testing.T) {
			for _, sid := range []string{"", initialize(t, e.srv.URL, "alice", "2025-03-26")} {
				h := http.Header{"Mcp-Protocol-Version": {"2025-03-26"}}
				if sid != "" {
					h.Set("Mcp-Session-Id", sid)
				}
				resp, got := post(t, e.srv.URL, "alice", h, body)
				// Either an HTTP error or a JSON-RPC error, never a 5xx.
				isRPCError := resp.StatusCode == http.StatusOK && strings.Contains(got, `"error":{`)
				if !isRPCError && (resp.StatusCode < 400 || resp.StatusCode >= 500) {
					t.Errorf("session %v: status = %d: %.200s", sid != "", resp.StatusCode, got)
				}
				// Only the two well-formed messages reach the SDK.
				wantParseError := name != "bad params" && name != "name number"
				if wantParseError && (resp.StatusCode != http.StatusBadRequest || strings.TrimSpace(got) != parseError) {
					t.Errorf("session %v: %d %s, want %s", sid != "", resp.StatusCode, got, parseError)
				}
			}
		})
	}
	if n := e.writes.Load(); n != 0 {
		t.Errorf("write ran %d times", n)
	}
	if ev := e.audit.OfType(audit.TypeToolCalled); len(ev) != 0 {
		t.Errorf("tool.called for malformed requests: %+v", ev)
	}
}

const parseError = `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error: the body is not a JSON-RPC message or batch"}}`

func TestNoPrincipalFailsClosed(t *testing.T) {
	reg := mcpserver.NewRegistry()
	h := mcpserver.New(mcpserver.Options{Registry: reg, Audit: &mcptest.Recorder{}, ResourceMetadataURL: metadataURL})
	defer h.Close()
	srv := httptest.NewServer(h) // no authn in front: a wiring bug
	defer srv.Close()
	resp, body := post(t, srv.URL, "alice", nil, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status = %d: %s", resp.StatusCode, body)
	}
	if got, want := resp.Header.Get("WWW-Authenticate"), `Bearer resource_metadata="`+metadataURL+`"`; got != want {
		t.Errorf("WWW-Authenticate = %s, want %s", got, want)
	}
}

func TestExpiredPrincipalIsRefused(t *testing.T) {
	e := newEnv(t)
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","_meta":` + meta2026 + `}}`
	resp, got := post(t, e.srv.URL, "expired", newProtocolHeaders("tools/call", "whoami"), body)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status = %d: %s", resp.StatusCode, got)
	}
	if h, want := resp.Header.Get("WWW-Authenticate"), `Bearer resource_metadata="`+metadataURL+`"`; h != want {
		t.Errorf("WWW-Authenticate = %s, want %s", h, want)
	}
	if len(e.audit.OfType(audit.TypeToolCalled)) != 0 {
		t.Error("the tool ran")
	}
}

func TestClose(t *testing.T) {
	e := newEnv(t)
	cs := mcptest.Connect(t, e.srv.URL, "alice", "2025-06-18")
	callTool(t, cs, "whoami", nil)
	e.h.Close()
	e.h.Close() // idempotent
	resp, body := post(t, e.srv.URL, "alice", http.Header{"Mcp-Protocol-Version": {"2025-06-18"}, "Mcp-Session-Id": {cs.ID()}},
		`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"whoami"}}`)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("after Close: status %d: %s", resp.StatusCode, body)
	}
}

func TestRegistry(t *testing.T) {
	reg := mcpserver.NewRegistry()
	h := func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return nil, nil, nil
	}
	mcpserver.AddTool(reg, &mcp.Tool{Name: "a"}, []string{"x:write", "x:read", "x:write"}, h)
	mcpserver.AddTool(reg, &mcp.Tool{Name: "b"}, []string{"x:read"}, h)
	mcpserver.AddTool(reg, &mcp.Tool{Name: "c"}, nil, h)
	if diff := cmp.Diff([]string{"x:read", "x:write"}, reg.AllScopes()); diff != "" {
		t.Errorf("AllScopes (-want +got):\n%s", diff)
	}
	if got, ok := reg.Scopes("a"); !ok || !slices.Equal(got, []string{"x:write", "x:read"}) {
		t.Errorf("Scopes(a) = %v, %v", got, ok)
	}
	if got, ok := reg.Scopes("c"); !ok || len(got) != 0 {
		t.Errorf("Scopes(c) = %v, %v", got, ok)
	}
	if _, ok := reg.Scopes("nope"); ok {
		t.Error("Scopes(nope) found")
	}
	mustPanic(t, "duplicate", func() { mcpserver.AddTool(reg, &mcp.Tool{Name: "a"}, nil, h) })
	mustPanic(t, "bad scope", func() { mcpserver.AddTool(reg, &mcp.Tool{Name: "d"}, []string{"a b"}, h) })
	mustPanic(t, "no name", func() { mcpserver.AddTool(reg, &mcp.Tool{}, nil, h) })
	hd := mcpserver.New(mcpserver.Options{Registry: reg, Audit: &mcptest.Recorder{}})
	defer hd.Close()
	mustPanic(t, "after New", func() { mcpserver.AddTool(reg, &mcp.Tool{Name: "late"}, nil, h) })
}

func mustPanic(t *testing.T, name string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", name)
		}
	}()
	f()
}

// --- raw HTTP helpers ---

const meta2026 = `{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}`

// newProtocolHeaders are the headers of a 2026-07-28 request.
func newProtocolHeaders(method, name string) http.Header {
	h := http.Header{"Mcp-Protocol-Version": {"2026-07-28"}, "Mcp-Method": {method}}
	if name != "" {
		h.Set("Mcp-Name", name)
	}
	return h
}

func setMCPHeaders(h http.Header, token string) {
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json, text/event-stream")
	h.Set("Authorization", "Bearer "+token)
}

func post(t *testing.T, url, token string, h http.Header, body string) (*http.Response, string) {
	return do(t, http.MethodPost, url, token, h, body)
}

func do(t *testing.T, method, url, token string, h http.Header, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	setMCPHeaders(req.Header, token)
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, sseData(resp, b)
}

// sseData returns the data of the first SSE event of an event-stream body,
// or the body itself.
func sseData(resp *http.Response, b []byte) string {
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return string(b)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			return d
		}
	}
	return string(b)
}

// initialize opens a legacy session with raw HTTP and returns its id.
func initialize(t *testing.T, url, token, version string) string {
	t.Helper()
	resp, body := post(t, url, token, nil, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"`+version+`","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	sid := resp.Header.Get("Mcp-Session-Id")
	r2, b2 := post(t, url, token, http.Header{"Mcp-Protocol-Version": {version}, "Mcp-Session-Id": {sid}}, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	if r2.StatusCode != http.StatusAccepted {
		t.Fatalf("initialized: %d %s", r2.StatusCode, b2)
	}
	return sid
}
