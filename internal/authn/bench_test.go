package authn_test

// Benchmarks of the access-token path of Middleware, in steady state: the
// token is in the verifier's cache, the grant state in the authorization
// server's (here: a constant), the user in the user cache. What remains is
// the principal authn builds per request.
//
//	go test -run '^$' -bench AccessToken -benchmem ./internal/authn/

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/tokens"
	"github.com/mcpgate/mcpgate/verify"
)

// nopWriter is a ResponseWriter that keeps nothing (no per-request
// recorder allocations in the measurement).
type nopWriter struct{ h http.Header }

func (w nopWriter) Header() http.Header         { return w.h }
func (w nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w nopWriter) WriteHeader(int)             {}

func BenchmarkAccessToken(b *testing.B) {
	e := newJWTEnv(b)
	v, err := verify.New(verify.Options{Issuer: base, Audience: base + "/mcp", Keys: keySource{e}})
	if err != nil {
		b.Fatal(err)
	}
	a := authn.New(authn.Options{
		Keys: apikeys.New(e.db, e.rec, apikeys.Options{}), Users: e.db.GetUser, Audit: e.rec, Resource: base + "/mcp",
		ResourceMetadataURL: base + "/.well-known/oauth-protected-resource/mcp", Scopes: []string{"payments:read"},
		AllowedOrigins: []string{base}, Logger: quiet, UserCacheTTL: time.Minute,
		AccessTokens: &authn.AccessTokens{Verifier: v, GrantActive: func(context.Context, string) (bool, error) { return true, nil }},
	})
	var org string
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := principal.From(r.Context())
		org, _ = p.ClaimString("organization_id")
	}))
	for _, tc := range []struct {
		name  string
		extra map[string]any
	}{
		{"no-custom-claims", nil},
		{"custom-claims", map[string]any{"organization_id": "org_acme", "roles": []string{"auditor", "admin"}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tok := e.mint(b, tokens.AccessClaims{Subject: e.user.ID, ClientID: "bench-client", Audience: base + "/mcp",
				Scopes: []string{"payments:read"}, GrantID: "grt_bench", Extra: tc.extra})
			r := httptest.NewRequest(http.MethodPost, base+"/mcp", nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			w := nopWriter{h: http.Header{}}
			h.ServeHTTP(w, r) // warm the caches
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, r)
			}
		})
	}
	_ = org
}
