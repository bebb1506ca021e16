package server_test

// Token endpoint benchmarks on the real server (in-process, through the
// whole handler chain: common middleware, client authentication, the
// grant, the store, token signing, audit), next to the raw storage
// transaction each grant is built around, measured in the same run on the
// same database:
//
//	go test -run '^$' -bench 'TokenEndpoint' -benchmem -count 3 ./internal/server/
//	MCPGATE_TEST_POSTGRES_DSN='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' \
//	  go test -run '^$' -bench 'TokenEndpoint' -benchmem -count 3 ./internal/server/
//
// Authorization codes are made before the timer starts, through the real
// authorization endpoint and the consent page, as alice. docs/performance.md
// has the figures and the targets.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/storetest"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// benchAS is a server with a public client alice has authorized, driven
// in-process through its handler.
type benchAS struct {
	b        *testing.B
	e        *env
	h        http.Handler
	cookie   string // alice's session cookie
	clientID string
	redirect string
	verifier string
	authz    string // an authorization request URL (path and query)
	ip       int    // last client address used for /authorize
}

// postgresSchemaURL returns MCPGATE_TEST_POSTGRES_DSN pointing at a fresh
// schema, dropped when b ends; it skips b without the variable (fails it
// under CI=true, like storetest.Postgres).
func postgresSchemaURL(b testing.TB) string {
	b.Helper()
	dsn := os.Getenv(storetest.PostgresEnv)
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			b.Fatalf("%s must be set when CI=true (PostgreSQL tests may not be skipped on CI)", storetest.PostgresEnv)
		}
		b.Skip(storetest.PostgresEnv + " not set")
	}
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close()
	var r [8]byte
	rand.Read(r[:])
	schema := "b_" + hex.EncodeToString(r[:])
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		b.Fatalf("PostgreSQL at %s: %v", dsn, err)
	}
	b.Cleanup(func() {
		admin, err := sql.Open("pgx", dsn)
		if err != nil {
			return
		}
		defer admin.Close()
		admin.Exec(`DROP SCHEMA IF EXISTS ` + schema + ` CASCADE`)
	})
	u, _ := url.Parse(dsn)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func newBenchAS(b *testing.B, backend string) *benchAS {
	return newBenchASWith(b, backend, nil)
}

