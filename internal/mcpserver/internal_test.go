package mcpserver

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/principal"
)

type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Record(_ context.Context, e audit.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// The HTTP policy refuses calls without scopes before the SDK sees them;
// the SDK middleware checks again, on the name as the SDK parsed it, in case
// a request ever gets past the policy (a parser differential). Drive the SDK
// handler directly, behind the bridge but without the policy.
func TestToolWrapperRechecksScopes(t *testing.T) {
	ran := false
	reg := NewRegistry()
	AddTool(reg, &mcp.Tool{Name: "write"}, []string{"t:write"},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			ran = true
			return nil, nil, nil
		})
	rec := &recorder{}
	h := New(Options{Registry: reg, Audit: rec, ResourceURL: "https://r", Logger: slog.New(slog.DiscardHandler)})
	defer h.Close()

	bob := &principal.Principal{UserID: "usr_bob", Scopes: []string{"t:read"}, CredentialID: "key_bob"}
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/call")
	req.Header.Set("Mcp-Name", "write")
	req.Header.Set("Authorization", "Bearer "+placeholderToken)
	req = req.WithContext(principal.With(req.Context(), bob))
	w := httptest.NewRecorder()
	h.stateless.ServeHTTP(w, req)

	if ran {
		t.Fatal("the tool ran without its scope")
	}
	out := w.Body.String()
	if !strings.Contains(out, `"code":-32003`) || !strings.Contains(out, `insufficient scope: tool \"write\" requires scope t:write`) {
		t.Errorf("response = %s", out)
	}
	want := []audit.Event{{
		Type: audit.TypeToolDenied, Outcome: "deny", Reason: audit.ReasonMissingScopes, Tool: "write",
		UserID: "usr_bob", CredentialID: "key_bob", Resource: "https://r",
		Details: map[string]any{"missing": []string{"t:write"}, "required": []string{"t:write"}, "layer": "sdk"},
	}}
	if diff := cmp.Diff(want, rec.events); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
}

func TestBridgeRefusesWithoutPrincipal(t *testing.T) {
	h := New(Options{Registry: NewRegistry(), Audit: &recorder{}, Logger: slog.New(slog.DiscardHandler)})
	defer h.Close()
	req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+placeholderToken)
	w := httptest.NewRecorder()
	h.stateful.ServeHTTP(w, req)
	if w.Code != http.StatusUnauthorized {
		t.Errorf("status = %d", w.Code)
	}
}

