package web

// Pages of accounts that come from an external identity source (an
// upstream provider, the custom login, a trusted issuer): what their
// sign-in brought, their missing password, their linked identities.

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/customauth"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

const (
	exampleApp   = "custom:http://127.0.0.1:18090" // customauth.Issuer of the example app's URL
	instanceB    = "http://127.0.0.1:18081"        // another mcpgate as the upstream provider
	placeholderB = "@" + identity.PlaceholderEmailDomain
)

// external names the sources the way the server does, and provisions dave
// through the custom login (verified email) and bob through instance B
// (no verified email: a placeholder address).
func external(t *testing.T, s *stack) (dave, bob store.User) {
	t.Helper()
	s.web.opts.IdentitySources = []IdentitySource{
		{Issuer: exampleApp, Label: "Example app", Kind: SourceCustom},
		{Issuer: instanceB, Label: "Instance B", Kind: SourceUpstream},
	}
	p := identity.NewProvisioner(s.users, s.db)
	var err error
	dave, err = p.Provision(t.Context(), identity.ExternalAccount{Issuer: exampleApp, Subject: "dave", Email: "dave@globex.example",
		EmailVerified: true, Name: "Dave", Via: "custom_login"})
	must(t, err)
	bob, err = p.Provision(t.Context(), identity.ExternalAccount{Issuer: instanceB, Subject: "usr_b0b", Email: "bob@example.com",
		Name: "Bob", Via: "upstream_login"})
	must(t, err)
	if !strings.HasSuffix(bob.Email, placeholderB) || dave.PasswordHash != "" {
		t.Fatalf("provisioning: bob %q, dave has a password: %v", bob.Email, dave.PasswordHash != "")
	}
	return dave, bob
}

// signedInWith starts a session for u the way an external sign-in does
// (with the claims its source vouched for) and returns a client holding
// its cookie.
func (s *stack) signedInWith(u store.User, claims map[string]any) *client {
	s.t.Helper()
	rec := httptest.NewRecorder()
	_, err := s.sessions.StartWithClaims(context.Background(), rec, httptest.NewRequest("GET", "/login/callback", nil), u, claims)
	must(s.t, err)
	c := s.client()
	base, _ := url.Parse(s.srv.URL)
	c.hc.Jar.SetCookies(base, rec.Result().Cookies())
	return c
}

var daveSignIn = map[string]any{"roles": []string{"member", "auditor"}, "organization_id": "org-globex"}

// sharing is the authorization server of an operator who copies some
// sign-in claims into access tokens (--access-token-claims).
type sharing struct {
	*fakeOAuth
	names []string
}

func (o sharing) SharedClaims(string) []oauth.SharedClaim {
	var out []oauth.SharedClaim
	for _, n := range o.names {
		out = append(out, oauth.SharedClaim{Name: n, Value: "…"})
	}
	return out
}

func TestOverviewShowsWhatTheSignInBrought(t *testing.T) {
	s := newStack(t)
	dave, _ := external(t, s)
	c := s.signedInWith(dave, map[string]any{"roles": []string{"member", "auditor", "admin"}, "organization_id": "org-globex"})

	r := c.get("/account")
	wantStatus(t, r, http.StatusOK)
	// The stored roles are none, the sign-in's are shown beside them
	// (never "admin", which a claim cannot give).
	wantBody(t, r, "none of your own", "From your sign-in with Example app", `<span class="chip">member</span><span class="chip">auditor</span>`,
		`<dt class="mono">organization_id</dt><dd>org-globex</dd>`)
	wantNoBody(t, r, `<span class="chip">admin</span>`)
	// The connect card does not push an API key: it says what a key drops
	// and points to OAuth and the session credential.
	wantBody(t, r, "let the client connect by OAuth", "An API key does not carry your sign-in.", "(roles, organization_id)",
		"an OAuth connection does not carry them either", "--access-token-claims", "POST /api/mcp/credentials")
	wantNoBody(t, r, "give the client one of your API keys")

	// With --access-token-claims, the page says what OAuth carries.
	s.web.oauth = sharing{names: []string{"organization_id", "roles"}}
	r = c.get("/account")
	wantBody(t, r, "An OAuth connection carries organization_id, roles", "Tools see these while you use this sign-in or an OAuth connection made from it.")
	wantNoBody(t, r, "--access-token-claims")

	// The key form warns the same way.
	r = c.get("/account/keys/new")
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, "An API key does not carry your sign-in.", "Example app", "(roles, organization_id)")
	// … also when it comes back with an error.
	r = c.post("/account/keys", url.Values{"form_token": {c.formToken()}, "name": {""}, "expires": {"30d"}})
	wantStatus(t, r, http.StatusUnprocessableEntity)
	wantBody(t, r, "An API key does not carry your sign-in.")

	// A password sign-in brought nothing: no such words.
	alice := s.loggedIn("alice@example.com")
	for _, p := range []string{"/account", "/account/keys/new"} {
		r := alice.get(p)
		wantNoBody(t, r, "From your sign-in", "An API key does not carry your sign-in.")
	}
	wantBody(t, alice.get("/account"), "give the client one of your API keys", `<span class="muted">none</span>`)
}

