package authn_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/federation"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/tokens"
	"github.com/mcpgate/mcpgate/verify"
)

// extEnv is authn with mcpgate's own access tokens and one trusted
// external issuer: an httptest JWKS with a real ES256 key.
type extEnv struct {
	*jwtEnv
	key    *ecdsa.PrivateKey
	idp    *httptest.Server
	down   atomic.Bool
	users  *identity.Service
	issuer string
}

func newExtEnv(t *testing.T) *extEnv {
	t.Helper()
	e := &extEnv{jwtEnv: newJWTEnv(t)}
	var err error
	if e.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	e.idp = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e.down.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: e.key.Public(), KeyID: "ext-1", Algorithm: "ES256", Use: "sig"}}})
	}))
	t.Cleanup(e.idp.Close)
	e.issuer = e.idp.URL + "/realms/main"

	e.users = identity.New(e.db, e.rec)
	fed, err := federation.New([]config.ExternalIssuer{{
		Issuer: e.issuer, Mode: config.ExternalModeJWT, JWKSURI: e.idp.URL + "/jwks", Audiences: []string{base + "/mcp"},
		Algorithms: []string{"ES256"}, ClockSkew: 30 * time.Second, JWKSRefreshInterval: time.Hour,
		Claims: config.ClaimMapping{UserID: "sub", Email: "email", EmailVerified: "email_verified", Name: "name", Roles: "realm_access.roles"},
	}}, federation.Options{ResourceScopes: []string{"payments:read"}, Accounts: identity.NewProvisioner(e.users, e.db.(store.IdentityStore)), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	v, err := verify.New(verify.Options{Issuer: base, Audience: base + "/mcp", Keys: keySource{e.jwtEnv}})
	if err != nil {
		t.Fatal(err)
	}
	a := authn.New(authn.Options{
		Keys: apikeys.New(e.db, e.rec, apikeys.Options{}), Users: e.db.GetUser, Audit: e.rec, Resource: base + "/mcp",
		ResourceMetadataURL: base + "/.well-known/oauth-protected-resource/mcp", Scopes: []string{"payments:read"},
		AllowedOrigins: []string{base}, Logger: quiet,
		AccessTokens: &authn.AccessTokens{Verifier: v, GrantActive: func(context.Context, string) (bool, error) { return true, nil }},
		External:     fed,
	})
	e.handler = a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(principal.From(r.Context()))
	}))
	return e
}

func (e *extEnv) sign(t *testing.T, key *ecdsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	obj, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := obj.CompactSerialize()
	return tok
}

func (e *extEnv) claims(iss, sub string) map[string]any {
	now := time.Now().Unix()
	return map[string]any{
		"iss": iss, "sub": sub, "aud": base + "/mcp", "iat": now, "exp": now + 300, "scope": "payments:read payments:admin",
		"email": sub + "@example.com", "email_verified": true, "name": "Ext " + sub,
		"realm_access": map[string]any{"roles": []string{"auditor"}}, "organization_id": "org_7",
	}
}

func lastRejection(t *testing.T, rec *recorder) audit.Event {
	t.Helper()
	var last audit.Event
	for _, ev := range rec.take() {
		if ev.Type == audit.TypeAuthRejected {
			last = ev
		}
	}
	if last.Type == "" {
		t.Fatal("no auth.rejected event")
	}
	return last
}

// TestExternalTokenNeverAdmin: an external issuer's mapped "admin" is not
// mcpgate's admin role: other mapped roles join the user's, "admin" does
// not, so the token cannot read everyone's audit log.
func TestExternalTokenNeverAdmin(t *testing.T) {
	e := newExtEnv(t)
	m := e.claims(e.issuer, "kc-admin")
	m["realm_access"] = map[string]any{"roles": []string{"admin", "auditor", "ADMIN"}}
	w, p := e.call("Authorization", "Bearer "+e.sign(t, e.key, "ext-1", m))
	if p == nil {
		t.Fatalf("refused: %d %s", w.Code, w.Body)
	}
	if !slices.Equal(p.Roles, []string{"auditor"}) || p.HasRole("admin") {
		t.Errorf("roles = %v, want [auditor]: an issuer's admin is not mcpgate's", p.Roles)
	}
	// The mapped roles are never stored on the user.
	if u, err := e.db.GetUser(t.Context(), p.UserID); err != nil || len(u.Roles) != 0 {
		t.Errorf("stored roles = %v (%v)", u.Roles, err)
	}
}

func TestExternalTokenPrincipal(t *testing.T) {
	e := newExtEnv(t)
	tok := e.sign(t, e.key, "ext-1", e.claims(e.issuer, "kc-123"))
	w, p := e.call("Authorization", "Bearer "+tok)
	if p == nil {
		t.Fatalf("external token refused: %d %s", w.Code, w.Body)
	}
	if p.Method != federation.MethodExternalJWT || p.Email != "kc-123@example.com" || p.Name != "Ext kc-123" ||
		!slices.Equal(p.Scopes, []string{"payments:read"}) || !slices.Equal(p.Roles, []string{"auditor"}) ||
		p.Claims["organization_id"] != "org_7" || p.ExpiresAt.IsZero() {
		t.Errorf("principal = %+v", p)
	}
	u, err := e.db.GetUser(t.Context(), p.UserID)
	if err != nil {
		t.Fatalf("the principal's user is not a stored user: %v", err)
	}
	var types []string
	for _, ev := range e.rec.take() {
		types = append(types, ev.Type)
	}
	if !slices.Contains(types, identity.TypeUserProvisioned) || !slices.Contains(types, authn.TypeExternalAccepted) {
		t.Errorf("audit = %v, want user.provisioned and auth.external_accepted", types)
	}

	// The same account again: the same user, no new provisioning events.
	_, p2 := e.call("Authorization", "Bearer "+e.sign(t, e.key, "ext-1", e.claims(e.issuer, "kc-123")))
	if p2 == nil || p2.UserID != u.ID {
		t.Fatalf("second token: %+v", p2)
	}
	if evs := e.rec.take(); len(evs) != 0 {
		t.Errorf("second request audited %v", evs)
	}

	// A disabled user is refused, whatever the token says.
	if _, err := e.users.SetDisabled(t.Context(), u.ID, true); err != nil {
		t.Fatal(err)
	}
	e.rec.take()
	w, p = e.call("Authorization", "Bearer "+tok)
	if p != nil || w.Code != http.StatusUnauthorized {
		t.Fatalf("disabled user: %d", w.Code)
	}
	if ev := lastRejection(t, e.rec); ev.Reason != audit.ReasonDisabledUser || ev.UserID != u.ID {
		t.Errorf("rejection = %+v", ev)
	}
}

