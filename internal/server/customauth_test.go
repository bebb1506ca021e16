package server_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mcpgate/mcpgate/examples/custom-login/app"
	"github.com/mcpgate/mcpgate/internal/browsertest"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/customauth"
)

// TestCustomLoginExampleApp: the example login application (its own user
// table and form) runs beside mcpgate; in Chromium a user goes mcpgate
// /login → "Continue with Example app" → the app's form → /login/callback,
// is signed in at mcpgate as a new user carrying the app's organization_id
// claim, and calls a tool through /mcp with the session's MCP key. The app
// authenticates its POST to mcpgate with the shared secret, or (key pair)
// with assertions signed by its private key, mcpgate holding only the
// public key file.
func TestCustomLoginExampleApp(t *testing.T) {
	t.Run("shared secret", func(t *testing.T) { customLoginExampleApp(t, false) })
	t.Run("key pair", func(t *testing.T) { customLoginExampleApp(t, true) })
}

func customLoginExampleApp(t *testing.T, keyPair bool) {
	exampleApp := &app.App{Users: app.DemoUsers}
	appSrv := httptest.NewServer(exampleApp)
	defer appSrv.Close()
	e := newEnv(t, func(cfg *config.Config) {
		cfg.CustomLoginURL = appSrv.URL + "/login"
		cfg.CustomLoginName = "Example app"
		if keyPair {
			exampleApp.Key, cfg.CustomLoginPublicKeyFile = appKeyPair(t)
		} else {
			exampleApp.Secret = strings.Repeat("s3cret-", 6)
			cfg.CustomLoginSecret = exampleApp.Secret
		}
	})
	exampleApp.MCPGateURL = e.base

	browser := browsertest.Start(t)
	ctx, cancel := context.WithTimeout(browser, time.Minute)
	defer cancel()
	button := `a.upstream-login[href^="/login/custom"]`
	if err := chromedp.Do(ctx, chromedp.Navigate(e.base+"/login"), chromedp.WaitVisible(chromedp.CSS(button))); err != nil {
		t.Fatalf("opening the login page: %v", err)
	}
	if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
		dir := filepath.Join("..", "..", "testout", "screenshots")
		if os.MkdirAll(dir, 0o755) == nil {
			os.WriteFile(filepath.Join(dir, "login-with-custom.png"), png, 0o644)
		}
	}
	if txt, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(button))); err != nil || !strings.Contains(txt, "Continue with Example app") {
		t.Fatalf("button text %q (%v)", txt, err)
	}
	err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(button)),
		chromedp.WaitVisible(chromedp.CSS(`#username`)),
	)
	if err != nil {
		t.Fatalf("going to the example app: %v", err)
	}
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); !strings.HasPrefix(loc, appSrv.URL+"/login?") || !strings.Contains(loc, "login_request_id=") {
		t.Fatalf("Continue with Example app went to %s", loc)
	}
	err = chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`#username`), "carol@acme.example"),
		chromedp.SendKeys(chromedp.CSS(`#pw`), "carol-password"),
		chromedp.Click(chromedp.CSS(`#signin`)),
	)
	if err != nil {
		t.Fatalf("signing in at the example app: %v", err)
	}
	var loc string
	for deadline := time.Now().Add(20 * time.Second); ; {
		if loc, err = chromedp.Run(ctx, chromedp.Location()); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(loc, e.base+"/account") {
			break
		}
		if time.Now().After(deadline) {
			body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`body`)))
			t.Fatalf("not back at mcpgate's account page; at %s:\n%s", loc, body)
		}
		time.Sleep(100 * time.Millisecond)
	}

	issuer, _ := customauth.Issuer(appSrv.URL + "/login")
	link, err := e.srv.Core().DB.GetIdentity(context.Background(), issuer, "u-100")
	if err != nil {
		t.Fatalf("no identity link for (%s, u-100): %v", issuer, err)
	}
	ev := e.lastAudit(customauth.TypeCompleted)
	claims, _ := ev.Details["claims"].(map[string]any)
	if ev.Outcome != "allow" || ev.UserID != link.UserID || claims["organization_id"] != "org-acme" {
		t.Fatalf("login_request.completed = %+v", ev)
	}
	if ev := e.lastAudit(customauth.TypeCreated); ev.Outcome != "allow" {
		t.Errorf("login_request.created = %+v", ev)
	}
	// The session keeps the custom claims (they land in its principal).
	sess, err := e.srv.Core().DB.GetSession(context.Background(), ev.CredentialID)
	if err != nil || !strings.Contains(sess.Claims, `"organization_id":"org-acme"`) {
		t.Fatalf("session claims = %q (%v)", sess.Claims, err)
	}

	out := balanceThroughBrowserSession(t, ctx, e, nil)
	// The result depends on the custom claim the app vouched for: the
	// session key carries the session's claims into the principal.
	if out["email"] != "carol@acme.example" || out["balance"] != 0.0 || out["organization"] != "org-acme" {
		t.Errorf("tool result = %v, want the new user's (carol@acme.example, balance 0, organization org-acme)", out)
	}
}

// appKeyPair makes the example app's Ed25519 key, and the public key file
// an operator would give mcpgate (what openssl pkey -pubout writes).
func appKeyPair(t *testing.T) (crypto.Signer, string) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "app.pub")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return key, path
}
