package config

// Trusted external issuers: the JSON file named by --external-issuers-file
// (MCPGATE_EXTERNAL_ISSUERS_FILE) lists the issuers whose access tokens the
// MCP endpoint accepts directly, next to mcpgate's own. See
// docs/external-issuers.md for the format; in short:
//
//	{"issuers": [{
//	  "name": "keycloak",
//	  "issuer": "https://sso.example.com/realms/main",
//	  "discovery": true,
//	  "audience": "https://mcp.example.com/mcp",
//	  "algorithms": ["RS256"],
//	  "claims": {"roles": "realm_access.roles"},
//	  "static_scopes": ["payments:read"],
//	  "link_by_email": true
//	}]}
//
// Unknown fields are errors (a typo must not silently weaken a check), and
// every problem of every entry is reported at once.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// External issuer modes.
const (
	// ExternalModeJWT: tokens are JWTs verified locally against the
	// issuer's JWKS.
	ExternalModeJWT = "jwt"
	// ExternalModeIntrospection: tokens (opaque, or JWTs the provider
	// wants checked online) are sent to the provider's RFC 7662
	// introspection endpoint.
	ExternalModeIntrospection = "introspection"
)

// Defaults and bounds of external issuer settings.
const (
	DefaultExternalClockSkew       = 30 * time.Second
	MaxExternalClockSkew           = 5 * time.Minute
	DefaultJWKSRefreshInterval     = 30 * time.Second
	DefaultIntrospectionCacheTTL   = 30 * time.Second
	MaxIntrospectionCacheTTL       = 30 * time.Second
	DefaultIntrospectionTimeout    = 5 * time.Second
	MaxIntrospectionTimeout        = 30 * time.Second
	maxExternalIssuersFileBytes    = 1 << 20
	maxExternalIssuers             = 100
	maxClaimPathLen                = 200
	externalIssuerKeyPrefixReserve = "mcpg_" // mcpgate's own API keys
)

// ExternalAlgorithms are the JWS algorithms an external issuer may be
// allowed: public-key signatures only. "none" and the HMAC family can
// never be allowed (a public JWKS key would become the HMAC secret).
var ExternalAlgorithms = []string{"ES256", "ES384", "ES512", "EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

// DefaultExternalAlgorithms are allowed when an entry names none.
var DefaultExternalAlgorithms = []string{"RS256", "ES256", "EdDSA"}

// ExternalIssuer is one validated entry of the external issuers file.
type ExternalIssuer struct {
	// Name labels the entry in logs and audit events; default the issuer.
	Name string
	// Issuer is the expected "iss", compared byte for byte.
	Issuer string
	// Mode is ExternalModeJWT or ExternalModeIntrospection.
	Mode string
	// JWKSURI is where the issuer's keys are (jwt mode); empty with
	// Discovery.
	JWKSURI string
	// Discovery: read jwks_uri (and introspection_endpoint) from the
	// issuer's /.well-known/openid-configuration.
	Discovery bool
	// Audiences: a token's "aud" must contain one of them.
	Audiences []string
	// AllowAnyAudience (introspection mode only, explicit opt-in): accept
	// active tokens whatever their audience.
	AllowAnyAudience bool
	// Algorithms allowed in the token's "alg" (jwt mode).
	Algorithms []string
	// ClockSkew is the leeway for exp, nbf and iat.
	ClockSkew time.Duration
	// JWKSRefreshInterval is the least time between two JWKS fetches: a
	// token naming an unknown kid triggers at most one fetch per interval.
	JWKSRefreshInterval time.Duration
	// Claims maps token claims to the principal.
	Claims ClaimMapping
	// StaticScopes are granted when the token carries no scopes.
	StaticScopes []string
	// LinkByEmail allows linking this issuer's accounts to existing users
	// with the same email, when the token says email_verified.
	LinkByEmail bool
	// Introspection settings (introspection mode).
	Introspection Introspection
}

// ClaimMapping names the claims a principal is built from. Paths may be
// dotted ("realm_access.roles"); a claim whose own name contains dots
// ("https://example.com/roles") is found by its full name first.
type ClaimMapping struct {
	UserID        string // default "sub"
	Email         string // default "email"
	EmailVerified string // default "email_verified"
	Name          string // default "name"
	Roles         string // default none: a string (space-separated) or an array of strings
	Scopes        string // default: "scope" (space-separated), else "scp" (array)
}

// Introspection configures RFC 7662 token introspection at the provider.
type Introspection struct {
	// Endpoint is the introspection URL; empty with Discovery.
	Endpoint string
	// ClientID and ClientSecret authenticate mcpgate to the endpoint
	// (client_secret_basic, RFC 7662 §2.1). The secret comes from the
	// file or from the environment variable ClientSecretEnv names.
	ClientID        string
	ClientSecret    string
	ClientSecretEnv string
	// CacheTTL: how long an active answer is reused (at most 30 s, never
	// beyond the token's exp). Inactive answers are never cached.
	CacheTTL time.Duration
	// Timeout bounds one introspection request.
	Timeout time.Duration
	// TokenPrefix routes opaque tokens starting with it to this entry; at
	// most one introspection entry may have none (it gets the rest).
	TokenPrefix string
}

// ExternalIssuers loads the file named by --external-issuers-file (nil
// when unset). Secrets named by client_secret_env come from the process
// environment.
func (c *Config) ExternalIssuers() ([]ExternalIssuer, error) {
	if c.ExternalIssuersFile == "" {
		return nil, nil
	}
	list, err := LoadExternalIssuers(c.ExternalIssuersFile, os.Getenv)
	if err != nil {
		return nil, err
	}
	var errs []string
	for i, e := range list {
		if e.Issuer == c.BaseURL() {
			errs = append(errs, fmt.Sprintf("%s: issuer is mcpgate's own public URL; its tokens are always accepted and must not be listed", entryLabel(i, e.Name)))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("--external-issuers-file %s:\n%w", c.ExternalIssuersFile, joinErrs(errs))
	}
	return list, nil
}

// LoadExternalIssuers reads and validates an external issuers file.
func LoadExternalIssuers(path string, getenv func(string) string) ([]ExternalIssuer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--external-issuers-file: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxExternalIssuersFileBytes+1)); err != nil {
		return nil, fmt.Errorf("--external-issuers-file %s: %w", path, err)
	}
	if buf.Len() > maxExternalIssuersFileBytes {
		return nil, fmt.Errorf("--external-issuers-file %s: larger than %d bytes", path, maxExternalIssuersFileBytes)
	}
	list, err := ParseExternalIssuers(buf.Bytes(), getenv)
	if err != nil {
		return nil, fmt.Errorf("--external-issuers-file %s:\n%w", path, err)
	}
	return list, nil
}