func TestOverviewSignInSourceAmongSeveralIdentities(t *testing.T) {
	s := newStack(t)
	dave, _ := external(t, s)
	// dave also has an old, unused identity at instance B.
	must(t, s.db.LinkIdentity(t.Context(), store.UserIdentity{Issuer: instanceB, Subject: "dave-at-b", UserID: dave.ID,
		CreatedAt: time.Now().Add(-48 * time.Hour), LastLoginAt: time.Now().Add(-24 * time.Hour)}))
	must(t, s.db.TouchIdentity(t.Context(), store.UserIdentity{Issuer: exampleApp, Subject: "dave", Email: "dave@globex.example", EmailVerified: true}))
	r := s.signedInWith(dave, daveSignIn).get("/account")
	wantBody(t, r, "From your sign-in with Example app")

	// Both used just now: which one this session came through cannot be
	// told, and the page does not guess.
	must(t, s.db.TouchIdentity(t.Context(), store.UserIdentity{Issuer: instanceB, Subject: "dave-at-b"}))
	r = s.signedInWith(dave, daveSignIn).get("/account")
	wantBody(t, r, "<dt>From your sign-in</dt>")
	wantNoBody(t, r, "with Example app", "with Instance B")
}

func TestOverviewPreviousSignInCountsEverySource(t *testing.T) {
	s := newStack(t)
	dave, _ := external(t, s)
	c := s.signedInWith(dave, daveSignIn)
	wantBody(t, c.get("/account"), "First", "sign-in on record")

	// A refused sign-in is not a sign-in; one through the custom login
	// an hour ago, and one through a provider two hours ago, are.
	ago := func(d time.Duration) time.Time { return time.Now().Add(-d) }
	s.audit.Record(t.Context(), audit.Event{Time: ago(time.Minute), Type: upstream.TypeLogin, Outcome: store.OutcomeDeny, Reason: "not_allowed", UserID: dave.ID})
	s.audit.Record(t.Context(), audit.Event{Time: ago(2 * time.Hour), Type: upstream.TypeLogin, Outcome: store.OutcomeAllow, UserID: dave.ID,
		ClientIP: "198.51.100.7", UserAgent: uaIPhone})
	s.flushAudit()
	r := c.get("/account")
	wantBody(t, r, "2 h ago", "previous sign-in", "Safari on iPhone · 198.51.100.7")
	wantNoBody(t, r, "sign-in on record")

	s.audit.Record(t.Context(), audit.Event{Time: ago(time.Hour), Type: customauth.TypeCompleted, Outcome: store.OutcomeAllow, UserID: dave.ID,
		ClientIP: "203.0.113.5", UserAgent: uaMac})
	s.flushAudit()
	wantBody(t, c.get("/account"), "1 h ago", "Chrome on macOS · 203.0.113.5")
}

func TestPasswordPageWithoutPassword(t *testing.T) {
	s := newStack(t)
	_, bob := external(t, s)
	c := s.signedInWith(bob, nil)
	r := c.get("/account/password")
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, "You sign in with Instance B; this account has no password.", "ask your mcpgate administrator to add a password")
	wantNoBody(t, r, `name="current_password"`, "Change password")

	// A posted form changes nothing and says why.
	r = c.post("/account/password", url.Values{"current_password": {"x"}, "new_password": {"a much better passphrase"}, "confirm_password": {"a much better passphrase"}})
	wantStatus(t, r, http.StatusConflict)
	wantBody(t, r, "this account has no password")
	if u, err := s.users.Get(t.Context(), bob.ID); err != nil || u.PasswordHash != "" {
		t.Fatalf("the account got a password: %v", err)
	}

	// An account without a password and without identities (made by an
	// operator without a password) is told so, without a source.
	nobody, err := s.users.Create(t.Context(), identity.NewUser{Email: "nopass@example.com", Password: testPassword})
	must(t, err)
	_, err = s.db.UpdateUser(t.Context(), nobody.ID, func(u store.User) (store.User, error) { u.PasswordHash = ""; return u, nil })
	must(t, err)
	r = s.signedInWith(nobody, nil).get("/account/password")
	wantBody(t, r, "This account has no password.")
	wantNoBody(t, r, "You sign in with", `name="current_password"`)

	// Accounts with a password keep their form.
	wantBody(t, s.loggedIn("alice@example.com").get("/account/password"), `name="current_password"`, "Change password")
}