func TestDecide(t *testing.T) {
	scopes := map[string][]string{"read": {"r"}, "write": {"w"}, "both": {"r", "w"}}
	pol := &Policy{ToolScopes: func(name string) ([]string, bool) { s, ok := scopes[name]; return s, ok }}
	reader := &principal.Principal{UserID: "u", Scopes: []string{"r"}}
	for _, tc := range []struct {
		name    string
		p       *principal.Principal
		body    string
		parsed  bool
		batch   bool
		allowed bool
		calls   []string // name:missing
	}{
		{"allowed", reader, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read"}}`, true, false, true, []string{"read:"}},
		{"denied", reader, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write"}}`, true, false, false, []string{"write:w"}},
		{"partly", reader, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"both"}}`, true, false, false, []string{"both:w"}},
		{"unknown tool passes", reader, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`, true, false, true, []string{"x:"}},
		{"nil principal", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read"}}`, true, false, false, []string{"read:r"}},
		{"other method", reader, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, true, false, true, nil},
		{"batch", reader, ` [{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"write"}}]`, true, true, false, []string{"read:", "write:w"}},
		{"batch with junk", reader, `[1,{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read"}}]`, false, false, false, nil},
		{"case-variant key ignored", reader, `{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"write"}}`, true, false, true, nil},
		// Duplicate keys: decoders disagree on which wins (and whether null
		// overrides), so they are refused, at any depth.
		{"duplicate method", reader, `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"read"}}`, false, false, false, nil},
		{"duplicate name with null", reader, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write","name":null}}`, false, false, false, nil},
		{"duplicate inside arguments", reader, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read","arguments":{"a":1,"a":2}}}`, false, false, false, nil},
		{"same key in sibling objects is fine", reader, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read","arguments":{"x":{"a":1},"y":{"a":2}}}}`, true, false, true, []string{"read:"}},
		{"notification form", reader, `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"write"}}`, true, false, false, []string{"write:w"}},
		{"response", reader, `{"jsonrpc":"2.0","id":1,"result":{}}`, true, false, true, nil},
		// Not strictly JSON-RPC: never allowed (the SDK's decoder would run
		// the first message of these).
		{"trailing data", reader, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read"}} x`, false, false, false, nil},
		{"two messages", reader, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, false, false, false, nil},
		{"method not a string", reader, `{"jsonrpc":"2.0","id":1,"method":["tools/call"]}`, false, false, false, nil},
		{"malformed", reader, `{"jsonrpc":`, false, false, false, nil},
		{"empty", reader, ``, false, false, false, nil},
		{"empty batch", reader, `[]`, false, false, false, nil},
		{"scalar", reader, `"tools/call"`, false, false, false, nil},
		{"BOM", reader, "\ufeff{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}", false, false, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := pol.Decide(tc.p, []byte(tc.body))
			var calls []string
			for _, c := range d.Calls {
				calls = append(calls, c.Name+":"+strings.Join(c.Missing, " "))
			}
			if d.Parsed != tc.parsed || d.Batch != tc.batch || d.Allowed() != tc.allowed || !cmp.Equal(calls, tc.calls) {
				t.Errorf("Decide = parsed %v batch %v allowed %v calls %q; want %v %v %v %q",
					d.Parsed, d.Batch, d.Allowed(), calls, tc.parsed, tc.batch, tc.allowed, tc.calls)
			}
		})
	}
}

func TestSessionBindings(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	b := newSessionBindings(30*time.Minute, func() time.Time { return now })

	b.bind("s1", "alice")
	b.bind("s1", "mallory") // never rebound
	if res, owner := b.acquire("s1", "bob"); res != bindMismatch || owner != "alice" {
		t.Fatalf("bob on alice's session: %v %q", res, owner)
	}
	if res, _ := b.acquire("nope", "bob"); res != bindUnknown {
		t.Fatalf("unknown session: %v", res)
	}
	if res, _ := b.acquire("s1", "alice"); res != bindOwner {
		t.Fatalf("alice on her session: %v", res)
	}
	// In use: survives any idle time.
	now = now.Add(2 * time.Hour)
	if res, _ := b.acquire("s1", "alice"); res != bindOwner {
		t.Fatal("binding in use was swept")
	}
	b.release("s1")
	b.release("s1")
	// Idle past the timeout: swept lazily.
	now = now.Add(31 * time.Minute)
	if res, _ := b.acquire("s1", "bob"); res != bindUnknown {
		t.Fatalf("idle binding not swept: %v", res)
	}
	if b.len() != 0 {
		t.Fatalf("len = %d", b.len())
	}

	b.bind("s2", "alice")
	b.forget("s2")
	if res, _ := b.acquire("s2", "alice"); res != bindUnknown {
		t.Fatal("forgotten binding still known")
	}

	for i := range maxSessionsPerOwner {
		b.bind(string(rune(i))+"-x", "carol")
	}
	if status, _ := b.admit("carol"); status != http.StatusTooManyRequests {
		t.Errorf("admit over the per-owner limit: %d", status)
	}
	if status, _ := b.admit("dave"); status != 0 {
		t.Errorf("admit dave: %d", status)
	}
	now = now.Add(time.Hour) // all of carol's sessions idle out
	if status, _ := b.admit("carol"); status != 0 {
		t.Errorf("admit after expiry: %d", status)
	}
}

// SSE needs http.Flusher through the wrapper, and the session id must be
// bound before the first byte reaches the client.
func TestSessionWriter(t *testing.T) {
	var bound []string
	rec := httptest.NewRecorder()
	sw := &sessionWriter{ResponseWriter: rec, onHeader: func(status int, h http.Header) {
		bound = append(bound, h.Get(sessionIDHeader))
	}}
	sw.Header().Set(sessionIDHeader, "abc")
	if err := http.NewResponseController(sw).Flush(); err != nil {
		t.Fatalf("Flush through ResponseController: %v", err)
	}
	if !rec.Flushed {
		t.Error("not flushed")
	}
	io.WriteString(sw, "data")
	sw.WriteHeader(http.StatusTeapot) // superfluous: ignored
	if sw.Status() != http.StatusOK || rec.Code != http.StatusOK {
		t.Errorf("status = %d / %d", sw.Status(), rec.Code)
	}
	if !cmp.Equal(bound, []string{"abc"}) {
		t.Errorf("bound = %q", bound)
	}
}

func TestValidID(t *testing.T) {
	for raw, want := range map[string]bool{`1`: true, `"a"`: true, `null`: false, ``: false, `{}`: false, `[1]`: false, `1.5`: true} {
		if got := validID(json.RawMessage(raw)); got != want {
			t.Errorf("validID(%s) = %v", raw, got)
		}
	}
}

type bearerRT struct{ token string }

func (b bearerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

// A session is bound when the SDK creates it and forgotten when the client
// deletes it.
func TestSessionLifecycle(t *testing.T) {
	reg := NewRegistry()
	AddTool(reg, &mcp.Tool{Name: "ping"}, nil,
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return nil, nil, nil
		})
	h := New(Options{Registry: reg, Audit: &recorder{}, Logger: slog.New(slog.DiscardHandler)})
	defer h.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := &principal.Principal{UserID: strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")}
		h.ServeHTTP(w, r.WithContext(principal.With(r.Context(), p)))
	}))
	defer srv.Close()

	client := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil)
	cs, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{
		Endpoint: srv.URL, HTTPClient: &http.Client{Transport: bearerRT{"usr_a"}}, MaxRetries: -1,
	}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-06-18"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "ping"}); err != nil {
		t.Fatal(err)
	}
	if n := h.sessions.len(); n != 1 {
		t.Fatalf("bindings after connect = %d", n)
	}
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	if n := h.sessions.len(); n != 0 {
		t.Errorf("bindings after close = %d", n)
	}
}

// BenchmarkPolicyDecide is the per-request cost of the JSON-RPC inspection.
func BenchmarkPolicyDecide(b *testing.B) {
	pol := &Policy{ToolScopes: func(string) ([]string, bool) { return []string{"payments:read"}, true }}
	p := &principal.Principal{UserID: "u", Scopes: []string{"payments:read"}}
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"getAccountBalance","arguments":{},` +
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`)
	b.ReportAllocs()
	for b.Loop() {
		if !pol.Decide(p, body).Allowed() {
			b.Fatal("denied")
		}
	}
}
