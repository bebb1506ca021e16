package config

// Upstream identity providers: the JSON file named by
// --upstream-providers-file (MCPGATE_UPSTREAM_PROVIDERS_FILE) lists the
// providers the login page offers as "Continue with <display_name>". See
// docs/upstream-login.md; in short:
//
//	{"providers": [{
//	  "name": "corp",
//	  "display_name": "Corp SSO",
//	  "type": "oidc",
//	  "issuer": "https://sso.example.com/realms/main",
//	  "client_id": "mcpgate",
//	  "client_secret_env": "CORP_SSO_SECRET",
//	  "scopes": ["openid", "email", "profile"],
//	  "quirks": {"omit_resource": true, "audience": "", "allow_issuer_mismatch_for_multitenant": false, "allowed_tenants": []},
//	  "link_by_email": false,
//	  "allow": {"email_domains": ["example.com"], "groups": [], "claims": {"department": ["eng"]}},
//	  "roles_claim": "groups",
//	  "custom_claims": ["organization_id"]
//	}]}
//
// Unknown fields are errors and every problem is reported at once.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/principal"
)

// Upstream provider types.
const (
	UpstreamOIDC   = "oidc"
	UpstreamGitHub = "github"
)

// Defaults of GitHub providers.
const (
	DefaultGitHubIssuer  = "https://github.com" // the identity source name links are stored under
	DefaultGitHubAuthURL = "https://github.com/login/oauth/authorize"
	DefaultGitHubToken   = "https://github.com/login/oauth/access_token"
	DefaultGitHubAPI     = "https://api.github.com"
)

const (
	maxUpstreamFileBytes = 1 << 20
	maxUpstreamProviders = 50
	maxAllowEntries      = 1000
)

var upstreamNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,39}$`)

// TenantIDPattern is what "{tenantid}" in a multi-tenant issuer template
// stands for (Entra ID: the directory's GUID), as a regular expression
// without anchors. The entries of quirks.allowed_tenants have this shape.
const TenantIDPattern = `[A-Za-z0-9-]{1,64}`

var tenantIDRE = regexp.MustCompile(`^` + TenantIDPattern + `$`)

// UpstreamProvider is one validated entry of the upstream providers file.
type UpstreamProvider struct {
	// Name is the path segment (/login/upstream/{name}) and the audit label.
	Name string
	// DisplayName is shown on the button: "Continue with <DisplayName>".
	DisplayName string
	Type        string // UpstreamOIDC or UpstreamGitHub
	// Issuer: the OIDC issuer (discovery at Issuer/.well-known/openid-configuration).
	// For GitHub, the name its links are stored under (default https://github.com).
	Issuer       string
	ClientID     string
	ClientSecret string // from the file or the variable ClientSecretEnv names
	Scopes       []string
	Quirks       UpstreamQuirks
	// LinkByEmail allows linking to an existing user with the same email
	// when the provider says the email is verified.
	LinkByEmail bool
	// TreatEmailAsVerified: the operator vouches that every address this
	// provider reports belongs to its user (a provider whose addresses
	// its own administrators assign, such as another mcpgate, which never
	// claims email_verified). Its emails then count as verified for the
	// email-domain allow rule, linking by email and the new user's email.
	TreatEmailAsVerified bool
	Allow                UpstreamAllow
	// Deny refuses accounts any of whose rules match, even when Allow
	// lets them in.
	Deny UpstreamRules
	// RolesClaim names the ID token claim (a name, or a dotted path such
	// as "realm_access.roles") holding the user's roles or groups; they
	// become the session's "roles" custom claim, which counts for tool
	// decisions (never as mcpgate's admin role). "": no roles. OIDC only.
	RolesClaim string
	// CustomClaims are ID token claims kept with the session as custom
	// claims (like bring-your-own-login's), for tools and, through
	// --access-token-claims, access tokens. OIDC only.
	CustomClaims []string
	// GitHub endpoints (defaults: github.com); overridable for GitHub
	// Enterprise Server and tests.
	AuthURL, TokenURL, APIURL string
}

// UpstreamQuirks are per-provider compatibility settings.
type UpstreamQuirks struct {
	// Resource is an RFC 8707 resource indicator sent with the
	// authorization and token requests; OmitResource never sends one
	// (for providers that reject the parameter).
	Resource     string
	OmitResource bool
	// Audience is sent as the "audience" parameter (Auth0 style).
	Audience string
	// AllowIssuerMismatchForMultitenant: the discovered issuer is a
	// template with "{tenantid}" (Entra ID /common, /organizations); an ID
	// token's iss is accepted when it matches the template with one of
	// AllowedTenants in its place.
	AllowIssuerMismatchForMultitenant bool
	// AllowedTenants are the tenant ids (lower case) whose accounts may
	// sign in through a multi-tenant issuer; required with
	// AllowIssuerMismatchForMultitenant. Anybody can create a tenant, and
	// its administrator decides its users' roles, groups and claims.
	AllowedTenants []string
}

// UpstreamRules match accounts by email domain, group or claim. As allow
// rules every non-empty rule must hold; as deny rules any one that matches
// refuses the account.
type UpstreamRules struct {
	EmailDomains []string            // the (verified, for allow) email's domain is one of these
	Groups       []string            // the "groups" claim contains one of these
	Claims       map[string][]string // the named claim has (contains) one of the values
}

// UpstreamAllow: who may log in; every non-empty rule must hold.
type UpstreamAllow = UpstreamRules

// UpstreamProviders loads the file named by --upstream-providers-file (nil
// when unset).
func (c *Config) UpstreamProviders() ([]UpstreamProvider, error) {
	if c.UpstreamProvidersFile == "" {
		return nil, nil
	}
	f, err := os.Open(c.UpstreamProvidersFile)
	if err != nil {
		return nil, fmt.Errorf("--upstream-providers-file: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxUpstreamFileBytes+1)); err != nil {
		return nil, fmt.Errorf("--upstream-providers-file %s: %w", c.UpstreamProvidersFile, err)
	}
	if buf.Len() > maxUpstreamFileBytes {
		return nil, fmt.Errorf("--upstream-providers-file %s: larger than %d bytes", c.UpstreamProvidersFile, maxUpstreamFileBytes)
	}
	list, err := ParseUpstreamProviders(buf.Bytes(), os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("--upstream-providers-file %s:\n%w", c.UpstreamProvidersFile, err)
	}
	var errs []string
	for i, p := range list {
		if p.Issuer == c.BaseURL() {
			errs = append(errs, fmt.Sprintf("%s: issuer is mcpgate's own public URL", upstreamLabel(i, p.Name)))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("--upstream-providers-file %s:\n%w", c.UpstreamProvidersFile, joinErrs(errs))
	}
	return list, nil
}

type fileRules struct {
	EmailDomains []string            `json:"email_domains"`
	Groups       []string            `json:"groups"`
	Claims       map[string][]string `json:"claims"`
}

type upstreamFileEntry struct {
	Name            string   `json:"name"`
	DisplayName     string   `json:"display_name"`
	Type            string   `json:"type"`
	Issuer          string   `json:"issuer"`
	ClientID        string   `json:"client_id"`
	ClientSecret    string   `json:"client_secret"`
	ClientSecretEnv string   `json:"client_secret_env"`
	Scopes          []string `json:"scopes"`
	Quirks          struct {
		Resource                          string   `json:"resource"`
		OmitResource                      bool     `json:"omit_resource"`
		Audience                          string   `json:"audience"`
		AllowIssuerMismatchForMultitenant bool     `json:"allow_issuer_mismatch_for_multitenant"`
		AllowedTenants                    []string `json:"allowed_tenants"`
	} `json:"quirks"`
	LinkByEmail  bool      `json:"link_by_email"`
	TrustEmails  bool      `json:"treat_email_as_verified"`
	Allow        fileRules `json:"allow"`
	Deny         fileRules `json:"deny"`
	RolesClaim   string    `json:"roles_claim"`
	CustomClaims []string  `json:"custom_claims"`
	AuthURL      string    `json:"auth_url"`
	TokenURL     string    `json:"token_url"`
	APIURL       string    `json:"api_url"`
}

// ParseUpstreamProviders parses and validates an upstream providers file,
// reporting every problem at once.
func ParseUpstreamProviders(data []byte, getenv func(string) string) ([]UpstreamProvider, error) {
	var doc struct {
		Providers []json.RawMessage `json:"providers"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf(`not a JSON object of the form {"providers": [...]}: %v`, err)
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	if len(doc.Providers) == 0 {
		return nil, errors.New(`"providers" is empty: list at least one provider, or do not set the file`)
	}
	if len(doc.Providers) > maxUpstreamProviders {
		return nil, fmt.Errorf("%d providers listed; at most %d are supported", len(doc.Providers), maxUpstreamProviders)
	}
	var errs []string
	var out []UpstreamProvider
	names := map[string]int{}
	type firstUse struct {
		i         int
		endpoints string
	}
	issuers := map[string]firstUse{} // issuer → the first provider using it
	for i, raw := range doc.Providers {
		var fe upstreamFileEntry
		d := json.NewDecoder(bytes.NewReader(raw))
		d.DisallowUnknownFields()
		if err := d.Decode(&fe); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", upstreamLabel(i, ""), err))
			continue
		}
		p, problems := fe.validate(getenv)
		label := upstreamLabel(i, p.Name)
		for _, m := range problems {
			errs = append(errs, label+": "+m)
		}
		if p.Name != "" {
			if j, dup := names[p.Name]; dup {
				errs = append(errs, fmt.Sprintf("%s: name %q is also provider %d", label, p.Name, j+1))
			}
			names[p.Name] = i
		}
		if p.Issuer != "" {
			if first, dup := issuers[p.Issuer]; dup && first.endpoints != p.endpoints() {
				errs = append(errs, fmt.Sprintf("%s: issuer %q is also provider %d's, whose endpoints differ: accounts are linked by (issuer, subject), "+
					"so the two would share accounts whose subjects collide (a GitHub Enterprise Server's user 42 is not github.com's); give each its own issuer", label, clipStr(p.Issuer), first.i+1))
			} else if !dup {
				issuers[p.Issuer] = firstUse{i, p.endpoints()}
			}
		}
		out = append(out, p)
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "\n"))
	}
	return out, nil
}

