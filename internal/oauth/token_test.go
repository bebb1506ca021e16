package oauth_test

// Attacks on the token endpoint (RFC 9700 §4.5 code injection/replay,
// §4.8 PKCE, §4.14 refresh token protection; RFC 6749 §4.1.2, §5.2).

import (
	"context"
	"crypto/sha256"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/store"
)

func wantTokenError(t *testing.T, r tokenResp, status int, code string) {
	t.Helper()
	if r.status != status || r.str("error") != code || r.str("error_description") == "" {
		t.Fatalf("token response %d %v; want %d %s with a description", r.status, r.body, status, code)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("error response Cache-Control %q, want no-store", r.header.Get("Cache-Control"))
	}
}

func TestTokenCodeExchange(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	id := s.publicClient("App")
	b := s.browser()
	code, v := s.codeFor(b, id)
	r := s.exchange(id, code, v)
	if r.status != http.StatusOK {
		t.Fatalf("exchange: %d %v", r.status, r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" || r.str("token_type") != "Bearer" || r.str("refresh_token") == "" || r.str("id_token") == "" {
		t.Errorf("token response %v (Cache-Control %q)", r.body, r.header.Get("Cache-Control"))
	}
	if exp, _ := r.body["expires_in"].(float64); exp < 3500 || exp > 3600 {
		t.Errorf("expires_in %v, want about 3600", r.body["expires_in"])
	}
	if r.str("scope") != "payments:read openid email profile" {
		t.Errorf("scope %q", r.str("scope"))
	}
	if st := s.mcpStatus(r.str("access_token")); st != http.StatusOK {
		t.Errorf("access token: /mcp %d", st)
	}
	s.rec.mustHave(t, audit.TypeOAuthCodeRedeemed, "")
}

// TestTokenCodeReplay: RFC 6749 §4.1.2 — a second use fails and revokes
// everything issued from the code.
func TestTokenCodeReplay(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	id := s.publicClient("App")
	code, v := s.codeFor(s.browser(), id)
	first := s.exchange(id, code, v)
	if first.status != http.StatusOK {
		t.Fatalf("first exchange: %d %v", first.status, first.body)
	}
	wantTokenError(t, s.exchange(id, code, v), http.StatusBadRequest, "invalid_grant")
	s.rec.mustHave(t, audit.TypeOAuthCodeReplayed, audit.ReasonCodeReplayed)
	if st := s.mcpStatus(first.str("access_token")); st != http.StatusUnauthorized {
		t.Errorf("access token issued from a replayed code: /mcp %d, want 401", st)
	}
	s.rec.mustHave(t, audit.TypeAuthRejected, audit.ReasonGrantRevoked)
	wantTokenError(t, s.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.str("refresh_token")}, "client_id": {id}}),
		http.StatusBadRequest, "invalid_grant")
	s.rec.mustHave(t, audit.TypeOAuthTokenRefused, audit.ReasonGrantRevoked)
}

func TestTokenCodeChecks(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	id := s.publicClient("App")
	other := s.publicClient("Other app")
	b := s.browser()
	tests := []struct {
		name   string
		form   func(code, v string) url.Values
		code   string
		reason string
	}{
		{"wrong verifier", func(c, v string) url.Values { return tokenForm(s, id, c, strings.Repeat("A", 43)) }, "invalid_grant", audit.ReasonPKCEFailed},
		{"no verifier", func(c, v string) url.Values { f := tokenForm(s, id, c, v); f.Del("code_verifier"); return f }, "invalid_grant", audit.ReasonPKCEFailed},
		{"challenge as verifier", func(c, v string) url.Values { return tokenForm(s, id, c, s256(v)) }, "invalid_grant", audit.ReasonPKCEFailed},
		{"other client", func(c, v string) url.Values { return tokenForm(s, other, c, v) }, "invalid_grant", audit.ReasonClientMismatch},
		{"other redirect_uri", func(c, v string) url.Values {
			f := tokenForm(s, id, c, v)
			f.Set("redirect_uri", "http://127.0.0.1:9999/callback")
			return f
		}, "invalid_grant", audit.ReasonRedirectMismatch},
		{"no redirect_uri", func(c, v string) url.Values { f := tokenForm(s, id, c, v); f.Del("redirect_uri"); return f }, "invalid_grant", audit.ReasonRedirectMismatch},
		{"other resource", func(c, v string) url.Values {
			f := tokenForm(s, id, c, v)
			f.Set("resource", "https://evil.example/mcp")
			return f
		}, "invalid_target", audit.ReasonInvalidTarget},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, v := s.codeFor(b, id)
			wantTokenError(t, s.post("/token", tc.form(code, v)), http.StatusBadRequest, tc.code)
			s.rec.mustHave(t, audit.TypeOAuthTokenRefused, tc.reason)
			// The code is burnt: the genuine request fails too now.
			wantTokenError(t, s.exchange(id, code, v), http.StatusBadRequest, "invalid_grant")
		})
	}
	t.Run("expired code", func(t *testing.T) {
		code, v := s.codeFor(b, id)
		s.clock.Advance(11 * time.Minute)
		defer s.clock.Advance(-11 * time.Minute)
		wantTokenError(t, s.exchange(id, code, v), http.StatusBadRequest, "invalid_grant")
		s.rec.mustHave(t, audit.TypeOAuthTokenRefused, audit.ReasonCodeExpired)
	})
	t.Run("unknown code", func(t *testing.T) {
		_, v := pkce()
		wantTokenError(t, s.exchange(id, "made-up-code", v), http.StatusBadRequest, "invalid_grant")
		s.rec.mustHave(t, audit.TypeOAuthTokenRefused, audit.ReasonUnknownCode)
	})
}

