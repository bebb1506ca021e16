package oauth_test

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
)

// DirectLogin mints ordinary authorization-server state: the token works
// on /mcp, refreshes at /token with rotation and replay detection, and
// revokes at /revoke.
func TestDirectLoginTokens(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB) {
		s := newStack(t, db, stackOptions{})
		ctx := context.Background()
		tok, err := s.as.DirectLogin(ctx, s.alice)
		must(t, err)
		if tok.ClientID != oauth.DirectLoginClientID || tok.Resource != s.mcpURL || tok.RefreshToken == "" ||
			len(tok.Scopes) != 2 || tok.ExpiresIn < 3500 || tok.GrantID == "" {
			t.Fatalf("tokens: %+v", tok)
		}
		if st := s.mcpStatus(tok.AccessToken); st != http.StatusOK {
			t.Fatalf("/mcp with the token: %d", st)
		}
		cl, err := s.clients.Get(ctx, oauth.DirectLoginClientID)
		must(t, err)
		if cl.Kind != store.ClientKindStatic || !cl.Public() || len(cl.RedirectURIs) != 0 || cl.Name != oauth.DirectLoginClientName {
			t.Errorf("built-in client: %+v", cl)
		}
		ev := s.rec.mustHave(t, audit.TypeOAuthTokenIssued, "")
		if ev.Details["grant_type"] != oauth.GrantDirectLogin || ev.UserID != s.alice.ID || ev.CredentialID != tok.GrantID {
			t.Errorf("token_issued: %+v", ev)
		}
		if created := s.rec.of(oauth.EventClientCreated); len(created) != 1 {
			t.Errorf("client.created events: %d", len(created))
		}

		// Refresh through /token as the built-in public client.
		r := s.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {oauth.DirectLoginClientID}})
		if r.status != http.StatusOK || r.str("refresh_token") == "" || r.str("refresh_token") == tok.RefreshToken || r.str("scope") != "payments:read payments:write" {
			t.Fatalf("refresh: %d %v", r.status, r.body)
		}
		if st := s.mcpStatus(r.str("access_token")); st != http.StatusOK {
			t.Errorf("/mcp with the refreshed token: %d", st)
		}
		// Another client cannot use it.
		other := s.publicClient("Other")
		if r := s.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.str("refresh_token")}, "client_id": {other}}); r.status != http.StatusBadRequest || r.str("error") != "invalid_grant" {
			t.Errorf("refresh by another client: %d %v", r.status, r.body)
		}
		// The built-in client gets no other grant.
		for _, gt := range []string{"authorization_code", "client_credentials"} {
			r := s.post("/token", url.Values{"grant_type": {gt}, "code": {"x"}, "client_id": {oauth.DirectLoginClientID}})
			if r.status != http.StatusBadRequest || r.str("error") != "unauthorized_client" {
				t.Errorf("%s for the built-in client: %d %v", gt, r.status, r.body)
			}
		}
		// Nor can it be used at /authorize (no redirect URI): an error
		// page, never a redirect.
		_, ch := pkce()
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(s.authURL(s.codeRequest(oauth.DirectLoginClientID, ch)))
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.Header.Get("Location") != "" {
			t.Errorf("/authorize with the built-in client: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}

		// Replaying the first refresh token after the grace window
		// revokes the family.
		s.clock.Advance(time.Minute)
		if r := s.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {oauth.DirectLoginClientID}}); r.str("error") != "invalid_grant" {
			t.Errorf("replay: %d %v", r.status, r.body)
		}
		s.rec.mustHave(t, audit.TypeOAuthRefreshReplayed, audit.ReasonRefreshReplayed)
		if st := s.mcpStatus(tok.AccessToken); st != http.StatusUnauthorized {
			t.Errorf("/mcp after the replay: %d", st)
		}

		// A new login, revoked at /revoke with the access token.
		tok2, err := s.as.DirectLogin(ctx, s.bob)
		must(t, err)
		if r := s.post("/revoke", url.Values{"token": {tok2.AccessToken}, "client_id": {oauth.DirectLoginClientID}}); r.status != http.StatusOK {
			t.Fatalf("revoke: %d %v", r.status, r.body)
		}
		if st := s.mcpStatus(tok2.AccessToken); st != http.StatusUnauthorized {
			t.Errorf("/mcp after /revoke: %d", st)
		}
		if r := s.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok2.RefreshToken}, "client_id": {oauth.DirectLoginClientID}}); r.str("error") != "invalid_grant" {
			t.Errorf("refresh after /revoke: %d %v", r.status, r.body)
		}

		// A password change (RevokeUserGrants) ends them too.
		tok3, err := s.as.DirectLogin(ctx, s.bob)
		must(t, err)
		if _, err := s.as.RevokeUserGrants(ctx, s.bob.ID, "password_changed"); err != nil {
			t.Fatal(err)
		}
		if st := s.mcpStatus(tok3.AccessToken); st != http.StatusUnauthorized {
			t.Errorf("/mcp after the user's grants were revoked: %d", st)
		}

		// A disabled user gets nothing.
		bob := s.bob
		bob.Disabled = true
		if _, err := s.as.DirectLogin(ctx, bob); err == nil {
			t.Errorf("DirectLogin for a disabled user succeeded")
		}
	})
}

// Concurrent first logins create the built-in client once and all get
// tokens.
func TestDirectLoginConcurrentFirstUse(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			_, err := s.as.DirectLogin(context.Background(), s.alice)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	cls, err := s.clients.List(context.Background(), store.ClientKindStatic)
	must(t, err)
	if len(cls) != 1 {
		t.Errorf("%d built-in clients", len(cls))
	}
	if n := len(s.rec.of(audit.TypeOAuthTokenIssued)); n != 10 {
		t.Errorf("%d tokens issued, want 10", n)
	}
}
