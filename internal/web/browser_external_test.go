package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// signInAs gives the tab a session of u started the way an external
// sign-in starts one (with the claims its source vouched for), as the
// upstream or custom login callback would.
func (tb *tab) signInAs(u store.User, claims map[string]any) {
	tb.t.Helper()
	rec := httptest.NewRecorder()
	_, err := tb.s.sessions.StartWithClaims(context.Background(), rec, httptest.NewRequest("GET", "/login/callback", nil), u, claims)
	must(tb.t, err)
	for _, ck := range rec.Result().Cookies() {
		tb.do(chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{Name: ck.Name, Value: ck.Value, URL: tb.s.srv.URL, Path: "/"})
			return err
		}))
	}
}

// TestBrowserExternalAccounts drives the pages of accounts that come from
// an external identity source in Chromium, with screenshots: what the
// sign-in brought, the key form's warning, the password page without a
// password, the admin's view of linked identities, the sign-in-only
// consent page, the activity labels, and the password way in under
// --custom-login-only.
func TestBrowserExternalAccounts(t *testing.T) {
	bctx := browser(t)
	s, f := oauthStack(t)
	shot := newShooter(t)
	dave, bob := external(t, s)

	d := newTab(t, bctx, s, shot, uaMac)
	t.Run("overview of a custom-login sign-in", func(t *testing.T) {
		d.t = t
		d.signInAs(dave, daveSignIn)
		if p := d.open("/account"); p != "/account" {
			t.Fatalf("not signed in: at %s", p)
		}
		d.wantText("main", "From your sign-in with Example app", "member", "auditor", "organization_id", "org-globex",
			"An API key does not carry your sign-in.", "an OAuth connection does not carry them either")
		d.snap("external-overview", true)

		// The operator copies the claims into access tokens.
		s.web.oauth = sharing{fakeOAuth: f, names: []string{"organization_id", "roles"}}
		d.open("/account")
		d.wantText("main", "An OAuth connection carries organization_id, roles")
		d.snap("external-overview-oauth-claims", false)
		d.submit("a[href='/account/keys/new']")
		d.wantText("main", "An API key does not carry your sign-in.", "Example app")
		d.snap("external-key-new", true)
		s.web.oauth = f
	})

	b := newTab(t, bctx, s, shot, uaMac)
	t.Run("password page without a password", func(t *testing.T) {
		b.t = t
		b.signInAs(bob, nil)
		b.open("/account/password")
		b.wantText("main", "You sign in with Instance B; this account has no password.")
		if strings.Contains(b.text("main"), "Current password") {
			t.Error("a password form for an account without a password")
		}
		b.snap("external-password", true)
	})

	t.Run("activity in words", func(t *testing.T) {
		b.t = t
		s.audit.Record(t.Context(), audit.Event{Type: upstream.TypeLogin, Outcome: store.OutcomeAllow, UserID: bob.ID,
			ClientIP: "127.0.0.1", UserAgent: uaMac, Details: map[string]any{"provider": "b", "issuer": instanceB, "subject": "usr_b0b"}})
		s.flushAudit()
		b.open("/account/activity")
		b.wantText("main", "Signed in through a provider", "Account created from an external identity")
		b.snap("external-activity", false)
	})

	t.Run("sign-in-only consent", func(t *testing.T) {
		b.t = t
		// mcpgate A, where the browser returns with the code.
		a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("signed in at A")) }))
		defer a.Close()
		v := pendingView("areq_oidc", store.ClientKindStatic, a.URL+"/login/upstream/b/callback")
		v.ClientName, v.RedirectHost = "mcpgate A", strings.TrimPrefix(a.URL, "http://")
		v.Scopes = []oauth.ScopeView{{Name: "openid", Description: "Confirm who you are (your mcpgate account id)"},
			{Name: "email", Description: "See your email address"}, {Name: "profile", Description: "See your name"}}
		v.NewScopes, v.Granted = v.Scopes, nil
		f.mu.Lock()
		f.pending["areq_oidc"] = v
		f.mu.Unlock()
		b.open("/oauth/consent?request=areq_oidc")
		b.wantText("main", "Sign in to mcpgate A with your account on mcp.example.com?", "It will learn", "Your name, Bob")
		if strings.Contains(b.text("main"), demoResource.URL) {
			t.Error("a sign-in-only request shows an MCP server")
		}
		b.snap("consent-sign-in-only", true)
		if st := b.submit("button[value=allow]"); st != http.StatusOK || !strings.HasPrefix(b.path(), a.URL+"/login/upstream/b/callback?code=") {
			t.Fatalf("Allow: status %d, at %s", st, b.path())
		}
		if got := f.taken(); len(got) != 1 || got[0] != "allow areq_oidc "+bob.ID {
			t.Errorf("decisions %v", got)
		}
	})

	admin := newTab(t, bctx, s, shot, uaMac)
	t.Run("admin: linked identities and adding a password", func(t *testing.T) {
		admin.t = t
		admin.login("admin@example.com", testPassword)
		admin.open("/admin/users")
		admin.wantText("main", "via Instance B", "via Example app")
		admin.snap("admin-users-external", true)
		admin.open("/admin/users/" + bob.ID)
		admin.wantText("main", "Linked identities", "Instance B", "sign-in provider", instanceB, "usr_b0b", "Not verified")
		admin.snap("admin-user-external", true)
		admin.submit("a[href$='/reset-password']")
		admin.wantText("main", "Add a password login to "+bob.Email+"?", "it signs in through Instance B")
		admin.snap("admin-user-add-password-confirm", true)
		if st := admin.submit("form button.btn-danger"); st != http.StatusOK {
			t.Fatalf("add password: status %d", st)
		}
		admin.wantText("main", "Password added", "can now also sign in")
		password := strings.TrimSpace(admin.text("#new-password"))
		if _, err := s.users.Login(t.Context(), bob.Email, password, "127.0.0.1"); err != nil {
			t.Fatalf("the added password does not work: %v", err)
		}
		admin.snap("admin-user-password-added", false)
	})

	t.Run("custom login only: the password way in", func(t *testing.T) {
		admin.t = t
		s.web.opts.CustomLogin = &CustomLogin{DisplayName: "Example app", Only: true}
		defer func() { s.web.opts.CustomLogin = nil }()
		admin.submit("header form[action='/logout'] button")
		if p := admin.path(); p != "/login?done=signed_out" {
			t.Fatalf("after logout: at %s", p)
		}
		admin.wantText("main", "You have been signed out.", "Continue with Example app", "Sign in with a password instead")
		admin.snap("login-custom-only-signed-out", true)
		admin.submit("a[href^='/login?local=1']")
		admin.wantText("main", "Sign in with a password", "such as local administrators")
		admin.snap("login-local", true)
		admin.fill("#email", "admin@example.com")
		admin.fill("#password", testPassword)
		admin.submit("form[action='/login'] button[type=submit]")
		if p := admin.path(); p != "/account" {
			t.Fatalf("after the password sign-in: at %s", p)
		}
	})
	t.Logf("%d screenshots in %s", len(shot.taken), shot.dir)
}
