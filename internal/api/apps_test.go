package api

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/store"
)

// connectApp has u authorize a public client at /mcp (through the real
// authorization endpoint, u's browser session and an approval) and
// redeems the code: it returns the app's access and refresh tokens.
func (s *stack) connectApp(b *browser, u store.User, clientID, redirect, scope string) (access, refresh string) {
	s.t.Helper()
	ctx := context.Background()
	verifier := strings.Repeat("v", 43)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect}, "scope": {scope},
		"resource": {s.mcpURL}, "state": {"st"}, "code_challenge_method": {"S256"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])},
	}
	// The browser is signed in: /authorize keeps the request and sends it
	// to the consent page (not served here); the user allows it.
	noFollow := &http.Client{Jar: b.c.Jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(s.srv.URL + "/authorize?" + q.Encode())
	must(s.t, err)
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	reqID := loc.Query().Get("request")
	if loc.Path != "/oauth/consent" || reqID == "" {
		s.t.Fatalf("authorize: %d %s", resp.StatusCode, loc)
	}
	back, err := s.as.Approve(ctx, reqID, u, store.Session{})
	must(s.t, err)
	cb, _ := url.Parse(back)
	tok := s.tokenRequest(url.Values{
		"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")}, "redirect_uri": {redirect},
		"code_verifier": {verifier}, "client_id": {clientID},
	})
	m := tok.json(s.t)
	access, _ = m["access_token"].(string)
	refresh, _ = m["refresh_token"].(string)
	if tok.status != http.StatusOK || access == "" || refresh == "" {
		s.t.Fatalf("token: %d %s", tok.status, tok.body)
	}
	return access, refresh
}

// tokenRequest posts a form to the token endpoint.
func (s *stack) tokenRequest(form url.Values) response {
	return s.keyClient("").do("POST", "/token", form.Encode(), "Content-Type", "", "Content-Type", "application/x-www-form-urlencoded")
}

func (s *stack) publicClient(name, redirect string) string {
	s.t.Helper()
	cl, _, err := s.clients.CreateStatic(context.Background(), oauth.StaticClient{Name: name, RedirectURIs: []string{redirect}})
	must(s.t, err)
	return cl.ClientID
}

