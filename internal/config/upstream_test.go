package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseUpstreamProviders(t *testing.T) {
	env := map[string]string{"GH_SECRET": "from-env"}
	getenv := func(k string) string { return env[k] }
	list, err := ParseUpstreamProviders([]byte(`{"providers": [
	  {"name": "corp", "display_name": "Corp SSO", "type": "oidc", "issuer": "https://sso.example.com/realms/main",
	   "client_id": "mcpgate", "client_secret": "s", "quirks": {"omit_resource": true, "audience": "https://api.example.com"},
	   "allow": {"email_domains": ["@Example.com"], "groups": ["eng"], "claims": {"dept": ["r&d"]}}, "link_by_email": true, "treat_email_as_verified": true,
	   "deny": {"email_domains": ["Contractors.Example.com"], "groups": ["interns"], "claims": {"suspended": ["true"]}}},
	  {"name": "github", "type": "github", "client_id": "gh", "client_secret_env": "GH_SECRET", "deny": {"email_domains": ["@evil.example"]}}
	]}`), getenv)
	if err != nil {
		t.Fatal(err)
	}
	corp, gh := list[0], list[1]
	if corp.DisplayName != "Corp SSO" || strings.Join(corp.Scopes, " ") != "openid email profile" || !corp.Quirks.OmitResource ||
		corp.Quirks.Audience != "https://api.example.com" || corp.Allow.EmailDomains[0] != "example.com" || !corp.LinkByEmail || !corp.TreatEmailAsVerified || gh.TreatEmailAsVerified ||
		corp.Deny.EmailDomains[0] != "contractors.example.com" || corp.Deny.Groups[0] != "interns" || corp.Deny.Claims["suspended"][0] != "true" {
		t.Errorf("corp = %+v", corp)
	}
	if gh.ClientSecret != "from-env" || gh.Issuer != DefaultGitHubIssuer || gh.APIURL != DefaultGitHubAPI || gh.DisplayName != "github" ||
		strings.Join(gh.Scopes, " ") != "read:user user:email" || gh.Deny.EmailDomains[0] != "evil.example" {
		t.Errorf("github = %+v", gh)
	}
}

