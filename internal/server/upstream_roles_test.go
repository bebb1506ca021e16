package server_test

import (
	"context"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// TestUpstreamRolesFromAnotherMcpgate: a chain of mcpgates passes roles.
// Instance B runs with --id-token-roles and is instance A's upstream
// provider with roles_claim "roles". charlie, the demo auditor on B,
// signs in to A through B (a plain HTTP user agent, no Chromium) and,
// as a new user at A without stored roles, sees and calls A's
// auditor-only tool: the role came in B's ID token.
func TestUpstreamRolesFromAnotherMcpgate(t *testing.T) {
	b := newEnv(t, func(cfg *config.Config) { cfg.IDTokenRoles = true })
	a := newEnv(t, upstreamFromB(t, b, nil, map[string]any{"roles_claim": "roles"}))

	// B advertises the claim; A, without the setting, does not.
	claimsSupported := func(e *env) []string {
		t.Helper()
		resp, err := http.Get(e.base + "/.well-known/openid-configuration")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var md struct {
			Claims []string `json:"claims_supported"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
			t.Fatal(err)
		}
		return md.Claims
	}
	if !slices.Contains(claimsSupported(b), "roles") || slices.Contains(claimsSupported(a), "roles") {
		t.Errorf("claims_supported: B %v (want roles), A %v (want none)", claimsSupported(b), claimsSupported(a))
	}

	// The browser: "Continue with Instance B", charlie's password at B,
	// Allow on B's consent page, back at A's account page.
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	do := func(method, u string, form url.Values) (*http.Response, string) {
		t.Helper()
		var rd io.Reader
		if form != nil {
			rd = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, u, rd)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	resp, body := do("GET", a.base+"/login/upstream/instance-b", nil)
	if !strings.HasPrefix(resp.Request.URL.String(), b.base+"/login") || resp.StatusCode != http.StatusOK {
		t.Fatalf("Continue with Instance B ended at %s (%d), want B's login page", resp.Request.URL, resp.StatusCode)
	}
	resp, body = do("POST", b.base+"/login", url.Values{"email": {"charlie@example.com"}, "password": {b.pws["charlie@example.com"]},
		"return_to": {resp.Request.URL.Query().Get("return_to")}})
	m := hiddenRequest.FindStringSubmatch(body)
	if resp.Request.URL.Path != "/oauth/consent" || m == nil {
		t.Fatalf("after B's login: %s (%d), want B's consent page:\n%s", resp.Request.URL, resp.StatusCode, body)
	}
	resp, body = do("POST", b.base+"/oauth/consent", url.Values{"request": {html.UnescapeString(m[1])}, "decision": {"allow"}})
	if !strings.HasPrefix(resp.Request.URL.String(), a.base+"/account") || resp.StatusCode != http.StatusOK {
		t.Fatalf("after Allow: %s (%d), want A's account page:\n%s", resp.Request.URL, resp.StatusCode, body)
	}
	if ev := a.lastAudit(upstream.TypeLogin); ev.Outcome != "allow" || ev.Details["subject"] != b.ids["charlie@example.com"] {
		t.Fatalf("upstream.login at A = %+v", ev)
	}

	// A's session MCP key: the auditor role from B counts for tools.
	req, _ := http.NewRequest("POST", a.base+"/api/mcp/credentials", nil)
	req.Header.Set("Origin", a.base)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var cred struct {
		APIKey string `json:"api_key"`
	}
	json.NewDecoder(resp.Body).Decode(&cred)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || cred.APIKey == "" {
		t.Fatalf("session credentials at A: %d", resp.StatusCode)
	}
	cs, err := a.connect(bearer(cred.APIKey), "")
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "getAnyAccountBalance", Arguments: map[string]any{"email": "alice@example.com"}})
	if err != nil || res.IsError {
		t.Fatalf("getAnyAccountBalance at A as charlie from B: %v %+v", err, res)
	}
	if got := res.StructuredContent.(map[string]any); got["email"] != "alice@example.com" {
		t.Errorf("getAnyAccountBalance = %v", got)
	}
}
