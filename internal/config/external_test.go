package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
)

const exampleIssuersFile = `{
  "issuers": [
    {
      "name": "keycloak",
      "issuer": "https://sso.example.com/realms/main",
      "discovery": true,
      "audience": "https://mcp.example.com/mcp",
      "algorithms": ["RS256", "PS256"],
      "clock_skew": "1m",
      "claims": {"roles": "realm_access.roles", "email": "preferred_email"},
      "static_scopes": ["payments:read"],
      "link_by_email": true
    },
    {
      "issuer": "https://tenant.auth0.example.com/",
      "jwks_uri": "https://tenant.auth0.example.com/.well-known/jwks.json",
      "audiences": ["https://mcp.example.com/mcp", "mcp-api"],
      "jwks_refresh_interval": "1m",
      "claims": {"roles": "https://mcp.example.com/roles", "scopes": "permissions"}
    },
    {
      "name": "opaque",
      "mode": "introspection",
      "issuer": "https://idp.example.com",
      "audience": "https://mcp.example.com/mcp",
      "introspection": {
        "endpoint": "https://idp.example.com/oauth2/introspect",
        "client_id": "mcpgate",
        "client_secret_env": "IDP_SECRET",
        "cache_ttl": "10s"
      }
    }
  ]
}`

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseExternalIssuers(t *testing.T) {
	got, err := ParseExternalIssuers([]byte(exampleIssuersFile), env(map[string]string{"IDP_SECRET": "s3cret"}))
	if err != nil {
		t.Fatalf("ParseExternalIssuers: %v", err)
	}
	defClaims := ClaimMapping{UserID: "sub", Email: "email", EmailVerified: "email_verified", Name: "name"}
	want := []ExternalIssuer{
		{
			Name: "keycloak", Issuer: "https://sso.example.com/realms/main", Mode: ExternalModeJWT, Discovery: true,
			Audiences: []string{"https://mcp.example.com/mcp"}, Algorithms: []string{"RS256", "PS256"},
			ClockSkew: time.Minute, JWKSRefreshInterval: DefaultJWKSRefreshInterval,
			Claims:       ClaimMapping{UserID: "sub", Email: "preferred_email", EmailVerified: "email_verified", Name: "name", Roles: "realm_access.roles"},
			StaticScopes: []string{"payments:read"}, LinkByEmail: true,
		},
		{
			Issuer: "https://tenant.auth0.example.com/", Mode: ExternalModeJWT,
			JWKSURI:   "https://tenant.auth0.example.com/.well-known/jwks.json",
			Audiences: []string{"https://mcp.example.com/mcp", "mcp-api"}, Algorithms: DefaultExternalAlgorithms,
			ClockSkew: DefaultExternalClockSkew, JWKSRefreshInterval: time.Minute,
			Claims: ClaimMapping{UserID: "sub", Email: "email", EmailVerified: "email_verified", Name: "name",
				Roles: "https://mcp.example.com/roles", Scopes: "permissions"},
		},
		{
			Name: "opaque", Issuer: "https://idp.example.com", Mode: ExternalModeIntrospection,
			Audiences: []string{"https://mcp.example.com/mcp"}, Algorithms: DefaultExternalAlgorithms,
			ClockSkew: DefaultExternalClockSkew, JWKSRefreshInterval: DefaultJWKSRefreshInterval, Claims: defClaims,
			Introspection: Introspection{Endpoint: "https://idp.example.com/oauth2/introspect", ClientID: "mcpgate",
				ClientSecret: "s3cret", ClientSecretEnv: "IDP_SECRET", CacheTTL: 10 * time.Second, Timeout: DefaultIntrospectionTimeout},
		},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("mismatch (-want +got):\n%s", d)
	}
}

