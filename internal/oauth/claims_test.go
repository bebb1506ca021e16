package oauth_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
)

// signInWithClaims starts a browser session for u carrying custom claims,
// as bring-your-own-login (or an upstream roles mapping) does, puts its
// cookie into the browser and returns the session.
func (b *browser) signInWithClaims(u store.User, claims map[string]any) store.Session {
	b.t.Helper()
	w := httptest.NewRecorder()
	sess, err := b.s.sessions.StartWithClaims(context.Background(), w, httptest.NewRequest(http.MethodGet, b.s.base+"/", nil), u, claims)
	if err != nil {
		b.t.Fatal(err)
	}
	base, _ := url.Parse(b.s.base)
	b.c.Jar.SetCookies(base, w.Result().Cookies())
	return sess
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

// endIdle ends sess the way the session cleaner does once it has been
// idle past the idle timeout (on the stack's clock).
func endIdle(t *testing.T, s *stack, sess store.Session) {
	t.Helper()
	s.clock.Advance(s.sessions.IdleTimeout() + time.Minute)
	revs, err := s.db.ExpireSessions(context.Background(), s.clock.Now(), s.sessions.IdleTimeout(), 100)
	if err != nil || len(revs) != 1 || revs[0].Session.ID != sess.ID || revs[0].Session.EndReason != store.SessionEndIdle {
		t.Fatalf("ExpireSessions = %+v, %v; want the session ended idle", revs, err)
	}
}

// TestAccessTokenClaimsLiveWithTheSignIn: a grant's claims travel in its
// access tokens while the browser session the user approved from lives.
// However that sign-in ends — sign-out, an admin's revocation (also after
// the browser went idle), its lifetime, the row deleted after retention —
// the next refresh yields a token without them (the grant lives on, with
// its scopes), the grant's claims are dropped for good, and
// oauth.token_refreshed says so once.
func TestAccessTokenClaimsLiveWithTheSignIn(t *testing.T) {
	ctx := context.Background()
	const lifetime = 48 * time.Hour
	for _, c := range []struct {
		name string
		end  func(t *testing.T, s *stack, sess store.Session)
	}{
		{"signed out", func(t *testing.T, s *stack, sess store.Session) {
			must(t, s.sessions.Revoke(ctx, sess.UserID, sess.ID))
		}},
		{"revoked by an admin", func(t *testing.T, s *stack, sess store.Session) {
			must(t, s.sessions.RevokeAll(ctx, sess.UserID, "admin"))
		}},
		{"signed out after going idle", func(t *testing.T, s *stack, sess store.Session) {
			endIdle(t, s, sess)
			must(t, s.sessions.Revoke(ctx, sess.UserID, sess.ID))
		}},
		{"password changed after going idle", func(t *testing.T, s *stack, sess store.Session) {
			endIdle(t, s, sess)
			must(t, s.sessions.RevokeAll(ctx, sess.UserID, "password_changed"))
		}},
		{"past its lifetime", func(t *testing.T, s *stack, sess store.Session) {
			s.clock.Advance(lifetime + time.Minute)
		}},
		{"deleted after retention", func(t *testing.T, s *stack, sess store.Session) {
			must(t, s.sessions.Revoke(ctx, sess.UserID, sess.ID))
			if _, err := s.db.DeleteSessionsBefore(ctx, time.Now().Add(time.Hour), 100); err != nil {
				t.Fatal(err)
			}
			if _, err := s.db.GetSession(ctx, sess.ID); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("the session was not deleted: %v", err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			eachStore(t, func(t *testing.T, db *sqlstore.DB) {
				s := newStack(t, db, stackOptions{tokenClaims: []string{"organization_id", "roles"}, sessionLifetime: lifetime})
				clientID, secret := s.confidentialClient("Claims app")
				b := s.browser()
				sess := b.signInWithClaims(s.alice, map[string]any{"organization_id": "org_acme", "roles": []string{"auditor"}})
				code, verifier := s.codeFor(b, clientID)
				r := s.post("/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
					"redirect_uri": {"http://127.0.0.1:4711/callback"}}, clientID, secret)
				if r.status != http.StatusOK || customClaims(jwtPayload(t, r.str("access_token")))["organization_id"] != "org_acme" {
					t.Fatalf("exchange while signed in: %d %v", r.status, r.body)
				}
				grantID := s.rec.mustHave(t, audit.TypeOAuthTokenIssued, "").CredentialID
				if g, err := db.GetOAuthGrant(ctx, grantID); err != nil || g.SessionID != sess.ID {
					t.Fatalf("grant session = %q (%v), want the approving session %q", g.SessionID, err, sess.ID)
				}

				c.end(t, s, sess)
				refresh := func() tokenResp {
					t.Helper()
					r := s.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.str("refresh_token")}}, clientID, secret)
					if r.status != http.StatusOK {
						t.Fatalf("refresh after the sign-in ended: %d %v (the grant must live on)", r.status, r.body)
					}
					return r
				}
				r = refresh()
				if got := customClaims(jwtPayload(t, r.str("access_token"))); len(got) != 0 {
					t.Errorf("the token after the sign-in ended carries %v", got)
				}
				ev := s.rec.mustHave(t, audit.TypeOAuthTokenRefreshed, "")
				if ev.Details["claims_dropped"] != oauth.ClaimsDroppedSessionEnded || ev.Details["claims"] != nil || ev.CredentialID != grantID {
					t.Errorf("token_refreshed details = %v, want claims_dropped %q and no claims", ev.Details, oauth.ClaimsDroppedSessionEnded)
				}
				if g, err := db.GetOAuthGrant(ctx, grantID); err != nil || g.Claims != "" || !g.RevokedAt.IsZero() {
					t.Errorf("grant after the drop: claims %q revoked %v (%v); want no claims, still live", g.Claims, g.RevokedAt, err)
				}

				// Once: the next refresh has nothing left to drop.
				r = refresh()
				if got := customClaims(jwtPayload(t, r.str("access_token"))); len(got) != 0 {
					t.Errorf("the second token after the sign-in ended carries %v", got)
				}
				if ev := s.rec.mustHave(t, audit.TypeOAuthTokenRefreshed, ""); ev.Details["claims_dropped"] != nil {
					t.Errorf("the drop was audited again: %v", ev.Details)
				}
				dropped := 0
				for _, ev := range s.rec.of(audit.TypeOAuthTokenRefreshed) {
					if ev.Details["claims_dropped"] != nil {
						dropped++
					}
				}
				if dropped != 1 {
					t.Errorf("%d token_refreshed events say claims_dropped, want 1", dropped)
				}
			})
		})
	}
}