func TestAdminSeesLinkedIdentities(t *testing.T) {
	s := newStack(t)
	dave, bob := external(t, s)
	admin := s.loggedIn("admin@example.com")

	r := admin.get("/admin/users")
	wantStatus(t, r, http.StatusOK)
	// bob's address is a placeholder: the list also says which address
	// instance B sent (and that it did not vouch for it).
	wantBody(t, r, bob.Email+`</a><span class="sub">via Instance B · bob@example.com, not verified</span>`,
		`dave@globex.example</a><span class="sub">via Example app</span>`)
	wantNoBody(t, r, `alice@example.com</a><span class="sub">`)

	r = admin.get("/admin/users/" + bob.ID)
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, "Linked identities", "Instance B", "sign-in provider", instanceB, "usr_b0b",
		"bob@example.com", "Not verified", "Last sign-in")
	r = admin.get("/admin/users/" + dave.ID)
	wantBody(t, r, "Example app", "custom login", exampleApp, "dave@globex.example", "badge-green\">Verified")

	// A source no longer configured is named by its host.
	s.web.opts.IdentitySources = nil
	wantBody(t, admin.get("/admin/users/"+bob.ID), "127.0.0.1:18081")
	wantBody(t, admin.get("/admin/users"), `<span class="sub">via 127.0.0.1:18090</span>`, `<span class="sub">via 127.0.0.1:18081 · `)

	r = admin.get("/admin/users/" + s.alice.ID)
	wantBody(t, r, "Linked identities", "None. This is a local account")
}

func TestAdminAddsPasswordToExternalAccount(t *testing.T) {
	s := newStack(t)
	_, bob := external(t, s)
	admin := s.loggedIn("admin@example.com")

	r := admin.get("/admin/users/" + bob.ID)
	wantBody(t, r, "This account has no password: it signs in through Instance B.", "Add a password…")
	wantNoBody(t, r, "Reset password…")
	r = admin.get("/admin/users/" + bob.ID + "/reset-password")
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, "Add a password login to "+bob.Email+"?", "it signs in through Instance B", "besides Instance B",
		"with the email address below", "<dt>Email</dt><dd>"+bob.Email, "Signs in through")
	r = admin.post("/admin/users/"+bob.ID+"/reset-password", nil)
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, "Password added", "can now also sign in with this email address and password")
	m := regexp.MustCompile(`id="new-password"[^>]*>([^<]+)<`).FindStringSubmatch(r.Body)
	if m == nil {
		t.Fatal("no password shown")
	}
	if _, err := s.users.Login(t.Context(), bob.Email, m[1], "127.0.0.1"); err != nil {
		t.Fatalf("the added password does not work: %v", err)
	}
	// From now on it is an ordinary reset.
	wantBody(t, admin.get("/admin/users/"+bob.ID+"/reset-password"), "Reset the password of "+bob.Email+"?")
	// A local account's reset is unchanged.
	wantBody(t, admin.get("/admin/users/"+s.alice.ID+"/reset-password"), "Reset the password of alice@example.com?")
}

// TestEveryEventHasWords: no audit event mcpgate records is shown by its
// raw type alone.
func TestEveryEventHasWords(t *testing.T) {
	types := []string{
		audit.TypeLoginSucceeded, audit.TypeLoginFailed, audit.TypeLogout, audit.TypeSessionCreated, audit.TypeSessionRevoked,
		audit.TypeSessionExpired, audit.TypeKeyCreated, audit.TypeKeyRevoked, audit.TypeUserPassword, audit.TypeUserCreated,
		audit.TypeUserDisabled, audit.TypeUserEnabled, audit.TypeUserRoles, audit.TypeToolCalled, audit.TypeToolDenied,
		audit.TypeAuthRejected, audit.TypeSessionRefused,
		audit.TypeOAuthAuthorizeRequested, audit.TypeOAuthAuthorizeRefused, audit.TypeOAuthConsentGranted, audit.TypeOAuthConsentDenied,
		audit.TypeOAuthConsentRevoked, audit.TypeOAuthCodeIssued, audit.TypeOAuthCodeRedeemed, audit.TypeOAuthCodeReplayed,
		audit.TypeOAuthTokenIssued, audit.TypeOAuthTokenRefreshed, audit.TypeOAuthRefreshReplayed, audit.TypeOAuthTokenRefused,
		audit.TypeOAuthTokenRevoked, audit.TypeOAuthGrantRevoked, audit.TypeOAuthIntrospection, audit.TypeOAuthUserinfoRefused,
		upstream.TypeLogin, customauth.TypeCreated, customauth.TypeCompleted, customauth.TypeRefused,
		identity.TypeUserProvisioned, identity.TypeIdentityLinked, authn.TypeExternalAccepted,
	}
	for _, tp := range types {
		if l := eventLabel(tp); l == tp || l == "" {
			t.Errorf("event %q has no label", tp)
		}
		if !knownEventType(tp) {
			t.Errorf("event %q cannot be filtered by", tp)
		}
	}

	s := newStack(t)
	_, bob := external(t, s)
	s.audit.Record(t.Context(), audit.Event{Type: upstream.TypeLogin, Outcome: store.OutcomeAllow, UserID: bob.ID,
		Details: map[string]any{"provider": "b", "issuer": instanceB}})
	s.flushAudit()
	r := s.signedInWith(bob, nil).get("/account/activity")
	wantBody(t, r, `<span class="strong">Signed in through a provider</span>`, `<span class="strong">Account created from an external identity</span>`)
}

