package server_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/oauth"
)

// TestPendingRequestBoundToBrowser: an authorization request id that leaks
// (it travels in URLs) is useless in another browser: bob, signed in with
// his own session, cannot view or approve the request alice's browser
// started, so no code bound to bob's account reaches alice's client.
func TestPendingRequestBoundToBrowser(t *testing.T) {
	e := newEnv(t)
	cl, _, err := e.srv.OAuthClients().CreateStatic(context.Background(), oauth.StaticClient{
		Name: "Web app", RedirectURIs: []string{"https://app.example/cb"}})
	if err != nil {
		t.Fatal(err)
	}
	browser := func() *http.Client {
		jar, _ := cookiejar.New(nil)
		return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	alice, bob := browser(), browser()
	// alice's browser starts an authorization and is sent to the login page.
	q := url.Values{"response_type": {"code"}, "client_id": {cl.ClientID}, "redirect_uri": {"https://app.example/cb"},
		"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}, "state": {"s"}}
	resp, err := alice.Get(e.base + "/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	consent, _ := url.Parse(loc.Query().Get("return_to"))
	id := consent.Query().Get("request")
	if id == "" {
		t.Fatalf("no pending request in %s", resp.Header.Get("Location"))
	}
	// bob signs in normally in his own browser…
	resp, err = bob.PostForm(e.base+"/login", url.Values{"email": {"bob@example.com"}, "password": {e.pws["bob@example.com"]}, "return_to": {"/account"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("bob's login: %d", resp.StatusCode)
	}
	// …and tries alice's request id.
	resp, err = bob.Get(e.base + "/oauth/consent?request=" + url.QueryEscape(id))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "another browser") {
		t.Errorf("bob viewing alice's request: %d", resp.StatusCode)
	}
	resp, err = bob.PostForm(e.base+"/oauth/consent", url.Values{"request": {id}, "decision": {"allow"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || strings.Contains(resp.Header.Get("Location"), "code=") {
		t.Errorf("bob approving alice's request: %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// alice, in the browser that started it, still can.
	resp, err = alice.PostForm(e.base+"/login", url.Values{"email": {"alice@example.com"}, "password": {e.pws["alice@example.com"]},
		"return_to": {consent.String()}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = alice.PostForm(e.base+"/oauth/consent", url.Values{"request": {id}, "decision": {"allow"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.Contains(resp.Header.Get("Location"), "code=") {
		t.Errorf("alice approving her own request: %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}
