package server_test

// Custom claims of a sign-in, end to end: a user signs in through
// "bring your own login" with the claims organization_id and
// roles=["auditor","admin"], then authorizes an MCP client (the go-sdk's
// OAuth client: dynamic registration, PKCE code flow, refresh). With
// --access-token-claims organization_id,roles the client's access tokens
// carry both claims, tools see the organisation and the auditor role —
// and the "admin" the application claimed is dropped at the sign-in, so
// it is in no token and gives no admin power anywhere.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/config"
)

const customLoginSecret = "custom-login-shared-secret-of-32-bytes!"

// customLoginEnv is a server with custom login at a login URL nothing
// serves: the test plays the operator's application itself.
func customLoginEnv(t *testing.T, tokenClaims ...string) *env {
	return newEnv(t, func(cfg *config.Config) {
		cfg.CustomLoginURL = "http://127.0.0.1:9/login"
		cfg.CustomLoginSecret = customLoginSecret
		cfg.AccessTokenClaims = tokenClaims
	})
}

// signInWithCustomLogin signs ua's browser in through custom login as a
// user the application describes with body: the browser starts the login
// request, the application posts the user (with the shared secret), the
// browser comes back to the redirect_to of mcpgate's answer.
func signInWithCustomLogin(t *testing.T, e *env, ua *userAgent, body map[string]any) {
	t.Helper()
	browser := &http.Client{Jar: ua.c.Jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := browser.Get(e.base + "/login/custom?return_to=/account")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || err != nil || loc.Query().Get("login_request_id") == "" {
		t.Fatalf("GET /login/custom: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	b, _ := json.Marshal(body)
	redirectTo := postLoginUser(t, e.base, loc.Query().Get("login_request_id"), customLoginSecret, string(b))
	if !strings.HasPrefix(redirectTo, e.base+"/login/callback?") {
		t.Fatalf("posting the user: redirect_to %q", redirectTo)
	}
	resp, err = browser.Get(redirectTo)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/account" {
		t.Fatalf("GET /login/callback: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// tokenPayload decodes an access token's claims (what the client holds).
func tokenPayload(t testing.TB, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// authStatus answers GET /auth/status for a bearer token: the principal
// /mcp builds for it.
func authStatus(t *testing.T, e *env, token string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest("GET", e.base+"/auth/status", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&m) != nil {
		t.Fatalf("GET /auth/status: %d", resp.StatusCode)
	}
	return m
}

// connectAfterCustomLogin signs a new user of the operator's application
// in with organization_id and roles claims, and connects the go-sdk OAuth
// client (dynamic registration, PKCE) as that user.
func connectAfterCustomLogin(t *testing.T, e *env, org string) (*userAgent, *oauthClient) {
	t.Helper()
	ua := newUserAgent(t, e, "")
	signInWithCustomLogin(t, e, ua, danaAt(org))
	oc := connectClaimsClient(t, e, ua)
	if logins, consents := ua.counts(); logins != 0 || consents != 1 {
		t.Fatalf("password logins %d, consent pages %d; want 0 (custom login) and 1", logins, consents)
	}
	return ua, oc
}

// danaAt is the user the operator's application posts: Dana, of
// organisation org, an auditor (and a claimed "admin").
func danaAt(org string) map[string]any {
	return map[string]any{
		"sub": "app-user-7", "email": "dana@acme.example", "email_verified": true, "name": "Dana",
		"organization_id": org, "roles": []string{"auditor", "admin"},
	}
}

// connectClaimsClient connects a newly registered go-sdk OAuth client as
// the user signed in at ua.
func connectClaimsClient(t *testing.T, e *env, ua *userAgent) *oauthClient {
	t.Helper()
	redirect := redirectURI(t)
	oc, err := connectOAuth(t, e, ua, auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs: []string{redirect}, ClientName: "Claims e2e", TokenEndpointAuthMethod: "none",
			GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"},
		}},
		RedirectURL: redirect, RequestRefreshToken: true,
	})
	if err != nil {
		t.Fatalf("connect with OAuth: %v", err)
	}
	return oc
}

func TestCustomClaimsInAccessTokens(t *testing.T) {
	e := customLoginEnv(t, "organization_id", "roles")
	org := "org_acme_42"
	ua, oc := connectAfterCustomLogin(t, e, org)

	check := func(when string) {
		t.Helper()
		tok := oc.sources.current(t).token().AccessToken
		// (a) The access token carries the two claims the operator named;
		// "admin" was never kept from the application's roles.
		claims := tokenPayload(t, tok)
		if claims["organization_id"] != org || !cmp.Equal(claims["roles"], []any{"auditor"}) {
			t.Errorf("%s: access token claims organization_id=%v roles=%v", when, claims["organization_id"], claims["roles"])
		}
		// (b) A tool scopes its answer by the organisation claim.
		res, err := oc.call("getAccountBalance", map[string]any{})
		if err != nil || res.IsError {
			t.Fatalf("%s: getAccountBalance: %v %+v", when, err, res)
		}
		if out := res.StructuredContent.(map[string]any); out["organization"] != org || out["email"] != "dana@acme.example" {
			t.Errorf("%s: getAccountBalance = %v, want dana's with organization %s", when, out, org)
		}
		// (c) The auditor-only tool is allowed because of the claim role.
		res, err = oc.call("getAnyAccountBalance", map[string]any{"email": "alice@example.com"})
		if err != nil || res.IsError {
			t.Fatalf("%s: getAnyAccountBalance refused for the auditor claim role: %v %+v", when, err, res)
		}
		if out := res.StructuredContent.(map[string]any); out["balance"] != 180.0 {
			t.Errorf("%s: alice's balance = %v", when, out)
		}
		// (d) The claimed "admin" is no mcpgate role: the principal has
		// auditor only.
		st := authStatus(t, e, tok)
		if roles := st["user"].(map[string]any)["roles"]; !cmp.Equal(roles, []any{"auditor"}) {
			t.Errorf("%s: principal roles = %v, want [auditor] (never admin from a claim)", when, roles)
		}
	}
	check("after the code exchange")
	ev := e.lastAudit(audit.TypeOAuthTokenIssued)
	if !cmp.Equal(ev.Details["claims"], []any{"organization_id", "roles"}) {
		t.Errorf("oauth.token_issued claims = %v", ev.Details["claims"])
	}

	// (d) Nor does it give admin powers with the user's browser session:
	// the audit log of another user stays closed, and so do admin pages.
	resp, body, err := ua.do(context.Background(), "GET", e.base+"/api/audit?user="+e.ids["alice@example.com"], nil)
	if err != nil || resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "only admins") {
		t.Errorf("another user's audit events with the session: %d %s (%v), want 403", resp.StatusCode, body, err)
	}
	if resp, _, _ := ua.do(context.Background(), "GET", e.base+"/admin/users", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("admin page with the session: %d, want 403", resp.StatusCode)
	}

	// (e) After a refresh the new access token still carries the claims.
	first := oc.sources.current(t).token().AccessToken
	oc.sources.current(t).forceRefresh()
	check("after a refresh")
	if oc.sources.current(t).refreshed != 1 || oc.sources.current(t).token().AccessToken == first {
		t.Fatal("the client did not refresh")
	}
	if ev := e.lastAudit(audit.TypeOAuthTokenRefreshed); !cmp.Equal(ev.Details["claims"], []any{"organization_id", "roles"}) {
		t.Errorf("oauth.token_refreshed claims = %v", ev.Details["claims"])
	}
}

// TestCustomClaimsNotInAccessTokensByDefault: without
// --access-token-claims the same sign-in's tokens carry no custom claim:
// no organisation for the tool, and no auditor role.
func TestCustomClaimsNotInAccessTokensByDefault(t *testing.T) {
	e := customLoginEnv(t)
	_, oc := connectAfterCustomLogin(t, e, "org_acme_42")
	claims := tokenPayload(t, oc.sources.current(t).token().AccessToken)
	for _, name := range []string{"organization_id", "roles"} {
		if _, ok := claims[name]; ok {
			t.Errorf("the access token carries %s: %v", name, claims)
		}
	}
	res, err := oc.call("getAccountBalance", map[string]any{})
	if err != nil || res.IsError {
		t.Fatalf("getAccountBalance: %v %+v", err, res)
	}
	if out := res.StructuredContent.(map[string]any); out["organization"] != nil {
		t.Errorf("getAccountBalance = %v, want no organization", out)
	}
	_, err = oc.call("getAnyAccountBalance", map[string]any{"email": "alice@example.com"})
	if err == nil || !strings.Contains(err.Error(), "missing_roles") {
		t.Errorf("getAnyAccountBalance without the claim role: err = %v, want missing_roles", err)
	}
}

// TestClaimRolesOnTheSessionKey: the browser session's own MCP key (what
// a web app's agent uses, through the JSON facade here) carries the
// session's roles claim too — auditor counts, admin does not.
func TestClaimRolesOnTheSessionKey(t *testing.T) {
	e := customLoginEnv(t)
	ua := newUserAgent(t, e, "")
	signInWithCustomLogin(t, e, ua, map[string]any{"sub": "app-user-8", "email": "eve@acme.example", "roles": []string{"auditor", "admin"}})
	call := func(name, args string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", e.base+"/api/mcp/tools/call", strings.NewReader(fmt.Sprintf(`{"name":%q,"arguments":%s}`, name, args)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", e.base)
		resp, err := ua.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := call("getAnyAccountBalance", `{"email":"alice@example.com"}`); status != http.StatusOK || !strings.Contains(body, `"balance":180`) {
		t.Errorf("the auditor tool through the session: %d %s", status, body)
	}
	resp, body, _ := ua.do(context.Background(), "GET", e.base+"/api/audit?user="+e.ids["alice@example.com"], nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("another user's audit events with the session: %d %s, want 403", resp.StatusCode, body)
	}
}

// TestCustomClaimsEndWithTheSignIn: the claims of a sign-in reach an OAuth
// client's tokens only while that sign-in lasts. Dana signs in through
// custom login as an auditor of org_acme_42 and connects an MCP client;
// then her browser session ends — she signs out, she signs it out from
// another browser, or it expires. The client's next refresh still works
// (the authorization lives on), but the new token carries no claims:
// getAccountBalance shows no organisation, the auditor-only tool refuses
// her, and the audit log says once that the claims were dropped. Signing
// in again and reconnecting the client brings them back.
func TestCustomClaimsEndWithTheSignIn(t *testing.T) {
	const org = "org_acme_42"
	ctx := context.Background()
	for _, c := range []struct {
		name string
		end  func(t *testing.T, e *env, ua *userAgent)
	}{
		{"signed out", func(t *testing.T, e *env, ua *userAgent) {
			resp, _, err := ua.do(ctx, "POST", e.base+"/logout", url.Values{})
			if err != nil || resp.Request.URL.Path != "/login" {
				t.Fatalf("sign out: %v %v", resp.Request.URL, err)
			}
		}},
		{"signed out from another browser", func(t *testing.T, e *env, ua *userAgent) {
			other := newUserAgent(t, e, "")
			signInWithCustomLogin(t, e, other, danaAt(org))
			resp, body, err := other.do(ctx, "GET", e.base+"/api/sessions", nil)
			var list struct {
				Sessions []struct {
					ID      string `json:"id"`
					Current bool   `json:"current"`
				} `json:"sessions"`
			}
			if err != nil || resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &list) != nil || len(list.Sessions) != 2 {
				t.Fatalf("GET /api/sessions: %d %s (%v)", resp.StatusCode, body, err)
			}
			for _, s := range list.Sessions {
				if s.Current {
					continue
				}
				req, _ := http.NewRequest("DELETE", e.base+"/api/sessions/"+s.ID, nil)
				resp, err := other.c.Do(req)
				if err != nil || resp.StatusCode != http.StatusNoContent {
					t.Fatalf("DELETE /api/sessions/%s: %v %v", s.ID, resp.Status, err)
				}
				resp.Body.Close()
			}
		}},
		{"expired", func(t *testing.T, e *env, ua *userAgent) {
			// What the session cleaner does once the lifetime has passed.
			core := e.srv.Core()
			ended, err := core.DB.ExpireSessions(ctx, time.Now().Add(core.Sessions.Lifetime()+time.Minute), core.Sessions.IdleTimeout(), 100)
			if err != nil || len(ended) != 1 {
				t.Fatalf("expiring the session: %d ended, %v", len(ended), err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := customLoginEnv(t, "organization_id", "roles")
			ua, oc := connectAfterCustomLogin(t, e, org)
			if claims := tokenPayload(t, oc.sources.current(t).token().AccessToken); claims["organization_id"] != org {
				t.Fatalf("signed in: token claims %v", claims)
			}
			if res, err := oc.call("getAnyAccountBalance", map[string]any{"email": "alice@example.com"}); err != nil || res.IsError {
				t.Fatalf("signed in: the auditor tool refused: %v %+v", err, res)
			}

			c.end(t, e, ua)
			oc.sources.current(t).forceRefresh()
			res, err := oc.call("getAccountBalance", map[string]any{})
			if err != nil || res.IsError {
				t.Fatalf("after the sign-in ended: getAccountBalance: %v %+v (the authorization must live on)", err, res)
			}
			if oc.sources.current(t).refreshed != 1 {
				t.Fatal("the client did not refresh")
			}
			if out := res.StructuredContent.(map[string]any); out["organization"] != nil || out["email"] != "dana@acme.example" {
				t.Errorf("after the sign-in ended: getAccountBalance = %v, want Dana's without an organization", out)
			}
			claims := tokenPayload(t, oc.sources.current(t).token().AccessToken)
			for _, name := range []string{"organization_id", "roles"} {
				if _, ok := claims[name]; ok {
					t.Errorf("after the sign-in ended: the refreshed token carries %s: %v", name, claims)
				}
			}
			if _, err := oc.call("getAnyAccountBalance", map[string]any{"email": "alice@example.com"}); err == nil || !strings.Contains(err.Error(), "missing_roles") {
				t.Errorf("after the sign-in ended: getAnyAccountBalance err = %v, want missing_roles", err)
			}
			if ev := e.lastAudit(audit.TypeOAuthTokenRefreshed); ev.Details["claims_dropped"] != "session_ended" || ev.Details["claims"] != nil {
				t.Errorf("oauth.token_refreshed details = %v, want claims_dropped session_ended and no claims", ev.Details)
			}

			// A fresh sign-in and a new authorization bring them back.
			signInWithCustomLogin(t, e, ua, danaAt(org))
			again := connectClaimsClient(t, e, ua)
			if claims := tokenPayload(t, again.sources.current(t).token().AccessToken); claims["organization_id"] != org || !hasRole(claims, "auditor") {
				t.Errorf("after signing in again: token claims %v", claims)
			}
			res, err = again.call("getAccountBalance", map[string]any{})
			if err != nil || res.IsError || res.StructuredContent.(map[string]any)["organization"] != org {
				t.Errorf("after signing in again: getAccountBalance = %+v %v", res, err)
			}
			if res, err := again.call("getAnyAccountBalance", map[string]any{"email": "alice@example.com"}); err != nil || res.IsError {
				t.Errorf("after signing in again: the auditor tool refused: %v %+v", err, res)
			}
		})
	}
}

// hasRole reports whether a token's roles claim lists role.
func hasRole(claims map[string]any, role string) bool {
	list, _ := claims["roles"].([]any)
	for _, r := range list {
		if r == role {
			return true
		}
	}
	return false
}

// postLoginUser is the operator's application telling mcpgate at base who
// signed in for login request id (body: the user document), with the
// shared secret; it returns the redirect_to of the 200 answer.
func postLoginUser(t *testing.T, base, id, secret, body string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/api/login-requests/"+id+"/user", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer struct {
		RedirectTo string `json:"redirect_to"`
	}
	err = json.NewDecoder(resp.Body).Decode(&answer)
	if resp.StatusCode != http.StatusOK || err != nil || answer.RedirectTo == "" {
		t.Fatalf("posting the user: %d %+v %v", resp.StatusCode, answer, err)
	}
	return answer.RedirectTo
}
