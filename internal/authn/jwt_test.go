package authn_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
	"github.com/mcpgate/mcpgate/internal/tokens"
	"github.com/mcpgate/mcpgate/verify"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// jwtEnv is authn with access tokens from a real tokens.Issuer and a
// grant-state function the test controls.
type jwtEnv struct {
	rec     *recorder
	db      store.Store
	issuer  *tokens.Issuer
	handler http.Handler
	user    store.User

	mu       sync.Mutex
	revoked  map[string]bool
	grantErr error
	keysDown bool
}

func newJWTEnv(t testing.TB) *jwtEnv {
	t.Helper()
	db := storetest.SQLite(t)
	e := &jwtEnv{rec: &recorder{}, db: db, revoked: map[string]bool{}}
	var err error
	e.issuer, err = tokens.NewIssuer(context.Background(), db, []byte(strings.Repeat("s", 32)), tokens.Options{Issuer: base, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	v, err := verify.New(verify.Options{Issuer: base, Audience: base + "/mcp", Keys: keySource{e}})
	if err != nil {
		t.Fatal(err)
	}
	a := authn.New(authn.Options{
		Keys: apikeys.New(db, e.rec, apikeys.Options{}), Users: db.GetUser, Audit: e.rec, Resource: base + "/mcp",
		ResourceMetadataURL: base + "/.well-known/oauth-protected-resource/mcp", Scopes: []string{"payments:read"},
		AllowedOrigins: []string{base}, Logger: quiet,
		AccessTokens: &authn.AccessTokens{Verifier: v, GrantActive: func(_ context.Context, gid string) (bool, error) {
			e.mu.Lock()
			defer e.mu.Unlock()
			return !e.revoked[gid], e.grantErr
		}},
	})
	e.handler = a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(principal.From(r.Context()))
	}))
	e.user = store.User{ID: store.NewID("usr"), Email: "alice@example.com", DisplayName: "Alice", Roles: []string{"user"}, CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := db.CreateUser(context.Background(), e.user); err != nil {
		t.Fatal(err)
	}
	return e
}

// keySource wraps the issuer's key set and can fail like a JWKS that
// cannot be fetched.
type keySource struct{ e *jwtEnv }

func (k keySource) LookupKey(ctx context.Context, kid, alg string) (verify.PublicKey, error) {
	k.e.mu.Lock()
	down := k.e.keysDown
	k.e.mu.Unlock()
	if down {
		return verify.PublicKey{}, verify.ErrKeysUnavailable
	}
	return k.e.issuer.KeySet().LookupKey(ctx, kid, alg)
}