func tokenForm(s *stack, clientID, code, verifier string) url.Values {
	return url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
		"redirect_uri": {"http://127.0.0.1:4711/callback"}, "client_id": {clientID}, "resource": {s.mcpURL},
	}
}

func TestTokenEndpointRequests(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	id := s.publicClient("App")
	conf, secret := s.confidentialClient("Service")
	wantTokenError(t, s.post("/token", url.Values{"client_id": {id}}), http.StatusBadRequest, "invalid_request")
	wantTokenError(t, s.post("/token", url.Values{"client_id": {id}, "grant_type": {"password"}}), http.StatusBadRequest, "unsupported_grant_type")
	wantTokenError(t, s.post("/token", url.Values{"client_id": {id}, "grant_type": {"implicit"}}), http.StatusBadRequest, "unsupported_grant_type")
	wantTokenError(t, s.post("/token", url.Values{"client_id": {id}, "grant_type": {"authorization_code", "refresh_token"}}), http.StatusBadRequest, "invalid_request")
	// Client authentication (Clients.AuthenticateClient).
	r := s.post("/token", url.Values{"grant_type": {"client_credentials"}}, conf, "wrong-secret")
	wantTokenError(t, r, http.StatusUnauthorized, "invalid_client")
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("invalid_client without a Basic challenge")
	}
	wantTokenError(t, s.post("/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {conf}}), http.StatusUnauthorized, "invalid_client")
	// GET is refused.
	resp, err := http.Get(s.base + "/token?grant_type=client_credentials&client_id=" + conf + "&client_secret=" + secret)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /token: %d, want 405", resp.StatusCode)
	}
	// CORS preflight for browser-based clients.
	req, _ := http.NewRequest(http.MethodOptions, s.base+"/token", nil)
	req.Header.Set("Origin", "http://localhost:6274")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err = http.DefaultClient.Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestTokenClientCredentials(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	conf, secret := s.confidentialClient("Service", "payments:read")
	r := s.post("/token", url.Values{"grant_type": {"client_credentials"}, "resource": {s.mcpURL}}, conf, secret)
	if r.status != http.StatusOK || r.str("refresh_token") != "" || r.str("scope") != "payments:read" {
		t.Fatalf("client_credentials: %d %v", r.status, r.body)
	}
	if st := s.mcpStatus(r.str("access_token")); st != http.StatusOK {
		t.Errorf("client credentials token: /mcp %d", st)
	}
	// Post form authentication works too.
	r = s.post("/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {conf}, "client_secret": {secret}})
	if r.status != http.StatusOK {
		t.Errorf("client_secret_post: %d %v", r.status, r.body)
	}
	// Scopes are limited to the client's.
	wantTokenError(t, s.post("/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"payments:write"}}, conf, secret),
		http.StatusBadRequest, "invalid_scope")
	wantTokenError(t, s.post("/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"openid"}}, conf, secret),
		http.StatusBadRequest, "invalid_scope")
	wantTokenError(t, s.post("/token", url.Values{"grant_type": {"client_credentials"}, "resource": {"https://evil.example/mcp"}}, conf, secret),
		http.StatusBadRequest, "invalid_target")
	// A public client cannot.
	pub := s.publicClient("Public")
	wantTokenError(t, s.post("/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {pub}}), http.StatusBadRequest, "unauthorized_client")
	s.rec.mustHave(t, audit.TypeOAuthTokenRefused, audit.ReasonUnauthorizedClient)
}

// H1: a client_credentials client without a registered scope list gets
// no token at all, never every scope of the resource.
func TestTokenClientCredentialsNeedsRegisteredScopes(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	conf, secret := s.confidentialClient("Service without scopes")
	for _, form := range []url.Values{
		{"grant_type": {"client_credentials"}},
		{"grant_type": {"client_credentials"}, "scope": {"payments:read"}},
	} {
		r := s.post("/token", form, conf, secret)
		wantTokenError(t, r, http.StatusBadRequest, "invalid_scope")
		if d := r.str("error_description"); !strings.Contains(d, "--scopes") {
			t.Errorf("error_description %q does not say how to register scopes", d)
		}
		if r.str("access_token") != "" {
			t.Fatalf("a token was issued: %v", r.body)
		}
	}
	s.rec.mustHave(t, audit.TypeOAuthTokenRefused, audit.ReasonInvalidScope)
}

// H1: a confidential client that registered itself (before dynamic
// registration refused client_credentials) never gets a user-less token.
func TestTokenClientCredentialsRefusedForRegisteredClients(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	cl := store.OAuthClient{
		ID: store.NewID("ocl"), ClientID: store.NewID("client"), Kind: store.ClientKindDCR, Name: "Old registration",
		GrantTypes: []string{oauth.GrantClientCredentials}, TokenEndpointAuthMethod: oauth.AuthMethodClientSecretBasic,
		ApplicationType: oauth.AppTypeWeb, Scopes: []string{"payments:read"}, CreatedAt: s.clock.Now(),
	}
	secret := "mcpgcs_" + strings.Repeat("x", 43)
	sum := sha256.Sum256([]byte(secret))
	cl.SecretHash = sum[:]
	must(t, s.db.CreateOAuthClient(context.Background(), cl))
	r := s.post("/token", url.Values{"grant_type": {"client_credentials"}}, cl.ClientID, secret)
	wantTokenError(t, r, http.StatusBadRequest, "unauthorized_client")
}

// issue runs a code flow for a public client and returns the tokens.
func (s *stack) issue(clientID string, mutate ...func(url.Values)) tokenResp {
	s.t.Helper()
	code, v := s.codeFor(s.browser(), clientID, mutate...)
	r := s.exchange(clientID, code, v)
	if r.status != http.StatusOK {
		s.t.Fatalf("exchange: %d %v", r.status, r.body)
	}
	return r
}

func (s *stack) refresh(clientID, rt string, extra ...string) tokenResp {
	s.t.Helper()
	f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {clientID}}
	for i := 0; i+1 < len(extra); i += 2 {
		f.Set(extra[i], extra[i+1])
	}
	return s.post("/token", f)
}

// TestRefreshReplayRevokesFamily: RFC 9700 §4.14.2.
func TestRefreshReplayRevokesFamily(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	id := s.publicClient("App")
	t0 := s.issue(id)
	t1 := s.refresh(id, t0.str("refresh_token"))
	if t1.status != http.StatusOK || t1.str("refresh_token") == t0.str("refresh_token") {
		t.Fatalf("refresh: %d %v", t1.status, t1.body)
	}
	s.clock.Advance(time.Minute) // past the 30 s grace window
	wantTokenError(t, s.refresh(id, t0.str("refresh_token")), http.StatusBadRequest, "invalid_grant")
	s.rec.mustHave(t, audit.TypeOAuthRefreshReplayed, audit.ReasonRefreshReplayed)
	// The whole family is dead: the newest refresh token and every access token.
	wantTokenError(t, s.refresh(id, t1.str("refresh_token")), http.StatusBadRequest, "invalid_grant")
	for _, at := range []string{t0.str("access_token"), t1.str("access_token")} {
		if st := s.mcpStatus(at); st != http.StatusUnauthorized {
			t.Errorf("access token of a replayed family: /mcp %d, want 401", st)
		}
	}
}

// TestRefreshGraceWindow: a retry of the same refresh within the window
// gets a valid pair, and the family lives on.
func TestRefreshGraceWindow(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	id := s.publicClient("App")
	t0 := s.issue(id)
	a := s.refresh(id, t0.str("refresh_token"))
	s.clock.Advance(10 * time.Second)
	b := s.refresh(id, t0.str("refresh_token")) // the client lost the first answer and retries: it gets the same successor
	if a.status != http.StatusOK || b.status != http.StatusOK || a.str("refresh_token") != b.str("refresh_token") {
		t.Fatalf("refresh %d, retry %d", a.status, b.status)
	}
	for _, r := range []tokenResp{a, b} {
		if st := s.mcpStatus(r.str("access_token")); st != http.StatusOK {
			t.Errorf("access token after a grace retry: /mcp %d", st)
		}
		if next := s.refresh(id, r.str("refresh_token")); next.status != http.StatusOK {
			t.Errorf("refreshing a grace-window successor: %d %v", next.status, next.body)
		}
	}
	if e := s.rec.of(audit.TypeOAuthRefreshReplayed); len(e) != 0 {
		t.Errorf("grace retry taken for a replay: %v", e)
	}
	// Without a grace window the retry is a replay.
	s2 := newStack(t, storeSQLite(t), stackOptions{refreshGrace: -1})
	id2 := s2.publicClient("App")
	u0 := s2.issue(id2)
	if r := s2.refresh(id2, u0.str("refresh_token")); r.status != http.StatusOK {
		t.Fatal(r.body)
	}
	wantTokenError(t, s2.refresh(id2, u0.str("refresh_token")), http.StatusBadRequest, "invalid_grant")
	s2.rec.mustHave(t, audit.TypeOAuthRefreshReplayed, audit.ReasonRefreshReplayed)
}

func TestRefreshChecks(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	id := s.publicClient("App")
	other := s.publicClient("Other")
	t0 := s.issue(id)
	rt := t0.str("refresh_token")
	// Another client cannot use (or burn) it.
	wantTokenError(t, s.refresh(other, rt), http.StatusBadRequest, "invalid_grant")
	s.rec.mustHave(t, audit.TypeOAuthTokenRefused, audit.ReasonClientMismatch)
	// Scope can be narrowed, not widened.
	wantTokenError(t, s.refresh(id, rt, "scope", "payments:write"), http.StatusBadRequest, "invalid_scope")
	wantTokenError(t, s.refresh(id, rt, "resource", "https://evil.example/mcp"), http.StatusBadRequest, "invalid_target")
	n := s.refresh(id, rt, "scope", "payments:read")
	if n.status != http.StatusOK || n.str("scope") != "payments:read" || n.str("id_token") != "" {
		t.Fatalf("narrowed refresh: %d %v", n.status, n.body)
	}
	// The grant keeps its scopes: the next refresh may ask for all again.
	if w := s.refresh(id, n.str("refresh_token")); w.status != http.StatusOK || !strings.Contains(w.str("scope"), "openid") || w.str("id_token") == "" {
		t.Errorf("refresh after narrowing: %d %v", w.status, w.body)
	}
	wantTokenError(t, s.refresh(id, "mcpgr_unknown"), http.StatusBadRequest, "invalid_grant")
	s.rec.mustHave(t, audit.TypeOAuthTokenRefused, audit.ReasonUnknownRefreshToken)

	// Idle expiry (7 days).
	t1 := s.issue(id)
	s.clock.Advance(8 * 24 * time.Hour)
	wantTokenError(t, s.refresh(id, t1.str("refresh_token")), http.StatusBadRequest, "invalid_grant")
	s.rec.mustHave(t, audit.TypeOAuthTokenRefused, audit.ReasonRefreshExpired)
}

func TestRefreshAbsoluteLifetime(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	id := s.publicClient("App")
	rt := s.issue(id).str("refresh_token")
	// Refreshing every 6 days keeps it alive… until 90 days.
	for day := 6; day < 90; day += 6 {
		s.clock.Advance(6 * 24 * time.Hour)
		r := s.refresh(id, rt)
		if r.status != http.StatusOK {
			t.Fatalf("refresh on day %d: %d %v", day, r.status, r.body)
		}
		rt = r.str("refresh_token")
	}
	s.clock.Advance(7 * 24 * time.Hour)
	wantTokenError(t, s.refresh(id, rt), http.StatusBadRequest, "invalid_grant")
	if len(s.rec.of(audit.TypeOAuthTokenRefused, audit.ReasonGrantExpired))+len(s.rec.of(audit.TypeOAuthTokenRefused, audit.ReasonRefreshExpired)) == 0 {
		t.Error("refresh past 90 days not refused as expired")
	}
}
