package server_test

// The OAuth 2.1 authorization server, end to end, as an MCP client meets
// it: the go-sdk's own OAuth client (auth.AuthorizationCodeHandler in
// mcp.StreamableClientTransport) against the real server of newEnv. The
// client discovers everything from the 401, identifies itself (dynamic
// registration, a Client ID Metadata Document, or a client the operator
// registered), sends "the user" through the login and consent pages (a
// cookie-jar HTTP client standing in for the browser), exchanges the code
// with PKCE and calls tools as that user; then its token is refreshed, it
// is revoked (RFC 7009), and the next call is refused.

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/oauth2"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/server"
)

// httptestRoots trusts the certificate every httptest TLS server uses, so
// the CIMD test can serve its client metadata document over https on
// loopback (mcpgate fetches documents over https only).
func httptestRoots() *x509.CertPool {
	ts := httptest.NewTLSServer(http.NotFoundHandler())
	defer ts.Close()
	pool := x509.NewCertPool()
	pool.AddCert(ts.Certificate())
	return pool
}

// callbackPath is the redirect URI's path. Nothing listens there: the
// user agent stops at the redirect and hands the query to the client.
const callbackPath = "/callback"

// userAgent plays the user's browser over plain HTTP: it follows the
// authorization URL, signs in on the login page when asked, and answers
// the consent page. It keeps its cookies (the mcpgate session) between
// authorizations, like a browser does.
type userAgent struct {
	t        *testing.T
	e        *env
	email    string
	c        *http.Client
	mu       sync.Mutex
	decision string   // "allow" (default) or "deny"
	refuse   error    // when set, the user closes the browser: authorization fails with it
	consents []string // consent pages shown, in order
	logins   int      // times the login page was answered
	clientID string   // the client_id of the last authorization URL
	authURLs []string
}

func newUserAgent(t *testing.T, e *env, email string) *userAgent {
	jar, _ := cookiejar.New(nil)
	ua := &userAgent{t: t, e: e, email: email, decision: "allow"}
	ua.c = &http.Client{
		Jar:     jar,
		Timeout: 10 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Path == callbackPath {
				return http.ErrUseLastResponse // back at the client: stop
			}
			if len(via) > 10 {
				return fmt.Errorf("too many redirects")
			}
			return nil
		},
	}
	return ua
}

// hiddenRequest finds the consent form's pending request id.
var hiddenRequest = regexp.MustCompile(`<input type="hidden" name="request" value="([^"]+)">`)

