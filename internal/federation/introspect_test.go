package federation_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/federation"
)

// activeAnswer is an RFC 7662 §2.2 answer for an active token.
func activeAnswer(p *idp, sub string, exp time.Time, extra map[string]any) string {
	m := map[string]any{
		"active": true, "sub": sub, "iss": p.issuer, "aud": []string{resource}, "exp": exp.Unix(),
		"scope": "payments:read openid", "client_id": "cli", "email": sub + "@example.com",
	}
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func TestIntrospection(t *testing.T) {
	p := newIdP(t)
	e := newEnv(t, introIssuer(p, func(c *config.ExternalIssuer) { c.Claims.Roles = "groups" }))
	ctx := t.Context()
	exp := t0.Add(10 * time.Minute)
	p.introspec = func(tok string) (int, string) {
		switch tok {
		case "opaque-alice":
			return http.StatusOK, activeAnswer(p, "alice", exp, map[string]any{"groups": []string{"ops"}})
		case "opaque-other-aud":
			return http.StatusOK, activeAnswer(p, "alice", exp, map[string]any{"aud": "https://elsewhere.example.com"})
		case "opaque-other-iss":
			return http.StatusOK, activeAnswer(p, "alice", exp, map[string]any{"iss": "https://evil.example.com"})
		case "opaque-expired":
			return http.StatusOK, activeAnswer(p, "alice", t0.Add(-time.Hour), nil)
		case "opaque-no-sub":
			return http.StatusOK, `{"active": true, "aud": "` + resource + `"}`
		}
		return http.StatusOK, `{"active": false}`
	}

	id, err := e.fed.Authenticate(ctx, "opaque-alice", false)
	if err != nil {
		t.Fatalf("active token: %v", err)
	}
	if id.Method != federation.MethodExternalIntrospection || id.Subject != "alice" || id.ClientID != "cli" ||
		!slices.Equal(id.Scopes, []string{"payments:read"}) || !slices.Equal(id.Roles, []string{"ops"}) || !id.ExpiresAt.Equal(exp) {
		t.Errorf("identity = %+v", id)
	}
	if p.badAuth.Load() != 0 {
		t.Error("mcpgate did not authenticate to the introspection endpoint with client_secret_basic")
	}

	// Cached for the configured 30 s…
	for range 5 {
		if _, err := e.fed.Authenticate(ctx, "opaque-alice", false); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.introCalls.Load(); n != 1 {
		t.Errorf("%d introspection calls for 6 requests within the cache time, want 1", n)
	}
	// …then asked again.
	e.clk.Add(31 * time.Second)
	if _, err := e.fed.Authenticate(ctx, "opaque-alice", false); err != nil {
		t.Fatal(err)
	}
	if n := p.introCalls.Load(); n != 2 {
		t.Errorf("%d introspection calls after the cache time, want 2", n)
	}

	// Inactive answers are never cached.
	before := p.introCalls.Load()
	for range 3 {
		if _, err := e.fed.Authenticate(ctx, "opaque-unknown", false); reason(err) != federation.ReasonIntrospectionInactive {
			t.Fatalf("inactive token: %v", err)
		}
	}
	if n := p.introCalls.Load() - before; n != 3 {
		t.Errorf("%d calls for 3 requests with an inactive token, want 3 (no negative cache)", n)
	}

	for tok, want := range map[string]string{
		"opaque-other-aud": federation.ReasonBadAudience,
		"opaque-other-iss": federation.ReasonWrongIssuer,
		"opaque-expired":   federation.ReasonExpired,
		"opaque-no-sub":    federation.ReasonMalformed,
	} {
		if _, err := e.fed.Authenticate(ctx, tok, false); reason(err) != want {
			t.Errorf("%s: %v, want %s", tok, err, want)
		}
	}
}

// The cache never outlives the token.
func TestIntrospectionCacheStopsAtExp(t *testing.T) {
	p := newIdP(t)
	e := newEnv(t, introIssuer(p))
	p.introspec = func(string) (int, string) { return http.StatusOK, activeAnswer(p, "bob", t0.Add(10*time.Second), nil) }
	if _, err := e.fed.Authenticate(t.Context(), "tok", false); err != nil {
		t.Fatal(err)
	}
	e.clk.Add(11 * time.Second)
	p.introspec = func(string) (int, string) { return http.StatusOK, `{"active":false}` }
	if _, err := e.fed.Authenticate(t.Context(), "tok", false); reason(err) != federation.ReasonIntrospectionInactive {
		t.Errorf("after exp: %v, want the provider asked again (inactive)", err)
	}
}

// A provider that answers slowly or with garbage is a clear, bounded
// refusal (issuer_unavailable → 503), never an acceptance.
func TestIntrospectionBadProvider(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"server error", http.StatusInternalServerError, `oops`, "answered 500"},
		{"mcpgate's credentials refused", http.StatusUnauthorized, `{"error":"invalid_client"}`, "answered 401"},
		{"HTML", http.StatusOK, `<html>login</html>`, "not a JSON object"},
		{"active as a string", http.StatusOK, `{"active":"true","sub":"x"}`, `no boolean "active"`},
		{"JSON array", http.StatusOK, `[{"active":true}]`, "not a JSON object"},
		{"no active member", http.StatusOK, `{"sub":"x"}`, `no boolean "active"`},
		{"huge", http.StatusOK, `{"active":true,"x":"` + strings.Repeat("a", 70<<10) + `"}`, "exceeds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newIdP(t)
			e := newEnv(t, introIssuer(p))
			p.introspec = func(string) (int, string) { return tc.status, tc.body }
			_, err := e.fed.Authenticate(t.Context(), "tok", false)
			if reason(err) != federation.ReasonIssuerUnavailable || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want issuer_unavailable mentioning %q", err, tc.want)
			}
		})
	}
	t.Run("slow", func(t *testing.T) {
		p := newIdP(t)
		e := newEnv(t, introIssuer(p, func(c *config.ExternalIssuer) { c.Introspection.Timeout = 200 * time.Millisecond }))
		p.introWait = 5 * time.Second
		start := time.Now()
		_, err := e.fed.Authenticate(t.Context(), "tok", false)
		if reason(err) != federation.ReasonIssuerUnavailable || !strings.Contains(err.Error(), "did not answer within 200ms") {
			t.Errorf("err = %v, want issuer_unavailable after the timeout", err)
		}
		// Bounded by the configured timeout, not by the provider.
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("took %s with a 200ms timeout", d)
		}
	})
	t.Run("credentials from discovery endpoint", func(t *testing.T) {
		p := newIdP(t)
		e := newEnv(t, introIssuer(p, func(c *config.ExternalIssuer) { c.Introspection.Endpoint, c.Discovery = "", true }))
		p.introspec = func(string) (int, string) { return http.StatusOK, activeAnswer(p, "dan", t0.Add(time.Hour), nil) }
		if _, err := e.fed.Authenticate(t.Context(), "tok", false); err != nil {
			t.Errorf("introspection endpoint from discovery: %v", err)
		}
	})
}

