package web

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/store"
)

// fakeOAuth is an authorization server for the pages: pending requests
// and connected apps the test sets up, decisions it records.
type fakeOAuth struct {
	mu        sync.Mutex
	pending   map[string]oauth.PendingView
	expired   map[string]bool
	decisions []string // "allow r1 usr_…", "deny r2 usr_…"
	apps      map[string][]oauth.GrantView
	confirm   map[string]bool // client_id + " " + redirect URI: ConfirmEachTime answers true
}

func (f *fakeOAuth) BrowserBound(*http.Request, string) bool { return true }

func (f *fakeOAuth) ConfirmEachTime(_ context.Context, clientID, redirectURI string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.confirm[clientID+" "+redirectURI], nil
}

func (f *fakeOAuth) PendingFor(_ context.Context, id string, u store.User) (oauth.PendingView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.expired[id] {
		return oauth.PendingView{}, oauth.ErrRequestExpired
	}
	v, ok := f.pending[id]
	if !ok {
		return oauth.PendingView{}, oauth.ErrRequestNotFound
	}
	return v, nil
}

func (f *fakeOAuth) decide(kind, id string, u store.User) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.pending[id]
	if !ok {
		return "", oauth.ErrRequestNotFound
	}
	delete(f.pending, id)
	f.decisions = append(f.decisions, kind+" "+id+" "+u.ID)
	if kind == "deny" {
		return v.RedirectURI + "?error=access_denied&state=s&iss=x", nil
	}
	return v.RedirectURI + "?code=the-code&state=s&iss=x", nil
}

func (f *fakeOAuth) Approve(_ context.Context, id string, u store.User, _ store.Session) (string, error) {
	return f.decide("allow", id, u)
}

func (f *fakeOAuth) Deny(_ context.Context, id string, u store.User) (string, error) {
	return f.decide("deny", id, u)
}

func (f *fakeOAuth) SharedClaims(string) []oauth.SharedClaim { return nil }

func (f *fakeOAuth) ListGrants(_ context.Context, userID string) ([]oauth.GrantView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]oauth.GrantView(nil), f.apps[userID]...), nil
}

func (f *fakeOAuth) RevokeGrant(_ context.Context, userID, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, a := range f.apps[userID] {
		if a.ID == id {
			f.apps[userID] = append(f.apps[userID][:i], f.apps[userID][i+1:]...)
			f.decisions = append(f.decisions, "revoke "+id+" "+userID)
			return nil
		}
	}
	return store.ErrNotFound
}

func (f *fakeOAuth) taken() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.decisions...)
}

// oauthStack is the web stack with the OAuth pages mounted over fake.
func oauthStack(t *testing.T) (*stack, *fakeOAuth) {
	s := newStack(t)
	f := &fakeOAuth{pending: map[string]oauth.PendingView{}, expired: map[string]bool{}, apps: map[string][]oauth.GrantView{}, confirm: map[string]bool{}}
	mux := http.NewServeMux()
	s.web.Routes(mux)
	s.web.OAuthRoutes(mux, f)
	srv := httptest.NewServer(httpx.Common(mux, slog.New(slog.NewTextHandler(io.Discard, nil)), 8<<20, nil))
	t.Cleanup(srv.Close)
	cp := *s
	cp.srv = srv
	return &cp, f
}

var demoResource = oauth.Resource{URL: "https://mcp.example.com/mcp", Name: "Payments demo"}

func pendingView(id, kind, redirect string) oauth.PendingView {
	v := oauth.PendingView{
		ID: id, ClientID: "client_abc", ClientName: "Claude Desktop", ClientKind: kind,
		RedirectURI: redirect, RedirectHost: "127.0.0.1:4711", Resource: demoResource, NeedsConsent: true,
		Scopes:    []oauth.ScopeView{{Name: "payments:read", Description: "Read your payments data"}, {Name: "payments:write", Description: "Change your payments data"}},
		NewScopes: []oauth.ScopeView{{Name: "payments:write", Description: "Change your payments data"}},
		Granted:   []oauth.ScopeView{{Name: "payments:read", Description: "Read your payments data"}},
		ExpiresAt: time.Now().Add(10 * time.Minute),
	}
	switch kind {
	case store.ClientKindStatic:
		v.ClientVerified = true
	case store.ClientKindCIMD:
		v.ClientID, v.ClientHost = "https://claude.ai/oauth/client.json", "claude.ai"
	}
	return v
}

func TestConsentNeedsLogin(t *testing.T) {
	s, f := oauthStack(t)
	f.pending["areq_1"] = pendingView("areq_1", store.ClientKindDCR, "http://127.0.0.1:4711/callback")
	r := s.client().get("/oauth/consent?request=areq_1")
	wantRedirect(t, r, "/login?return_to="+url.QueryEscape("/oauth/consent?request=areq_1"))
	if SafeReturnTo("/oauth/consent?request=areq_1") != "/oauth/consent?request=areq_1" {
		t.Error("the login page would not come back to the consent page")
	}
}

