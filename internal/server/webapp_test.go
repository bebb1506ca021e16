package server_test

import (
	"context"
	"time"

	"encoding/json"
	"log/slog"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/server"
	"github.com/mcpgate/mcpgate/internal/store"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
)

// TestWebAppFlow is the browser-session scenario of issue #3 on the fully
// wired server: a web app logs its user in with JSON, gets the session's
// MCP credential, its agent calls a tool through /mcp with it and through
// the JSON facade with the cookie; after logout the credential is refused
// at once.
func TestWebAppFlow(t *testing.T) {
	e := newEnv(t)
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	do := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, e.base+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		b, _ := io.ReadAll(resp.Body)
		json.Unmarshal(b, &out)
		return resp.StatusCode, out
	}
	if code, out := do("POST", "/api/auth/login", `{"email":"Alice@Example.com","password":"wrong password here"}`); code != 401 {
		t.Fatalf("wrong password: %d %v", code, out)
	}
	if code, out := do("POST", "/api/auth/login", `{"email":"alice@example.com","password":"`+e.pws["alice@example.com"]+`"}`); code != 200 {
		t.Fatalf("login: %d %v", code, out)
	}
	code, cred := do("POST", "/api/mcp/credentials", "")
	if code != 200 || !strings.HasPrefix(cred["api_key"].(string), "mcpg_") || cred["mcp_url"] != e.base+"/mcp" {
		t.Fatalf("credentials: %d %v", code, cred)
	}
	if _, again := do("POST", "/api/mcp/credentials", ""); again["api_key"] != cred["api_key"] {
		t.Errorf("a second request of the same session got another key")
	}
	key := cred["api_key"].(string)
	cs, err := e.connect(bearer(key), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.balance(cs); got != 180 {
		t.Errorf("balance through /mcp with the session key = %v", got)
	}
	cs.Close()
	code, res := do("POST", "/api/mcp/tools/call", `{"name":"getAccountBalance","arguments":{}}`)
	if code != 200 || res["structuredContent"].(map[string]any)["balance"] != 180.0 {
		t.Errorf("facade call: %d %v", code, res)
	}
	if code, _ := do("POST", "/api/auth/logout", ""); code != 204 {
		t.Fatalf("logout: %d", code)
	}
	if _, err := e.connect(bearer(key), ""); err == nil {
		t.Error("the session's credential still works after logout")
	}
	if code, _ := do("POST", "/api/mcp/tools/call", `{"name":"getAccountBalance","arguments":{}}`); code != 401 {
		t.Errorf("facade after logout: %d", code)
	}
}

// TestDisableEndsOAuthGrants: disabling a user through the core that the
// CLI opens (no HTTP server around it) revokes their OAuth grants, so a
// later enable does not bring old refresh tokens back.
func TestDisableEndsOAuthGrants(t *testing.T) {
	ctx := context.Background()
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	core, err := server.OpenCore(ctx, cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer core.Close(ctx)
	u, err := core.Users.Create(ctx, identity.NewUser{Email: "dana@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cl := store.OAuthClient{ID: store.NewID("ocl"), ClientID: "client_test", Kind: store.ClientKindStatic, Name: "app",
		RedirectURIs: []string{"https://app.example/cb"}, GrantTypes: []string{"authorization_code"}, ResponseTypes: []string{"code"},
		TokenEndpointAuthMethod: "none", ApplicationType: "web", CreatedAt: now}
	if err := core.DB.CreateOAuthClient(ctx, cl); err != nil {
		t.Fatal(err)
	}
	g := store.OAuthGrant{ID: store.NewID("grt"), UserID: u.ID, ClientID: cl.ClientID, Resource: "http://127.0.0.1:8080/mcp",
		Scopes: []string{"payments:read"}, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := core.DB.CreateOAuthGrant(ctx, g); err != nil {
		t.Fatal(err)
	}
	if _, err := core.Users.SetDisabled(ctx, u.ID, true); err != nil {
		t.Fatal(err)
	}
	if got, err := core.DB.GetOAuthGrant(ctx, g.ID); err != nil || got.RevokedAt.IsZero() {
		t.Fatalf("grant after disable: revoked at %v, %v", got.RevokedAt, err)
	}
}
