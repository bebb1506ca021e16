package server_test

import (
	"net/http"
	"testing"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/config"
)

// Behind a trusted reverse proxy the client address comes from
// X-Forwarded-For: per-IP limits count each client on its own and the
// audit log names the client, not the proxy. From anyone else the header
// is ignored, so a client cannot pick its own address.
func TestTrustedProxyClientAddress(t *testing.T) {
	refuse := func(e *env, xff string) int {
		h := http.Header{"Authorization": {"Bearer mcpg_bogus"}, "X-Forwarded-For": {xff}}
		resp := post(t, e.base+"/mcp", h, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
		resp.Body.Close()
		return resp.StatusCode
	}

	behind := newEnv(t, func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.1"} })
	// 198.51.100.1 spends its whole refusal budget…
	status := 0
	for i := 0; i < 200 && status != http.StatusTooManyRequests; i++ {
		status = refuse(behind, "198.51.100.1")
	}
	if status != http.StatusTooManyRequests {
		t.Fatalf("198.51.100.1 was never limited (last status %d)", status)
	}
	// …while another client behind the same proxy is untouched, and the
	// audit log names it.
	if got := refuse(behind, "203.0.113.5, 198.51.100.2"); got != http.StatusUnauthorized {
		t.Errorf("another client behind the proxy: %d, want 401", got)
	}
	if ev := behind.lastAudit(audit.TypeAuthRejected); ev.ClientIP != "198.51.100.2" {
		t.Errorf("audit client_ip = %q, want the forwarded 198.51.100.2 (rightmost untrusted)", ev.ClientIP)
	}

	// Without --trusted-proxies the header is the client's own words.
	direct := newEnv(t)
	if got := refuse(direct, "198.51.100.1"); got != http.StatusUnauthorized {
		t.Fatalf("direct: %d, want 401", got)
	}
	if ev := direct.lastAudit(audit.TypeAuthRejected); ev.ClientIP != "127.0.0.1" {
		t.Errorf("audit client_ip = %q, want the TCP peer 127.0.0.1", ev.ClientIP)
	}
}
