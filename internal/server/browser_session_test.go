package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// balanceThroughBrowserSession takes the browser's cookies for e, asks
// /api/mcp/credentials for the session's MCP key, and calls
// getAccountBalance through /mcp with it: what a web app's agent does for
// the signed-in user. check sees each cookie first (to assert what
// cookies may not carry).
func balanceThroughBrowserSession(t *testing.T, ctx context.Context, e *env, check func(c *network.Cookie)) map[string]any {
	t.Helper()
	cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{e.base + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	var cookieHeader []string
	for _, c := range cookies.Cookies {
		if check != nil {
			check(c)
		}
		cookieHeader = append(cookieHeader, c.Name+"="+c.Value)
	}
	req, _ := http.NewRequest("POST", e.base+"/api/mcp/credentials", nil)
	req.Header.Set("Cookie", strings.Join(cookieHeader, "; "))
	req.Header.Set("Origin", e.base)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var cred map[string]any
	json.Unmarshal(body, &cred)
	key, _ := cred["api_key"].(string)
	if resp.StatusCode != 200 || key == "" {
		t.Fatalf("session credentials at %s: %d %s", e.base, resp.StatusCode, body)
	}
	cs, err := e.connect(bearer(key), "")
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "getAccountBalance", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("getAccountBalance through %s: %v %+v", e.base, err, res)
	}
	return res.StructuredContent.(map[string]any)
}