// fileEntry is the JSON form of an entry.
type fileEntry struct {
	Name                string       `json:"name"`
	Issuer              string       `json:"issuer"`
	Mode                string       `json:"mode"`
	JWKSURI             string       `json:"jwks_uri"`
	Discovery           bool         `json:"discovery"`
	Audience            string       `json:"audience"`
	Audiences           []string     `json:"audiences"`
	AllowAnyAudience    bool         `json:"allow_any_audience"`
	Algorithms          []string     `json:"algorithms"`
	ClockSkew           *jsonDur     `json:"clock_skew"`
	JWKSRefreshInterval *jsonDur     `json:"jwks_refresh_interval"`
	Claims              fileClaims   `json:"claims"`
	StaticScopes        []string     `json:"static_scopes"`
	LinkByEmail         bool         `json:"link_by_email"`
	Introspection       *fileIntrosp `json:"introspection"`
}

type fileClaims struct {
	UserID        string `json:"user_id"`
	Email         string `json:"email"`
	EmailVerified string `json:"email_verified"`
	Name          string `json:"name"`
	Roles         string `json:"roles"`
	Scopes        string `json:"scopes"`
}

type fileIntrosp struct {
	Endpoint        string   `json:"endpoint"`
	ClientID        string   `json:"client_id"`
	ClientSecret    string   `json:"client_secret"`
	ClientSecretEnv string   `json:"client_secret_env"`
	CacheTTL        *jsonDur `json:"cache_ttl"`
	Timeout         *jsonDur `json:"timeout"`
	TokenPrefix     string   `json:"token_prefix"`
}

// jsonDur is a duration written as a Go duration string ("30s", "1m").
type jsonDur struct {
	d   time.Duration
	err string
}

func (j *jsonDur) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		j.err = `must be a duration string such as "30s"`
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		j.err = fmt.Sprintf(`%q is not a duration (write e.g. "30s" or "2m")`, clipStr(s))
		return nil
	}
	j.d = d
	return nil
}

