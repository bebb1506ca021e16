package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mcpgate/mcpgate/internal/browsertest"
)

// TestPagesOfAnUpstreamUser: instance B is instance A's upstream
// provider, as in TestUpstreamLoginFromAnotherMcpgate, and this test looks
// at the pages of that journey in Chromium with the real servers: B's
// consent page asks about signing in to A (A asks for OpenID scopes only,
// no MCP access); at A, the provisioned user's password page says where
// they sign in; A's administrator sees where the user comes from.
func TestPagesOfAnUpstreamUser(t *testing.T) {
	b := newEnv(t)
	a := newEnv(t, upstreamFromB(t, b, nil, nil))
	bHost := strings.TrimPrefix(b.base, "http://")

	browser := browsertest.Start(t)
	ctx, cancel := context.WithTimeout(browser, time.Minute)
	defer cancel()
	text := func(ctx context.Context, sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	err := chromedp.Do(ctx,
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(a.base+"/login"),
		chromedp.Click(chromedp.CSS(`a.upstream-login`)),
		chromedp.WaitVisible(chromedp.CSS(`#email`)),
		chromedp.SendKeys(chromedp.CSS(`#email`), "bob@example.com"),
		chromedp.SendKeys(chromedp.CSS(`#password`), b.pws["bob@example.com"]),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[name=decision][value=allow]`)),
	)
	if err != nil {
		t.Fatalf("signing in at B: %v", err)
	}
	consent := text(ctx, "main")
	for _, want := range []string{"Sign in to mcpgate A with your account on " + bHost + "?", "It will learn",
		"Your email address, bob@example.com", "Your account id on " + bHost} {
		if !strings.Contains(consent, want) {
			t.Errorf("B's consent page lacks %q:\n%s", want, consent)
		}
	}
	if strings.Contains(consent, b.base+"/mcp") || strings.Contains(consent, "Allow mcpgate A to use") {
		t.Errorf("B's consent page offers MCP access for a sign-in:\n%s", consent)
	}
	shot(t, ctx, "upstream-b-consent-sign-in-only.png")

	err = chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button[name=decision][value=allow]`)))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(loc, a.base+"/account") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not back at A's account page; at %s", loc)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(a.base+"/account/password")); err != nil {
		t.Fatal(err)
	}
	if got := text(ctx, "main"); !strings.Contains(got, "You sign in with Instance B; this account has no password.") || strings.Contains(got, "Current password") {
		t.Errorf("A's password page for bob from B:\n%s", got)
	}
	shot(t, ctx, "upstream-a-password.png")

	link, err := a.srv.Core().DB.GetIdentity(context.Background(), b.base, b.ids["bob@example.com"])
	if err != nil {
		t.Fatalf("no identity link at A: %v", err)
	}

	// A's administrator, in another browser.
	admin, cancelAdmin := chromedp.NewContext(ctx, chromedp.WithNewBrowserContext())
	defer cancelAdmin()
	err = chromedp.Do(admin,
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(a.base+"/login?return_to=%2Fadmin%2Fusers"),
		chromedp.SendKeys(chromedp.CSS(`#email`), "alice@example.com"),
		chromedp.SendKeys(chromedp.CSS(`#password`), a.pws["alice@example.com"]),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`table`)),
	)
	if err != nil {
		t.Fatalf("admin sign-in at A: %v", err)
	}
	if got := text(admin, "table"); !strings.Contains(got, "via Instance B · bob@example.com, not verified") {
		t.Errorf("A's user list does not say where bob comes from:\n%s", got)
	}
	shot(t, admin, "upstream-a-admin-users.png")
	err = chromedp.Do(admin,
		chromedp.Navigate(a.base+"/admin/users/"+link.UserID),
		chromedp.WaitVisible(chromedp.CSS(`section.identities`)),
	)
	if err != nil {
		t.Fatalf("opening bob's page at A: %v", err)
	}
	if got := text(admin, "section.identities"); !strings.Contains(got, "Instance B") || !strings.Contains(got, b.base) ||
		!strings.Contains(got, b.ids["bob@example.com"]) || !strings.Contains(got, "Not verified") {
		t.Errorf("A's linked identities card:\n%s", got)
	}
	shot(t, admin, "upstream-a-admin-user.png")
}
