package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/browsertest"
)

type tsOAuthResult struct {
	ClientID            string         `json:"clientId"`
	Iss                 string         `json:"iss"`
	RequestedScope      string         `json:"requestedScope"`
	Resource            string         `json:"resource"`
	CodeChallengeMethod string         `json:"codeChallengeMethod"`
	Scope               string         `json:"scope"`
	HasRefreshToken     bool           `json:"hasRefreshToken"`
	Refresh             string         `json:"refresh"`
	Rotated             bool           `json:"rotated"`
	Tools               []string       `json:"tools"`
	Balance             map[string]any `json:"balance"`
	BalanceIsError      bool           `json:"balanceIsError"`
	BalanceAfterRefresh map[string]any `json:"balanceAfterRefresh"`
	Error               string         `json:"error"`
}

// TestTypeScriptSDKOAuthClient: the official TypeScript MCP SDK client
// (npm @modelcontextprotocol/sdk, interop/ts/oauth-client.mjs) finds its
// own way in — 401, discovery, dynamic registration, authorization with
// PKCE — while real headless Chromium signs bob in and clicks Allow; the
// client then exchanges the code, calls tools as bob and refreshes its
// tokens. Like the other interop tests it is skipped locally without node
// or the npm packages, and fails on CI.
func TestTypeScriptSDKOAuthClient(t *testing.T) {
	node, script := nodeClient(t)
	script = filepath.Join(filepath.Dir(script), "oauth-client.mjs")
	browser := browsertest.Start(t)
	e := newEnv(t)
	bob := "bob@example.com"

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, e.base+"/mcp")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var last string
	var browsed bool
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		authURL, ok := strings.CutPrefix(line, "AUTHORIZE ")
		if !ok {
			last = line
			continue
		}
		if !strings.HasPrefix(authURL, e.base+"/authorize?") {
			t.Errorf("the client authorizes at %s, not at mcpgate's advertised endpoint", authURL)
		}
		browsed = true
		bctx, bcancel := context.WithTimeout(browser, 30*time.Second)
		err := chromedp.Do(bctx,
			chromedp.Navigate(authURL),
			chromedp.WaitVisible(chromedp.CSS(`#email`)),
			chromedp.SendKeys(chromedp.CSS(`#email`), bob),
			chromedp.SendKeys(chromedp.CSS(`#password`), e.pws[bob]),
			chromedp.Click(chromedp.CSS(`form[action="/login"] button[type=submit]`)),
			chromedp.WaitVisible(chromedp.CSS(`button[name=decision][value=allow]`)),
			chromedp.Click(chromedp.CSS(`button[name=decision][value=allow]`)),
			chromedp.WaitVisible(chromedp.CSS(`#done`)),
		)
		var done string
		if err == nil {
			done, err = chromedp.Run(bctx, chromedp.Text(chromedp.CSS(`#done`)))
		}
		bcancel()
		if err != nil {
			cmd.Process.Kill()
			t.Fatalf("driving login and consent in Chromium: %v\nnode stderr:\n%s", err, stderr.String())
		}
		if done != "You can close this window." {
			t.Errorf("the browser landed on %q", done)
		}
	}
	if err := cmd.Wait(); err != nil && !strings.HasPrefix(last, "{") {
		t.Fatalf("node: %v\nstdout: %s\nstderr:\n%s", err, last, stderr.String())
	}
	if !browsed {
		t.Fatalf("the client never asked for authorization; last line %q\nstderr:\n%s", last, stderr.String())
	}
	var res tsOAuthResult
	if err := json.Unmarshal([]byte(last), &res); err != nil {
		t.Fatalf("node printed %q: %v", last, err)
	}
	if res.Error != "" {
		t.Fatalf("the TypeScript client failed: %s\nstderr:\n%s", res.Error, stderr.String())
	}

	// The client asked for the resource's scopes, at this MCP server, with
	// S256; the redirect carried mcpgate's issuer.
	if res.Iss != e.base || res.Resource != e.base+"/mcp" || res.CodeChallengeMethod != "S256" {
		t.Errorf("iss %q, resource %q, PKCE %q", res.Iss, res.Resource, res.CodeChallengeMethod)
	}
	if res.RequestedScope != "payments:read payments:write" || res.Scope != "payments:read payments:write" {
		t.Errorf("scope requested %q, granted %q", res.RequestedScope, res.Scope)
	}
	// Bob's tools and bob's money.
	all := []string{"getAccountBalance", "getAllTransactions", "getLatestTransactions", "transfer"}
	if diff := cmp.Diff(all, res.Tools); diff != "" {
		t.Errorf("tools (-want +got):\n%s", diff)
	}
	if res.BalanceIsError || res.Balance["balance"] != -200.0 || res.Balance["email"] != bob {
		t.Errorf("balance = %v (isError %v), want -200 for %s", res.Balance, res.BalanceIsError, bob)
	}
	// Refresh rotated both tokens and the new access token works.
	if !res.HasRefreshToken || res.Refresh != "AUTHORIZED" || !res.Rotated || res.BalanceAfterRefresh["balance"] != -200.0 {
		t.Errorf("refresh: has %v, result %q, rotated %v, balance after %v", res.HasRefreshToken, res.Refresh, res.Rotated, res.BalanceAfterRefresh)
	}
	// mcpgate recorded bob's decision for this dynamically registered client.
	cl, err := e.srv.OAuthClients().Get(context.Background(), res.ClientID)
	if err != nil || cl.Kind != "dcr" || cl.Name != "mcpgate TypeScript interop" {
		t.Errorf("client %q: %+v %v", res.ClientID, cl, err)
	}
	if ev := e.lastAudit(audit.TypeOAuthConsentGranted); ev.UserID != e.ids[bob] || ev.Details["client_id"] != res.ClientID {
		t.Errorf("consent_granted event = %+v", ev)
	}
	if ev := e.lastAudit(audit.TypeOAuthTokenRefreshed); ev.UserID != e.ids[bob] {
		t.Errorf("token_refreshed event = %+v", ev)
	}
}