func (e *jwtEnv) mint(t testing.TB, c tokens.AccessClaims) string {
	t.Helper()
	tok, _, err := e.issuer.MintAccessToken(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tamper changes one character in the middle of the signature.
func tamper(tok string) string {
	i := strings.LastIndex(tok, ".") + 10
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

func (e *jwtEnv) call(header, value string) (*httptest.ResponseRecorder, *principal.Principal) {
	r := httptest.NewRequest(http.MethodPost, base+"/mcp", nil)
	r.Header.Set(header, value)
	w := httptest.NewRecorder()
	e.handler.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		return w, nil
	}
	var p principal.Principal
	json.Unmarshal(w.Body.Bytes(), &p)
	return w, &p
}

func TestJWTPrincipal(t *testing.T) {
	e := newJWTEnv(t)
	tok := e.mint(t, tokens.AccessClaims{Subject: e.user.ID, ClientID: "client_a", Audience: base + "/mcp", Scopes: []string{"payments:read", "openid"}, GrantID: "grt_1"})
	w, p := e.call("Authorization", "Bearer "+tok)
	if p == nil {
		t.Fatalf("user token refused: %d %s", w.Code, w.Body)
	}
	want := principal.Principal{
		UserID: e.user.ID, Email: "alice@example.com", Name: "Alice", Roles: []string{"user"},
		Scopes: []string{"payments:read", "openid"}, Method: authn.MethodOAuth, CredentialID: "grt_1", ClientID: "client_a",
	}
	if d := cmp.Diff(want, *p, cmpopts.IgnoreFields(principal.Principal{}, "ExpiresAt", "Claims")); d != "" {
		t.Errorf("principal (-want +got):\n%s", d)
	}
	if p.ExpiresAt.IsZero() || p.Claims["jti"] == "" {
		t.Errorf("principal lacks expiry or jti: %+v", p)
	}

	// client_credentials: sub = client_id, no user.
	cc := e.mint(t, tokens.AccessClaims{ClientID: "client_svc", Audience: base + "/mcp", Scopes: []string{"payments:read"}, GrantID: "grt_2"})
	if _, p := e.call("Authorization", "Bearer "+cc); p == nil || p.UserID != "" || p.ClientID != "client_svc" || p.Method != authn.MethodOAuth {
		t.Errorf("client credentials principal %+v", p)
	}
	if got := e.rec.take(); len(got) != 0 {
		t.Errorf("allowed requests audited: %v", got)
	}
}

// TestJWTCustomClaims: the custom claims mcpgate copied into an access
// token reach the principal (with "jti"), the same on every request of the
// token; the roles of its "roles" claim join the user's own for tool
// decisions, except "admin", which only the user's stored roles give.
func TestJWTCustomClaims(t *testing.T) {
	e := newJWTEnv(t)
	tok := e.mint(t, tokens.AccessClaims{Subject: e.user.ID, ClientID: "client_a", Audience: base + "/mcp", Scopes: []string{"payments:read"}, GrantID: "grt_1",
		Extra: map[string]any{"organization_id": "org_acme", "roles": []string{"auditor", "admin", "user"}, "seats": 12}})
	for i := range 2 { // the second request is served from the caches
		w, p := e.call("Authorization", "Bearer "+tok)
		if p == nil {
			t.Fatalf("request %d refused: %d %s", i, w.Code, w.Body)
		}
		jti, _ := p.Claims["jti"].(string)
		want := map[string]any{"jti": jti, "organization_id": "org_acme", "roles": []any{"auditor", "admin", "user"}, "seats": 12.0}
		if d := cmp.Diff(want, p.Claims); jti == "" || d != "" {
			t.Errorf("request %d: claims (-want +got):\n%s", i, d)
		}
		if org, ok := p.ClaimString("organization_id"); !ok || org != "org_acme" {
			t.Errorf("request %d: ClaimString(organization_id) = %q, %v", i, org, ok)
		}
		if d := cmp.Diff([]string{"user", "auditor"}, p.Roles); d != "" {
			t.Errorf("request %d: roles (-want +got):\n%s", i, d)
		}
		if p.HasRole("admin") {
			t.Errorf("request %d: a token's roles claim made the user an admin", i)
		}
	}
	// A role string rather than a list, and a client-credentials token
	// (no user: no roles at all, whatever the token says).
	spaced := e.mint(t, tokens.AccessClaims{Subject: e.user.ID, ClientID: "client_a", Audience: base + "/mcp", Scopes: []string{"payments:read"}, GrantID: "grt_3",
		Extra: map[string]any{"roles": "auditor  support"}})
	if _, p := e.call("Authorization", "Bearer "+spaced); p == nil || !slices.Equal(p.Roles, []string{"user", "auditor", "support"}) {
		t.Errorf("space-separated roles: %+v", p)
	}
	cc := e.mint(t, tokens.AccessClaims{ClientID: "client_svc", Audience: base + "/mcp", Scopes: []string{"payments:read"}, GrantID: "grt_2", Extra: map[string]any{"roles": []string{"auditor"}}})
	if _, p := e.call("Authorization", "Bearer "+cc); p == nil || len(p.Roles) != 0 || p.UserID != "" {
		t.Errorf("client credentials principal %+v", p)
	}
}

func TestJWTRefusals(t *testing.T) {
	e := newJWTEnv(t)
	good := tokens.AccessClaims{Subject: e.user.ID, ClientID: "client_a", Audience: base + "/mcp", Scopes: []string{"payments:read"}, GrantID: "grt_live"}
	revoked := good
	revoked.GrantID = "grt_dead"
	e.revoked["grt_dead"] = true
	other := good
	other.Audience = "https://other.example.com/mcp"
	noGID := good
	noGID.GrantID = ""
	ghost := good
	ghost.Subject = store.NewID("usr")
	tests := []struct {
		name, header, value, reason string
	}{
		{"revoked grant", "Authorization", "Bearer " + e.mint(t, revoked), audit.ReasonGrantRevoked},
		{"other audience", "Authorization", "Bearer " + e.mint(t, other), audit.ReasonWrongAudience},
		{"no grant id", "Authorization", "Bearer " + e.mint(t, noGID), audit.ReasonMalformed},
		{"unknown user", "Authorization", "Bearer " + e.mint(t, ghost), audit.ReasonUnknown},
		{"tampered", "Authorization", "Bearer " + tamper(e.mint(t, good)), audit.ReasonBadSignature},
		{"in X-API-Key", "X-API-Key", e.mint(t, good), audit.ReasonMalformed},
		{"not a JWT", "Authorization", "Bearer eyJhbGciOi", audit.ReasonMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, p := e.call(tc.header, tc.value)
			if p != nil || w.Code != http.StatusUnauthorized || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Fatalf("status %d, challenge %q; want 401 invalid_token", w.Code, w.Header().Get("WWW-Authenticate"))
			}
			ev := e.rec.take()
			if len(ev) != 1 || ev[0].Type != audit.TypeAuthRejected || ev[0].Reason != tc.reason {
				t.Fatalf("audit %+v; want one auth.rejected/%s", ev, tc.reason)
			}
			if tc.reason == audit.ReasonGrantRevoked && (ev[0].CredentialID != "grt_dead" || ev[0].UserID != e.user.ID) {
				t.Errorf("grant_revoked event names grant %q user %q", ev[0].CredentialID, ev[0].UserID)
			}
		})
	}

	// A disabled user.
	if _, err := e.db.UpdateUser(context.Background(), e.user.ID, func(u store.User) (store.User, error) { u.Disabled = true; return u, nil }); err != nil {
		t.Fatal(err)
	}
	if w, _ := e.call("Authorization", "Bearer "+e.mint(t, good)); w.Code != http.StatusUnauthorized {
		t.Errorf("disabled user's token: %d", w.Code)
	}
	if ev := e.rec.take(); len(ev) != 1 || ev[0].Reason != audit.ReasonDisabledUser {
		t.Errorf("audit %+v", ev)
	}

	// Failures that are not the token's: 503, not 401.
	e.mu.Lock()
	e.grantErr = errors.New("database down")
	e.mu.Unlock()
	if w, _ := e.call("Authorization", "Bearer "+e.mint(t, good)); w.Code != http.StatusServiceUnavailable {
		t.Errorf("grant state unavailable: %d, want 503", w.Code)
	}
	e.mu.Lock()
	e.grantErr, e.keysDown = nil, true
	e.mu.Unlock()
	fresh := good
	fresh.GrantID = "grt_other" // not in the verifier's cache
	if w, _ := e.call("Authorization", "Bearer "+e.mint(t, fresh)); w.Code != http.StatusServiceUnavailable {
		t.Errorf("keys unavailable: %d, want 503", w.Code)
	}
}

