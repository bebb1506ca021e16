package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/mcpgate/mcpgate/internal/browsertest"

	"github.com/mcpgate/mcpgate/internal/identity"
)

// browser starts the shared headless Chromium (internal/browsertest): it
// skips the test when there is none, and fails instead under CI=true.
func browser(t *testing.T) context.Context { return browsertest.Start(t) }

// tab is one browser profile (own cookies) on one page.
type tab struct {
	t    *testing.T
	s    *stack
	ctx  context.Context
	shot *shooter
}

// newTab opens a tab in a fresh browser context (its own cookie jar), as
// a separate browser would be.
func newTab(t *testing.T, bctx context.Context, s *stack, shot *shooter, userAgent string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// The first run opens the tab and ties its life to ctx: no timeout here.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	tb := &tab{t: t, s: s, ctx: ctx, shot: shot}
	tb.do(chromedp.EmulateViewport(1280, 800))
	if userAgent != "" {
		tb.do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Call(ctx, emulation.SetUserAgentOverride, emulation.SetUserAgentOverrideParams{UserAgent: userAgent})
			return err
		}))
	}
	return tb
}

func (tb *tab) timeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(tb.ctx, 20*time.Second)
}

func (tb *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := tb.timeout()
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("browser: %v", err)
	}
}

// open navigates and returns the final path (after redirects).
func (tb *tab) open(path string) string {
	tb.t.Helper()
	tb.do(chromedp.Navigate(tb.s.srv.URL + path))
	return tb.path()
}

func (tb *tab) path() string {
	tb.t.Helper()
	ctx, cancel := tb.timeout()
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		tb.t.Fatal(err)
	}
	return strings.TrimPrefix(loc, tb.s.srv.URL)
}

// submit clicks a button that navigates, and returns the status of the
// page it lands on.
func (tb *tab) submit(sel string) int {
	tb.t.Helper()
	ctx, cancel := tb.timeout()
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		tb.t.Fatalf("clicking %s: %v", sel, err)
	}
	return int(resp.Status)
}

func (tb *tab) text(sel string) string {
	tb.t.Helper()
	ctx, cancel := tb.timeout()
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		tb.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func (tb *tab) wantText(sel string, want ...string) {
	tb.t.Helper()
	got := tb.text(sel)
	for _, w := range want {
		if !strings.Contains(got, w) {
			tb.t.Errorf("%s: %q lacks %q", sel, got, w)
		}
	}
}

// fill replaces the value of a text field by typing into it.
func (tb *tab) fill(sel, value string) {
	tb.t.Helper()
	q, _ := json.Marshal(sel)
	tb.do(chromedp.Evaluate[chromedp.Void](`document.querySelector(`+string(q)+`).value = ""`),
		chromedp.SendKeys(chromedp.CSS(sel), value))
}

func (tb *tab) login(email, password string) {
	tb.t.Helper()
	if p := tb.open("/login"); !strings.HasPrefix(p, "/login") {
		tb.t.Fatalf("login page: at %s", p)
	}
	tb.fill("#email", email)
	tb.fill("#password", password)
	if st := tb.submit("form[action='/login'] button[type=submit]"); st != http.StatusOK {
		tb.t.Fatalf("login as %s: status %d", email, st)
	}
}

// snap takes the screenshots of the current page.
func (tb *tab) snap(name string, phone bool) {
	tb.t.Helper()
	tb.shot.take(tb, name, phone)
}

// shooter writes screenshots to testout/screenshots at the repository root.
type shooter struct {
	dir   string
	taken []string
}

func newShooter(t *testing.T) *shooter {
	t.Helper()
	dir, err := os.Getwd()
	must(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root (go.mod) not found")
		}
		dir = parent
	}
	out := filepath.Join(dir, "testout", "screenshots")
	must(t, os.MkdirAll(out, 0o755))
	return &shooter{dir: out}
}

func (sh *shooter) take(tb *tab, name string, phone bool) {
	tb.t.Helper()
	sizes := []struct {
		suffix string
		view   chromedp.Action[chromedp.Void]
	}{{"desktop", chromedp.EmulateViewport(1280, 800)}}
	if phone {
		sizes = append(sizes, struct {
			suffix string
			view   chromedp.Action[chromedp.Void]
		}{"phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2))})
	}
	for _, sz := range sizes {
		ctx, cancel := tb.timeout()
		tb.do(sz.view)
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		cancel()
		if err != nil {
			tb.t.Fatalf("screenshot %s: %v", name, err)
		}
		file := filepath.Join(sh.dir, name+"-"+sz.suffix+".png")
		must(tb.t, os.WriteFile(file, png, 0o644))
		sh.taken = append(sh.taken, file)
	}
	tb.do(chromedp.EmulateViewport(1280, 800))
}

// sessionKeyFor creates the MCP session key of the tab's browser session,
// as POST /api/mcp/credentials would.
func sessionKeyFor(t *testing.T, tb *tab) {
	t.Helper()
	ctx, cancel := tb.timeout()
	defer cancel()
	cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{tb.s.srv.URL}})
	must(t, err)
	for _, ck := range cookies.Cookies {
		if ck.Name == tb.s.sessions.CookieName() {
			tb.s.sessionKey(ck.Value)
			return
		}
	}
	t.Fatal("no session cookie in the browser")
}

