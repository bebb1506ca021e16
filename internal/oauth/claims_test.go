package oauth_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
)

// signInWithClaims starts a browser session for u carrying custom claims,
// as bring-your-own-login (or an upstream roles mapping) does, and puts
// its cookie into the browser.
func (b *browser) signInWithClaims(u store.User, claims map[string]any) {
	b.t.Helper()
	w := httptest.NewRecorder()
	if _, err := b.s.sessions.StartWithClaims(context.Background(), w, httptest.NewRequest(http.MethodGet, b.s.base+"/", nil), u, claims); err != nil {
		b.t.Fatal(err)
	}
	base, _ := url.Parse(b.s.base)
	b.c.Jar.SetCookies(base, w.Result().Cookies())
}

// jwtPayload decodes the claims of a JWT (no verification: the test only
// reads what the client received).
func jwtPayload(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	must(t, err)
	var m map[string]any
	must(t, json.Unmarshal(raw, &m))
	return m
}

// customClaims are the claims of a token that mcpgate did not set itself.
func customClaims(m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		switch k {
		case "iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "gid":
		default:
			out[k] = v
		}
	}
	return out
}

// TestAccessTokenClaims: the custom claims of the user's sign-in that the
// operator names reach the grant when the user approves — on the consent
// page, and at /authorize when consent given before covers the request —
// and every access token of the grant (code exchange and refresh) carries
// them; a later sign-in with other claims yields a grant with those; the
// audit log names the claims, never their values.
func TestAccessTokenClaims(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB) {
		s := newStack(t, db, stackOptions{tokenClaims: []string{"organization_id", "roles"}})
		clientID, secret := s.confidentialClient("Claims app")
		b := s.browser()
		b.signInWithClaims(s.alice, map[string]any{"organization_id": "org_acme", "roles": []string{"auditor", "admin"}, "department": "eng"})

		exchange := func(code, verifier string) tokenResp {
			t.Helper()
			r := s.post("/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
				"redirect_uri": {"http://127.0.0.1:4711/callback"}}, clientID, secret)
			if r.status != http.StatusOK {
				t.Fatalf("exchange: %d %v", r.status, r.body)
			}
			return r
		}
		want := map[string]any{"organization_id": "org_acme", "roles": []any{"auditor", "admin"}}

		// 1. The consent page (first authorization of this client).
		code, verifier := s.codeFor(b, clientID)
		if ev := s.rec.mustHave(t, audit.TypeOAuthConsentGranted, ""); ev.UserID != s.alice.ID {
			t.Fatalf("no consent decision: %+v", ev)
		}
		if ev := s.rec.mustHave(t, audit.TypeOAuthCodeIssued, ""); !cmp.Equal(ev.Details["claims"], []string{"organization_id", "roles"}) {
			t.Errorf("code_issued claims = %v", ev.Details["claims"])
		}
		first := exchange(code, verifier)
		// "department" is the session's too, but not named: it stays on the server.
		if d := cmp.Diff(want, customClaims(jwtPayload(t, first.str("access_token")))); d != "" {
			t.Errorf("access token custom claims (-want +got):\n%s", d)
		}
		if ev := s.rec.mustHave(t, audit.TypeOAuthTokenIssued, ""); !cmp.Equal(ev.Details["claims"], []string{"organization_id", "roles"}) {
			t.Errorf("token_issued claims = %v", ev.Details["claims"])
		}
		for _, ev := range s.rec.of(audit.TypeOAuthTokenIssued) {
			if b, _ := json.Marshal(ev.Details); strings.Contains(string(b), "org_acme") {
				t.Errorf("a claim value reached the audit log: %s", b)
			}
		}

		// 2. Refresh: the same claims, from the grant.
		refreshed := s.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.str("refresh_token")}}, clientID, secret)
		if refreshed.status != http.StatusOK {
			t.Fatalf("refresh: %d %v", refreshed.status, refreshed.body)
		}
		if d := cmp.Diff(want, customClaims(jwtPayload(t, refreshed.str("access_token")))); d != "" {
			t.Errorf("refreshed access token custom claims (-want +got):\n%s", d)
		}
		if ev := s.rec.mustHave(t, audit.TypeOAuthTokenRefreshed, ""); !cmp.Equal(ev.Details["claims"], []string{"organization_id", "roles"}) {
			t.Errorf("token_refreshed claims = %v", ev.Details["claims"])
		}

		// 3. A new sign-in with other claims, and a new authorization of
		// the same client: consent given before covers it, so /authorize
		// approves at once (no page) — with the new session's claims.
		b.signInWithClaims(s.alice, map[string]any{"organization_id": "org_beta"})
		consents := len(s.rec.of(audit.TypeOAuthConsentGranted))
		code, verifier = s.codeFor(b, clientID)
		if n := len(s.rec.of(audit.TypeOAuthConsentGranted)); n != consents {
			t.Fatalf("the second authorization showed the consent page (%d decisions, want %d)", n, consents)
		}
		if ev := s.rec.mustHave(t, audit.TypeOAuthCodeIssued, ""); ev.Details["consent_remembered"] != true || !cmp.Equal(ev.Details["claims"], []string{"organization_id"}) {
			t.Errorf("auto-approved code_issued = %v", ev.Details)
		}
		second := exchange(code, verifier)
		if d := cmp.Diff(map[string]any{"organization_id": "org_beta"}, customClaims(jwtPayload(t, second.str("access_token")))); d != "" {
			t.Errorf("second grant's token custom claims (-want +got):\n%s", d)
		}
		// The first grant keeps the claims it was approved with.
		again := s.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshed.str("refresh_token")}}, clientID, secret)
		if got := customClaims(jwtPayload(t, again.str("access_token"))); got["organization_id"] != "org_acme" {
			t.Errorf("first grant after a new sign-in: %v", got)
		}
	})
}

