package federation_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/federation"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
	"github.com/mcpgate/mcpgate/internal/tokens"
)

var b64 = base64.RawURLEncoding

// unsigned builds a compact JWS with the given header and an arbitrary
// signature.
func unsigned(header, claims map[string]any, sig []byte) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	if sig == nil {
		sig = []byte("not a signature")
	}
	return b64.EncodeToString(h) + "." + b64.EncodeToString(c) + "." + b64.EncodeToString(sig)
}

func TestJWTAcceptRefuseMatrix(t *testing.T) {
	rsaKey := newKey(t, "rsa-1", jose.RS256)
	ecKey := newKey(t, "ec-1", jose.ES256)
	p := newIdP(t, rsaKey, ecKey)
	stranger := newIdP(t, newKey(t, "x", jose.RS256))
	e := newEnv(t, jwtIssuer(p))

	with := func(mod func(m map[string]any)) map[string]any {
		m := e.claims(p, "alice")
		mod(m)
		return m
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(rsaKey.priv.Public())
	hs256 := func() string {
		// The RS256→HS256 confusion: an HMAC keyed with the public key.
		h, _ := json.Marshal(map[string]any{"alg": "HS256", "kid": "rsa-1", "typ": "JWT"})
		c, _ := json.Marshal(e.claims(p, "alice"))
		in := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
		mac := hmac.New(sha256.New, pubDER)
		mac.Write([]byte(in))
		return in + "." + b64.EncodeToString(mac.Sum(nil))
	}
	now := e.clk.Now().Unix()
	strangerToken := stranger.keys[0].sign(t, e.claims(stranger, "alice")) // valid at its own issuer
	tests := []struct {
		name, token, want string
	}{
		{"RS256 accepted", rsaKey.sign(t, e.claims(p, "alice")), ""},
		{"ES256 accepted", ecKey.sign(t, e.claims(p, "alice")), ""},
		{"audience in an array", rsaKey.sign(t, with(func(m map[string]any) { m["aud"] = []string{"other", resource} })), ""},
		{"within the clock skew", rsaKey.sign(t, with(func(m map[string]any) { m["exp"] = now - 10 })), ""},
		{"wrong audience", rsaKey.sign(t, with(func(m map[string]any) { m["aud"] = "https://other.example.com/mcp" })), federation.ReasonBadAudience},
		{"no audience", rsaKey.sign(t, with(func(m map[string]any) { delete(m, "aud") })), federation.ReasonBadAudience},
		{"expired", rsaKey.sign(t, with(func(m map[string]any) { m["exp"] = now - 31 })), federation.ReasonExpired},
		{"no exp", rsaKey.sign(t, with(func(m map[string]any) { delete(m, "exp") })), federation.ReasonMalformed},
		{"not yet valid", rsaKey.sign(t, with(func(m map[string]any) { m["nbf"] = now + 600 })), federation.ReasonNotYetValid},
		{"issued in the future", rsaKey.sign(t, with(func(m map[string]any) { m["iat"] = now + 600 })), federation.ReasonNotYetValid},
		{"no subject", rsaKey.sign(t, with(func(m map[string]any) { delete(m, "sub") })), federation.ReasonMalformed},
		{"unknown issuer", strangerToken, federation.ReasonUnknownIssuer},
		{"issuer with a trailing slash", rsaKey.sign(t, with(func(m map[string]any) { m["iss"] = p.issuer + "/" })), federation.ReasonUnknownIssuer},
		{"alg none", unsigned(map[string]any{"alg": "none", "kid": "rsa-1"}, e.claims(p, "alice"), nil), federation.ReasonBadAlgorithm},
		{"HS256 with the JWKS public key", hs256(), federation.ReasonBadAlgorithm},
		{"alg not allowed for the issuer", unsigned(map[string]any{"alg": "PS256", "kid": "rsa-1"}, e.claims(p, "alice"), nil), federation.ReasonBadAlgorithm},
		{"bad signature", unsigned(map[string]any{"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}, e.claims(p, "alice"), make([]byte, 256)), federation.ReasonBadSignature},
		{"unknown kid", unsigned(map[string]any{"alg": "RS256", "kid": "nope"}, e.claims(p, "alice"), nil), federation.ReasonUnknownKID},
		{"logout token type", unsigned(map[string]any{"alg": "RS256", "kid": "rsa-1", "typ": "logout+jwt"}, e.claims(p, "alice"), nil), federation.ReasonWrongType},
		{"critical header", unsigned(map[string]any{"alg": "RS256", "kid": "rsa-1", "crit": []string{"x"}}, e.claims(p, "alice"), nil), federation.ReasonMalformed},
		{"garbage", "a.b.c", federation.ReasonMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := e.fed.Authenticate(t.Context(), tc.token, true)
			if got := reason(err); got != tc.want {
				t.Fatalf("reason = %q, want %q", got, tc.want)
			}
			if tc.want == "" && (id.Subject != "alice" || id.UserID == "" || id.Method != federation.MethodExternalJWT) {
				t.Errorf("identity = %+v", id)
			}
		})
	}
	// A refused token never reached the stranger's JWKS: an unknown
	// issuer's keys are not fetched.
	if n := stranger.jwksFetches.Load(); n != 0 {
		t.Errorf("the unknown issuer's JWKS was fetched %d times", n)
	}
}

func TestJWTIdentityMapping(t *testing.T) {
	key := newKey(t, "k", jose.ES256)
	p := newIdP(t, key)
	e := newEnv(t, jwtIssuer(p, func(c *config.ExternalIssuer) {
		c.Name = "keycloak"
		c.Claims.Roles = "realm_access.roles"
		c.StaticScopes = []string{"payments:read"}
	}))
	m := e.claims(p, "kc-user")
	m["realm_access"] = map[string]any{"roles": []string{"auditor", "offline_access", "auditor"}}
	m["organization_id"] = "org_42"
	m["azp"] = "cli-app"
	m["jti"] = "tok-1"
	m["scope"] = "payments:read payments:admin openid" // cut down to the resource's scopes
	id, err := e.fed.Authenticate(t.Context(), key.sign(t, m), true)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"auditor", "offline_access"}, id.Roles); d != "" {
		t.Errorf("roles (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"payments:read"}, id.Scopes); d != "" {
		t.Errorf("scopes (-want +got):\n%s", d)
	}
	if id.Claims["organization_id"] != "org_42" || id.ClientID != "cli-app" || id.TokenID != "tok-1" || id.IssuerName != "keycloak" {
		t.Errorf("identity = %+v", id)
	}
	if !id.ExpiresAt.Equal(time.Unix(m["exp"].(int64), 0)) {
		t.Errorf("ExpiresAt = %v", id.ExpiresAt)
	}

	tests := []struct {
		name       string
		rolesClaim string
		claims     map[string]any
		wantRoles  []string
		wantScopes []string
	}{
		{"namespaced roles claim with dots", "https://mcp.example.com/roles",
			map[string]any{"https://mcp.example.com/roles": []any{"ops"}, "scope": "payments:write"}, []string{"ops"}, []string{"payments:write"}},
		// The issuer's "admin" is not mcpgate's admin: it is never mapped
		// (an external token must not reach everyone's audit log).
		{"admin never mapped", "roles", map[string]any{"roles": []any{"admin", "auditor", "Admin"}}, []string{"auditor"}, []string{"payments:read"}},
		{"admin alone", "groups", map[string]any{"groups": "admin"}, nil, []string{"payments:read"}},
		{"roles as a space-separated string", "groups", map[string]any{"groups": "a b", "scp": []any{"payments:read", "payments:write"}},
			[]string{"a", "b"}, []string{"payments:read", "payments:write"}},
		{"deep path", "resource_access.mcp.roles", map[string]any{"resource_access": map[string]any{"mcp": map[string]any{"roles": []any{"x", 7, "y"}}}},
			[]string{"x", "y"}, []string{"payments:read"}}, // no scopes in the token: the static set
		{"path through a non-object", "realm_access.roles", map[string]any{"realm_access": "oops"}, nil, []string{"payments:read"}},
		{"absurd roles dropped", "roles", map[string]any{"roles": []any{strings.Repeat("r", 200), "ok", "bad\x00role"}}, []string{"ok"}, []string{"payments:read"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, jwtIssuer(p, func(c *config.ExternalIssuer) {
				c.Claims.Roles = tc.rolesClaim
				c.StaticScopes = []string{"payments:read", "not-a-resource-scope"}
			}))
			m := e.claims(p, fmt.Sprintf("u%d", i))
			delete(m, "scope")
			for k, v := range tc.claims {
				m[k] = v
			}
			id, err := e.fed.Authenticate(t.Context(), key.sign(t, m), true)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.wantRoles, id.Roles); d != "" {
				t.Errorf("roles (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.wantScopes, id.Scopes); d != "" {
				t.Errorf("scopes (-want +got):\n%s", d)
			}
		})
	}
}

// Key rotation at the issuer: the new kid is fetched once, tokens of the
// old key keep working until they expire.
func TestJWTKeyRotation(t *testing.T) {
	oldKey := newKey(t, "2026-05", jose.RS256)
	newK := newKey(t, "2026-06", jose.RS256)
	p := newIdP(t, oldKey)
	e := newEnv(t, jwtIssuer(p))
	ctx := t.Context()

	oldTok := oldKey.sign(t, e.claims(p, "alice"))
	if _, err := e.fed.Authenticate(ctx, oldTok, true); err != nil {
		t.Fatalf("old key before rotation: %v", err)
	}
	if n := p.jwksFetches.Load(); n != 1 {
		t.Fatalf("%d JWKS fetches for the first token, want 1", n)
	}
	// The issuer rotates (publishing both keys) a minute later.
	e.clk.Add(time.Minute)
	p.setKeys(oldKey, newK)
	for i := range 5 {
		if _, err := e.fed.Authenticate(ctx, newK.sign(t, e.claims(p, fmt.Sprintf("new%d", i))), true); err != nil {
			t.Fatalf("new key token %d: %v", i, err)
		}
	}
	if n := p.jwksFetches.Load(); n != 2 {
		t.Errorf("%d JWKS fetches after the rotation, want 2 (the new kid fetched once)", n)
	}
	// The issuer stops publishing the old key; its token still verifies
	// from the cached set until it expires.
	p.setKeys(newK)
	if _, err := e.fed.Authenticate(ctx, oldTok, true); err != nil {
		t.Errorf("old token before its exp: %v", err)
	}
	e.clk.Add(5 * time.Minute)
	if _, err := e.fed.Authenticate(ctx, oldTok, true); reason(err) != federation.ReasonExpired {
		t.Errorf("old token after its exp: %v, want expired", err)
	}
}

// A flood of tokens with invented kids costs the issuer at most one JWKS
// fetch per refresh interval.
func TestJWTUnknownKidFlood(t *testing.T) {
	key := newKey(t, "real", jose.ES256)
	p := newIdP(t, key)
	e := newEnv(t, jwtIssuer(p))
	ctx := t.Context()
	if _, err := e.fed.Authenticate(ctx, key.sign(t, e.claims(p, "alice")), true); err != nil {
		t.Fatal(err)
	}
	flood := func(round int) {
		var wg sync.WaitGroup
		for i := range 500 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tok := unsigned(map[string]any{"alg": "ES256", "kid": fmt.Sprintf("bogus-%d-%d", round, i)}, e.claims(p, "mallory"), nil)
				if _, err := e.fed.Authenticate(ctx, tok, true); reason(err) != federation.ReasonUnknownKID {
					t.Errorf("bogus kid: %v, want unknown_kid", err)
				}
			}()
		}
		wg.Wait()
	}
	e.clk.Add(time.Minute) // outside the interval: one refetch allowed
	flood(1)
	if n := p.jwksFetches.Load(); n != 2 {
		t.Errorf("%d JWKS fetches after 500 bogus kids, want 2 (the first, plus one refetch)", n)
	}
	flood(2) // within the interval: none
	if n := p.jwksFetches.Load(); n != 2 {
		t.Errorf("%d JWKS fetches after a second flood within the interval, want 2", n)
	}
	// The real key still works throughout.
	if _, err := e.fed.Authenticate(ctx, key.sign(t, e.claims(p, "alice")), true); err != nil {
		t.Errorf("real token after the flood: %v", err)
	}
}