const (
	uaMac    = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	uaIPhone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)

// TestBrowser drives real Chromium through the account and admin pages,
// and screenshots every page at laptop and phone width.
func TestBrowser(t *testing.T) {
	bctx := browser(t)
	s := newStack(t)
	shot := newShooter(t)
	ctx := context.Background()

	alice := newTab(t, bctx, s, shot, uaMac)

	t.Run("login", func(t *testing.T) {
		alice.t = t
		if p := alice.open("/account/keys"); p != "/login?return_to=%2Faccount%2Fkeys" {
			t.Fatalf("not sent to the login page: %s", p)
		}
		alice.snap("login", true)
		alice.fill("#email", "alice@example.com")
		alice.fill("#password", "not the password")
		if st := alice.submit("form[action='/login'] button"); st != http.StatusUnprocessableEntity {
			t.Errorf("wrong password: status %d", st)
		}
		alice.wantText(".alert-error", "Incorrect email or password.")
		alice.snap("login-error", true)
		alice.fill("#password", testPassword)
		alice.submit("form[action='/login'] button")
		if p := alice.path(); p != "/account/keys" {
			t.Fatalf("after login: at %s, want /account/keys (return_to)", p)
		}
		alice.snap("keys-empty", true)
		// The web app's agent fetched this session's MCP credential.
		sessionKeyFor(t, alice)
		alice.open("/account")
		alice.wantText("main", "alice@example.com", "Alice Liddell", s.srv.URL+"/mcp")
		alice.snap("overview", true)
	})

	var plaintext string
	t.Run("create key, shown once", func(t *testing.T) {
		alice.t = t
		alice.open("/account/keys")
		alice.submit("a[href='/account/keys/new']")
		alice.snap("key-new", true)
		alice.fill("#name", "Claude Desktop")
		// No scope chosen: the server explains, and keeps what was typed.
		if st := alice.submit("form[action='/account/keys'] button[type=submit]"); st != http.StatusUnprocessableEntity {
			t.Fatalf("key without scopes: status %d", st)
		}
		alice.wantText("main", "Choose at least one scope.")
		alice.snap("key-new-error", false)
		alice.do(chromedp.Click(chromedp.CSS(`input[value="payments:read"]`)),
			chromedp.Click(chromedp.CSS(`input[value="payments:write"]`)),
			chromedp.SetValue(chromedp.CSS("#expires"), "90d"))
		if st := alice.submit("form[action='/account/keys'] button[type=submit]"); st != http.StatusOK {
			t.Fatalf("create key: status %d", st)
		}
		plaintext = strings.TrimSpace(alice.text("#new-key"))
		if !strings.HasPrefix(plaintext, "mcpg_") {
			t.Fatalf("no key shown: %q", plaintext)
		}
		alice.wantText("main", "you will not see it again")
		// The copy button is there (JavaScript ran under the CSP) and reacts.
		ctx2, cancel := alice.timeout()
		hidden, err := chromedp.Run(ctx2, chromedp.Evaluate[bool](`document.querySelector('button[data-copy="new-key"]').hidden`))
		cancel()
		if err != nil || hidden {
			t.Errorf("copy button hidden=%v err=%v", hidden, err)
		}
		alice.snap("key-created", true)
		alice.do(chromedp.Click(chromedp.CSS(`button[data-copy="new-key"]`)))
		label := "Copy"
		for i := 0; i < 40 && label == "Copy"; i++ {
			time.Sleep(25 * time.Millisecond)
			label = alice.text(`button[data-copy="new-key"]`)
		}
		if label != "Copied" && label != "Select and copy" {
			t.Errorf("copy button did not react: %q", label)
		}
		res, err := s.keys.Verify(ctx, plaintext)
		if err != nil {
			t.Fatalf("the shown key does not work: %v", err)
		}
		if strings.Join(res.Scopes(), " ") != "payments:read payments:write" {
			t.Errorf("scopes %v", res.Scopes())
		}
		// Back on the list the key is listed by its prefix, never in full.
		alice.submit("a[href='/account/keys']")
		body := alice.text("main")
		if strings.Contains(body, plaintext) {
			t.Fatal("the list shows the full key")
		}
		if !strings.Contains(body, "Claude Desktop") || !strings.Contains(body, mustKeys(t, s, s.alice.ID)[0].Prefix+"…") {
			t.Errorf("the list lacks the new key: %s", body)
		}
		alice.snap("keys", true)
	})

	t.Run("revoke key", func(t *testing.T) {
		alice.t = t
		alice.submit("td.actions a.btn-danger-outline")
		alice.wantText("main", "Revoke this API key?", "Claude Desktop")
		alice.snap("key-revoke-confirm", true)
		alice.submit("form button.btn-danger")
		alice.wantText(".alert-success", "The API key was revoked.")
		if _, err := s.keys.Verify(ctx, plaintext); err == nil {
			t.Fatal("the revoked key still works")
		}
		alice.do(chromedp.Click(chromedp.CSS("details.inactive summary")))
		alice.snap("keys-revoked", true)
	})

	phone := newTab(t, bctx, s, shot, uaIPhone)
	t.Run("sessions", func(t *testing.T) {
		alice.t, phone.t = t, t
		phone.login("alice@example.com", testPassword)
		if p := phone.path(); p != "/account" {
			t.Fatalf("second browser: at %s", p)
		}
		alice.open("/account/sessions")
		alice.wantText("main", "Chrome on macOS", "Safari on iPhone", "This session")
		alice.snap("sessions", true)
		alice.submit("td.actions a.btn-danger-outline")
		alice.wantText("main", "Sign out this session?", "Safari on iPhone")
		alice.snap("session-revoke-confirm", true)
		alice.submit("form button.btn-danger")
		alice.wantText(".alert-success", "The session was signed out.")
		if strings.Contains(alice.text("main"), "Safari on iPhone") {
			t.Error("the revoked session is still listed")
		}
		if p := phone.open("/account"); !strings.HasPrefix(p, "/login") {
			t.Fatalf("the revoked browser still gets in: %s", p)
		}

		// Sign in on the phone again, then sign out everything else.
		phone.login("alice@example.com", testPassword)
		alice.open("/account/sessions")
		alice.submit("a[href='/account/sessions/revoke-others']")
		alice.wantText("main", "Sign out all other sessions?", "1 session")
		alice.snap("sessions-revoke-others-confirm", false)
		alice.submit("form button.btn-danger")
		alice.wantText(".alert-success", "All your other sessions were signed out.")
		if p := phone.open("/account"); !strings.HasPrefix(p, "/login") {
			t.Fatalf("the other browser still gets in: %s", p)
		}
	})

	t.Run("cross-site form post is refused", func(t *testing.T) {
		alice.t = t
		before := len(mustKeys(t, s, s.alice.ID))
		evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, `<!doctype html><title>Win a prize</title>
<form method="post" action="%s/account/keys">
<input type="hidden" name="form_token" value="00112233445566778899aabbccddeeff">
<input type="hidden" name="name" value="stolen"><input type="hidden" name="scopes" value="account">
<input type="hidden" name="expires" value="never">
<button id="go" type="submit">Claim your prize</button></form>`, s.srv.URL)
		}))
		defer evil.Close()
		alice.do(chromedp.Navigate(evil.URL))
		st := alice.submit("#go")
		if st != http.StatusForbidden {
			t.Errorf("cross-site post: status %d, want 403", st)
		}
		alice.wantText("main", "Request refused", "sent from another website")
		alice.snap("csrf-refused", true)
		if after := len(mustKeys(t, s, s.alice.ID)); after != before {
			t.Fatal("the cross-site post created a key")
		}
	})

	t.Run("activity", func(t *testing.T) {
		alice.t = t
		s.flushAudit()
		alice.open("/account/activity")
		alice.wantText("main", "Signed in", "API key created", "API key revoked", "Session ended")
		alice.snap("activity", true)
		alice.do(chromedp.SetValue(chromedp.CSS("#type"), "key.created"))
		alice.submit("form.filters button")
		if p := alice.path(); p != "/account/activity?type=key.created" {
			t.Errorf("filter: at %s", p)
		}
		if strings.Contains(alice.text("table"), "Signed in") {
			t.Error("the filter did not filter")
		}
	})

	t.Run("change password", func(t *testing.T) {
		alice.t = t
		alice.open("/account/password")
		alice.snap("password", true)
		alice.fill("#current_password", testPassword)
		alice.fill("#new_password", "short")
		alice.fill("#confirm_password", "short")
		// The browser would block a short password only with minlength;
		// the server's message is what the user sees.
		alice.submit("form[action='/account/password'] button")
		alice.wantText("main", "Password is too short")
		alice.snap("password-error", false)
		const next = "a much better passphrase"
		alice.fill("#current_password", testPassword)
		alice.fill("#new_password", next)
		alice.fill("#confirm_password", next)
		alice.submit("form[action='/account/password'] button")
		alice.wantText(".alert-success", "Your password was changed.")
		alice.snap("password-changed", false)
		if p := alice.open("/account"); p != "/account" {
			t.Fatalf("signed out after changing the password: at %s", p)
		}
		if _, err := s.users.Login(ctx, "alice@example.com", next, "127.0.0.1"); err != nil {
			t.Fatalf("the new password does not work: %v", err)
		}
	})

	t.Run("logout", func(t *testing.T) {
		alice.t = t
		alice.submit("header form[action='/logout'] button")
		if p := alice.path(); p != "/login?done=signed_out" {
			t.Fatalf("after logout: at %s", p)
		}
		alice.wantText(".alert-success", "You have been signed out.")
		alice.snap("signed-out", false)
		if p := alice.open("/account"); !strings.HasPrefix(p, "/login") {
			t.Fatalf("still signed in after logout: %s", p)
		}
	})

	bob := newTab(t, bctx, s, shot, "")
	t.Run("non-admin gets a readable 403", func(t *testing.T) {
		bob.t = t
		bob.login("bob@example.com", testPassword)
		bob.open("/admin/users")
		bob.wantText("main", "Administrators only")
		bob.snap("forbidden", true)
		bob.open("/account/no-such-page")
		bob.wantText("main", "Page not found")
		bob.snap("not-found", false)
	})

	admin := newTab(t, bctx, s, shot, uaMac)
	t.Run("admin creates and disables a user", func(t *testing.T) {
		admin.t = t
		admin.login("admin@example.com", testPassword)
		admin.open("/admin/users")
		admin.snap("admin-users", true)
		admin.submit("a[href='/admin/users/new']")
		admin.snap("admin-user-new", true)
		admin.fill("#email", "erin@example.com")
		admin.fill("#name", "Erin Example")
		admin.fill("#roles", "support")
		if st := admin.submit("form[action='/admin/users'] button[type=submit]"); st != http.StatusOK {
			t.Fatalf("create user: status %d", st)
		}
		password := strings.TrimSpace(admin.text("#new-password"))
		if len(password) != 20 {
			t.Fatalf("no generated password shown: %q", password)
		}
		admin.snap("admin-user-created", true)
		erin, err := s.users.Login(ctx, "erin@example.com", password, "127.0.0.1")
		if err != nil {
			t.Fatalf("the shown password does not work: %v", err)
		}
		admin.submit("a.btn-secondary[href^='/admin/users/']")
		admin.wantText("main", "erin@example.com", "Erin Example", "support")
		admin.snap("admin-user", true)
		admin.submit("a[href$='/reset-password']")
		admin.wantText("main", "Reset the password of erin@example.com?")
		admin.snap("admin-user-reset-confirm", false)
		admin.submit("form button.btn-danger")
		password = strings.TrimSpace(admin.text("#new-password"))
		admin.wantText("main", "Password reset", "shown only once")
		admin.snap("admin-user-password-reset", true)
		if _, err := s.users.Login(ctx, "erin@example.com", password, "127.0.0.1"); err != nil {
			t.Fatalf("the reset password does not work: %v", err)
		}
		admin.submit("a.btn-secondary[href^='/admin/users/']")
		admin.submit("a[href$='/disable']")
		admin.wantText("main", "Disable erin@example.com?")
		admin.snap("admin-user-disable-confirm", false)
		admin.submit("form button.btn-danger")
		admin.wantText(".alert-success", "The user was disabled")
		admin.snap("admin-user-disabled", false)
		if _, err := s.users.Login(ctx, "erin@example.com", password, "127.0.0.1"); !errors.Is(err, identity.ErrInvalidCredentials) {
			t.Fatalf("a disabled user can still log in: %v", err)
		}
		if u, _ := s.users.Get(ctx, erin.ID); !u.Disabled {
			t.Fatal("not disabled")
		}
		s.flushAudit()
		admin.open("/admin/audit")
		admin.wantText("main", "User disabled", "erin@example.com")
		admin.snap("admin-audit", true)
	})

	t.Logf("%d screenshots in %s", len(shot.taken), shot.dir)
}