// mcpgate's own access tokens keep working when external issuers are set.
func TestExternalKeepsOwnTokens(t *testing.T) {
	e := newExtEnv(t)
	own := e.mint(t, tokens.AccessClaims{Subject: e.user.ID, ClientID: "client_a", Audience: base + "/mcp", Scopes: []string{"payments:read"}, GrantID: "grt_1"})
	if w, p := e.call("Authorization", "Bearer "+own); p == nil || p.Method != authn.MethodOAuth || p.UserID != e.user.ID {
		t.Fatalf("own token: %d %s", w.Code, w.Body)
	}
	// An own token for another resource is still wrong_audience (the
	// access-token path), not an external refusal.
	other := e.mint(t, tokens.AccessClaims{Subject: e.user.ID, ClientID: "client_a", Audience: "https://other.example.com/mcp", GrantID: "grt_1"})
	e.rec.take()
	if w, _ := e.call("Authorization", "Bearer "+other); w.Code != http.StatusUnauthorized {
		t.Fatalf("own token for another resource: %d", w.Code)
	}
	if ev := lastRejection(t, e.rec); ev.Reason != audit.ReasonWrongAudience {
		t.Errorf("reason = %q, want wrong_audience", ev.Reason)
	}
}

func TestExternalRefusals(t *testing.T) {
	e := newExtEnv(t)
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	wrongAud := e.claims(e.issuer, "x")
	wrongAud["aud"] = "https://other.example.com/mcp"
	expired := e.claims(e.issuer, "x")
	expired["exp"] = time.Now().Add(-time.Hour).Unix()
	tests := []struct {
		name, header, value string
		status              int
		reason              string
	}{
		{"unknown issuer", "Authorization", "Bearer " + e.sign(t, stranger, "ext-1", e.claims("https://evil.example.com", "x")), 401, federation.ReasonUnknownIssuer},
		{"bad audience", "Authorization", "Bearer " + e.sign(t, e.key, "ext-1", wrongAud), 401, federation.ReasonBadAudience},
		{"expired", "Authorization", "Bearer " + e.sign(t, e.key, "ext-1", expired), 401, federation.ReasonExpired},
		{"bad signature", "Authorization", "Bearer " + e.sign(t, stranger, "ext-1", e.claims(e.issuer, "x")), 401, federation.ReasonBadSignature},
		{"unknown kid", "Authorization", "Bearer " + e.sign(t, e.key, "ext-2", e.claims(e.issuer, "x")), 401, federation.ReasonUnknownKID},
		// Access tokens travel in Authorization only.
		{"external token as X-API-Key", "X-API-Key", e.sign(t, e.key, "ext-1", e.claims(e.issuer, "x")), 401, audit.ReasonMalformed},
		// Opaque tokens without an introspection issuer are not mcpgate's.
		{"opaque token", "Authorization", "Bearer opaque-123", 401, audit.ReasonMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.rec.take()
			w, p := e.call(tc.header, tc.value)
			if p != nil || w.Code != tc.status {
				t.Fatalf("status %d, want %d", w.Code, tc.status)
			}
			if !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("challenge = %q", w.Header().Get("WWW-Authenticate"))
			}
			if ev := lastRejection(t, e.rec); ev.Reason != tc.reason {
				t.Errorf("audit reason = %q, want %q (details %v)", ev.Reason, tc.reason, ev.Details)
			}
		})
	}
	if n, err := e.db.ListUsers(t.Context()); err != nil || len(n) != 1 {
		t.Errorf("refused tokens provisioned users: %d (%v)", len(n), err)
	}
}

func TestExternalIssuerUnavailable(t *testing.T) {
	e := newExtEnv(t)
	e.down.Store(true)
	e.rec.take()
	w, p := e.call("Authorization", "Bearer "+e.sign(t, e.key, "ext-1", e.claims(e.issuer, "x")))
	if p != nil || w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d (Retry-After %q), want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
	var body struct{ Error string }
	json.Unmarshal(w.Body.Bytes(), &body)
	if body.Error != "temporarily_unavailable" || w.Header().Get("WWW-Authenticate") != "" {
		t.Errorf("body %s, challenge %q: want temporarily_unavailable and no challenge", w.Body, w.Header().Get("WWW-Authenticate"))
	}
	if ev := lastRejection(t, e.rec); ev.Reason != federation.ReasonIssuerUnavailable {
		t.Errorf("audit reason = %q, want issuer_unavailable", ev.Reason)
	}
}