// Another mcpgate acts as the external issuer: real tokens.Issuer, real
// JWKS handler, OIDC discovery.
func TestJWTFromAnotherMcpgate(t *testing.T) {
	var handler http.Handler = http.NotFoundHandler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	defer srv.Close()
	other, err := tokens.NewIssuer(t.Context(), storetest.SQLite(t), []byte(strings.Repeat("k", 32)), tokens.Options{Issuer: srv.URL, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	var discoveries int
	mux := http.NewServeMux()
	mux.Handle("/jwks", other.JWKSHandler())
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		discoveries++
		json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "jwks_uri": srv.URL + "/jwks"})
	})
	handler = mux

	cfg := config.ExternalIssuer{
		Name: "mcpgate-b", Issuer: srv.URL, Mode: config.ExternalModeJWT, Discovery: true, Audiences: []string{resource},
		Algorithms: config.DefaultExternalAlgorithms, ClockSkew: 30 * time.Second, JWKSRefreshInterval: 30 * time.Second,
		Claims: config.ClaimMapping{UserID: "sub", Email: "email", EmailVerified: "email_verified", Name: "name", Roles: "roles"},
	}
	db := storetest.SQLite(t)
	users := identity.New(db, &recorder{})
	fed, err := federation.New([]config.ExternalIssuer{cfg}, federation.Options{ResourceScopes: resourceScopes, Accounts: identity.NewProvisioner(users, db), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := other.MintAccessToken(t.Context(), tokens.AccessClaims{
		Subject: "usr_b_alice", ClientID: "client-x", Audience: resource, Scopes: []string{"payments:write", "openid"},
		Extra: map[string]any{"roles": []string{"auditor"}, "email": "alice@b.example.com"},
	})
	if err != nil {
		t.Fatal(err)
	}
	id, err := fed.Authenticate(t.Context(), tok, true)
	if err != nil {
		t.Fatalf("token of the other mcpgate: %v", err)
	}
	if id.Subject != "usr_b_alice" || id.ClientID != "client-x" || !slices.Equal(id.Scopes, []string{"payments:write"}) || !slices.Equal(id.Roles, []string{"auditor"}) {
		t.Errorf("identity = %+v", id)
	}
	// A token B minted for another resource is refused here.
	forOther, _, _ := other.MintAccessToken(t.Context(), tokens.AccessClaims{Subject: "usr_b_alice", ClientID: "client-x", Audience: "https://elsewhere.example.com/mcp"})
	if _, err := fed.Authenticate(t.Context(), forOther, true); reason(err) != federation.ReasonBadAudience {
		t.Errorf("token for another resource: %v, want bad_audience", err)
	}
	// B's ID tokens (aud = the client) are not access tokens here.
	idTok, _ := other.MintIDToken(t.Context(), tokens.IDClaims{Subject: "usr_b_alice", ClientID: "client-x"})
	if _, err := fed.Authenticate(t.Context(), idTok, true); reason(err) != federation.ReasonBadAudience {
		t.Errorf("ID token: %v, want bad_audience", err)
	}
	if discoveries != 1 {
		t.Errorf("%d discovery fetches, want 1", discoveries)
	}
}

func TestIssuerUnavailable(t *testing.T) {
	key := newKey(t, "k", jose.ES256)
	t.Run("JWKS down", func(t *testing.T) {
		p := newIdP(t, key)
		p.down.Store(true)
		e := newEnv(t, jwtIssuer(p))
		if _, err := e.fed.Authenticate(t.Context(), key.sign(t, e.claims(p, "a")), true); reason(err) != federation.ReasonIssuerUnavailable {
			t.Fatalf("reason = %q, want issuer_unavailable", reason(err))
		}
		// Back up: after the refresh interval the keys load and tokens pass.
		p.down.Store(false)
		e.clk.Add(time.Minute)
		if _, err := e.fed.Authenticate(t.Context(), key.sign(t, e.claims(p, "a")), true); err != nil {
			t.Errorf("after recovery: %v", err)
		}
	})
	t.Run("discovery down, retried only after the interval", func(t *testing.T) {
		p := newIdP(t, key)
		p.down.Store(true)
		e := newEnv(t, jwtIssuer(p, func(c *config.ExternalIssuer) { c.JWKSURI, c.Discovery = "", true }))
		for range 20 {
			if _, err := e.fed.Authenticate(t.Context(), key.sign(t, e.claims(p, "a")), true); reason(err) != federation.ReasonIssuerUnavailable {
				t.Fatalf("reason = %q, want issuer_unavailable", reason(err))
			}
		}
		if n := p.discoveryFetches.Load(); n != 1 {
			t.Errorf("%d discovery fetches for 20 tokens, want 1", n)
		}
		p.down.Store(false)
		e.clk.Add(time.Minute)
		if _, err := e.fed.Authenticate(t.Context(), key.sign(t, e.claims(p, "a")), true); err != nil {
			t.Errorf("after recovery: %v", err)
		}
	})
	t.Run("discovery names another issuer", func(t *testing.T) {
		p := newIdP(t, key)
		cfg := jwtIssuer(p, func(c *config.ExternalIssuer) { c.JWKSURI, c.Discovery = "", true })
		p.issuer = "https://impostor.example.com" // what the document will claim
		e := newEnv(t, cfg)
		m := e.claims(p, "a")
		m["iss"] = cfg.Issuer
		_, err := e.fed.Authenticate(t.Context(), key.sign(t, m), true)
		if reason(err) != federation.ReasonIssuerUnavailable || !strings.Contains(err.Error(), "impostor") {
			t.Errorf("err = %v, want issuer_unavailable naming the mismatch", err)
		}
	})
}

// Email linking follows the issuer's policy and the token's email_verified.
func TestJWTEmailLinkPolicy(t *testing.T) {
	key := newKey(t, "k", jose.ES256)
	p := newIdP(t, key)
	for _, tc := range []struct {
		name     string
		allow    bool
		verified any
		wantLink bool
	}{
		{"allowed and verified", true, true, true},
		{"allowed and verified as a string", true, "true", true},
		{"allowed but unverified", true, false, false},
		{"allowed but no email_verified claim", true, nil, false},
		{"verified but not allowed", false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, jwtIssuer(p, func(c *config.ExternalIssuer) { c.LinkByEmail = tc.allow }))
			local, err := e.users.Create(t.Context(), identity.NewUser{Email: "carol@example.com", Name: "Carol"})
			if err != nil {
				t.Fatal(err)
			}
			m := e.claims(p, "carol-at-idp")
			m["email"] = "carol@example.com"
			if tc.verified == nil {
				delete(m, "email_verified")
			} else {
				m["email_verified"] = tc.verified
			}
			id, err := e.fed.Authenticate(t.Context(), key.sign(t, m), true)
			if err != nil {
				t.Fatal(err)
			}
			if got := id.UserID == local.ID; got != tc.wantLink {
				t.Errorf("linked to the local user = %v, want %v", got, tc.wantLink)
			}
			want := identity.TypeUserProvisioned
			if tc.wantLink {
				want = identity.TypeIdentityLinked
			}
			if got := e.rec.types(); !slices.Contains(got, want) {
				t.Errorf("audit %v lacks %s", got, want)
			}
		})
	}
}

// Twenty concurrent first requests of a new account provision one user.
func TestJWTConcurrentFirstRequests(t *testing.T) {
	key := newKey(t, "k", jose.ES256)
	p := newIdP(t, key)
	e := newEnv(t, jwtIssuer(p))
	var wg sync.WaitGroup
	users := make([]string, 20)
	for i := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := e.claims(p, "newcomer")
			m["jti"] = fmt.Sprint(i) // twenty different tokens
			id, err := e.fed.Authenticate(context.Background(), key.sign(t, m), true)
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			users[i] = id.UserID
		}()
	}
	wg.Wait()
	for i, u := range users {
		if u != users[0] {
			t.Fatalf("request %d got user %q, request 0 %q", i, u, users[0])
		}
	}
	list, err := e.db.ListUsers(t.Context())
	if err != nil || len(list) != 1 {
		t.Errorf("%d users (%v), want 1", len(list), err)
	}
	link, err := e.db.GetIdentity(t.Context(), p.issuer, "newcomer")
	if err != nil || link.UserID != users[0] {
		t.Errorf("identity = %+v, %v", link, err)
	}
}