// TestAccessTokenClaimsSignInEndsBeforeTheExchange: signed out between
// approving and the code exchange, the first token already goes without
// the claims (oauth.token_issued says they were dropped).
func TestAccessTokenClaimsSignInEndsBeforeTheExchange(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{tokenClaims: []string{"organization_id"}})
	clientID, secret := s.confidentialClient("Claims app")
	b := s.browser()
	sess := b.signInWithClaims(s.alice, map[string]any{"organization_id": "org_acme"})
	code, verifier := s.codeFor(b, clientID)
	must(t, s.sessions.Revoke(context.Background(), s.alice.ID, sess.ID))
	r := s.post("/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
		"redirect_uri": {"http://127.0.0.1:4711/callback"}}, clientID, secret)
	if r.status != http.StatusOK {
		t.Fatalf("exchange: %d %v", r.status, r.body)
	}
	if got := customClaims(jwtPayload(t, r.str("access_token"))); len(got) != 0 {
		t.Errorf("the token carries %v after the sign-in ended", got)
	}
	if ev := s.rec.mustHave(t, audit.TypeOAuthTokenIssued, ""); ev.Details["claims_dropped"] != oauth.ClaimsDroppedSessionEnded {
		t.Errorf("token_issued details = %v", ev.Details)
	}
}

// TestAccessTokenClaimsNotInheritedByANewSignIn: signing in again (with
// other claims) does not revive a grant whose sign-in ended — the grant
// belongs to the sign-in the user approved from; authorizing the client
// again from the new sign-in gives a new grant with the new claims, and
// the old one stays without.
func TestAccessTokenClaimsNotInheritedByANewSignIn(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{tokenClaims: []string{"organization_id"}})
	clientID, secret := s.confidentialClient("Claims app")
	b := s.browser()
	sess := b.signInWithClaims(s.alice, map[string]any{"organization_id": "org_acme"})
	exchange := func() tokenResp {
		t.Helper()
		code, verifier := s.codeFor(b, clientID)
		r := s.post("/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
			"redirect_uri": {"http://127.0.0.1:4711/callback"}}, clientID, secret)
		if r.status != http.StatusOK {
			t.Fatalf("exchange: %d %v", r.status, r.body)
		}
		return r
	}
	old := exchange()
	must(t, s.sessions.Revoke(context.Background(), s.alice.ID, sess.ID))
	b.signInWithClaims(s.alice, map[string]any{"organization_id": "org_beta"})

	r := s.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {old.str("refresh_token")}}, clientID, secret)
	if r.status != http.StatusOK {
		t.Fatalf("refresh: %d %v", r.status, r.body)
	}
	if got := customClaims(jwtPayload(t, r.str("access_token"))); len(got) != 0 {
		t.Errorf("the old grant's token after a new sign-in carries %v, want none", got)
	}
	fresh := exchange()
	if got := customClaims(jwtPayload(t, fresh.str("access_token"))); got["organization_id"] != "org_beta" {
		t.Errorf("the new authorization's token carries %v, want org_beta", got)
	}
}