// TestJWTSignInOnlyToken: a token whose authorization granted only OpenID
// scopes (an application signing its user in through mcpgate) has the
// MCP endpoint as audience but is refused there — 403 insufficient_scope
// naming the resource's scopes, audited as no_resource_scope — while one
// resource scope next to them is enough.
func TestJWTSignInOnlyToken(t *testing.T) {
	e := newJWTEnv(t)
	for name, scopes := range map[string][]string{
		"openid email profile offline_access": {"openid", "email", "profile", "offline_access"},
		"no scope at all":                     nil,
	} {
		t.Run(name, func(t *testing.T) {
			e.rec.take()
			tok := e.mint(t, tokens.AccessClaims{Subject: e.user.ID, ClientID: "client_app", Audience: base + "/mcp", Scopes: scopes, GrantID: "grt_signin"})
			w, p := e.call("Authorization", "Bearer "+tok)
			if p != nil || w.Code != http.StatusForbidden {
				t.Fatalf("sign-in-only token: %d %+v", w.Code, p)
			}
			want := `Bearer error="insufficient_scope", error_description="this access token was granted for signing in only; authorize again with a scope of this MCP server", scope="payments:read", resource_metadata="` + base + `/.well-known/oauth-protected-resource/mcp"`
			if got := w.Header().Get("WWW-Authenticate"); got != want {
				t.Errorf("challenge:\n got %s\nwant %s", got, want)
			}
			evs := e.rec.take()
			if len(evs) != 1 || evs[0].Type != audit.TypeAuthRejected || evs[0].Reason != audit.ReasonNoResourceScope ||
				evs[0].UserID != e.user.ID || evs[0].CredentialID != "grt_signin" || evs[0].Details["client_id"] != "client_app" {
				t.Errorf("audit = %+v", evs)
			}
		})
	}
	tok := e.mint(t, tokens.AccessClaims{Subject: e.user.ID, ClientID: "client_app", Audience: base + "/mcp", Scopes: []string{"openid", "payments:read"}, GrantID: "grt_mcp"})
	if w, p := e.call("Authorization", "Bearer "+tok); p == nil {
		t.Errorf("a token with a resource scope was refused: %d %s", w.Code, w.Body)
	}
}
