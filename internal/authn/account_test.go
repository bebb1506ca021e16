package authn_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Record(_ context.Context, e audit.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) take() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

type accountEnv struct {
	rec      *recorder
	keys     *apikeys.Service
	sessions *session.Manager
	handler  http.Handler
	user     store.User
	cookie   *http.Cookie
	session  store.Session
	decision []string
}

const base = "https://mcp.example.com"

func newAccountEnv(t *testing.T) *accountEnv {
	db := storetest.SQLite(t)
	e := &accountEnv{rec: &recorder{}}
	e.keys = apikeys.New(db, e.rec, apikeys.Options{})
	e.sessions = session.New(db, e.rec, session.Options{Secure: true})
	a := authn.New(authn.Options{
		Keys: e.keys, Users: db.GetUser, Audit: e.rec, Resource: base + "/mcp",
		ResourceMetadataURL: base + "/.well-known/oauth-protected-resource/mcp",
		Scopes:              []string{"payments:read", "payments:write"},
		AllowedOrigins:      []string{base},
		Sessions:            e.sessions,
		OnDecision:          func(method, outcome, reason string) { e.decision = append(e.decision, method+" "+outcome+" "+reason) },
	})
	e.handler = a.Account(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := principal.From(r.Context())
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(p)
	}))
	e.user = store.User{ID: store.NewID("usr"), Email: "alice@example.com", DisplayName: "Alice", Roles: []string{"admin"}, CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := db.CreateUser(context.Background(), e.user); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, base+"/login", nil)
	s, err := e.sessions.Start(r.Context(), w, r, e.user)
	if err != nil {
		t.Fatal(err)
	}
	e.session, e.cookie = s, w.Result().Cookies()[0]
	e.rec.take()
	return e
}

