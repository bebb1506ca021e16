package server_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestMetricsCountDecisions: after a refused and an allowed tool call, the
// Prometheus exposition shows the request, auth-decision and tool-call
// counters an operator would graph.
func TestMetricsCountDecisions(t *testing.T) {
	e := newEnv(t)
	post(t, e.base+"/mcp", nil, initBody) // refused: no credential
	cs, err := e.connect(bearer(e.keys["alice@example.com"]), "")
	if err != nil {
		t.Fatal(err)
	}
	e.balance(cs)
	cs.Close()
	e.lastAudit("tool.called") // flushes the audit writer, whose hook counts tool calls

	rec := httptest.NewRecorder()
	e.srv.Metrics().Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	if rec.Code != http.StatusOK {
		t.Fatalf("metrics: %d", rec.Code)
	}
	for _, want := range []string{
		`mcpgate_auth_decisions_total{method="none",outcome="deny",reason="missing"} 1`,
		`mcpgate_auth_decisions_total{method="api_key",outcome="allow",reason=""}`,
		`mcpgate_tool_calls_total{outcome="allow",tool="getAccountBalance"} 1`,
		`mcpgate_http_requests_total{code="401",route="/mcp"} 1`,
		`mcpgate_http_request_duration_seconds_bucket{route="/mcp",le=`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