func TestConsentPageContent(t *testing.T) {
	s, f := oauthStack(t)
	c := s.loggedIn("alice@example.com")
	for _, tc := range []struct {
		kind, redirect string
		want, not      []string
		formAction     string
	}{
		{store.ClientKindDCR, "http://127.0.0.1:4711/callback",
			[]string{"Unverified", "Claude Desktop", "client_abc", "127.0.0.1:4711", "Payments demo", "https://mcp.example.com/mcp",
				"Change your payments data", "Already allowed", "Read your payments data", "alice@example.com"},
			[]string{"badge-green"}, "http://127.0.0.1:4711"},
		{store.ClientKindCIMD, "cursor://anysphere.cursor-mcp/oauth/callback",
			[]string{"claude.ai", "identified itself through"}, []string{"Unverified application"}, "cursor:"},
		{store.ClientKindStatic, "https://app.example.com/cb",
			[]string{"Verified"}, []string{"Unverified", "alert-warn"}, "https://app.example.com"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			f.pending["areq_"+tc.kind] = pendingView("areq_"+tc.kind, tc.kind, tc.redirect)
			r := c.get("/oauth/consent?request=areq_" + tc.kind)
			wantStatus(t, r, http.StatusOK)
			wantBody(t, r, tc.want...)
			wantBody(t, r, `name="request" value="areq_`+tc.kind+`"`, `value="allow"`, `value="deny"`)
			wantNoBody(t, r, tc.not...)
			// Unframeable (clickjacking), uncacheable, and form-action widened
			// to the client's redirect target only.
			if r.Header.Get("X-Frame-Options") != "DENY" || r.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("headers %v", r.Header)
			}
			csp := r.Header.Get("Content-Security-Policy")
			if !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "form-action 'self' "+tc.formAction+";") {
				t.Errorf("CSP %q", csp)
			}
		})
	}
}

func TestConsentDecisions(t *testing.T) {
	s, f := oauthStack(t)
	c := s.loggedIn("alice@example.com")
	f.pending["areq_a"] = pendingView("areq_a", store.ClientKindDCR, "http://127.0.0.1:4711/callback")
	f.pending["areq_d"] = pendingView("areq_d", store.ClientKindDCR, "http://127.0.0.1:4711/callback")

	// Consent CSRF: a cross-site form post is refused before the handler.
	c.hdr.Set("Origin", "https://evil.example")
	c.hdr.Set("Sec-Fetch-Site", "cross-site")
	r := c.post("/oauth/consent", url.Values{"request": {"areq_a"}, "decision": {"allow"}})
	wantStatus(t, r, http.StatusForbidden)
	if got := f.taken(); len(got) != 0 {
		t.Fatalf("a cross-site post decided: %v", got)
	}
	c.hdr = http.Header{}

	r = c.post("/oauth/consent", url.Values{"request": {"areq_a"}, "decision": {"allow"}})
	wantRedirect(t, r, "http://127.0.0.1:4711/callback?code=the-code&state=s&iss=x")
	r = c.post("/oauth/consent", url.Values{"request": {"areq_d"}, "decision": {"deny"}})
	wantRedirect(t, r, "http://127.0.0.1:4711/callback?error=access_denied&state=s&iss=x")
	if got, want := strings.Join(f.taken(), ","), "allow areq_a "+s.alice.ID+",deny areq_d "+s.alice.ID; got != want {
		t.Errorf("decisions %q, want %q", got, want)
	}
	// Used up, unknown, expired, nonsense.
	wantStatus(t, c.post("/oauth/consent", url.Values{"request": {"areq_a"}, "decision": {"allow"}}), http.StatusNotFound)
	wantStatus(t, c.get("/oauth/consent?request=nope"), http.StatusNotFound)
	f.expired["areq_old"] = true
	wantStatus(t, c.get("/oauth/consent?request=areq_old"), http.StatusGone)
	f.pending["areq_x"] = pendingView("areq_x", store.ClientKindDCR, "http://127.0.0.1:4711/callback")
	wantStatus(t, c.post("/oauth/consent", url.Values{"request": {"areq_x"}, "decision": {"maybe"}}), http.StatusBadRequest)
}

func TestConsentAlreadyGiven(t *testing.T) {
	s, f := oauthStack(t)
	c := s.loggedIn("alice@example.com")
	v := pendingView("areq_k", store.ClientKindDCR, "http://127.0.0.1:4711/callback")
	v.NeedsConsent, v.NewScopes = false, nil
	f.pending["areq_k"] = v
	r := c.get("/oauth/consent?request=areq_k")
	wantStatus(t, r, http.StatusOK)
	loc := "http://127.0.0.1:4711/callback?code=the-code&state=s&iss=x"
	if r.Header.Get("Refresh") != "0; url="+loc {
		t.Errorf("Refresh %q", r.Header.Get("Refresh"))
	}
	wantBody(t, r, `id="continue" href="http://127.0.0.1:4711/callback?code=the-code&amp;state=s&amp;iss=x"`, "Returning to Claude Desktop")
	if got := f.taken(); len(got) != 1 || !strings.HasPrefix(got[0], "allow areq_k") {
		t.Errorf("decisions %v", got)
	}
}

