package oauth_test

// Revocation (RFC 7009), introspection (RFC 7662), UserInfo (OIDC Core
// §5.3) and the user's connected apps.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/store"
)

func TestRevoke(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	id := s.publicClient("App")
	other := s.publicClient("Other")

	// RFC 7009 §2.2: unknown and malformed tokens get 200.
	for _, tok := range []string{"mcpgr_nothing", "not-a-token", "a.b.c"} {
		if r := s.post("/revoke", url.Values{"token": {tok}, "client_id": {id}}); r.status != http.StatusOK {
			t.Errorf("revoke %q: %d, want 200", tok, r.status)
		}
	}
	if r := s.post("/revoke", url.Values{"client_id": {id}}); r.status != http.StatusBadRequest || r.str("error") != "invalid_request" {
		t.Errorf("revoke without token: %d %v", r.status, r.body)
	}
	if r := s.post("/revoke", url.Values{"token": {"x"}}); r.status != http.StatusUnauthorized {
		t.Errorf("revoke without client: %d", r.status)
	}

	// Another client's token is left alone, with the same answer as an
	// invalid token (L4: no oracle of which tokens are valid), and the
	// refusal is audited.
	tk := s.issue(id)
	garbage := s.post("/revoke", url.Values{"token": {"mcpgr_garbage"}, "client_id": {other}})
	for _, tok := range []string{tk.str("refresh_token"), tk.str("access_token")} {
		r := s.post("/revoke", url.Values{"token": {tok}, "client_id": {other}})
		if r.status != http.StatusOK || r.status != garbage.status || len(r.body) != len(garbage.body) {
			t.Errorf("revoking another client's token: %d %v; want the answer to a garbage token, %d %v", r.status, r.body, garbage.status, garbage.body)
		}
	}
	if st := s.mcpStatus(tk.str("access_token")); st != http.StatusOK {
		t.Fatalf("token revoked by another client's request: /mcp %d", st)
	}
	if e := s.rec.mustHave(t, audit.TypeOAuthTokenRevoked, audit.ReasonClientMismatch); e.Outcome != store.OutcomeDeny || e.Details["client_id"] != other {
		t.Errorf("refusal audited as %+v", e)
	}
	// Revoking the access token revokes its grant (and refresh token).
	if r := s.post("/revoke", url.Values{"token": {tk.str("access_token")}, "token_type_hint": {"access_token"}, "client_id": {id}}); r.status != http.StatusOK {
		t.Fatalf("revoke access token: %d %v", r.status, r.body)
	}
	if st := s.mcpStatus(tk.str("access_token")); st != http.StatusUnauthorized {
		t.Errorf("revoked access token: /mcp %d", st)
	}
	wantTokenError(t, s.refresh(id, tk.str("refresh_token")), http.StatusBadRequest, "invalid_grant")
	// Revoking again is fine.
	if r := s.post("/revoke", url.Values{"token": {tk.str("refresh_token")}, "client_id": {id}}); r.status != http.StatusOK {
		t.Errorf("second revocation: %d", r.status)
	}
	if n := len(s.rec.of(audit.TypeOAuthTokenRevoked)); n != 3 {
		t.Errorf("%d token.revoked events, want 3 (two refusals, one revocation)", n)
	}
}

func introspect(s *stack, token string, basic ...string) tokenResp {
	return s.post("/introspect", url.Values{"token": {token}}, basic...)
}

