package server_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/examples/custom-login/app"
	"github.com/mcpgate/mcpgate/internal/browsertest"
	"github.com/mcpgate/mcpgate/internal/config"
)

// TestCustomLoginOAuthInChromium is issue #5's custom-auth test as a user
// lives it: an MCP client sends the browser to /authorize; nobody is
// signed in, so mcpgate's login page offers "Continue with Example app";
// the example application's own form signs Dave in and posts his claims
// back; the callback signs him in at mcpgate and returns to the
// authorization; the consent page says which details of his sign-in the
// client's tokens will carry; Allow sends the code to the client, whose
// access token carries organization_id and roles — so a tool answers with
// his organisation, and the auditor-only tool lets him in.
func TestCustomLoginOAuthInChromium(t *testing.T) {
	exampleApp := &app.App{Users: app.DemoUsers, Secret: strings.Repeat("s3cret-", 6)}
	appSrv := httptest.NewServer(exampleApp)
	defer appSrv.Close()
	e := newEnv(t, func(cfg *config.Config) {
		cfg.CustomLoginURL = appSrv.URL + "/login"
		cfg.CustomLoginName = "Example app"
		cfg.CustomLoginSecret = exampleApp.Secret
		cfg.AccessTokenClaims = []string{"organization_id", "roles"}
	})
	exampleApp.MCPGateURL = e.base

	// The MCP client: a loopback redirect URI that catches the code.
	codes := make(chan url.Values, 1)
	client := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case codes <- r.URL.Query():
		default:
		}
		w.Write([]byte("<!doctype html><title>client</title><p>Connected.</p>"))
	}))
	defer client.Close()
	redirect := client.URL + "/callback"
	reg := send(t, "POST", e.base+"/register", "application/json",
		`{"redirect_uris":["`+redirect+`"],"client_name":"Chromium test client","token_endpoint_auth_method":"none"}`)
	clientID, _ := reg.json(t)["client_id"].(string)
	if reg.status != http.StatusCreated || clientID == "" {
		t.Fatalf("registration: %d %s", reg.status, reg.body)
	}
	verifier := randomString(t)
	sum := sha256.Sum256([]byte(verifier))
	state := randomString(t)
	authorize := e.base + "/authorize?" + url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect}, "state": {state},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
		"resource": {e.base + "/mcp"}, "scope": {"payments:read"},
	}.Encode()

	browser := browsertest.Start(t)
	ctx, cancel := context.WithTimeout(browser, time.Minute)
	defer cancel()
	button := `a.upstream-login[href^="/login/custom"]`
	err := chromedp.Do(ctx,
		chromedp.Navigate(authorize),
		chromedp.WaitVisible(chromedp.CSS(button)),
		chromedp.Click(chromedp.CSS(button)),
		chromedp.WaitVisible(chromedp.CSS(`#username`)),
		chromedp.SendKeys(chromedp.CSS(`#username`), "dave@globex.example"),
		chromedp.SendKeys(chromedp.CSS(`#pw`), "dave-password"),
		chromedp.Click(chromedp.CSS(`#signin`)),
		chromedp.WaitVisible(chromedp.CSS(`button[value="allow"]`)),
	)
	if err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("from /authorize through the example app to the consent page (at %s): %v", loc, err)
	}
	shot(t, ctx, "consent-with-claims.png")
	page, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Chromium test client", "dave@globex.example", "It will also receive", "until you sign out here", "organization_id", "org-globex", "roles", "member, auditor"} {
		if !strings.Contains(page, want) {
			t.Errorf("the consent page does not say %q:\n%s", want, page)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button[value="allow"]`))); err != nil {
		t.Fatal(err)
	}
	var got url.Values
	select {
	case got = <-codes:
	case <-ctx.Done():
		t.Fatal("the client never received the authorization code")
	}
	if got.Get("state") != state || got.Get("code") == "" || got.Get("iss") != e.base {
		t.Fatalf("redirect to the client: %v", got)
	}

	tok := send(t, "POST", e.base+"/token", "application/x-www-form-urlencoded", url.Values{
		"grant_type": {"authorization_code"}, "code": {got.Get("code")}, "code_verifier": {verifier},
		"redirect_uri": {redirect}, "client_id": {clientID}, "resource": {e.base + "/mcp"},
	}.Encode())
	at, _ := tok.json(t)["access_token"].(string)
	if tok.status != http.StatusOK || at == "" {
		t.Fatalf("code exchange: %d %s", tok.status, tok.body)
	}
	payload := tokenPayload(t, at)
	if payload["organization_id"] != "org-globex" || !sameStrings(payload["roles"], "member", "auditor") {
		t.Errorf("access token claims = %v, want organization_id org-globex and roles [member auditor]", payload)
	}

	cs, err := e.connect(bearer(at), "")
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "getAccountBalance", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("getAccountBalance: %v %+v", err, res)
	}
	if out := res.StructuredContent.(map[string]any); out["organization"] != "org-globex" || out["email"] != "dave@globex.example" {
		t.Errorf("getAccountBalance = %v, want Dave's, in org-globex", out)
	}
	res, err = cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "getAnyAccountBalance", Arguments: map[string]any{"email": "alice@example.com"}})
	if err != nil || res.IsError {
		t.Errorf("getAnyAccountBalance refused for Dave's auditor claim role: %v %+v", err, res)
	}
}

func randomString(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func sameStrings(v any, want ...string) bool {
	list, ok := v.([]any)
	if !ok || len(list) != len(want) {
		return false
	}
	for i, w := range want {
		if list[i] != w {
			return false
		}
	}
	return true
}

// shot saves a full-page screenshot under testout/screenshots.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	dir := filepath.Join("..", "..", "testout", "screenshots")
	if os.MkdirAll(dir, 0o755) == nil {
		os.WriteFile(filepath.Join(dir, name), png, 0o644)
	}
}