func TestParseUpstreamProvidersReportsEverything(t *testing.T) {
	_, err := ParseUpstreamProviders([]byte(`{"providers": [
	  {"name": "Bad Name", "type": "saml", "client_id": ""},
	  {"name": "ok", "type": "oidc", "issuer": "http://sso.example.com", "client_id": "c", "client_secret": "s", "client_secret_env": "X", "scopes": ["email"],
	   "quirks": {"omit_resource": true, "resource": "https://r.example.com"}},
	  {"name": "ok", "type": "github", "client_id": "c", "client_secret_env": "UNSET", "allow": {"groups": ["g"]}},
	  {"name": "typo", "type": "oidc", "isuser": "https://x"},
	  {"name": "deny", "type": "oidc", "issuer": "https://sso.example.com", "client_id": "c", "client_secret": "s",
	   "deny": {"email_domains": ["not a domain"], "groups": [""], "claims": {"iss": ["x"]}}},
	  {"name": "kelvin", "type": "oidc", "issuer": "https://sso.example.com", "client_id": "c", "client_secret": "s",
	   "allow": {"email_domains": ["\u212Aelvin.example", "b\u00fccher.example", "example.com/x"]}}
	]}`), func(string) string { return "" })
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`provider 1 ("Bad Name"): name`, `type "saml"`, "client_id: required", "client_secret or client_secret_env: required",
		`provider 2 ("ok"): issuer "http://sso.example.com": must use https`, "not both", `must include "openid"`, "contradict",
		`provider 3 ("ok"): client_secret_env: the environment variable UNSET`, "allow.groups", `name "ok" is also provider 2`,
		`provider 4: json: unknown field "isuser"`,
		`provider 5 ("deny"): deny.email_domains "not a domain": must be a domain`, `provider 5 ("deny"): deny.groups: empty group name`,
		`provider 5 ("deny"): deny.claims "iss": a protocol claim`,
		// U+212A KELVIN SIGN lower-cases to "k": refused as non-ASCII, not
		// folded into kelvin.example.
		"provider 6 (\"kelvin\"): allow.email_domains \"\u212Aelvin.example\": must be a domain such as example.com, in ASCII (the punycode form",
		`provider 6 ("kelvin"): allow.email_domains "büc`, `provider 6 ("kelvin"): allow.email_domains "example.com/x"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	for _, doc := range []string{`{"providers": []}`, `{"providers": [{}]} x`, `[]`} {
		if _, err := ParseUpstreamProviders([]byte(doc), func(string) string { return "" }); err == nil {
			t.Errorf("%s accepted", doc)
		}
	}
}

func TestValidateUpstreamProvidersFile(t *testing.T) {
	c := Defaults()
	c.DataDir = t.TempDir()
	c.UpstreamProvidersFile = filepath.Join(t.TempDir(), "up.json")
	os.WriteFile(c.UpstreamProvidersFile, []byte(`{"providers": [{"name": "x", "type": "oidc"}]}`), 0o600)
	c.Retention = 0
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "--upstream-providers-file") || !strings.Contains(err.Error(), "--retention") {
		t.Fatalf("Validate = %v, want both problems", err)
	}
	c.Retention = Defaults().Retention
	os.WriteFile(c.UpstreamProvidersFile, []byte(`{"providers": [{"name": "self", "type": "oidc", "issuer": "`+c.BaseURL()+`", "client_id": "c", "client_secret": "s"}]}`), 0o600)
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "mcpgate's own public URL") {
		t.Errorf("own issuer: %v", err)
	}
}

func TestUpstreamRolesClaimAndCustomClaims(t *testing.T) {
	none := func(string) string { return "" }
	list, err := ParseUpstreamProviders([]byte(`{"providers": [
	  {"name": "kc", "type": "oidc", "issuer": "https://sso.example.com/realms/main", "client_id": "c", "client_secret": "s",
	   "roles_claim": "realm_access.roles", "custom_claims": ["organization_id", "department"]}
	]}`), none)
	if err != nil {
		t.Fatal(err)
	}
	if p := list[0]; p.RolesClaim != "realm_access.roles" || strings.Join(p.CustomClaims, " ") != "organization_id department" {
		t.Errorf("provider = %+v", p)
	}

	many := `"c0"`
	for i := 1; i < 32; i++ {
		many += `, "c` + strings.Repeat("x", i) + `"`
	}
	_, err = ParseUpstreamProviders([]byte(`{"providers": [
	  {"name": "gh", "type": "github", "client_id": "c", "client_secret": "s", "roles_claim": "roles"},
	  {"name": "gh2", "type": "github", "client_id": "c", "client_secret": "s", "custom_claims": ["login"]},
	  {"name": "o", "type": "oidc", "issuer": "https://sso.example.com", "client_id": "c", "client_secret": "s",
	   "custom_claims": ["aud", "email", "roles", "org", "org", "", "acr"]},
	  {"name": "many", "type": "oidc", "issuer": "https://sso.example.com", "client_id": "c", "client_secret": "s",
	   "roles_claim": "`+strings.Repeat("r", 201)+`", "custom_claims": [`+many+`]}
	]}`), none)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`provider 1 ("gh"): roles_claim and custom_claims: GitHub has no ID token claims`,
		`provider 2 ("gh2"): roles_claim and custom_claims: GitHub`,
		`custom_claims "aud": a protocol claim`,
		`custom_claims "acr": a protocol claim`,
		`custom_claims "email": describes the user`,
		`custom_claims "roles": set roles_claim`,
		`custom_claims "org": named twice`,
		`custom_claims "": a claim name is 1 to 64 bytes`,
		`provider 4 ("many"): roles_claim: a claim name or dotted path of at most 200`,
		`custom_claims: 32 claims, at most 31`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// REVIEW-5 F2: a multi-tenant issuer (Entra /common, /organizations)
// without a tenant list would let any tenant sign in, with the roles its
// own administrator assigns. The list is required and checked.
func TestUpstreamMultitenantNeedsAllowedTenants(t *testing.T) {
	none := func(string) string { return "" }
	entra := func(quirks string) string {
		return `{"name": "entra", "type": "oidc", "issuer": "https://login.microsoftonline.com/organizations/v2.0",
		  "client_id": "c", "client_secret": "s", "roles_claim": "roles", "quirks": {` + quirks + `}}`
	}
	list, err := ParseUpstreamProviders([]byte(`{"providers": [`+entra(`"allow_issuer_mismatch_for_multitenant": true,
	  "allowed_tenants": ["3F2A9C1E-5B7D-4E8F-9A0B-1C2D3E4F5A6B", "9188040d-6c67-4c5b-b112-36a304b66dad"]`)+`]}`), none)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(list[0].Quirks.AllowedTenants, " "); got != "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b 9188040d-6c67-4c5b-b112-36a304b66dad" {
		t.Errorf("allowed tenants %q, want them lower-cased", got)
	}

	for _, tc := range []struct{ provider, want string }{
		{entra(`"allow_issuer_mismatch_for_multitenant": true`),
			`quirks.allowed_tenants: required with allow_issuer_mismatch_for_multitenant. Without it any tenant could sign in`},
		{entra(`"allow_issuer_mismatch_for_multitenant": true, "allowed_tenants": []`), "quirks.allowed_tenants: required"},
		{entra(`"allowed_tenants": ["3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"]`), "quirks.allowed_tenants: only with allow_issuer_mismatch_for_multitenant"},
		{entra(`"allow_issuer_mismatch_for_multitenant": true, "allowed_tenants": ["contoso.onmicrosoft.com"]`),
			`quirks.allowed_tenants "contoso.onmicrosoft.com": must be a tenant ID, 1 to 64 letters, digits and '-' (a domain name?`},
		{entra(`"allow_issuer_mismatch_for_multitenant": true, "allowed_tenants": [""]`), `quirks.allowed_tenants "": must be a tenant ID`},
		{entra(`"allow_issuer_mismatch_for_multitenant": true, "allowed_tenants": ["3f2a9c1e/../x"]`), `quirks.allowed_tenants "3f2a9c1e/../x": must be a tenant ID`},
		// U+212A KELVIN SIGN: not ASCII, even though it lower-cases to "k".
		{entra(`"allow_issuer_mismatch_for_multitenant": true, "allowed_tenants": ["\u212A"]`), `must be a tenant ID`},
		{entra(`"allow_issuer_mismatch_for_multitenant": true, "allowed_tenants": ["Organizations"]`), `quirks.allowed_tenants "Organizations": an alias for many tenants`},
		{`{"name": "gh", "type": "github", "client_id": "c", "client_secret": "s", "quirks": {"allowed_tenants": ["x"]}}`,
			"quirks.allow_issuer_mismatch_for_multitenant and quirks.allowed_tenants: only for oidc providers"},
	} {
		_, err := ParseUpstreamProviders([]byte(`{"providers": [`+tc.provider+`]}`), none)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n  error %v\n  want %q", tc.provider, err, tc.want)
		}
	}
}

// REVIEW-5 F10: accounts are linked by (issuer, user id) and a GitHub
// Enterprise Server numbers its users like github.com: its providers must
// name their own issuer, and no two providers may share an issuer but not
// their endpoints.
func TestUpstreamGitHubEnterpriseIssuer(t *testing.T) {
	none := func(string) string { return "" }
	const gh = `{"name": "github", "type": "github", "client_id": "a", "client_secret": "x"}`
	ghe := func(issuer string) string {
		return `{"name": "ghe", "type": "github", "client_id": "b", "client_secret": "y",` + issuer + `
		  "auth_url": "https://ghe.corp.example/login/oauth/authorize", "token_url": "https://ghe.corp.example/login/oauth/access_token",
		  "api_url": "https://ghe.corp.example/api/v3"}`
	}
	list, err := ParseUpstreamProviders([]byte(`{"providers": [`+gh+`, `+ghe(`"issuer": "https://ghe.corp.example",`)+`,
	  {"name": "github2", "type": "github", "client_id": "c", "client_secret": "z", "api_url": "https://api.github.com/"}]}`), none)
	if err != nil {
		t.Fatal(err)
	}
	if list[0].Issuer != DefaultGitHubIssuer || list[1].Issuer != "https://ghe.corp.example" || list[2].Issuer != DefaultGitHubIssuer {
		t.Errorf("issuers %q, %q, %q", list[0].Issuer, list[1].Issuer, list[2].Issuer)
	}

	for _, tc := range []struct{ doc, want string }{
		{`[` + gh + `, ` + ghe(``) + `]`, `provider 2 ("ghe"): issuer: required when auth_url, token_url or api_url is set (GitHub Enterprise Server)`},
		{`[` + ghe(``) + `]`, `provider 1 ("ghe"): issuer: required when auth_url, token_url or api_url is set`},
		{`[` + ghe(`"issuer": "https://github.com",`) + `]`, `provider 1 ("ghe"): issuer "https://github.com": names github.com's accounts`},
		{`[` + ghe(`"issuer": "https://ghe.corp.example",`) + `, {"name": "ghe2", "type": "github", "client_id": "c", "client_secret": "z",
		   "issuer": "https://ghe.corp.example", "auth_url": "https://other.corp.example/login/oauth/authorize",
		   "token_url": "https://other.corp.example/login/oauth/access_token", "api_url": "https://other.corp.example/api/v3"}]`,
			`provider 2 ("ghe2"): issuer "https://ghe.corp.example" is also provider 1's, whose endpoints differ`},
		{`[{"name": "sso", "type": "oidc", "issuer": "https://ghe.corp.example", "client_id": "c", "client_secret": "s"}, ` +
			ghe(`"issuer": "https://ghe.corp.example",`) + `]`, `provider 2 ("ghe"): issuer "https://ghe.corp.example" is also provider 1's`},
	} {
		_, err := ParseUpstreamProviders([]byte(`{"providers": `+tc.doc+`}`), none)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n  error %v\n  want %q", tc.doc, err, tc.want)
		}
	}
}
