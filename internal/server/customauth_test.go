package server_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/examples/custom-login/app"
	"github.com/mcpgate/mcpgate/internal/browsertest"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/customauth"
	"github.com/mcpgate/mcpgate/internal/store"
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
	// The audit record names the claims; their values stay with the session.
	if ev.Outcome != "allow" || ev.UserID != link.UserID || !cmp.Equal(ev.Details["claims"], []any{"organization_id", "roles"}) {
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

// TestCustomLoginForwardedLink (review #5, F1; the reviewer's attack,
// kept as a regression test): an attacker starts a custom login in its
// own browser and sends the (genuine) app link to a victim, who signs in
// at the real example app. The app's redirect reaches the victim's
// browser, which has the one-time callback code but not the attacker's
// binding cookie: the sign-in is refused there with a page saying what
// happened, and used up. The attacker — cookie, state, polling before
// and after — never gets a session, as the victim or at all.
func TestCustomLoginForwardedLink(t *testing.T) {
	exampleApp := &app.App{Users: app.DemoUsers}
	appSrv := httptest.NewServer(exampleApp)
	defer appSrv.Close()
	e := newEnv(t, func(cfg *config.Config) {
		cfg.CustomLoginURL = appSrv.URL + "/login"
		exampleApp.Secret = strings.Repeat("s3cret-", 6)
		cfg.CustomLoginSecret = exampleApp.Secret
	})
	exampleApp.MCPGateURL = e.base

	// 1. The attacker's browser starts a sign-in at mcpgate.
	attacker := browserClient()
	resp, _ := fetch(t, attacker, "GET", e.base+"/login/custom?return_to=/account", nil)
	phishLink := resp.Header.Get("Location") // <app>/login?login_request_id=…&state=…
	lu, err := url.Parse(phishLink)
	if resp.StatusCode != http.StatusSeeOther || err != nil || !strings.HasPrefix(phishLink, appSrv.URL+"/login?") {
		t.Fatalf("start: %d %s", resp.StatusCode, phishLink)
	}
	state := lu.Query().Get("state")
	poll := func() int {
		t.Helper()
		resp, _ := fetch(t, attacker, "GET", e.base+"/login/callback?state="+url.QueryEscape(state), nil)
		return resp.StatusCode
	}
	if code := poll(); code != http.StatusBadRequest {
		t.Fatalf("early poll: %d", code)
	}

	// 2. The victim opens the genuine app link and signs in at the app.
	victim := browserClient()
	if resp, body := fetch(t, victim, "GET", phishLink, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("victim opens the app: %d %s", resp.StatusCode, body)
	}
	resp, body := fetch(t, victim, "POST", appSrv.URL+"/login", url.Values{
		"login_request_id": {lu.Query().Get("login_request_id")}, "state": {state},
		"username": {"carol@acme.example"}, "password": {"carol-password"},
	})
	cb := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(cb, e.base+"/login/callback?") {
		t.Fatalf("victim's app sign-in: %d %s %s", resp.StatusCode, cb, body)
	}
	// The victim's browser follows to mcpgate: refused, and told why.
	resp, body = fetch(t, victim, "GET", cb, nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "started in another browser") ||
		!strings.Contains(body, "someone may have sent you this link") {
		t.Fatalf("victim's callback: %d %s", resp.StatusCode, body)
	}
	ev := e.lastAudit(customauth.TypeRefused)
	if ev.Reason != customauth.ReasonBrowserMismatch || ev.Details["used_up"] != true {
		t.Fatalf("login_request.refused = %+v", ev)
	}

	// 3. The attacker, with its binding cookie: polling, or even the
	// victim's whole callback URL, signs nobody in.
	if code := poll(); code != http.StatusBadRequest {
		t.Fatalf("attacker's poll after the victim's sign-in: %d", code)
	}
	resp, _ = fetch(t, attacker, "GET", cb, nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("attacker with the victim's callback URL: %d", resp.StatusCode)
	}
	if ev := e.lastAudit(customauth.TypeRefused); ev.Reason != customauth.ReasonReplayed {
		t.Fatalf("login_request.refused = %+v, want replayed", ev)
	}
	if resp, body := fetch(t, attacker, "GET", e.base+"/api/sessions", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the attacker's browser has a session: %d %s", resp.StatusCode, body)
	}
	issuer, _ := customauth.Issuer(appSrv.URL + "/login")
	if _, err := e.srv.Core().DB.GetIdentity(context.Background(), issuer, "u-100"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("carol was provisioned by the refused sign-ins: %v", err)
	}
}
