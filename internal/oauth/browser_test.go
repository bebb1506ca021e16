package oauth_test

// Real Chromium through the authorization flow: the login page, the
// consent page (Allow), and the browser's own redirect to the client's
// loopback callback. Browsers enforce what a Go HTTP client does not:
// CSP form-action also governs the redirect that follows a form post, so
// this test shows the consent page's policy lets the code reach the
// client, and that a returning user (consent remembered, but signed out)
// gets through the login form to the client as well.

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mcpgate/mcpgate/internal/browsertest"
)

// chromium starts the shared headless Chromium (internal/browsertest).
func chromium(t *testing.T) context.Context { return browsertest.Start(t) }

// callbackServer is the client's loopback redirect target.
type callbackServer struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []url.Values
}

func newCallbackServer(t *testing.T) *callbackServer {
	c := &callbackServer{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r) // the browser's favicon request
			return
		}
		c.mu.Lock()
		c.got = append(c.got, r.URL.Query())
		c.mu.Unlock()
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<!doctype html><title>done</title><h1>You can close this window</h1>"))
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *callbackServer) wait(t *testing.T, n int) url.Values {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		if len(c.got) >= n {
			q := c.got[n-1]
			c.mu.Unlock()
			return q
		}
		c.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the client's callback was not reached (%d calls)", n-1)
	return nil
}

func TestBrowserConsentFlow(t *testing.T) {
	bctx := chromium(t)
	s := newStack(t, storeSQLite(t), stackOptions{})
	cb := newCallbackServer(t)
	id := registerDCR(t, s, "Browser MCP client")
	shots := screenshotDir(t)

	run := func(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(tctx, actions...); err != nil {
			t.Fatalf("browser: %v", err)
		}
	}
	authURL := func() string {
		_, ch := pkce()
		q := s.codeRequest(id, ch)
		q.Set("redirect_uri", cb.srv.URL+"/callback")
		return s.authURL(q)
	}
	login := []chromedp.Action[chromedp.Void]{
		chromedp.WaitVisible(chromedp.CSS("#email")),
		chromedp.SendKeys(chromedp.CSS("#email"), "alice@example.com"),
		chromedp.SendKeys(chromedp.CSS("#password"), testPassword),
		chromedp.Click(chromedp.CSS("form[action='/login'] button[type=submit]")),
	}

	// First visit: login, the consent page, Allow.
	tab1, cancel1 := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
	defer cancel1()
	must(t, chromedp.Do(tab1)) // opens the tab; its life is tied to tab1, so no timeout here
	run(t, tab1, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(authURL()))
	run(t, tab1, login...)
	run(t, tab1, chromedp.WaitVisible(chromedp.CSS("button[value=allow]")))
	shots.take(t, tab1, "oauth-consent")
	run(t, tab1, chromedp.Click(chromedp.CSS("button[value=allow]")))
	q := cb.wait(t, 1)
	if q.Get("code") == "" || q.Get("iss") != s.base || q.Get("state") != "xyz-state" {
		t.Fatalf("callback after Allow: %v", q)
	}

	// The connected apps page lists the client.
	run(t, tab1, chromedp.Navigate(s.base+"/account/apps"), chromedp.WaitVisible(chromedp.CSS("table")))
	shots.take(t, tab1, "oauth-connected-apps")

	// A returning user in a new browser (signed out, consent remembered):
	// login → the consent page once more, everything already allowed (a
	// public client at a loopback redirect is confirmed each time, RFC 8252
	// §8.6) → one click, and the code reaches the client.
	tab2, cancel2 := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
	defer cancel2()
	must(t, chromedp.Do(tab2))
	run(t, tab2, chromedp.Navigate(authURL()))
	run(t, tab2, login...)
	run(t, tab2, chromedp.WaitVisible(chromedp.CSS("button[value=allow]")))
	run(t, tab2, chromedp.Click(chromedp.CSS("button[value=allow]")))
	q = cb.wait(t, 2)
	if q.Get("code") == "" || q.Get("iss") != s.base {
		t.Fatalf("callback for a returning user: %v", q)
	}
}

// shooter saves screenshots under testout/screenshots at the repository
// root (ignored by git), like the web package's browser test.
type shooter struct{ dir string }

func screenshotDir(t *testing.T) shooter {
	t.Helper()
	dir, err := os.Getwd()
	must(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root not found")
		}
		dir = parent
	}
	out := filepath.Join(dir, "testout", "screenshots")
	must(t, os.MkdirAll(out, 0o755))
	return shooter{dir: out}
}

func (sh shooter) take(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	must(t, os.WriteFile(filepath.Join(sh.dir, name+".png"), png, 0o644))
}