// Every problem of every entry is reported at once, each naming its entry.
func TestParseExternalIssuersReportsEverything(t *testing.T) {
	doc := `{"issuers": [
	  {"name": "no-alg", "issuer": "https://a.example.com", "jwks_uri": "https://a.example.com/jwks",
	   "audience": "x", "algorithms": ["none", "HS256", "RS1024"]},
	  {"name": "plain-http", "issuer": "http://idp.example.com", "jwks_uri": "http://idp.example.com/jwks"},
	  {"name": "both", "issuer": "https://b.example.com", "jwks_uri": "https://b.example.com/jwks", "discovery": true,
	   "audience": "x", "audiences": ["y"], "clock_skew": "forever", "static_scopes": ["has space"],
	   "claims": {"roles": ".roles"}},
	  {"name": "dup", "issuer": "https://a.example.com", "discovery": true, "audience": "x"},
	  {"name": "typo", "issuer": "https://c.example.com", "discovery": true, "audiance": "x"},
	  {"name": "intro1", "mode": "introspection", "issuer": "https://d.example.com", "allow_any_audience": true,
	   "introspection": {"endpoint": "https://d.example.com/introspect", "client_id": "m", "client_secret_env": "UNSET", "cache_ttl": "5m"}},
	  {"name": "intro2", "mode": "introspection", "issuer": "https://e.example.com", "audience": "x",
	   "introspection": {"endpoint": "https://e.example.com/introspect", "client_id": "m", "client_secret": "s", "token_prefix": "mcpg_x"}},
	  {"name": "intro3", "mode": "introspection", "issuer": "https://f.example.com", "audience": "x",
	   "introspection": {"endpoint": "https://f.example.com/introspect", "client_id": "m", "client_secret": "s"}},
	  {"name": "any-aud-jwt", "issuer": "https://g.example.com", "discovery": true, "allow_any_audience": true},
	  {"mode": "magic", "issuer": "https://h.example.com?x=1", "discovery": true, "audience": "x"}
	]}`
	_, err := ParseExternalIssuers([]byte(doc), env(nil))
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		`issuer 1 ("no-alg"): algorithm "none" is never allowed`,
		`issuer 1 ("no-alg"): algorithm "HS256" is never allowed`,
		`issuer 1 ("no-alg"): algorithm "RS1024" is not supported`,
		`issuer 2 ("plain-http"): issuer "http://idp.example.com": must use https`,
		`issuer 2 ("plain-http"): jwks_uri "http://idp.example.com/jwks": must use https`,
		`issuer 2 ("plain-http"): audience is required`,
		`issuer 3 ("both"): give jwks_uri or "discovery": true, not both`,
		`issuer 3 ("both"): give audience or audiences, not both`,
		`issuer 3 ("both"): clock_skew: "forever" is not a duration`,
		`issuer 3 ("both"): static_scopes: "has space" is not a scope token`,
		`issuer 3 ("both"): claims.roles ".roles": must not start or end with a dot`,
		`issuer 4 ("dup"): issuer "https://a.example.com" is also entry 1`,
		`issuer 5: json: unknown field "audiance"`,
		`issuer 6 ("intro1"): introspection.client_secret_env: the environment variable UNSET is not set`,
		`issuer 6 ("intro1"): introspection.cache_ttl 5m0s: must be between 0s (no cache) and 30s`,
		`issuer 7 ("intro2"): introspection.token_prefix "mcpg_x": overlaps mcpgate's own API keys`,
		`issuer 8 ("intro3"): entry 6 is already the introspection entry without token_prefix`,
		`issuer 9 ("any-aud-jwt"): allow_any_audience is only possible in introspection mode`,
		`issuer 10: mode "magic": must be "jwt" or "introspection"`,
		`issuer 10: issuer "https://h.example.com?x=1": must have no query or fragment`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not contain %q", want)
		}
	}
	if t.Failed() {
		t.Logf("error:\n%s", msg)
	}
}

func TestParseExternalIssuersDocumentErrors(t *testing.T) {
	for name, tc := range map[string]struct{ doc, want string }{
		"not JSON":      {`issuers: []`, "not a JSON object"},
		"empty list":    {`{"issuers": []}`, `"issuers" is empty`},
		"unknown field": {`{"issuers": [], "extra": 1}`, `unknown field "extra"`},
		"trailing data": {`{"issuers": [{}]} {}`, "trailing data"},
		"array":         {`[{"issuer": "https://x"}]`, "not a JSON object"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseExternalIssuers([]byte(tc.doc), env(nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestSecretsNeverInErrors(t *testing.T) {
	doc := `{"issuers": [{"mode": "introspection", "issuer": "https://d.example.com", "audience": "x",
	  "introspection": {"endpoint": "ftp://d.example.com/introspect", "client_id": "m", "client_secret": "TOPSECRET", "client_secret_env": "X"}}]}`
	_, err := ParseExternalIssuers([]byte(doc), env(map[string]string{"X": "ENVSECRET"}))
	if err == nil {
		t.Fatal("accepted")
	}
	if strings.Contains(err.Error(), "TOPSECRET") || strings.Contains(err.Error(), "ENVSECRET") {
		t.Errorf("error leaks a secret: %v", err)
	}
}

func TestExternalIssuersFlagAndFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "issuers.json")
	own := `{"issuers": [{"issuer": "https://mcp.example.com", "discovery": true, "audience": "https://mcp.example.com/mcp"}]}`
	if err := os.WriteFile(path, []byte(own), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	c.RegisterServe(fs)
	if err := ApplyEnv(fs, env(map[string]string{"MCPGATE_EXTERNAL_ISSUERS_FILE": path})); err != nil {
		t.Fatal(err)
	}
	if c.ExternalIssuersFile != path {
		t.Fatalf("ExternalIssuersFile = %q, want %q from the environment", c.ExternalIssuersFile, path)
	}
	c.PublicURL = "https://mcp.example.com"
	if _, err := c.ExternalIssuers(); err == nil || !strings.Contains(err.Error(), "mcpgate's own public URL") {
		t.Errorf("own issuer listed: error = %v", err)
	}
	c.PublicURL = "https://gate.example.com"
	list, err := c.ExternalIssuers()
	if err != nil || len(list) != 1 {
		t.Errorf("ExternalIssuers = %v, %v", list, err)
	}

	c.ExternalIssuersFile = filepath.Join(dir, "missing.json")
	if _, err := c.ExternalIssuers(); err == nil || !strings.Contains(err.Error(), "--external-issuers-file") {
		t.Errorf("missing file: error = %v", err)
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, []byte(`{"issuers": [`+strings.Repeat(" ", 2<<20)+`]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c.ExternalIssuersFile = big
	if _, err := c.ExternalIssuers(); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge file: error = %v", err)
	}
	c.ExternalIssuersFile = ""
	if list, err := c.ExternalIssuers(); list != nil || err != nil {
		t.Errorf("unset: %v, %v", list, err)
	}
}