// M3 (RFC 8252 §8.6): a public client at a loopback or private-use
// redirect is never approved without a click, even when every scope was
// allowed before: the page shows them as already allowed.
func TestConsentAlreadyGivenStillAsksNativePublicClients(t *testing.T) {
	s, f := oauthStack(t)
	c := s.loggedIn("alice@example.com")
	v := pendingView("areq_n", store.ClientKindDCR, "http://127.0.0.1:4711/callback")
	v.NeedsConsent, v.NewScopes = false, nil
	f.pending["areq_n"] = v
	f.confirm[v.ClientID+" "+v.RedirectURI] = true
	r := c.get("/oauth/consent?request=areq_n")
	wantStatus(t, r, http.StatusOK)
	if r.Header.Get("Refresh") != "" {
		t.Errorf("Refresh %q: the page continued to the client without a click", r.Header.Get("Refresh"))
	}
	wantBody(t, r, "Already allowed", "Read your payments data", `name="request" value="areq_n"`, `value="allow"`, `value="deny"`)
	wantNoBody(t, r, "It asks to", "the-code")
	if got := f.taken(); len(got) != 0 {
		t.Fatalf("approved without a click: %v", got)
	}
	// One click continues.
	r = c.post("/oauth/consent", url.Values{"request": {"areq_n"}, "decision": {"allow"}})
	wantRedirect(t, r, "http://127.0.0.1:4711/callback?code=the-code&state=s&iss=x")
}

func TestConnectedAppsPage(t *testing.T) {
	s, f := oauthStack(t)
	c := s.loggedIn("alice@example.com")
	r := c.get("/account/apps")
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, "No connected apps", `href="/account/apps" aria-current="page"`)

	f.apps[s.alice.ID] = []oauth.GrantView{{
		ID: "ocn_1", ClientID: "https://claude.ai/oauth/client.json", ClientName: "Claude", ClientKind: store.ClientKindCIMD,
		ClientHost: "claude.ai", Resource: demoResource.URL, ResourceName: "Payments demo",
		Scopes:    []oauth.ScopeView{{Name: "payments:read", Description: "Read your payments data"}},
		FirstUsed: time.Now().Add(-48 * time.Hour), LastUsed: time.Now().Add(-time.Hour),
	}, {
		ID: "ocn_2", ClientID: "client_x", ClientKind: store.ClientKindDCR, ClientHost: "127.0.0.1",
		Resource: demoResource.URL, FirstUsed: time.Now().Add(-time.Hour),
	}}
	r = c.get("/account/apps")
	wantBody(t, r, "Claude", "claude.ai", "payments:read", "Payments demo", "1 h ago", "client_x", "Unverified", "Never",
		`href="/account/apps/ocn_1/revoke"`)

	// bob sees none of alice's apps.
	b := s.loggedIn("bob@example.com")
	wantBody(t, b.get("/account/apps"), "No connected apps")
	wantStatus(t, b.get("/account/apps/ocn_1/revoke"), http.StatusNotFound)
	wantStatus(t, b.post("/account/apps/ocn_1/revoke", nil), http.StatusNotFound)

	r = c.get("/account/apps/ocn_1/revoke")
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, "Disconnect Claude?", "claude.ai", `action="/account/apps/ocn_1/revoke"`)

	c.hdr.Set("Origin", "https://evil.example")
	c.hdr.Set("Sec-Fetch-Site", "cross-site")
	wantStatus(t, c.post("/account/apps/ocn_1/revoke", nil), http.StatusForbidden)
	c.hdr = http.Header{}
	wantRedirect(t, c.post("/account/apps/ocn_1/revoke", nil), "/account/apps?done=app_revoked")
	r = c.get("/account/apps?done=app_revoked")
	wantBody(t, r, "The app was disconnected")
	wantNoBody(t, r, "claude.ai")
	if got := f.taken(); len(got) != 1 || got[0] != "revoke ocn_1 "+s.alice.ID {
		t.Errorf("decisions %v", got)
	}
}

func TestErrorPageForOAuth(t *testing.T) {
	s, _ := oauthStack(t)
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/authorize", nil)
	s.web.ErrorPage(w, r, http.StatusBadRequest, "Unknown application", "mcpgate does not know <this> app.")
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "mcpgate does not know &lt;this&gt; app.") ||
		w.Header().Get("X-Frame-Options") != "DENY" || !strings.Contains(w.Body.String(), "Go to sign in") {
		t.Errorf("ErrorPage: %d %v\n%s", w.Code, w.Header(), excerpt(w.Body.String()))
	}
}