// endpoints names where a provider's accounts come from: an OIDC issuer's
// discovery document, or a GitHub server's OAuth and API endpoints.
// Providers sharing an issuer (hence accounts) must share these.
func (p *UpstreamProvider) endpoints() string {
	if p.Type == UpstreamGitHub {
		return strings.Join([]string{p.Type, p.AuthURL, p.TokenURL, p.APIURL}, " ")
	}
	return p.Type
}

func upstreamLabel(i int, name string) string {
	if name == "" {
		return fmt.Sprintf("provider %d", i+1)
	}
	return fmt.Sprintf("provider %d (%q)", i+1, clipStr(name))
}

func (fe *upstreamFileEntry) validate(getenv func(string) string) (UpstreamProvider, []string) {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	p := UpstreamProvider{
		Name: fe.Name, DisplayName: strings.TrimSpace(fe.DisplayName), Type: fe.Type, Issuer: fe.Issuer,
		ClientID: fe.ClientID, ClientSecret: fe.ClientSecret, Scopes: slices.Clone(fe.Scopes), LinkByEmail: fe.LinkByEmail, TreatEmailAsVerified: fe.TrustEmails,
		Quirks: UpstreamQuirks{Resource: fe.Quirks.Resource, OmitResource: fe.Quirks.OmitResource, Audience: fe.Quirks.Audience,
			AllowIssuerMismatchForMultitenant: fe.Quirks.AllowIssuerMismatchForMultitenant, AllowedTenants: slices.Clone(fe.Quirks.AllowedTenants)},
		Allow:   UpstreamRules(fe.Allow),
		Deny:    UpstreamRules(fe.Deny),
		AuthURL: fe.AuthURL, TokenURL: fe.TokenURL, APIURL: fe.APIURL,
		RolesClaim: fe.RolesClaim, CustomClaims: slices.Clone(fe.CustomClaims),
	}
	if !upstreamNameRE.MatchString(p.Name) {
		bad("name %q: must be 1 to 40 of a-z, 0-9, '-' and '_', starting with a letter or digit", clipStr(p.Name))
	}
	if p.DisplayName == "" {
		p.DisplayName = p.Name
	}
	if utf8.RuneCountInString(p.DisplayName) > 60 || !utf8.ValidString(p.DisplayName) || strings.ContainsFunc(p.DisplayName, isControl) {
		bad("display_name: must be at most 60 characters of plain text")
	}
	if p.ClientID == "" || len(p.ClientID) > 500 || strings.ContainsFunc(p.ClientID, isControl) {
		bad("client_id: required (at most 500 characters)")
	}
	switch {
	case fe.ClientSecret != "" && fe.ClientSecretEnv != "":
		bad("set client_secret or client_secret_env, not both")
	case fe.ClientSecretEnv != "":
		if p.ClientSecret = getenv(fe.ClientSecretEnv); p.ClientSecret == "" {
			bad("client_secret_env: the environment variable %s is empty or unset", clipStr(fe.ClientSecretEnv))
		}
	case fe.ClientSecret == "":
		bad("client_secret or client_secret_env: required (mcpgate is a confidential client)")
	}
	for _, s := range p.Scopes {
		if !validScopeToken(s) {
			bad("scopes: %q is not a valid scope token", clipStr(s))
		}
	}
	switch p.Type {
	case UpstreamOIDC:
		if msg := checkSecureURL(p.Issuer); msg != "" {
			bad("issuer %q: %s", clipStr(p.Issuer), msg)
		}
		if len(p.Scopes) == 0 {
			p.Scopes = []string{"openid", "email", "profile"}
		} else if !slices.Contains(p.Scopes, "openid") {
			bad(`scopes: must include "openid"`)
		}
		if p.AuthURL != "" || p.TokenURL != "" || p.APIURL != "" {
			bad("auth_url, token_url and api_url are for github providers; oidc providers use discovery")
		}
		if p.Quirks.AllowIssuerMismatchForMultitenant && !strings.Contains(p.Issuer, "{tenantid}") && !strings.Contains(p.Issuer, "/common") && !strings.Contains(p.Issuer, "/organizations") {
			bad("quirks.allow_issuer_mismatch_for_multitenant: only for multi-tenant issuers (…/common, …/organizations)")
		}
		errs = append(errs, p.Quirks.validateTenants()...)
	case UpstreamGitHub:
		p.AuthURL = orDefault(p.AuthURL, DefaultGitHubAuthURL)
		p.TokenURL = orDefault(p.TokenURL, DefaultGitHubToken)
		p.APIURL = strings.TrimSuffix(orDefault(p.APIURL, DefaultGitHubAPI), "/")
		// Links are stored by (issuer, numeric user id), and a GitHub
		// Enterprise Server numbers its users from 1 like github.com: under
		// github.com's issuer its user 42 would be github.com's user 42.
		enterprise := p.AuthURL != DefaultGitHubAuthURL || p.TokenURL != DefaultGitHubToken || p.APIURL != DefaultGitHubAPI
		switch {
		case enterprise && p.Issuer == "":
			bad("issuer: required when auth_url, token_url or api_url is set (GitHub Enterprise Server): accounts are linked by (issuer, user id) " +
				"and the server's user ids are its own; set it to the server's URL, e.g. https://github.example.com")
		case enterprise && p.Issuer == DefaultGitHubIssuer:
			bad("issuer %q: names github.com's accounts, but auth_url, token_url or api_url point elsewhere (GitHub Enterprise Server); "+
				"set it to the server's URL, e.g. https://github.example.com", DefaultGitHubIssuer)
		}
		if !enterprise {
			p.Issuer = orDefault(p.Issuer, DefaultGitHubIssuer)
		}
		for f, u := range map[string]string{"issuer": p.Issuer, "auth_url": p.AuthURL, "token_url": p.TokenURL, "api_url": p.APIURL} {
			if msg := checkSecureURL(u); msg != "" && u != "" { // a missing issuer is reported above
				bad("%s %q: %s", f, clipStr(u), msg)
			}
		}
		if len(p.Scopes) == 0 {
			p.Scopes = []string{"read:user", "user:email"}
		}
		if len(p.Allow.Groups) > 0 || len(p.Allow.Claims) > 0 || len(p.Deny.Groups) > 0 || len(p.Deny.Claims) > 0 {
			bad("allow.groups, allow.claims, deny.groups and deny.claims: GitHub has no ID token claims; use allow.email_domains or deny.email_domains")
		}
		if p.Quirks.AllowIssuerMismatchForMultitenant || len(p.Quirks.AllowedTenants) > 0 {
			bad("quirks.allow_issuer_mismatch_for_multitenant and quirks.allowed_tenants: only for oidc providers")
		}
		if p.RolesClaim != "" || len(p.CustomClaims) > 0 {
			bad("roles_claim and custom_claims: GitHub has no ID token claims to take roles or claims from")
		}
	default:
		bad(`type %q: must be "oidc" or "github"`, clipStr(p.Type))
	}
	if p.Quirks.OmitResource && p.Quirks.Resource != "" {
		bad("quirks: omit_resource and resource contradict each other")
	}
	if p.Quirks.Resource != "" {
		if msg := checkSecureURL(p.Quirks.Resource); msg != "" {
			bad("quirks.resource %q: %s", clipStr(p.Quirks.Resource), msg)
		}
	}
	if len(p.Quirks.Audience) > 500 || strings.ContainsFunc(p.Quirks.Audience, isControl) {
		bad("quirks.audience: at most 500 characters of plain text")
	}
	errs = append(errs, p.Allow.validate("allow")...)
	errs = append(errs, p.Deny.validate("deny")...)
	errs = append(errs, p.validateClaims()...)
	return p, errs
}