// ParseExternalIssuers validates the JSON document of an external issuers
// file, reporting every problem at once, each naming its entry.
func ParseExternalIssuers(data []byte, getenv func(string) string) ([]ExternalIssuer, error) {
	var doc struct {
		Issuers []json.RawMessage `json:"issuers"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf(`not a JSON object of the form {"issuers": [...]}: %v`, err)
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	if len(doc.Issuers) == 0 {
		return nil, errors.New(`"issuers" is empty: list at least one issuer, or do not set the file`)
	}
	if len(doc.Issuers) > maxExternalIssuers {
		return nil, fmt.Errorf("%d issuers listed; at most %d are supported", len(doc.Issuers), maxExternalIssuers)
	}
	var (
		errs     []string
		out      []ExternalIssuer
		issuers  = map[string]int{}
		prefixes = map[string]int{} // introspection token prefixes ("" = the default entry)
	)
	for i, raw := range doc.Issuers {
		var fe fileEntry
		d := json.NewDecoder(bytes.NewReader(raw))
		d.DisallowUnknownFields()
		if err := d.Decode(&fe); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", entryLabel(i, ""), err))
			continue
		}
		e, problems := fe.validate(getenv)
		label := entryLabel(i, e.Name)
		for _, p := range problems {
			errs = append(errs, label+": "+p)
		}
		if e.Issuer != "" {
			if j, dup := issuers[e.Issuer]; dup {
				errs = append(errs, fmt.Sprintf("%s: issuer %q is also entry %d; list each issuer once", label, e.Issuer, j+1))
			}
			issuers[e.Issuer] = i
		}
		if e.Mode == ExternalModeIntrospection {
			p := e.Introspection.TokenPrefix
			for q, j := range prefixes {
				switch {
				case p == "" && q == "":
					errs = append(errs, fmt.Sprintf("%s: entry %d is already the introspection entry without token_prefix; set token_prefix on all but one", label, j+1))
				case p != "" && q != "" && (strings.HasPrefix(p, q) || strings.HasPrefix(q, p)):
					errs = append(errs, fmt.Sprintf("%s: token_prefix %q overlaps entry %d's %q", label, p, j+1, q))
				}
			}
			prefixes[p] = i
		}
		out = append(out, e)
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "\n"))
	}
	return out, nil
}

func entryLabel(i int, name string) string {
	if name == "" {
		return fmt.Sprintf("issuer %d", i+1)
	}
	return fmt.Sprintf("issuer %d (%q)", i+1, clipStr(name))
}

func (fe *fileEntry) validate(getenv func(string) string) (ExternalIssuer, []string) {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	e := ExternalIssuer{
		Name: strings.TrimSpace(fe.Name), Issuer: fe.Issuer, Mode: fe.Mode, JWKSURI: fe.JWKSURI, Discovery: fe.Discovery,
		AllowAnyAudience: fe.AllowAnyAudience, LinkByEmail: fe.LinkByEmail,
		ClockSkew: DefaultExternalClockSkew, JWKSRefreshInterval: DefaultJWKSRefreshInterval,
	}
	if len(e.Name) > 100 || !utf8.ValidString(e.Name) || strings.ContainsFunc(e.Name, isControl) {
		bad("name must be at most 100 characters of plain text")
		e.Name = ""
	}
	if e.Mode == "" {
		e.Mode = ExternalModeJWT
	}
	introspection := e.Mode == ExternalModeIntrospection
	if e.Mode != ExternalModeJWT && !introspection {
		bad("mode %q: must be %q or %q", clipStr(fe.Mode), ExternalModeJWT, ExternalModeIntrospection)
	}

	// RFC 8414 §2 / OIDC Discovery §4.3: the issuer is an https URL with
	// no query or fragment, compared byte for byte.
	if e.Issuer == "" {
		bad("issuer is required (the exact \"iss\" of the tokens)")
	} else if msg := checkSecureURL(e.Issuer); msg != "" {
		bad("issuer %q: %s", clipStr(e.Issuer), msg)
	} else if u, _ := url.Parse(e.Issuer); u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(e.Issuer, "?#") {
		bad("issuer %q: must have no query or fragment", clipStr(e.Issuer))
	}

	// Where the keys (or the introspection endpoint) are.
	switch {
	case introspection && e.JWKSURI != "":
		bad("jwks_uri has no effect in introspection mode; remove it")
	case !introspection && e.JWKSURI != "" && e.Discovery:
		bad("give jwks_uri or \"discovery\": true, not both")
	case !introspection && e.JWKSURI == "" && !e.Discovery:
		bad("jwks_uri or \"discovery\": true is required")
	case e.JWKSURI != "":
		if msg := checkSecureURL(e.JWKSURI); msg != "" {
			bad("jwks_uri %q: %s", clipStr(e.JWKSURI), msg)
		}
	}

	// Audience: a token minted for another resource is refused (no token
	// passthrough).
	switch {
	case fe.Audience != "" && len(fe.Audiences) > 0:
		bad("give audience or audiences, not both")
	case fe.Audience != "":
		e.Audiences = []string{fe.Audience}
	default:
		e.Audiences = fe.Audiences
	}
	for _, a := range e.Audiences {
		if a == "" || len(a) > 1024 || !utf8.ValidString(a) || strings.ContainsFunc(a, isControl) {
			bad("audience %q: must be 1 to 1024 characters of plain text (usually the MCP URL)", clipStr(a))
		}
	}
	switch {
	case e.AllowAnyAudience && !introspection:
		bad("allow_any_audience is only possible in introspection mode; JWTs must name this resource in aud")
	case e.AllowAnyAudience && len(e.Audiences) > 0:
		bad("give audiences or allow_any_audience, not both")
	case !e.AllowAnyAudience && len(e.Audiences) == 0:
		bad("audience is required: the value the issuer puts in \"aud\" for this MCP server (usually its URL)")
	}

	// Algorithms: public-key signatures only.
	if introspection && len(fe.Algorithms) > 0 {
		bad("algorithms has no effect in introspection mode; remove it")
	}
	e.Algorithms = fe.Algorithms
	if len(e.Algorithms) == 0 {
		e.Algorithms = slices.Clone(DefaultExternalAlgorithms)
	}
	for _, a := range e.Algorithms {
		switch {
		case strings.EqualFold(a, "none"), strings.HasPrefix(strings.ToUpper(a), "HS"):
			bad("algorithm %q is never allowed: only public-key signatures (%s)", clipStr(a), strings.Join(ExternalAlgorithms, ", "))
		case !slices.Contains(ExternalAlgorithms, a):
			bad("algorithm %q is not supported (one of %s)", clipStr(a), strings.Join(ExternalAlgorithms, ", "))
		}
	}

	if fe.ClockSkew != nil {
		e.ClockSkew = fe.ClockSkew.d
		switch {
		case fe.ClockSkew.err != "":
			bad("clock_skew: %s", fe.ClockSkew.err)
		case e.ClockSkew < 0 || e.ClockSkew > MaxExternalClockSkew:
			bad("clock_skew %s: must be between 0s and %s", e.ClockSkew, MaxExternalClockSkew)
		}
	}
	if fe.JWKSRefreshInterval != nil {
		e.JWKSRefreshInterval = fe.JWKSRefreshInterval.d
		switch {
		case fe.JWKSRefreshInterval.err != "":
			bad("jwks_refresh_interval: %s", fe.JWKSRefreshInterval.err)
		case introspection:
			bad("jwks_refresh_interval has no effect in introspection mode; remove it")
		case e.JWKSRefreshInterval < time.Second || e.JWKSRefreshInterval > time.Hour:
			bad("jwks_refresh_interval %s: must be between 1s and 1h", e.JWKSRefreshInterval)
		}
	}

	e.Claims = ClaimMapping{
		UserID: orDefault(fe.Claims.UserID, "sub"), Email: orDefault(fe.Claims.Email, "email"),
		EmailVerified: orDefault(fe.Claims.EmailVerified, "email_verified"), Name: orDefault(fe.Claims.Name, "name"),
		Roles: fe.Claims.Roles, Scopes: fe.Claims.Scopes,
	}
	for _, c := range []struct{ field, path string }{
		{"user_id", e.Claims.UserID}, {"email", e.Claims.Email}, {"email_verified", e.Claims.EmailVerified},
		{"name", e.Claims.Name}, {"roles", e.Claims.Roles}, {"scopes", e.Claims.Scopes},
	} {
		if msg := checkClaimPath(c.path); msg != "" {
			bad("claims.%s %q: %s", c.field, clipStr(c.path), msg)
		}
	}

	for _, s := range fe.StaticScopes {
		if !validScopeToken(s) {
			bad("static_scopes: %q is not a scope token (RFC 6749 §3.3: printable ASCII without spaces, quotes or backslashes)", clipStr(s))
		}
	}
	e.StaticScopes = fe.StaticScopes

	switch {
	case introspection && fe.Introspection == nil:
		bad("mode introspection needs an \"introspection\" object (endpoint or discovery, client_id, client secret)")
	case !introspection && fe.Introspection != nil:
		bad("\"introspection\" is only used with \"mode\": \"introspection\"")
	case introspection:
		e.Introspection, errs = fe.Introspection.validate(e.Discovery, getenv, errs)
	}
	return e, errs
}

func (fi *fileIntrosp) validate(discovery bool, getenv func(string) string, errs []string) (Introspection, []string) {
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	in := Introspection{
		Endpoint: fi.Endpoint, ClientID: fi.ClientID, ClientSecretEnv: fi.ClientSecretEnv,
		CacheTTL: DefaultIntrospectionCacheTTL, Timeout: DefaultIntrospectionTimeout, TokenPrefix: fi.TokenPrefix,
	}
	switch {
	case in.Endpoint != "" && discovery:
		bad("give introspection.endpoint or \"discovery\": true, not both")
	case in.Endpoint == "" && !discovery:
		bad("introspection.endpoint or \"discovery\": true is required")
	case in.Endpoint != "":
		if msg := checkSecureURL(in.Endpoint); msg != "" {
			bad("introspection.endpoint %q: %s", clipStr(in.Endpoint), msg)
		}
	}
	if in.ClientID == "" || strings.ContainsFunc(in.ClientID, isControl) || !utf8.ValidString(in.ClientID) {
		bad("introspection.client_id is required (the client mcpgate authenticates as at the introspection endpoint)")
	}
	switch {
	case fi.ClientSecret != "" && fi.ClientSecretEnv != "":
		bad("give introspection.client_secret or introspection.client_secret_env, not both")
	case fi.ClientSecret != "":
		in.ClientSecret = fi.ClientSecret
	case fi.ClientSecretEnv != "":
		in.ClientSecret = getenv(fi.ClientSecretEnv)
		if in.ClientSecret == "" {
			bad("introspection.client_secret_env: the environment variable %s is not set or empty", clipStr(fi.ClientSecretEnv))
		}
	default:
		bad("introspection.client_secret or introspection.client_secret_env is required")
	}
	if fi.CacheTTL != nil {
		in.CacheTTL = fi.CacheTTL.d
		switch {
		case fi.CacheTTL.err != "":
			bad("introspection.cache_ttl: %s", fi.CacheTTL.err)
		case in.CacheTTL < 0 || in.CacheTTL > MaxIntrospectionCacheTTL:
			bad("introspection.cache_ttl %s: must be between 0s (no cache) and %s", in.CacheTTL, MaxIntrospectionCacheTTL)
		}
	}
	if fi.Timeout != nil {
		in.Timeout = fi.Timeout.d
		switch {
		case fi.Timeout.err != "":
			bad("introspection.timeout: %s", fi.Timeout.err)
		case in.Timeout < 100*time.Millisecond || in.Timeout > MaxIntrospectionTimeout:
			bad("introspection.timeout %s: must be between 100ms and %s", in.Timeout, MaxIntrospectionTimeout)
		}
	}
	if p := in.TokenPrefix; p != "" {
		if len(p) > 64 || strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r > '~' }) {
			bad("introspection.token_prefix %q: must be at most 64 printable ASCII characters", clipStr(p))
		}
		if strings.HasPrefix(p, externalIssuerKeyPrefixReserve) || strings.HasPrefix(externalIssuerKeyPrefixReserve, p) {
			bad("introspection.token_prefix %q: overlaps mcpgate's own API keys (%s…)", clipStr(p), externalIssuerKeyPrefixReserve)
		}
	}
	return in, errs
}

// checkSecureURL: an absolute https URL (http only for loopback hosts)
// without credentials.
func checkSecureURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return "must be an absolute https URL"
	case u.User != nil:
		return "must not contain credentials"
	case u.Scheme == "http" && !IsLoopbackHost(u.Hostname()):
		return "must use https (http only for loopback hosts)"
	}
	return ""
}

func checkClaimPath(p string) string {
	if p == "" {
		return ""
	}
	if len(p) > maxClaimPathLen || !utf8.ValidString(p) || strings.ContainsFunc(p, isControl) {
		return fmt.Sprintf("must be at most %d characters of plain text", maxClaimPathLen)
	}
	if strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") {
		return "must not start or end with a dot"
	}
	return ""
}

// validScopeToken: RFC 6749 §3.3 scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func validScopeToken(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return true
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || r == '\u202e' || r == '\u202d' }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func clipStr(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