// TestAccessTokenClaimsDoNotKeepTheBrowserSignedIn: a client's refreshes
// never move its sign-in's last-seen time (review #5, N2): the browser
// session's idle timeout bounds an unattended browser, whatever clients
// do. The claims do not go with it: a user whose MCP clients work without
// the browser has not ended the sign-in; they end at its lifetime.
func TestAccessTokenClaimsDoNotKeepTheBrowserSignedIn(t *testing.T) {
	const lifetime = 72 * time.Hour
	s := newStack(t, storeSQLite(t), stackOptions{tokenClaims: []string{"organization_id"}, sessionLifetime: lifetime})
	clientID, secret := s.confidentialClient("Claims app")
	b := s.browser()
	sess := b.signInWithClaims(s.alice, map[string]any{"organization_id": "org_acme"})
	code, verifier := s.codeFor(b, clientID)
	r := s.post("/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
		"redirect_uri": {"http://127.0.0.1:4711/callback"}}, clientID, secret)
	if r.status != http.StatusOK {
		t.Fatalf("exchange: %d %v", r.status, r.body)
	}
	refresh := func() map[string]any {
		t.Helper()
		r = s.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.str("refresh_token")}}, clientID, secret)
		if r.status != http.StatusOK {
			t.Fatalf("refresh: %d %v", r.status, r.body)
		}
		return customClaims(jwtPayload(t, r.str("access_token")))
	}
	s.clock.Advance(s.sessions.IdleTimeout() - time.Hour)
	if got := refresh(); got["organization_id"] != "org_acme" {
		t.Fatalf("within the idle timeout the token carries %v", got)
	}
	if got, err := s.db.GetSession(context.Background(), sess.ID); err != nil || !got.LastSeenAt.Equal(sess.LastSeenAt) {
		t.Errorf("the refresh moved the browser session's last-seen time: %v → %v (%v)", sess.LastSeenAt, got.LastSeenAt, err)
	}
	// Past the idle timeout the browser session is dead for the browser
	// (the cleaner ended it, idle), but the claims live on.
	s.clock.Advance(2 * time.Hour)
	ctx := context.Background()
	if _, err := s.db.ExpireSessions(ctx, s.clock.Now(), s.sessions.IdleTimeout(), 100); err != nil {
		t.Fatal(err)
	}
	if got, err := s.db.GetSession(ctx, sess.ID); err != nil || got.RevokedAt.IsZero() || got.EndReason != store.SessionEndIdle {
		t.Fatalf("browser session past its idle timeout = %+v, %v; want ended idle", got, err)
	}
	if got := refresh(); got["organization_id"] != "org_acme" {
		t.Errorf("past the browser's idle timeout the token carries %v, want the claims until the sign-in's lifetime", got)
	}
	if got, err := s.db.GetSession(ctx, sess.ID); err != nil || !got.LastSeenAt.Equal(sess.LastSeenAt) || got.EndReason != store.SessionEndIdle {
		t.Errorf("the refresh touched the idle browser session: %+v (%v)", got, err)
	}
	// The browser stays signed out: its cookie finds no session.
	base, _ := url.Parse(s.base)
	req := httptest.NewRequest(http.MethodGet, s.base+"/", nil)
	for _, c := range b.c.Jar.Cookies(base) {
		req.AddCookie(c)
	}
	if len(req.Cookies()) == 0 {
		t.Fatal("the browser has no cookie")
	}
	if _, err := s.sessions.Current(req); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("the idle browser's cookie: %v, want ErrNoSession", err)
	}
	// At the lifetime the claims end.
	s.clock.Advance(lifetime)
	if got := refresh(); len(got) != 0 {
		t.Errorf("past the sign-in's lifetime the token still carries %v", got)
	}
}