// TestAccessTokenClaimsOff: without the setting, a session's claims stay
// on the server: tokens carry none.
func TestAccessTokenClaimsOff(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	clientID, secret := s.confidentialClient("No claims app")
	b := s.browser()
	b.signInWithClaims(s.alice, map[string]any{"organization_id": "org_acme", "roles": []string{"auditor"}})
	code, verifier := s.codeFor(b, clientID)
	r := s.post("/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
		"redirect_uri": {"http://127.0.0.1:4711/callback"}}, clientID, secret)
	if r.status != http.StatusOK {
		t.Fatalf("exchange: %d %v", r.status, r.body)
	}
	if got := customClaims(jwtPayload(t, r.str("access_token"))); len(got) != 0 {
		t.Errorf("custom claims in the token: %v", got)
	}
	if _, ok := s.rec.mustHave(t, audit.TypeOAuthTokenIssued, "").Details["claims"]; ok {
		t.Error("token_issued names claims")
	}
}

// TestAccessTokenClaimsTooLarge: claims that would make the access token
// larger than verifiers accept fail closed: invalid_grant with a clear
// description, the grant revoked (no token, no usable refresh token), the
// refusal audited as token_too_large.
func TestAccessTokenClaimsTooLarge(t *testing.T) {
	names := []string{"c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8"}
	s := newStack(t, storeSQLite(t), stackOptions{tokenClaims: names})
	clientID, secret := s.confidentialClient("Big claims app")
	claims := map[string]any{}
	for _, n := range names {
		claims[n] = strings.Repeat("x", 1000) // each within a session's 1 KiB, together too much
	}
	b := s.browser()
	b.signInWithClaims(s.alice, claims)
	code, verifier := s.codeFor(b, clientID)
	r := s.post("/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
		"redirect_uri": {"http://127.0.0.1:4711/callback"}}, clientID, secret)
	if r.status != http.StatusBadRequest || r.str("error") != "invalid_grant" || !strings.Contains(r.str("error_description"), "larger than 8 KiB") ||
		r.str("access_token") != "" {
		t.Fatalf("exchange = %d %v, want 400 invalid_grant saying the token is too large", r.status, r.body)
	}
	ev := s.rec.mustHave(t, audit.TypeOAuthTokenRefused, audit.ReasonTokenTooLarge)
	if ev.UserID != s.alice.ID || !slices.Equal(ev.Details["claims"].([]string), names) {
		t.Errorf("refusal audit = %+v", ev)
	}
	g, err := s.db.GetOAuthGrant(context.Background(), ev.CredentialID)
	if err != nil || g.RevokedAt.IsZero() || g.RevokeReason != audit.ReasonTokenTooLarge {
		t.Errorf("grant after the refusal: revoked %v (%q), %v", g.RevokedAt, g.RevokeReason, err)
	}
	if active, _ := s.as.GrantActive(context.Background(), g.ID); active {
		t.Error("the grant is still active")
	}
}

// TestSharedClaims: what the consent page tells the user the application
// will receive — only the claims the setting names, in name order, values
// made readable and clipped.
func TestSharedClaims(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{tokenClaims: []string{"roles", "organization_id", "tier", "profile", "note"}})
	session := `{"organization_id":"org_acme","roles":["auditor","ops"],"tier":3,"profile":{"team":"a"},"secret_ref":"x","note":"` +
		strings.Repeat("n", 300) + `"}`
	got := s.as.SharedClaims(session)
	want := []oauth.SharedClaim{
		{Name: "note", Value: strings.Repeat("n", 200) + "…"},
		{Name: "organization_id", Value: "org_acme"},
		{Name: "profile", Value: `{"team":"a"}`},
		{Name: "roles", Value: "auditor, ops"},
		{Name: "tier", Value: "3"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SharedClaims (-want +got):\n%s", diff)
	}
	if got := s.as.SharedClaims(""); got != nil {
		t.Errorf("no session claims: %v", got)
	}
	off := newStack(t, storeSQLite(t), stackOptions{})
	if got := off.as.SharedClaims(session); got != nil {
		t.Errorf("setting off: %v", got)
	}
}
