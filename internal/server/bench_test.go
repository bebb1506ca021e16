package server_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkToolCall is one full in-process tools/call (getAccountBalance on
// SQLite, stateless 2026-07-28 protocol) through everything a real request
// crosses: the common middleware, API-key authentication (cached after the
// first call, as in steady state), the scope policy, the go-sdk handler,
// the tool and its audit event. Compare with demo's BenchmarkToolCall/sdk-only
// (the bare SDK serving the same tool) to see what auth costs.
func BenchmarkToolCall(b *testing.B) {
	e := newEnv(b)
	h := e.srv.Handler()
	key := e.keys["alice@example.com"]
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"getAccountBalance","arguments":{},` +
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
		r.RemoteAddr = "127.0.0.1:1234"
		r.Header.Set("Authorization", "Bearer "+key)
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Accept", "application/json, text/event-stream")
		r.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		r.Header.Set("Mcp-Method", "tools/call")
		r.Header.Set("Mcp-Name", "getAccountBalance")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"balance":180`) {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