// validate checks a rule set (label "allow" or "deny") and normalises its
// email domains (lower case, no leading "@").
func (r *UpstreamRules) validate(label string) []string {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	for i, raw := range r.EmailDomains {
		d, err := identity.NormalizeEmailDomain(raw)
		if err != nil {
			bad("%s.email_domains %q: must be a domain such as example.com, in ASCII (the punycode form for international domains)", label, clipStr(raw))
		}
		r.EmailDomains[i] = d
	}
	if len(r.EmailDomains) > maxAllowEntries || len(r.Groups) > maxAllowEntries || len(r.Claims) > 100 {
		bad("%s: too many entries", label)
	}
	for _, g := range r.Groups {
		if g == "" {
			bad("%s.groups: empty group name", label)
		}
	}
	for name, vals := range r.Claims {
		if name == "" || len(vals) == 0 {
			bad("%s.claims %q: needs a claim name and at least one value", label, clipStr(name))
		}
		switch name {
		case "sub", "iss", "aud", "exp", "iat", "nonce":
			bad("%s.claims %q: a protocol claim, not a user attribute", label, name)
		}
	}
	return errs
}

// validateTenants checks quirks.allowed_tenants and lower-cases its entries
// (Entra's tenant ids are GUIDs, which compare without regard to case;
// RFC 9562 §4).
func (q *UpstreamQuirks) validateTenants() []string {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	switch {
	case q.AllowIssuerMismatchForMultitenant && len(q.AllowedTenants) == 0:
		bad("quirks.allowed_tenants: required with allow_issuer_mismatch_for_multitenant. Without it any tenant could sign in, " +
			"including one anybody can create for free, whose administrator chooses its users' roles, groups and claims. " +
			`Hint: list the tenant IDs (GUIDs; Entra's "Directory (tenant) ID") whose accounts may sign in, ` +
			`e.g. "allowed_tenants": ["00000000-0000-0000-0000-000000000000"]; personal Microsoft accounts are tenant 9188040d-6c67-4c5b-b112-36a304b66dad`)
	case !q.AllowIssuerMismatchForMultitenant && len(q.AllowedTenants) > 0:
		bad("quirks.allowed_tenants: only with allow_issuer_mismatch_for_multitenant (a single-tenant issuer names its tenant itself)")
	}
	if len(q.AllowedTenants) > maxAllowEntries {
		bad("quirks.allowed_tenants: %d entries, at most %d", len(q.AllowedTenants), maxAllowEntries)
	}
	for i, t := range q.AllowedTenants {
		// The shape is checked before lower-casing (ASCII only).
		switch {
		case !tenantIDRE.MatchString(t):
			hint := ""
			if strings.Contains(t, ".") {
				hint = " (a domain name? the ID token's issuer carries the tenant ID, a GUID)"
			}
			bad("quirks.allowed_tenants %q: must be a tenant ID, 1 to 64 letters, digits and '-'%s", clipStr(t), hint)
		case slices.Contains([]string{"common", "organizations", "consumers"}, strings.ToLower(t)):
			bad("quirks.allowed_tenants %q: an alias for many tenants, not a tenant; list tenant IDs", t)
		}
		q.AllowedTenants[i] = strings.ToLower(t)
	}
	return errs
}