func TestLoginWithCustomLoginOnly(t *testing.T) {
	s := newStack(t)
	c := s.client()
	s.web.opts.CustomLogin = &CustomLogin{DisplayName: "Example app", Only: true}

	// Everyone goes to the custom login, also with a notice the page does
	// not know.
	wantRedirect(t, c.get("/login?return_to=%2Faccount%2Fkeys"), "/login/custom?return_to=%2Faccount%2Fkeys")
	wantRedirect(t, c.get("/login?done=1"), "/login/custom?return_to=%2Faccount")

	// After signing out: no bounce into the custom login, its button, and
	// a small way to the password form.
	r := c.get("/login?done=signed_out")
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, "You have been signed out.", `href="/login/custom?return_to=%2Faccount">Continue with Example app`,
		`<a href="/login?local=1&amp;return_to=%2Faccount">Sign in with a password instead</a>`)
	wantNoBody(t, r, `name="password"`)

	// /login?local=1: the password form for local accounts, which works.
	r = c.get("/login?local=1&return_to=%2Fadmin%2Fusers")
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, "Sign in with a password", "such as local administrators", `name="password"`, `name="return_to" value="/admin/users"`,
		"Continue with Example app")
	wantNoBody(t, r, "Sign in with a password instead")
	r = c.post("/login", url.Values{"email": {"admin@example.com"}, "password": {"wrong password 123"}, "return_to": {"/admin/users"}})
	wantStatus(t, r, http.StatusUnprocessableEntity)
	wantBody(t, r, "Sign in with a password", "Incorrect email or password.")
	wantRedirect(t, c.post("/login", url.Values{"email": {"admin@example.com"}, "password": {testPassword}, "return_to": {"/admin/users"}}), "/admin/users")

	// Without --custom-login-only the form is always there, and no link.
	s.web.opts.CustomLogin.Only = false
	r = s.client().get("/login?done=signed_out")
	wantBody(t, r, `name="password"`, "Continue with Example app")
	wantNoBody(t, r, "Sign in with a password")
}

func TestConsentForSignInOnly(t *testing.T) {
	s, f := oauthStack(t)
	c := s.loggedIn("alice@example.com")
	identityScopes := []oauth.ScopeView{
		{Name: "openid", Description: "Confirm who you are (your mcpgate account id)"},
		{Name: "email", Description: "See your email address"},
		{Name: "profile", Description: "See your name"},
	}
	v := pendingView("areq_oidc", store.ClientKindStatic, "http://127.0.0.1:18080/login/upstream/b/callback")
	v.ClientName = "mcpgate A"
	v.Scopes, v.NewScopes, v.Granted = identityScopes, identityScopes, nil
	f.pending["areq_oidc"] = v
	r := c.get("/oauth/consent?request=areq_oidc")
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, "Sign in to mcpgate A with your account on mcp.example.com?", "It will learn",
		"Your account id on mcp.example.com", "Your email address, alice@example.com", "Your name, Alice Liddell",
		"it does not ask to use the MCP server's tools", `value="allow"`)
	wantNoBody(t, r, "Allow mcpgate A to use", "<dt>MCP server</dt>", demoResource.URL, "It asks to")

	// One resource scope among them: an MCP client, asked as before.
	v.ID = "areq_mixed"
	v.Scopes = append(identityScopes, oauth.ScopeView{Name: "payments:read", Description: "Read your payments data"})
	f.pending["areq_mixed"] = v
	r = c.get("/oauth/consent?request=areq_mixed")
	wantBody(t, r, "Allow mcpgate A to use Payments demo?", "<dt>MCP server</dt>", "It asks to")
	wantNoBody(t, r, "Sign in to mcpgate A")
}