// newBenchASWith is newBenchAS where alice's sign-in carries claims
// (custom login's, say) and the server copies them into access tokens
// (--access-token-claims), when claims is not nil.
func newBenchASWith(b *testing.B, backend string, claims map[string]any) *benchAS {
	b.Helper()
	var mutate []func(*config.Config)
	if backend == "postgres" {
		dbURL := postgresSchemaURL(b)
		mutate = append(mutate, func(c *config.Config) { c.DatabaseURL = dbURL })
	}
	if claims != nil {
		mutate = append(mutate, func(c *config.Config) {
			for name := range claims {
				c.AccessTokenClaims = append(c.AccessTokenClaims, name)
			}
		})
	}
	e := newEnv(b, mutate...)
	a := &benchAS{b: b, e: e, h: e.srv.Handler(), redirect: "http://127.0.0.1:9/callback"}
	cl, _, err := e.srv.OAuthClients().CreateStatic(context.Background(), oauth.StaticClient{Name: "bench", RedirectURIs: []string{a.redirect}})
	if err != nil {
		b.Fatal(err)
	}
	a.clientID = cl.ClientID
	var v [32]byte
	rand.Read(v[:])
	a.verifier = base64.RawURLEncoding.EncodeToString(v[:])
	sum := sha256.Sum256([]byte(a.verifier))
	a.authz = "/authorize?" + url.Values{
		"response_type": {"code"}, "client_id": {a.clientID}, "redirect_uri": {a.redirect},
		"scope": {"payments:read payments:write"}, "resource": {e.base + "/mcp"}, "state": {"s"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}.Encode()

	// Alice signs in and allows the client once.
	w := a.serve("POST", "/login", url.Values{"email": {"alice@example.com"}, "password": {e.pws["alice@example.com"]}, "return_to": {"/account"}}, "")
	if claims != nil {
		// As custom login does: a session carrying the claims.
		core := e.srv.Core()
		alice, err := core.Users.Get(context.Background(), "alice@example.com")
		if err != nil {
			b.Fatal(err)
		}
		w = httptest.NewRecorder()
		if _, err := core.Sessions.StartWithClaims(context.Background(), w, httptest.NewRequest("GET", e.base+"/", nil), alice, claims); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == "mcpgate_session" {
			a.cookie = c.Name + "=" + c.Value
		}
	}
	if a.cookie == "" {
		b.Fatalf("login: %d, no session cookie", w.Code)
	}
	w = a.serve("GET", a.authz, nil, a.cookie)
	consent := w.Header().Get("Location")
	if !strings.HasPrefix(consent, "/oauth/consent?request=") {
		b.Fatalf("authorize: %d %q", w.Code, consent)
	}
	req := strings.TrimPrefix(consent, "/oauth/consent?request=")
	w = a.serve("POST", "/oauth/consent", url.Values{"request": {req}, "decision": {"allow"}}, withCookies(a.cookie, w))
	if w.Code != http.StatusSeeOther {
		b.Fatalf("consent: %d %s", w.Code, w.Body)
	}
	return a
}

// withCookies adds the cookies a response set (the pending request's
// browser binding) to a Cookie header.
func withCookies(cookie string, w *httptest.ResponseRecorder) string {
	for _, c := range w.Result().Cookies() {
		cookie += "; " + c.Name + "=" + c.Value
	}
	return cookie
}

func (a *benchAS) serve(method, target string, form url.Values, cookie string) *httptest.ResponseRecorder {
	return a.serveFrom("127.0.0.1:1234", method, target, form, cookie)
}

func (a *benchAS) serveFrom(remote, method, target string, form url.Values, cookie string) *httptest.ResponseRecorder {
	var r *http.Request
	if form != nil {
		r = httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		r = httptest.NewRequest(method, target, nil)
	}
	r.RemoteAddr = remote
	if cookie != "" {
		r.Header.Set("Cookie", cookie)
	}
	w := httptest.NewRecorder()
	a.h.ServeHTTP(w, r)
	return w
}

// codes makes n authorization codes through the authorization endpoint:
// GET /authorize, and Allow on the consent page when it is shown (consent
// is remembered, but a public client with a loopback redirect URI is
// confirmed each time, RFC 8252 §8.6).
func (a *benchAS) codes(n int) []string {
	out := make([]string, 0, n)
	for range n {
		// The authorization endpoint is rate-limited per client IP: the
		// codes come from many addresses, as from many users.
		a.ip++
		w := a.serveFrom(fmt.Sprintf("10.%d.%d.%d:1234", a.ip>>16&255, a.ip>>8&255, a.ip&255), "GET", a.authz, nil, a.cookie)
		if req, ok := strings.CutPrefix(w.Header().Get("Location"), "/oauth/consent?request="); ok {
			w = a.serve("POST", "/oauth/consent", url.Values{"request": {req}, "decision": {"allow"}}, withCookies(a.cookie, w))
		}
		loc, err := url.Parse(w.Header().Get("Location"))
		if err != nil || loc.Query().Get("code") == "" {
			a.b.Fatalf("authorize: %d %q", w.Code, w.Header().Get("Location"))
		}
		out = append(out, loc.Query().Get("code"))
	}
	return out
}

func (a *benchAS) exchange(code string) *httptest.ResponseRecorder {
	return a.serve("POST", "/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {a.redirect},
		"code_verifier": {a.verifier}, "client_id": {a.clientID}, "resource": {a.e.base + "/mcp"},
	}, "")
}

func (a *benchAS) refresh(token string) string {
	next, _ := a.refreshBoth(token)
	return next
}

// refreshBoth refreshes and returns the new refresh and access tokens.
func (a *benchAS) refreshBoth(token string) (string, string) {
	w := a.serve("POST", "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}, "client_id": {a.clientID}}, "")
	var resp struct {
		RefreshToken string `json:"refresh_token"`
		AccessToken  string `json:"access_token"`
	}
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &resp) != nil || resp.RefreshToken == "" {
		a.b.Fatalf("refresh: %d %s", w.Code, w.Body)
	}
	return resp.RefreshToken, resp.AccessToken
}

// firstRefreshToken exchanges one code and returns its refresh token.
func (a *benchAS) firstRefreshToken() string {
	w := a.exchange(a.codes(1)[0])
	var resp struct {
		RefreshToken string `json:"refresh_token"`
	}
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &resp) != nil || resp.RefreshToken == "" {
		a.b.Fatalf("exchange: %d %s", w.Code, w.Body)
	}
	return resp.RefreshToken
}

