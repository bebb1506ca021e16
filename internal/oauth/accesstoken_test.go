package oauth_test

// Access tokens at the MCP endpoint (authn's JWT path): audience confusion
// (no token passthrough), "alg": "none" and algorithm confusion, forged
// and tampered tokens, wrong issuer, expiry, ID tokens used as access
// tokens, and revoked grants. Each refusal is 401 for the client and an
// auth.rejected event with its precise reason.

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/tokens"
)

// jwtParts decodes a compact JWS's header and payload.
func jwtParts(t *testing.T, tok string) (map[string]any, map[string]any, string) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", tok)
	}
	dec := func(s string) map[string]any {
		raw, err := base64.RawURLEncoding.DecodeString(s)
		must(t, err)
		var m map[string]any
		must(t, json.Unmarshal(raw, &m))
		return m
	}
	return dec(parts[0]), dec(parts[1]), parts[2]
}

func b64json(v any) string {
	raw, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(raw)
}

func TestAccessTokenAttacks(t *testing.T) {
	other := oauth.Resource{URL: "https://other.example.com/mcp", Name: "Other server", Scopes: []string{"payments:read"}}
	s := newStack(t, storeSQLite(t), stackOptions{resources: []oauth.Resource{other}})
	id := s.publicClient("App")
	good := s.issue(id)
	at := good.str("access_token")
	if st := s.mcpStatus(at); st != http.StatusOK {
		t.Fatalf("genuine token: /mcp %d", st)
	}
	hdr, claims, sig := jwtParts(t, at)

	// A token the same server minted for another resource.
	code, v := s.codeFor(s.browser(), id, func(q url.Values) { q.Set("resource", other.URL); q.Set("scope", "payments:read") })
	r := s.post("/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {v},
		"redirect_uri": {"http://127.0.0.1:4711/callback"}, "client_id": {id}, "resource": {other.URL}})
	if r.status != http.StatusOK {
		t.Fatalf("token for the other resource: %d %v", r.status, r.body)
	}

	// Same keys, another issuer (a second issuer over the same key store).
	evil, err := tokens.NewIssuer(context.Background(), s.db, []byte(strings.Repeat("s", 32)), tokens.Options{Issuer: "http://evil.example"})
	must(t, err)
	wrongIss, _, err := evil.MintAccessToken(context.Background(), tokens.AccessClaims{
		Subject: s.alice.ID, ClientID: id, Audience: s.mcpURL, Scopes: []string{"payments:read"}, GrantID: claims["gid"].(string),
	})
	must(t, err)

	// The JWKS, to build algorithm-confusion tokens from the public key.
	resp, err := http.Get(s.base + "/jwks")
	must(t, err)
	jwks, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	bob := map[string]any{}
	for k, val := range claims {
		bob[k] = val
	}
	bob["sub"] = s.bob.ID
	noneHdr := map[string]any{"alg": "none", "typ": "at+jwt", "kid": hdr["kid"]}
	hsHdr := map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": hdr["kid"]}
	hsInput := b64json(hsHdr) + "." + b64json(bob)
	mac := hmac.New(sha256.New, jwks)
	mac.Write([]byte(hsInput))
	unknownKid := map[string]any{"alg": hdr["alg"], "typ": "at+jwt", "kid": "not-a-key"}
	jwtHdr := map[string]any{"alg": hdr["alg"], "typ": "JWT", "kid": hdr["kid"]}

	tests := []struct {
		name, token, reason string
	}{
		{"audience of another resource", r.str("access_token"), audit.ReasonWrongAudience},
		{"alg none", b64json(noneHdr) + "." + b64json(bob) + ".", audit.ReasonMalformed},
		{"alg none with a signature", b64json(noneHdr) + "." + b64json(bob) + "." + sig, audit.ReasonBadAlgorithm},
		{"HS256 keyed with the public JWKS", hsInput + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), audit.ReasonBadAlgorithm},
		{"payload swapped to bob", b64json(hdr) + "." + b64json(bob) + "." + sig, audit.ReasonBadSignature},
		{"unknown kid", b64json(unknownKid) + "." + b64json(claims) + "." + sig, audit.ReasonUnknownKID},
		{"typ JWT", b64json(jwtHdr) + "." + b64json(claims) + "." + sig, audit.ReasonWrongType},
		{"ID token as access token", good.str("id_token"), audit.ReasonWrongType},
		{"another issuer", wrongIss, audit.ReasonWrongIssuer},
		{"garbage", "a.b.c", audit.ReasonMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if st := s.mcpStatus(tc.token); st != http.StatusUnauthorized {
				t.Fatalf("/mcp %d, want 401", st)
			}
			s.rec.mustHave(t, audit.TypeAuthRejected, tc.reason)
		})
	}

	// A JWT is a bearer token: X-API-Key does not carry it.
	req, _ := http.NewRequest(http.MethodPost, s.mcpURL, strings.NewReader(`{}`))
	req.Header.Set("X-API-Key", at)
	resp, err = http.DefaultClient.Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("JWT in X-API-Key: %d, want 401", resp.StatusCode)
	}

	// Expiry, then a revoked grant.
	s.clock.Advance(2 * time.Hour)
	if st := s.mcpStatus(at); st != http.StatusUnauthorized {
		t.Errorf("expired token: /mcp %d", st)
	}
	s.rec.mustHave(t, audit.TypeAuthRejected, audit.ReasonExpired)
	s.clock.Advance(-2 * time.Hour)
	fresh := s.issue(id)
	apps, err := s.as.ListGrants(context.Background(), s.alice.ID)
	must(t, err)
	for _, a := range apps {
		must(t, s.as.RevokeGrant(context.Background(), s.alice.ID, a.ID))
	}
	if st := s.mcpStatus(fresh.str("access_token")); st != http.StatusUnauthorized {
		t.Errorf("token of a revoked app: /mcp %d", st)
	}
	e := s.rec.mustHave(t, audit.TypeAuthRejected, audit.ReasonGrantRevoked)
	if e.UserID != s.alice.ID || e.CredentialID == "" {
		t.Errorf("grant_revoked event names user %q grant %q", e.UserID, e.CredentialID)
	}
}

