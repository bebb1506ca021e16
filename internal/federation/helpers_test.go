package federation_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/federation"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

const resource = "https://mcp.example.com/mcp"

var (
	quiet          = slog.New(slog.NewTextHandler(io.Discard, nil))
	resourceScopes = []string{"payments:read", "payments:write"}
	t0             = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type signingKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func newKey(t testing.TB, kid string, alg jose.SignatureAlgorithm) *signingKey {
	t.Helper()
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.RS256, jose.PS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		t.Fatalf("no key for %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &signingKey{kid: kid, alg: alg, priv: priv}
}

// sign returns a compact JWS of claims with typ "JWT".
func (k *signingKey) sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// idp is an identity provider over HTTP: discovery, a JWKS it can rotate,
// and an RFC 7662 introspection endpoint, each counting its requests.
type idp struct {
	srv    *httptest.Server
	issuer string

	mu        sync.Mutex
	keys      []*signingKey
	introspec func(token string) (status int, body string)
	introWait time.Duration

	jwksFetches      atomic.Int32
	discoveryFetches atomic.Int32
	introCalls       atomic.Int32
	down             atomic.Bool
	badAuth          atomic.Int32
}

func newIdP(t testing.TB, keys ...*signingKey) *idp {
	p := &idp{keys: keys}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		p.discoveryFetches.Add(1)
		if p.down.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{
			"issuer": p.issuer, "jwks_uri": p.srv.URL + "/jwks", "introspection_endpoint": p.srv.URL + "/introspect",
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		p.jwksFetches.Add(1)
		if p.down.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		p.mu.Lock()
		var set jose.JSONWebKeySet
		for _, k := range p.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
		}
		p.mu.Unlock()
		json.NewEncoder(w).Encode(set)
	})
	mux.HandleFunc("POST /introspect", func(w http.ResponseWriter, r *http.Request) {
		p.introCalls.Add(1)
		id, secret, ok := r.BasicAuth()
		if !ok || id != "mcpgate" || secret != "s%3Acret" { // "s:cret", form-encoded (RFC 6749 §2.3.1)
			p.badAuth.Add(1)
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		tok := r.PostFormValue("token") // the whole body read: a client hanging up cancels r.Context()
		p.mu.Lock()
		answer, wait := p.introspec, p.introWait
		p.mu.Unlock()
		if wait > 0 {
			select {
			case <-time.After(wait):
			case <-r.Context().Done():
				return
			}
		}
		status, body := http.StatusOK, `{"active":false}`
		if answer != nil {
			status, body = answer(tok)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	p.issuer = p.srv.URL
	return p
}

func (p *idp) setKeys(keys ...*signingKey) {
	p.mu.Lock()
	p.keys = keys
	p.mu.Unlock()
}

// env is a federation over a real store and provisioner.
type env struct {
	db    *sqlstore.DB
	users *identity.Service
	rec   *recorder
	clk   *clock
	fed   *federation.Federation
}

type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Record(_ context.Context, e audit.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, e.Type)
	}
	return out
}

func newEnv(t testing.TB, issuers ...config.ExternalIssuer) *env {
	t.Helper()
	db := storetest.SQLite(t)
	rec := &recorder{}
	users := identity.New(db, rec)
	clk := &clock{now: t0}
	fed, err := federation.New(issuers, federation.Options{
		ResourceScopes: resourceScopes, Accounts: identity.NewProvisioner(users, db), Now: clk.Now, Logger: quiet,
	})
	if err != nil {
		t.Fatalf("federation.New: %v", err)
	}
	return &env{db: db, users: users, rec: rec, clk: clk, fed: fed}
}

// jwtIssuer is a config entry for p in jwt mode.
func jwtIssuer(p *idp, mod ...func(*config.ExternalIssuer)) config.ExternalIssuer {
	c := config.ExternalIssuer{
		Issuer: p.issuer, Mode: config.ExternalModeJWT, JWKSURI: p.srv.URL + "/jwks",
		Audiences: []string{resource}, Algorithms: []string{"RS256", "ES256"},
		ClockSkew: 30 * time.Second, JWKSRefreshInterval: 30 * time.Second,
		Claims: config.ClaimMapping{UserID: "sub", Email: "email", EmailVerified: "email_verified", Name: "name"},
	}
	for _, m := range mod {
		m(&c)
	}
	return c
}

// introIssuer is a config entry for p in introspection mode.
func introIssuer(p *idp, mod ...func(*config.ExternalIssuer)) config.ExternalIssuer {
	c := jwtIssuer(p)
	c.Mode, c.JWKSURI, c.Algorithms = config.ExternalModeIntrospection, "", nil
	c.Introspection = config.Introspection{
		Endpoint: p.srv.URL + "/introspect", ClientID: "mcpgate", ClientSecret: "s:cret",
		CacheTTL: 30 * time.Second, Timeout: 2 * time.Second,
	}
	for _, m := range mod {
		m(&c)
	}
	return c
}

// claims returns a valid claim set for p at the env's time.
func (e *env) claims(p *idp, sub string) map[string]any {
	now := e.clk.Now().Unix()
	return map[string]any{
		"iss": p.issuer, "sub": sub, "aud": resource, "iat": now, "exp": now + 300,
		"scope": "payments:read openid", "email": sub + "@example.com", "email_verified": true, "name": "User " + sub,
	}
}

func reason(err error) string {
	var fr *federation.RefusalError
	if errors.As(err, &fr) {
		return fr.Reason
	}
	if err == nil {
		return ""
	}
	return "error: " + err.Error()
}

func provisionerFor(t testing.TB) *identity.Provisioner {
	db := storetest.SQLite(t)
	return identity.NewProvisioner(identity.New(db, &recorder{}), db)
}