// Concurrent requests with the same new token share one call.
func TestIntrospectionSharesConcurrentCalls(t *testing.T) {
	p := newIdP(t)
	e := newEnv(t, introIssuer(p))
	p.introWait = 100 * time.Millisecond
	p.introspec = func(string) (int, string) { return http.StatusOK, activeAnswer(p, "eve", t0.Add(time.Hour), nil) }
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.fed.Authenticate(context.Background(), "same-token", false); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := p.introCalls.Load(); n != 1 {
		t.Errorf("%d introspection calls for 20 concurrent requests, want 1", n)
	}
}

// Opaque tokens are routed by prefix; a JWT naming an introspection
// issuer is introspected too; no other provider ever sees a token.
func TestIntrospectionRouting(t *testing.T) {
	gh := newIdP(t)
	def := newIdP(t)
	e := newEnv(t,
		introIssuer(gh, func(c *config.ExternalIssuer) { c.Introspection.TokenPrefix = "gho_" }),
		introIssuer(def),
	)
	gh.introspec = func(string) (int, string) { return http.StatusOK, activeAnswer(gh, "octocat", t0.Add(time.Hour), nil) }
	def.introspec = func(string) (int, string) { return http.StatusOK, activeAnswer(def, "someone", t0.Add(time.Hour), nil) }
	if id, err := e.fed.Authenticate(t.Context(), "gho_abc", false); err != nil || id.Issuer != gh.issuer {
		t.Errorf("gho_ token: %+v, %v", id, err)
	}
	if id, err := e.fed.Authenticate(t.Context(), "other-opaque", false); err != nil || id.Issuer != def.issuer {
		t.Errorf("other token: %+v, %v", id, err)
	}
	if gh.introCalls.Load() != 1 || def.introCalls.Load() != 1 {
		t.Errorf("calls: prefixed %d, default %d; want 1 each", gh.introCalls.Load(), def.introCalls.Load())
	}
	jwtLike := unsigned(map[string]any{"alg": "RS256"}, map[string]any{"iss": def.issuer}, nil)
	if _, err := e.fed.Authenticate(t.Context(), jwtLike, true); err != nil {
		t.Errorf("JWT of an introspection issuer: %v", err)
	}
	if def.introCalls.Load() != 2 {
		t.Errorf("JWT of an introspection issuer was not introspected")
	}

	// Without a default entry, an unrouted opaque token is nobody's.
	only := newEnv(t, introIssuer(gh, func(c *config.ExternalIssuer) { c.Introspection.TokenPrefix = "gho_" }))
	if only.fed.TakesOpaque("xyz") || !only.fed.TakesOpaque("gho_1") {
		t.Error("TakesOpaque routes wrongly")
	}
	if _, err := only.fed.Authenticate(t.Context(), "xyz", false); reason(err) != federation.ReasonUnknownIssuer {
		t.Errorf("unrouted opaque token: %v", err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	p := newIdP(t)
	for name, issuers := range map[string][]config.ExternalIssuer{
		"HS256":       {jwtIssuer(p, func(c *config.ExternalIssuer) { c.Algorithms = []string{"HS256"} })},
		"two issuers": {jwtIssuer(p), jwtIssuer(p)},
		"plain http":  {jwtIssuer(p, func(c *config.ExternalIssuer) { c.JWKSURI = "http://idp.example.com/jwks" })},
		"two default introspection entries": {
			introIssuer(p), introIssuer(p, func(c *config.ExternalIssuer) { c.Issuer = "https://b.example.com" })},
	} {
		if _, err := federation.New(issuers, federation.Options{Accounts: nil}); err == nil {
			t.Errorf("%s: no error without Accounts", name)
		}
		if _, err := federation.New(issuers, federation.Options{Accounts: provisionerFor(t)}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