// TestAccessTokenPrincipal: what tools see for an OAuth caller.
func TestAccessTokenPrincipal(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	id := s.publicClient("App")
	tok := s.issue(id).str("access_token")
	_, claims, _ := jwtParts(t, tok)
	for k, want := range map[string]any{"iss": s.base, "aud": s.mcpURL, "sub": s.alice.ID, "client_id": id, "scope": "payments:read openid email profile"} {
		if claims[k] != want {
			t.Errorf("claim %s = %v, want %v", k, claims[k], want)
		}
	}
	if g, _ := claims["gid"].(string); !strings.HasPrefix(g, "grt_") {
		t.Errorf("gid claim %v", claims["gid"])
	}
	// The tool call is recorded under alice with the grant as credential.
	if st := s.mcpStatus(tok); st != http.StatusOK {
		t.Fatalf("/mcp %d", st)
	}
}

// TestSignInOnlyTokenAtMCP: an application that uses mcpgate only to sign
// its user in (OpenID scopes, no scope of the MCP server) gets an access
// token that works at /userinfo but not at /mcp (403 insufficient_scope,
// audited as no_resource_scope); a client that names no scope gets the
// resource's scopes and reaches /mcp.
func TestSignInOnlyTokenAtMCP(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	id := s.publicClient("Sign-in app")
	signIn := s.issue(id, func(q url.Values) { q.Set("scope", "openid email profile offline_access") })
	if signIn.status != http.StatusOK || signIn.str("scope") != "openid email profile offline_access" {
		t.Fatalf("sign-in token: %d %v", signIn.status, signIn.body)
	}
	if st, _, info := userinfo(t, s, "Bearer "+signIn.str("access_token")); st != http.StatusOK || info["email"] != "alice@example.com" {
		t.Errorf("userinfo with the sign-in token: %d %v", st, info)
	}
	if st := s.mcpStatus(signIn.str("access_token")); st != http.StatusForbidden {
		t.Errorf("/mcp with the sign-in token: %d, want 403", st)
	}
	if ev := s.rec.mustHave(t, audit.TypeAuthRejected, audit.ReasonNoResourceScope); ev.UserID != s.alice.ID || ev.Details["client_id"] != id {
		t.Errorf("auth.rejected = %+v", ev)
	}

	noScope := s.issue(id, func(q url.Values) { q.Del("scope") })
	if noScope.status != http.StatusOK || noScope.str("scope") == "" {
		t.Fatalf("token without a scope parameter: %d %v", noScope.status, noScope.body)
	}
	if st := s.mcpStatus(noScope.str("access_token")); st != http.StatusOK {
		t.Errorf("/mcp with the default scopes (%s): %d", noScope.str("scope"), st)
	}
}