// A user sees the apps they connected, with what each may do, and
// disconnecting one ends its access at once; nobody else can see or touch
// them.
func TestConnectedApps(t *testing.T) {
	s := newStack(t)
	bob := s.browser()
	bob.login("bob@example.com")
	alice := s.browser()
	alice.login("alice@example.com")

	if r := bob.do("GET", "/api/apps", nil); r.status != http.StatusOK || string(r.body) != `{"apps":[]}`+"\n" {
		t.Fatalf("no apps yet: %d %s", r.status, r.body)
	}
	redirect := "http://127.0.0.1:7777/callback"
	desktop := s.publicClient("Desktop agent", redirect)
	access, refresh := s.connectApp(bob, s.bob, desktop, redirect, "payments:read")
	s.connectApp(alice, s.alice, desktop, redirect, "payments:read payments:write")
	if st := rawMCPStatus(t, s, access); st != http.StatusOK {
		t.Fatalf("the app's access token at /mcp: %d", st)
	}

	r := bob.do("GET", "/api/apps", nil)
	if r.status != http.StatusOK || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	apps := r.json(t)["apps"].([]any)
	if len(apps) != 1 {
		t.Fatalf("bob has %d apps, want 1: %s", len(apps), r.body)
	}
	app := apps[0].(map[string]any)
	want := map[string]any{
		"client_id": desktop, "client_name": "Desktop agent", "client_kind": "static", "client_verified": true,
		"client_host": "127.0.0.1:7777", "resource": s.mcpURL, "resource_name": "Payments demo",
	}
	for k, v := range want {
		if app[k] != v {
			t.Errorf("app %s = %v, want %v", k, app[k], v)
		}
	}
	scopes := app["scopes"].([]any)
	if len(scopes) != 1 || scopes[0].(map[string]any)["name"] != "payments:read" || scopes[0].(map[string]any)["description"] == "" {
		t.Errorf("app scopes = %v", scopes)
	}
	id := app["id"].(string)
	if app["first_used_at"] == nil || app["last_used_at"] == nil {
		t.Errorf("first_used_at %v, last_used_at %v: the code exchange is a use", app["first_used_at"], app["last_used_at"])
	}

	// A key with the account scope sees the same list.
	key, _ := s.issue(s.bob, "account")
	if r := s.keyClient(key).do("GET", "/api/apps", nil); r.status != http.StatusOK || len(r.json(t)["apps"].([]any)) != 1 {
		t.Errorf("list with an account key: %d %s", r.status, r.body)
	}

	// Alice cannot disconnect bob's app, nor see it.
	if r := alice.do("DELETE", "/api/apps/"+id, nil); r.status != http.StatusNotFound || r.errorCode(t) != codeNotFound {
		t.Errorf("alice disconnecting bob's app: %d %s", r.status, r.body)
	}
	aliceApps := alice.do("GET", "/api/apps", nil).json(t)["apps"].([]any)
	if len(aliceApps) != 1 || aliceApps[0].(map[string]any)["id"] == id {
		t.Errorf("alice's apps = %v", aliceApps)
	}
	if st := rawMCPStatus(t, s, access); st != http.StatusOK {
		t.Errorf("bob's app after alice's attempt: %d", st)
	}

	// Bob disconnects it: its tokens stop working at once.
	if r := bob.do("DELETE", "/api/apps/"+id, nil); r.status != http.StatusNoContent {
		t.Fatalf("disconnect: %d %s", r.status, r.body)
	}
	if st := rawMCPStatus(t, s, access); st != http.StatusUnauthorized {
		t.Errorf("the disconnected app's access token at /mcp: %d, want 401", st)
	}
	tok := s.tokenRequest(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {desktop}})
	if tok.status != http.StatusBadRequest || tok.errorCode(t) != "invalid_grant" {
		t.Errorf("refresh after disconnect: %d %s", tok.status, tok.body)
	}
	if r := bob.do("GET", "/api/apps", nil); len(r.json(t)["apps"].([]any)) != 0 {
		t.Errorf("bob's apps after disconnect: %s", r.body)
	}
	if r := bob.do("DELETE", "/api/apps/"+id, nil); r.status != http.StatusNotFound {
		t.Errorf("disconnecting twice: %d %s", r.status, r.body)
	}
	// Alice's app is untouched.
	if got := alice.do("GET", "/api/apps", nil).json(t)["apps"].([]any); len(got) != 1 {
		t.Errorf("alice's apps after bob's disconnect: %v", got)
	}
	evs := s.events(audit.TypeOAuthConsentRevoked, s.bob.ID)
	if len(evs) != 1 || evs[0].Details["client_id"] != desktop {
		t.Errorf("consent_revoked events = %+v", evs)
	}

	// Ids of every shape are a clean 404.
	for _, bad := range []string{"x", "ocn_" + strings.Repeat("a", 26), "key_" + strings.Repeat("a", 26), "%00", strings.Repeat("a", 300)} {
		if r := bob.do("DELETE", "/api/apps/"+bad, nil); r.status != http.StatusNotFound || r.errorCode(t) != codeNotFound {
			t.Errorf("DELETE /api/apps/%.20s: %d %s", bad, r.status, r.body)
		}
	}
}

// Without an authorization server (Options.Apps unset) the endpoints are
// not there.
func TestConnectedAppsNotMounted(t *testing.T) {
	s := newStack(t, stackOptions{noApps: true})
	b := s.browser()
	b.login("bob@example.com")
	for _, c := range []struct{ method, path string }{{"GET", "/api/apps"}, {"DELETE", "/api/apps/ocn_" + strings.Repeat("a", 26)}} {
		if r := b.do(c.method, c.path, nil); r.status != http.StatusNotFound || r.errorCode(t) != codeNotFound {
			t.Errorf("%s %s without Apps: %d %s", c.method, c.path, r.status, r.body)
		}
	}
}
