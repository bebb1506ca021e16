package server_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/mcpgate/mcpgate/internal/browsertest"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// TestUpstreamLoginFromAnotherMcpgate: instance B is the upstream OIDC
// provider of instance A (real discovery, JWKS, redirects, in Chromium). A
// user of B signs in to A with "Continue with Instance B", is provisioned
// at A, and calls a tool through A's /mcp as that new local user.
func TestUpstreamLoginFromAnotherMcpgate(t *testing.T) {
	b := newEnv(t)
	var clientID string
	a := newEnv(t, upstreamFromB(t, b, &clientID, nil))

	browser := browsertest.Start(t)
	ctx, cancel := context.WithTimeout(browser, time.Minute)
	defer cancel()
	err := chromedp.Do(ctx,
		chromedp.Navigate(a.base+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`a.upstream-login`)),
	)
	if err != nil {
		t.Fatalf("opening the login page: %v", err)
	}
	// The login page with its "Continue with …" button, for people to look at.
	if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
		dir := filepath.Join("..", "..", "testout", "screenshots")
		if os.MkdirAll(dir, 0o755) == nil {
			os.WriteFile(filepath.Join(dir, "login-with-upstream-desktop.png"), png, 0o644)
		}
	}
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`a.upstream-login`)),
		chromedp.WaitVisible(chromedp.CSS(`#email`)),
	)
	if err != nil {
		t.Fatalf("starting the upstream login: %v", err)
	}
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatalf("starting the upstream login: %v", err)
	}
	if !strings.HasPrefix(loc, b.base+"/") {
		t.Fatalf("Continue with Instance B went to %s, want instance B (%s)", loc, b.base)
	}
	err = chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`#email`), "bob@example.com"),
		chromedp.SendKeys(chromedp.CSS(`#password`), b.pws["bob@example.com"]),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[name=decision][value=allow]`)),
		chromedp.Click(chromedp.CSS(`button[name=decision][value=allow]`)),
	)
	if err != nil {
		t.Fatalf("logging in and consenting at instance B: %v", err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		if loc, err = chromedp.Run(ctx, chromedp.Location()); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(loc, a.base+"/account") {
			break
		}
		if time.Now().After(deadline) {
			body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`body`)))
			t.Fatalf("not back at A's account page; at %s:\n%s", loc, body)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A provisioned a new local user for bob at B, linked by B's issuer
	// and bob's subject there (B's user id).
	bobAtB := b.ids["bob@example.com"]
	link, err := a.srv.Core().DB.GetIdentity(context.Background(), b.base, bobAtB)
	if err != nil {
		t.Fatalf("no identity link for (%s, %s) at A: %v", b.base, bobAtB, err)
	}
	for email, id := range a.ids {
		if id == link.UserID {
			t.Fatalf("bob at B was linked to A's existing user %s (B does not verify emails)", email)
		}
	}
	if ev := a.lastAudit(upstream.TypeLogin); ev.Outcome != "allow" || ev.UserID != link.UserID || ev.Details["provider"] != "instance-b" || ev.Details["subject"] != bobAtB {
		t.Errorf("upstream.login event = %+v", ev)
	}
	if ev := a.lastAudit(identity.TypeUserProvisioned); ev.UserID != link.UserID || ev.Details["via"] != "upstream_login" {
		t.Errorf("user.provisioned event = %+v", ev)
	}

	// The browser's A session cookie gets the session's MCP credential; a
	// tool called through A's /mcp runs as the new user.
	out := balanceThroughBrowserSession(t, ctx, a, func(c *network.Cookie) {
		if strings.Contains(c.Value, clientID) {
			t.Fatalf("a cookie carries upstream data: %s", c.Name)
		}
	})
	if want := identity.PlaceholderEmail(b.base, bobAtB); out["email"] != want || out["balance"] != 0.0 {
		t.Errorf("tool result = %v, want the new user's (%s, balance 0)", out, want)
	}
}

// upstreamFromB configures an instance as instance B's OIDC relying
// party: B gets a confidential client "mcpgate A" whose redirect URI is
// the instance's callback for provider "instance-b", and the instance's
// providers file names B (extra: more provider settings, such as
// roles_claim). It returns the mutation for newEnv or newCluster, and
// sets *clientID (when not nil) to the client's id at B.
func upstreamFromB(t *testing.T, b *env, clientID *string, extra map[string]any) func(*config.Config) {
	return func(cfg *config.Config) {
		cl, secret, err := b.srv.OAuthClients().CreateStatic(context.Background(), oauth.StaticClient{
			Name: "mcpgate A", Confidential: true,
			RedirectURIs: []string{cfg.PublicURL + "/login/upstream/instance-b/callback"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if clientID != nil {
			*clientID = cl.ClientID
		}
		p := map[string]any{
			"name": "instance-b", "display_name": "Instance B", "type": "oidc", "issuer": b.base,
			"client_id": cl.ClientID, "client_secret": secret, "scopes": []string{"openid", "email", "profile"},
		}
		for k, v := range extra {
			p[k] = v
		}
		doc, _ := json.Marshal(map[string]any{"providers": []any{p}})
		path := filepath.Join(t.TempDir(), "upstreams.json")
		if err := os.WriteFile(path, doc, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.UpstreamProvidersFile = path
	}
}