// maxKeptClaims: a session keeps at most 32 custom claims, one of them the
// roles claim.
const maxKeptClaims = maxAccessTokenClaims - 1

// validateClaims checks roles_claim and custom_claims.
func (p *UpstreamProvider) validateClaims() []string {
	var errs []string
	if p.RolesClaim != "" && (len(p.RolesClaim) > 200 || !utf8.ValidString(p.RolesClaim) || strings.ContainsFunc(p.RolesClaim, isControl)) {
		errs = append(errs, "roles_claim: a claim name or dotted path of at most 200 characters")
	}
	if len(p.CustomClaims) > maxKeptClaims {
		errs = append(errs, fmt.Sprintf("custom_claims: %d claims, at most %d", len(p.CustomClaims), maxKeptClaims))
	}
	seen := map[string]bool{}
	for _, name := range p.CustomClaims {
		label := fmt.Sprintf("custom_claims %q: ", clipStr(name))
		switch {
		case name == "" || len(name) > maxAccessTokenClaimLen || !utf8.ValidString(name) || strings.ContainsFunc(name, isControl):
			errs = append(errs, label+fmt.Sprintf("a claim name is 1 to %d bytes of text", maxAccessTokenClaimLen))
		case principal.ReservedClaim(name):
			errs = append(errs, label+"a protocol claim, not a user attribute")
		case IdentityClaim(name):
			errs = append(errs, label+"describes the user (mcpgate keeps it on the user), not a custom claim")
		case name == principal.RolesClaim:
			errs = append(errs, label+`set roles_claim to the claim holding the roles instead (it becomes the session's "roles" claim)`)
		case seen[name]:
			errs = append(errs, label+"named twice")
		}
		seen[name] = true
	}
	return errs
}