// fetch is the handler's AuthorizationCodeFetcher.
func (ua *userAgent) fetch(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
	ua.mu.Lock()
	refuse := ua.refuse
	ua.authURLs = append(ua.authURLs, args.URL)
	ua.mu.Unlock()
	if refuse != nil {
		return nil, refuse
	}
	au, err := url.Parse(args.URL)
	if err != nil {
		return nil, err
	}
	ua.mu.Lock()
	ua.clientID = au.Query().Get("client_id")
	ua.mu.Unlock()
	resp, body, err := ua.do(ctx, "GET", args.URL, nil)
	if err != nil {
		return nil, err
	}
	for range 4 {
		switch {
		case resp.Request.URL.Path == callbackPath || resp.StatusCode/100 == 3:
			return ua.result(resp)
		case resp.Request.URL.Path == "/login" && resp.StatusCode == http.StatusOK:
			ua.mu.Lock()
			ua.logins++
			ua.mu.Unlock()
			resp, body, err = ua.do(ctx, "POST", ua.e.base+"/login", url.Values{
				"email": {ua.email}, "password": {ua.e.pws[ua.email]},
				"return_to": {resp.Request.URL.Query().Get("return_to")},
			})
		case resp.Request.URL.Path == "/oauth/consent" && resp.StatusCode == http.StatusOK:
			if loc, ok := strings.CutPrefix(resp.Header.Get("Refresh"), "0; url="); ok {
				// Consent given before: the page only sends the browser on.
				return ua.resultFrom(loc)
			}
			m := hiddenRequest.FindStringSubmatch(body)
			if m == nil {
				return nil, fmt.Errorf("the consent page has no request field:\n%s", body)
			}
			ua.mu.Lock()
			ua.consents = append(ua.consents, body)
			decision := ua.decision
			ua.mu.Unlock()
			resp, body, err = ua.do(ctx, "POST", ua.e.base+"/oauth/consent", url.Values{
				"request": {html.UnescapeString(m[1])}, "decision": {decision},
			})
		default:
			return nil, fmt.Errorf("the browser is stuck at %s (HTTP %d):\n%s", resp.Request.URL, resp.StatusCode, body)
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("authorization did not finish")
}

func (ua *userAgent) do(ctx context.Context, method, u string, form url.Values) (*http.Response, string, error) {
	var rd io.Reader
	if form != nil {
		rd = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, "", err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := ua.c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// result reads the authorization response from a redirect to the client.
func (ua *userAgent) result(resp *http.Response) (*auth.AuthorizationResult, error) {
	loc, err := resp.Location()
	if err != nil {
		return nil, fmt.Errorf("redirect without Location (HTTP %d)", resp.StatusCode)
	}
	return ua.resultFrom(loc.String())
}

func (ua *userAgent) resultFrom(loc string) (*auth.AuthorizationResult, error) {
	u, err := url.Parse(loc)
	if err != nil {
		return nil, err
	}
	if u.Path != callbackPath {
		return nil, fmt.Errorf("redirected to %s, not to the client", loc)
	}
	q := u.Query()
	if e := q.Get("error"); e != "" {
		return nil, fmt.Errorf("authorization refused: %s (%s)", e, q.Get("error_description"))
	}
	return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
}

// counts says how often the user signed in and saw a consent page.
func (ua *userAgent) counts() (logins, consents int) {
	ua.mu.Lock()
	defer ua.mu.Unlock()
	return ua.logins, len(ua.consents)
}

func (ua *userAgent) lastConsent() string {
	ua.mu.Lock()
	defer ua.mu.Unlock()
	if len(ua.consents) == 0 {
		ua.t.Fatal("no consent page was shown")
	}
	return ua.consents[len(ua.consents)-1]
}

// checkConnectedApp asserts that GET /api/apps, with the user agent's
// session, lists the client as a connected app at /mcp.
func (ua *userAgent) checkConnectedApp(t *testing.T, clientID, kind string) {
	t.Helper()
	resp, body, err := ua.do(context.Background(), "GET", ua.e.base+"/api/apps", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/apps: %d %s", resp.StatusCode, body)
	}
	var out struct {
		Apps []struct {
			ClientID   string `json:"client_id"`
			ClientKind string `json:"client_kind"`
			Resource   string `json:"resource"`
			Scopes     []struct {
				Name string `json:"name"`
			} `json:"scopes"`
		} `json:"apps"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &out) != nil {
		t.Fatalf("GET /api/apps: %d %s", resp.StatusCode, body)
	}
	for _, a := range out.Apps {
		if a.ClientID == clientID {
			if a.ClientKind != kind || a.Resource != ua.e.base+"/mcp" || len(a.Scopes) == 0 {
				t.Errorf("connected app = %+v", a)
			}
			return
		}
	}
	t.Errorf("GET /api/apps does not list %s: %s", clientID, body)
}

// tokenSources records the token sources the handler builds (one per
// authorization) and lets a test force a refresh: the next Token() call
// refreshes through the real token endpoint (golang.org/x/oauth2's
// refresh), exactly as when the access token expires.
type tokenSources struct {
	mu   sync.Mutex
	list []*refreshable
}

type refreshable struct {
	mu        sync.Mutex
	cfg       *oauth2.Config
	ctx       context.Context
	tok       *oauth2.Token
	force     bool
	refreshed int
}

func (ts *tokenSources) build(ctx context.Context, cfg *oauth2.Config, tok *oauth2.Token) (oauth2.TokenSource, error) {
	r := &refreshable{cfg: cfg, ctx: ctx, tok: tok}
	ts.mu.Lock()
	ts.list = append(ts.list, r)
	ts.mu.Unlock()
	return r, nil
}

func (ts *tokenSources) current(t *testing.T) *refreshable {
	t.Helper()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.list) == 0 {
		t.Fatal("the client never got a token")
	}
	return ts.list[len(ts.list)-1]
}

func (r *refreshable) Token() (*oauth2.Token, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.force || !r.tok.Valid() {
		stale := *r.tok
		stale.Expiry = time.Unix(1, 0) // expired: the library refreshes
		t, err := r.cfg.TokenSource(r.ctx, &stale).Token()
		if err != nil {
			return nil, err
		}
		r.tok, r.force = t, false
		r.refreshed++
	}
	return r.tok, nil
}

func (r *refreshable) token() *oauth2.Token {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tok
}

func (r *refreshable) forceRefresh() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.force = true
}

// oauthClient is the go-sdk MCP client with an OAuth handler.
type oauthClient struct {
	ua      *userAgent
	sources *tokenSources
	cs      *mcp.ClientSession
}

func connectOAuth(t *testing.T, e *env, ua *userAgent, cfg auth.AuthorizationCodeHandlerConfig) (*oauthClient, error) {
	t.Helper()
	oc := &oauthClient{ua: ua, sources: &tokenSources{}}
	cfg.AuthorizationCodeFetcher = ua.fetch
	cfg.NewTokenSource = oc.sources.build
	cfg.Client = &http.Client{Timeout: 10 * time.Second}
	h, err := auth.NewAuthorizationCodeHandler(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "go-sdk-oauth-e2e", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	oc.cs, err = client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint: e.base + "/mcp", OAuthHandler: h, MaxRetries: -1, DisableStandaloneSSE: true,
	}, nil)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { oc.cs.Close() })
	return oc, nil
}

func (oc *oauthClient) call(name string, args map[string]any) (*mcp.CallToolResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return oc.cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
}

func (oc *oauthClient) balance(t *testing.T) float64 {
	t.Helper()
	res, err := oc.call("getAccountBalance", map[string]any{})
	if err != nil {
		t.Fatalf("getAccountBalance: %v", err)
	}
	if res.IsError {
		t.Fatalf("getAccountBalance failed: %+v", res.Content)
	}
	return res.StructuredContent.(map[string]any)["balance"].(float64)
}

// mcpStatus is the status /mcp answers a tools/list with an access token,
// and its WWW-Authenticate header.
func (e *env) mcpStatus(t *testing.T, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", e.base+"/mcp", strings.NewReader(
		`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/list")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

// postForm posts to an OAuth endpoint, with HTTP Basic client
// authentication when secret is set, and returns status and JSON body.
func (e *env) postForm(t *testing.T, path string, form url.Values, clientID, secret string) (int, map[string]any) {
	t.Helper()
	if secret == "" {
		form.Set("client_id", clientID)
	}
	req, _ := http.NewRequest("POST", e.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if secret != "" {
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

// redirectURI is a loopback redirect URI (any port is accepted for
// loopback, RFC 8252 §7.3; nothing listens).
func redirectURI(t *testing.T) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", freePort(t), callbackPath)
}

// TestGoSDKOAuthClient runs the whole flow once per way a client can
// identify itself.
func TestGoSDKOAuthClient(t *testing.T) {
	server.AllowCIMDLoopbackForTests(httptestRoots())
	e := newEnv(t)
	ctx := context.Background()
	alice := "alice@example.com"

	type setup struct {
		cfg    auth.AuthorizationCodeHandlerConfig
		secret string
		// badge is how the consent page presents the client.
		badge    string
		wantKind string
	}
	cases := []struct {
		name  string
		setup func(t *testing.T) setup
	}{
		{"dynamic registration", func(t *testing.T) setup {
			redirect := redirectURI(t)
			return setup{cfg: auth.AuthorizationCodeHandlerConfig{
				DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
					RedirectURIs: []string{redirect}, ClientName: "Go SDK e2e (DCR)", TokenEndpointAuthMethod: "none",
					GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"},
				}},
				RedirectURL: redirect, RequestRefreshToken: true,
			}, badge: "<strong>Unverified application.</strong>", wantKind: "dcr"}
		}},
		{"client ID metadata document", func(t *testing.T) setup {
			redirect := redirectURI(t)
			var docURL string
			docs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/oauth/client.json" {
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Cache-Control", "max-age=300")
				json.NewEncoder(w).Encode(map[string]any{
					"client_id": docURL, "client_name": "Go SDK e2e (CIMD)", "redirect_uris": []string{redirect},
					"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
					"token_endpoint_auth_method": "none",
				})
			}))
			docs.Config.ErrorLog = log.New(io.Discard, "", 0)
			docs.StartTLS()
			t.Cleanup(docs.Close)
			docURL = docs.URL + "/oauth/client.json"
			return setup{cfg: auth.AuthorizationCodeHandlerConfig{
				ClientIDMetadataDocumentConfig: &auth.ClientIDMetadataDocumentConfig{URL: docURL},
				RedirectURL:                    redirect, RequestRefreshToken: true,
			}, badge: "identified itself through <strong>127.0.0.1</strong>", wantKind: "cimd"}
		}},
		{"pre-registered confidential client", func(t *testing.T) setup {
			redirect := redirectURI(t)
			cl, secret, err := e.srv.OAuthClients().CreateStatic(ctx, oauth.StaticClient{
				Name: "Go SDK e2e (operator)", RedirectURIs: []string{redirect}, Confidential: true,
			})
			if err != nil {
				t.Fatal(err)
			}
			return setup{cfg: auth.AuthorizationCodeHandlerConfig{
				PreregisteredClient: &oauthex.ClientCredentials{ClientID: cl.ClientID, ClientSecretAuth: &oauthex.ClientSecretAuth{ClientSecret: secret}},
				RedirectURL:         redirect,
			}, secret: secret, badge: `<span class="badge badge-green">Verified</span>`, wantKind: "static"}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.setup(t)
			ua := newUserAgent(t, e, alice)
			oc, err := connectOAuth(t, e, ua, s.cfg)
			if err != nil {
				t.Fatalf("connect with OAuth: %v", err)
			}

			// Login and consent happened once, for alice, and the consent
			// page presented the client as it is.
			if logins, consents := ua.counts(); logins != 1 || consents != 1 {
				t.Errorf("logins = %d, consent pages = %d; want 1 and 1", logins, consents)
			}
			page := ua.lastConsent()
			for _, want := range []string{s.badge, alice, e.base + "/mcp", "payments:read", "payments:write"} {
				if !strings.Contains(page, want) {
					t.Errorf("the consent page does not show %q", want)
				}
			}
			au, _ := url.Parse(ua.authURLs[0])
			if q := au.Query(); q.Get("code_challenge_method") != "S256" || q.Get("resource") != e.base+"/mcp" {
				t.Errorf("authorization request: %s", au.RawQuery)
			}
			if s.wantKind == "cimd" && ua.clientID != s.cfg.ClientIDMetadataDocumentConfig.URL {
				t.Errorf("client_id = %q, want the document URL", ua.clientID)
			}
			cl, err := e.srv.OAuthClients().Get(ctx, ua.clientID)
			if err != nil || cl.Kind != s.wantKind {
				t.Fatalf("client %q: kind %q (%v), want %s", ua.clientID, cl.Kind, err, s.wantKind)
			}

			// A tool call as alice.
			if got := oc.balance(t); got != 180 {
				t.Errorf("alice's balance = %v, want 180", got)
			}
			first := oc.sources.current(t).token()
			if first.RefreshToken == "" {
				t.Fatal("no refresh token")
			}

			// Refresh: the client renews its access token at the token
			// endpoint, gets a new refresh token (rotation), and keeps
			// calling tools without the user.
			oc.sources.current(t).forceRefresh()
			if got := oc.balance(t); got != 180 {
				t.Errorf("balance after refresh = %v, want 180", got)
			}
			second := oc.sources.current(t).token()
			if oc.sources.current(t).refreshed != 1 || second.AccessToken == first.AccessToken || second.RefreshToken == first.RefreshToken {
				t.Errorf("no rotation: refreshed %d times, same access token %v, same refresh token %v",
					oc.sources.current(t).refreshed, second.AccessToken == first.AccessToken, second.RefreshToken == first.RefreshToken)
			}
			if ev := e.lastAudit(audit.TypeOAuthTokenRefreshed); ev.UserID != e.ids[alice] || ev.Details["client_id"] != ua.clientID {
				t.Errorf("refresh audit event = %+v", ev)
			}
			if logins, consents := ua.counts(); logins != 1 || consents != 1 {
				t.Errorf("the refresh bothered the user: logins %d, consent pages %d", logins, consents)
			}

			// Alice sees the app among her connected apps (the JSON API;
			// her browser session is the user agent's cookie).
			ua.checkConnectedApp(t, ua.clientID, s.wantKind)

			// Revoke (RFC 7009) the refresh token: the whole grant ends,
			// and the access token in hand stops working.
			status, body := e.postForm(t, "/revoke", url.Values{"token": {second.RefreshToken}, "token_type_hint": {"refresh_token"}}, ua.clientID, s.secret)
			if status != http.StatusOK {
				t.Fatalf("revoke: %d %v", status, body)
			}
			if st, challenge := e.mcpStatus(t, second.AccessToken); st != http.StatusUnauthorized || !strings.Contains(challenge, `error="invalid_token"`) {
				t.Errorf("revoked access token at /mcp: %d %q, want 401 invalid_token", st, challenge)
			}
			status, body = e.postForm(t, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {second.RefreshToken}}, ua.clientID, s.secret)
			if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
				t.Errorf("refresh after revocation: %d %v, want 400 invalid_grant", status, body)
			}
			// The client's next call is refused: it gets a 401, starts a
			// new authorization, and the user does not come back.
			ua.mu.Lock()
			ua.refuse = fmt.Errorf("the user closed the browser")
			before := len(ua.authURLs)
			ua.mu.Unlock()
			if res, err := oc.call("getAccountBalance", map[string]any{}); err == nil {
				t.Errorf("a call after revocation succeeded: %+v", res)
			} else if !strings.Contains(err.Error(), "the user closed the browser") {
				t.Errorf("a call after revocation failed with %v, want the client to re-authorize", err)
			}
			ua.mu.Lock()
			started := len(ua.authURLs) - before
			ua.mu.Unlock()
			if started != 1 {
				t.Errorf("after revocation the client started %d authorizations, want 1", started)
			}
			if ev := e.lastAudit(audit.TypeOAuthTokenRevoked); ev.UserID != e.ids[alice] || ev.Outcome != "allow" {
				t.Errorf("revocation audit event = %+v", ev)
			}
		})
	}
}

// TestOAuthStepUp: a client authorized for payments:read only calls
// transfer, gets 403 insufficient_scope naming payments:write, asks the
// user again — the consent page asks for payments:write only — and the
// call then goes through.
func TestOAuthStepUp(t *testing.T) {
	e := newEnv(t)
	alice, bob := "alice@example.com", "bob@example.com"
	redirect := redirectURI(t)
	ua := newUserAgent(t, e, alice)
	var rounds atomic.Int32
	oc, err := connectOAuth(t, e, ua, auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs: []string{redirect}, ClientName: "Step-up client", TokenEndpointAuthMethod: "none",
		}},
		RedirectURL: redirect,
		// The first authorization asks for read access only.
		ScopeFilter: func(discovered []string) []string {
			if rounds.Add(1) == 1 {
				return []string{"payments:read"}
			}
			return discovered
		},
	})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if got := oc.sources.current(t).token().Extra("scope"); got != "payments:read" {
		t.Fatalf("first token scope = %v, want payments:read", got)
	}
	if got := oc.balance(t); got != 180 {
		t.Fatalf("balance = %v", got)
	}
	// With a read-only token the server refuses transfer before it runs.
	st, _ := e.mcpStatus(t, oc.sources.current(t).token().AccessToken)
	if st != http.StatusOK {
		t.Fatalf("tools/list with the read token: %d", st)
	}

	res, err := oc.call("transfer", map[string]any{"to": bob, "amount": 5, "idempotency_key": "step-up-1"})
	if err != nil || res.IsError {
		t.Fatalf("transfer after step-up: %v %+v", err, res)
	}
	// The 403 carried the missing scope, and the client asked again.
	denied := e.lastAudit(audit.TypeToolDenied)
	if denied.Tool != "transfer" || denied.UserID != e.ids[alice] {
		t.Errorf("tool.denied event = %+v", denied)
	}
	logins, consents := ua.counts()
	if rounds.Load() != 2 || consents != 2 {
		t.Fatalf("authorizations = %d, consent pages = %d; want 2 and 2", rounds.Load(), consents)
	}
	if logins != 1 {
		t.Errorf("the user signed in %d times, want 1 (the session carries over)", logins)
	}
	au, _ := url.Parse(ua.authURLs[1])
	// The client's order of the union is its own; compare as sets.
	if got := sortedFields(au.Query().Get("scope")); !slices.Equal(got, []string{"payments:read", "payments:write"}) {
		t.Errorf("step-up authorization asked for %v, want read and write", got)
	}
	// The second consent page asks for payments:write only and lists
	// payments:read as already allowed.
	page := ua.lastConsent()
	asks, allowed, ok := strings.Cut(page, "Already allowed")
	if !ok || !strings.Contains(asks, "payments:write") || strings.Contains(asks, "payments:read") || !strings.Contains(allowed, "payments:read") {
		t.Errorf("the step-up consent page does not ask for the new scope only:\n%s", page)
	}
	granted := e.lastAudit(audit.TypeOAuthConsentGranted)
	if diff := cmp.Diff([]any{"payments:write"}, granted.Details["added_scopes"]); diff != "" {
		t.Errorf("consent_granted added_scopes (-want +got):\n%s", diff)
	}
	if got, _ := oc.sources.current(t).token().Extra("scope").(string); !slices.Equal(sortedFields(got), []string{"payments:read", "payments:write"}) {
		t.Errorf("token scope after step-up = %q", got)
	}
	if got := oc.balance(t); got != 175 {
		t.Errorf("alice's balance after sending 5 = %v, want 175", got)
	}
	// Bob received it.
	cs, err := e.connect(bearer(e.keys[bob]), "")
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if got := e.balance(cs); got != -195 {
		t.Errorf("bob's balance = %v, want -195", got)
	}
}

// sortedFields splits a space-separated scope string and sorts it.
func sortedFields(s string) []string {
	f := strings.Fields(s)
	slices.Sort(f)
	return f
}