func (e *accountEnv) key(t *testing.T, scopes ...string) (string, store.APIKey) {
	p, k, err := e.keys.Issue(context.Background(), apikeys.IssueRequest{UserID: e.user.ID, Name: "k", Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	e.rec.take()
	return p, k
}

type response struct {
	status    int
	challenge string
	body      map[string]any
}

func (e *accountEnv) do(method string, headers map[string]string, withCookie bool) response {
	r := httptest.NewRequest(method, base+"/api/api-keys", strings.NewReader("{}"))
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	if withCookie {
		r.AddCookie(&http.Cookie{Name: e.cookie.Name, Value: e.cookie.Value})
	}
	w := httptest.NewRecorder()
	e.handler.ServeHTTP(w, r)
	var body map[string]any
	json.Unmarshal(w.Body.Bytes(), &body)
	return response{w.Code, w.Header().Get("WWW-Authenticate"), body}
}

func TestAccountCookie(t *testing.T) {
	e := newAccountEnv(t)
	for _, tc := range []struct {
		name    string
		method  string
		headers map[string]string
	}{
		{"GET", http.MethodGet, nil},
		{"cross-site GET (safe method)", http.MethodGet, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}},
		{"same-origin POST", http.MethodPost, map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": base}},
		{"DELETE from a non-browser client", http.MethodDelete, nil},
		{"POST with a matching Origin", http.MethodPost, map[string]string{"Origin": base}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := e.do(tc.method, tc.headers, true)
			if got.status != http.StatusOK {
				t.Fatalf("status %d, body %v", got.status, got.body)
			}
			want := map[string]any{
				"UserID": e.user.ID, "Email": "alice@example.com", "Name": "Alice", "Roles": []any{"admin"},
				"Scopes": []any{"payments:read", "payments:write", "account"}, "Method": principal.MethodSession,
				"CredentialID": e.session.ID, "ClientID": "", "ExpiresAt": e.session.ExpiresAt.Format(time.RFC3339Nano), "Claims": nil,
			}
			if diff := cmp.Diff(want, got.body); diff != "" {
				t.Errorf("principal (-want +got):\n%s", diff)
			}
			if evs := e.rec.take(); len(evs) != 0 {
				t.Errorf("an accepted request was audited: %+v", evs)
			}
		})
	}
}

func TestAccountCookieCSRF(t *testing.T) {
	e := newAccountEnv(t)
	for _, tc := range []struct {
		name    string
		method  string
		headers map[string]string
	}{
		{"cross-site form POST", http.MethodPost, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example", "Content-Type": "application/x-www-form-urlencoded"}},
		{"same-site DELETE", http.MethodDelete, map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://app.example.com"}},
		{"old browser: foreign Origin only", http.MethodPut, map[string]string{"Origin": "https://evil.example"}},
		{"null Origin", http.MethodPatch, map[string]string{"Origin": "null"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := e.do(tc.method, tc.headers, true)
			want := response{http.StatusForbidden, "", map[string]any{"error": "forbidden", "error_description": "cross-origin request refused"}}
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(response{})); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
			evs := e.rec.take()
			if len(evs) != 1 || evs[0].Type != audit.TypeAuthRejected || evs[0].Reason != audit.ReasonCSRF ||
				evs[0].UserID != e.user.ID || evs[0].CredentialID != e.session.ID {
				t.Errorf("audit = %+v, want auth.rejected csrf naming the user and session", evs)
			}
		})
	}
}

func TestAccountKey(t *testing.T) {
	e := newAccountEnv(t)
	withScope, k := e.key(t, "account", "payments:read")
	without, k2 := e.key(t, "payments:read")

	// A key with the account scope works, even cross-origin: a key is not
	// ambient authority, so no site can forge a request that carries it.
	for _, h := range []map[string]string{
		{"Authorization": "Bearer " + withScope},
		{"X-API-Key": withScope, "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
	} {
		got := e.do(http.MethodPost, h, false)
		if got.status != http.StatusOK || got.body["Method"] != principal.MethodAPIKey || got.body["CredentialID"] != k.ID {
			t.Errorf("key request %v: %d %v", h, got.status, got.body)
		}
	}
	// A key header wins over the cookie.
	if got := e.do(http.MethodGet, map[string]string{"Authorization": "Bearer " + withScope}, true); got.body["Method"] != principal.MethodAPIKey {
		t.Errorf("key and cookie: principal %v, want the key", got.body)
	}
	e.rec.take()

	got := e.do(http.MethodGet, map[string]string{"Authorization": "Bearer " + without}, false)
	if got.status != http.StatusForbidden || got.body["error"] != "insufficient_scope" ||
		!strings.Contains(got.challenge, `error="insufficient_scope"`) || !strings.Contains(got.challenge, `scope="account"`) {
		t.Errorf("key without the account scope: %+v", got)
	}
	evs := e.rec.take()
	if len(evs) != 1 || evs[0].Reason != audit.ReasonMissingScopes || evs[0].CredentialID != k2.ID {
		t.Errorf("audit = %+v, want auth.rejected missing_scopes for the key", evs)
	}

	got = e.do(http.MethodGet, map[string]string{"Authorization": "Bearer mcpg_nonsense"}, true)
	if got.status != http.StatusUnauthorized || got.body["error"] != "invalid_token" {
		t.Errorf("bad key with a good cookie: %+v, want 401 invalid_token", got)
	}
	e.rec.take()
}

func TestAccountRefusals(t *testing.T) {
	e := newAccountEnv(t)
	got := e.do(http.MethodGet, nil, false)
	if got.status != http.StatusUnauthorized || got.body["error"] != "unauthorized" || !strings.HasPrefix(got.challenge, "Bearer ") {
		t.Errorf("no credential: %+v, want 401 unauthorized with a Bearer challenge", got)
	}
	if evs := e.rec.take(); len(evs) != 1 || evs[0].Reason != audit.ReasonMissing {
		t.Errorf("audit = %+v, want missing", evs)
	}

	stale := &http.Cookie{Name: e.cookie.Name, Value: strings.Repeat("A", 43)}
	e.cookie = stale
	got = e.do(http.MethodPost, map[string]string{"Sec-Fetch-Site": "same-origin"}, true)
	if got.status != http.StatusUnauthorized || got.body["error"] != "unauthorized" {
		t.Errorf("unknown cookie: %+v, want 401 unauthorized", got)
	}
	if evs := e.rec.take(); len(evs) != 1 || evs[0].Reason != audit.ReasonInvalidSession {
		t.Errorf("audit = %+v, want invalid_session", evs)
	}

	r := httptest.NewRequest(http.MethodGet, base+"/api/api-keys?access_token=x", nil)
	w := httptest.NewRecorder()
	e.handler.ServeHTTP(w, r)
	if w.Code != http.StatusBadRequest {
		t.Errorf("credential in the query: %d, want 400", w.Code)
	}
}

func TestAccountAfterLogout(t *testing.T) {
	e := newAccountEnv(t)
	r := httptest.NewRequest(http.MethodPost, base+"/logout", nil)
	r.AddCookie(e.cookie)
	if err := e.sessions.End(r.Context(), httptest.NewRecorder(), r); err != nil {
		t.Fatal(err)
	}
	if got := e.do(http.MethodGet, nil, true); got.status != http.StatusUnauthorized {
		t.Errorf("cookie after logout: %d, want 401", got.status)
	}
}

func TestMiddlewareIgnoresSessionCookie(t *testing.T) {
	e := newAccountEnv(t)
	a := authn.New(authn.Options{Keys: e.keys, Audit: e.rec, Sessions: e.sessions, AllowedOrigins: []string{base}})
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("reached the handler with a cookie") }))
	r := httptest.NewRequest(http.MethodPost, base+"/mcp", nil)
	r.AddCookie(e.cookie)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusUnauthorized {
		t.Errorf("/mcp with only a session cookie: %d, want 401", w.Code)
	}
}