func rate(b *testing.B, unit string) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
}

func secretHash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func BenchmarkTokenEndpoint(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			// POST /token grant_type=authorization_code, public client,
			// PKCE S256, resource indicator: client lookup, code
			// redemption, refresh-token family start, user, JWT signing
			// (ES256), two audit events.
			b.Run("exchange", func(b *testing.B) {
				a := newBenchAS(b, backend)
				codes := a.codes(b.N)
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					if w := a.exchange(codes[i]); w.Code != http.StatusOK {
						b.Fatalf("exchange: %d %s", w.Code, w.Body)
					}
				}
				rate(b, "exchanges/s")
			})
			b.Run("exchange-parallel", func(b *testing.B) {
				a := newBenchAS(b, backend)
				codes := a.codes(b.N)
				var next atomic.Int64
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if w := a.exchange(codes[next.Add(1)-1]); w.Code != http.StatusOK {
							b.Errorf("exchange: %d %s", w.Code, w.Body)
							return
						}
					}
				})
				rate(b, "exchanges/s")
			})
			// POST /token grant_type=refresh_token: rotation (the presented
			// token is used up, a successor stored), new JWT, audit.
			b.Run("refresh", func(b *testing.B) {
				a := newBenchAS(b, backend)
				tok := a.firstRefreshToken()
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					tok = a.refresh(tok)
				}
				rate(b, "refreshes/s")
			})
			// The same, for a grant whose sign-in carried custom claims
			// the server copies into access tokens: each refresh also
			// checks that the sign-in still lives (one read of the
			// session by id).
			b.Run("refresh-claims", func(b *testing.B) {
				a := newBenchASWith(b, backend, map[string]any{"organization_id": "org_bench", "roles": []string{"auditor"}})
				tok, access := a.refreshBoth(a.firstRefreshToken())
				if payload := tokenPayload(b, access); payload["organization_id"] != "org_bench" {
					b.Fatalf("the refreshed access token carries no claims: %v", payload)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					tok = a.refresh(tok)
				}
				rate(b, "refreshes/s")
			})
			// The raw storage transaction of a code exchange: redeeming
			// the code (one UPDATE … RETURNING in a transaction), straight
			// on the store, nothing else.
			b.Run("raw-store-redeem", func(b *testing.B) {
				a := newBenchAS(b, backend)
				codes := a.codes(b.N)
				db := a.e.srv.Core().DB
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					if _, err := db.RedeemOAuthCode(ctx, secretHash(codes[i]), time.Now()); err != nil {
						b.Fatal(err)
					}
				}
				rate(b, "tx/s")
			})
			// Every store call of a code exchange, in order: the client,
			// the redemption, the first refresh token, the user.
			b.Run("raw-store-exchange-calls", func(b *testing.B) {
				a := newBenchAS(b, backend)
				codes := a.codes(b.N)
				db := a.e.srv.Core().DB
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					if _, err := db.GetOAuthClient(ctx, a.clientID); err != nil {
						b.Fatal(err)
					}
					now := time.Now()
					g, err := db.RedeemOAuthCode(ctx, secretHash(codes[i]), now)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := db.CreateOAuthRefreshToken(ctx, store.OAuthRefreshToken{
						ID: store.NewID("ort"), GrantID: g.ID, Hash: secretHash(store.NewID("bench")), CreatedAt: now, ExpiresAt: now.Add(time.Hour),
					}); err != nil {
						b.Fatal(err)
					}
					if _, err := db.GetUser(ctx, g.UserID); err != nil {
						b.Fatal(err)
					}
				}
				rate(b, "exchanges/s")
			})
			// The raw storage transaction of a refresh: one rotation.
			b.Run("raw-store-rotate", func(b *testing.B) {
				a := newBenchAS(b, backend)
				tok := a.firstRefreshToken()
				db := a.e.srv.Core().DB
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					next := store.NewID("bench")
					now := time.Now()
					res, err := db.RotateRefreshToken(ctx, secretHash(tok), store.OAuthRefreshToken{
						ID: store.NewID("ort"), Hash: secretHash(next), CreatedAt: now, ExpiresAt: now.Add(time.Hour),
					}, now, 30*time.Second)
					if err != nil || res.Outcome != store.RefreshRotated {
						b.Fatalf("rotate: %v %q", err, res.Outcome)
					}
					tok = next
				}
				rate(b, "tx/s")
			})
		})
	}
}