func TestIntrospect(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	pub := s.publicClient("App")
	rs, rsSecret := s.confidentialClient("Resource server", "payments:read")
	tk := s.issue(pub)

	// RFC 7662 §2.1: client authentication is required; public clients
	// cannot introspect.
	if r := s.post("/introspect", url.Values{"token": {tk.str("access_token")}}); r.status != http.StatusUnauthorized {
		t.Errorf("anonymous introspection: %d", r.status)
	}
	if r := s.post("/introspect", url.Values{"token": {tk.str("access_token")}, "client_id": {pub}}); r.status != http.StatusUnauthorized {
		t.Errorf("public client introspection: %d", r.status)
	}
	// An operator's confidential client (a resource server) sees any token.
	r := introspect(s, tk.str("access_token"), rs, rsSecret)
	if r.status != http.StatusOK || r.body["active"] != true || r.str("client_id") != pub || r.str("sub") != s.alice.ID ||
		r.str("username") != "alice@example.com" || r.str("iss") != s.base || r.str("token_type") != "Bearer" {
		t.Fatalf("introspect access token: %d %v", r.status, r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Error("introspection response may be cached")
	}
	r = introspect(s, tk.str("refresh_token"), rs, rsSecret)
	if r.body["active"] != true || r.str("token_type") != "refresh_token" || r.str("scope") == "" {
		t.Fatalf("introspect refresh token: %v", r.body)
	}
	// Unknown, malformed, expired and revoked: {"active": false} and nothing else.
	for _, tok := range []string{"nope", "mcpgr_nope", "a.b.c"} {
		if r := introspect(s, tok, rs, rsSecret); r.status != http.StatusOK || len(r.body) != 1 || r.body["active"] != false {
			t.Errorf("introspect %q: %d %v", tok, r.status, r.body)
		}
	}
	// A dynamically registered confidential client sees only its own tokens.
	dyn, dynSecret := registerConfidential(t, s)
	if r := introspect(s, tk.str("access_token"), dyn, dynSecret); r.body["active"] != false || len(r.body) != 1 {
		t.Errorf("another client's token introspected: %v", r.body)
	}
	// A rotated refresh token is inactive.
	n := s.refresh(pub, tk.str("refresh_token"))
	if r := introspect(s, tk.str("refresh_token"), rs, rsSecret); r.body["active"] != false {
		t.Errorf("rotated refresh token active: %v", r.body)
	}
	// Revoked.
	must(t, revokeAll(s, s.alice.ID))
	for _, tok := range []string{n.str("access_token"), n.str("refresh_token")} {
		if r := introspect(s, tok, rs, rsSecret); r.body["active"] != false {
			t.Errorf("revoked token active: %v", r.body)
		}
	}
	// Client credentials token of the resource server itself.
	cc := s.post("/token", url.Values{"grant_type": {"client_credentials"}}, rs, rsSecret)
	if r := introspect(s, cc.str("access_token"), rs, rsSecret); r.body["active"] != true || r.str("sub") != rs || r.str("username") != "" {
		t.Errorf("client credentials token: %v", r.body)
	}
	s.rec.mustHave(t, audit.TypeOAuthIntrospection, "")
}

// registerConfidential registers a confidential client through /register.
func registerConfidential(t *testing.T, s *stack) (string, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.base+"/register", strings.NewReader(
		`{"client_name":"Dyn","redirect_uris":["https://dyn.example.com/cb"],"token_endpoint_auth_method":"client_secret_basic","grant_types":["authorization_code","refresh_token"]}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	var out struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.ClientSecret == "" {
		t.Fatalf("register confidential: %d %v %+v", resp.StatusCode, err, out)
	}
	return out.ClientID, out.ClientSecret
}

func revokeAll(s *stack, userID string) error {
	apps, err := s.as.ListGrants(context.Background(), userID)
	if err != nil {
		return err
	}
	for _, a := range apps {
		if err := s.as.RevokeGrant(context.Background(), userID, a.ID); err != nil {
			return err
		}
	}
	return nil
}

func userinfo(t *testing.T, s *stack, auth string) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.base+"/userinfo", nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, resp.Header, m
}

func TestUserinfo(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	id := s.publicClient("App")
	tk := s.issue(id)
	st, _, body := userinfo(t, s, "Bearer "+tk.str("access_token"))
	if st != http.StatusOK || body["sub"] != s.alice.ID || body["email"] != "alice@example.com" || body["name"] != "Alice Liddell" {
		t.Fatalf("userinfo: %d %v", st, body)
	}
	// Without the email and profile scopes, only sub.
	tk2 := s.issue(id, func(q url.Values) { q.Set("scope", "openid payments:read") })
	if st, _, body := userinfo(t, s, "Bearer "+tk2.str("access_token")); st != http.StatusOK || len(body) != 1 {
		t.Errorf("userinfo with openid only: %d %v", st, body)
	}
	// Without openid: 403 insufficient_scope.
	tk3 := s.issue(id, func(q url.Values) { q.Set("scope", "payments:read") })
	st, hdr, _ := userinfo(t, s, "Bearer "+tk3.str("access_token"))
	if st != http.StatusForbidden || !strings.Contains(hdr.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Errorf("userinfo without openid: %d %q", st, hdr.Get("WWW-Authenticate"))
	}
	for name, a := range map[string]string{"none": "", "garbage": "Bearer x.y.z", "basic": "Basic abc", "id token": "Bearer " + tk.str("id_token")} {
		if st, hdr, _ := userinfo(t, s, a); st != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("userinfo with %s: %d %q", name, st, hdr.Get("WWW-Authenticate"))
		}
	}
	must(t, revokeAll(s, s.alice.ID))
	if st, _, _ := userinfo(t, s, "Bearer "+tk.str("access_token")); st != http.StatusUnauthorized {
		t.Errorf("userinfo after revocation: %d", st)
	}
	s.rec.mustHave(t, audit.TypeOAuthUserinfoRefused, audit.ReasonGrantRevoked)
}

func TestConnectedApps(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	id := s.publicClient("Listed app")
	tk := s.issue(id)
	ctx := context.Background()
	apps, err := s.as.ListGrants(ctx, s.alice.ID)
	must(t, err)
	if len(apps) != 1 {
		t.Fatalf("apps = %+v", apps)
	}
	a := apps[0]
	if a.ClientName != "Listed app" || !a.ClientVerified || a.ClientHost != "app.example.com" && a.ClientHost != "127.0.0.1" ||
		a.Resource != s.mcpURL || a.ResourceName != "Payments demo" || len(a.Scopes) != 4 || a.FirstUsed.IsZero() || a.LastUsed.IsZero() {
		t.Errorf("app view %+v", a)
	}
	// bob cannot revoke alice's app.
	if err := s.as.RevokeGrant(ctx, s.bob.ID, a.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeGrant by another user: %v, want ErrNotFound", err)
	}

	// Through the web page: list, confirmation, cross-origin refusal, revoke.
	b := s.browser()
	b.login("alice@example.com")
	p := b.get(s.base + "/account/apps")
	if p.status != http.StatusOK || !strings.Contains(p.body, "Listed app") || !strings.Contains(p.body, "/account/apps/"+a.ID+"/revoke") {
		t.Fatalf("apps page: %d %s", p.status, clipBody(p.body))
	}
	if p := b.get(s.base + "/account/apps/" + a.ID + "/revoke"); p.status != http.StatusOK || !strings.Contains(p.body, "Disconnect Listed app?") {
		t.Errorf("confirmation page: %d", p.status)
	}
	if x := b.post(s.base+"/account/apps/"+a.ID+"/revoke", nil, "https://evil.example"); x.status != http.StatusForbidden {
		t.Errorf("cross-origin revoke: %d, want 403", x.status)
	}
	if st := s.mcpStatus(tk.str("access_token")); st != http.StatusOK {
		t.Fatalf("token after a refused cross-origin revoke: %d", st)
	}
	p = b.post(s.base+"/account/apps/"+a.ID+"/revoke", nil)
	if p.status != http.StatusOK || p.url.Path != "/account/apps" || !strings.Contains(p.body, "The app was disconnected") {
		t.Errorf("revoke: %d at %s", p.status, p.url)
	}
	if st := s.mcpStatus(tk.str("access_token")); st != http.StatusUnauthorized {
		t.Errorf("access token after disconnecting: %d", st)
	}
	wantTokenError(t, s.refresh(id, tk.str("refresh_token")), http.StatusBadRequest, "invalid_grant")
	s.rec.mustHave(t, audit.TypeOAuthConsentRevoked, "")
	if p := b.get(s.base + "/account/apps/" + a.ID + "/revoke"); p.status != http.StatusNotFound {
		t.Errorf("confirmation of a revoked app: %d", p.status)
	}
	// The next authorization asks again.
	_, ch := pkce()
	if p := b.get(s.authURL(s.codeRequest(id, ch))); p.url.Path != "/oauth/consent" || !strings.Contains(p.body, `value="allow"`) {
		t.Errorf("authorization after revoking the app did not ask for consent (%s)", p.url)
	}
}

func TestRevokeUserGrants(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	id := s.publicClient("App")
	tk := s.issue(id)
	n, err := s.as.RevokeUserGrants(context.Background(), s.alice.ID, "password_changed")
	if err != nil || n != 1 {
		t.Fatalf("RevokeUserGrants = %d, %v", n, err)
	}
	if st := s.mcpStatus(tk.str("access_token")); st != http.StatusUnauthorized {
		t.Errorf("token after RevokeUserGrants: %d", st)
	}
	s.rec.mustHave(t, audit.TypeOAuthGrantRevoked, "password_changed")
	// Consent stays: the next authorization needs no page (at an https
	// redirect: a loopback one is confirmed each time).
	_, ch := pkce()
	b := s.browser()
	b.login("alice@example.com")
	q := s.codeRequest(id, ch)
	q.Set("redirect_uri", "https://app.example.com/cb")
	if p := s.fetch(b, s.authURL(q)); p.status != http.StatusFound {
		t.Errorf("authorization after RevokeUserGrants: %d, want a direct redirect", p.status)
	}
	// A disabled user's tokens stop at once too (authn checks the user).
	tk2 := s.issue(id)
	if _, err := s.users.SetDisabled(context.Background(), s.alice.ID, true); err != nil {
		t.Fatal(err)
	}
	if st := s.mcpStatus(tk2.str("access_token")); st != http.StatusUnauthorized {
		t.Errorf("disabled user's token: %d", st)
	}
	wantTokenError(t, s.refresh(id, tk2.str("refresh_token")), http.StatusBadRequest, "invalid_grant")
	s.rec.mustHave(t, audit.TypeOAuthTokenRefused, audit.ReasonDisabledUser)
}

func TestClean(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	id := s.publicClient("App")
	b := s.browser()
	b.login("alice@example.com")
	_, ch := pkce()
	q := s.codeRequest(id, ch)
	q.Set("prompt", "consent")
	b.get(s.authURL(q)) // leaves a pending request
	s.clock.Advance(20 * 24 * time.Hour)
	n, err := s.as.Clean(context.Background(), 24*time.Hour)
	if err != nil || n < 1 {
		t.Errorf("Clean = %d, %v", n, err)
	}
}
