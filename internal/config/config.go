// Package config holds mcpgate's one Config struct. Values come from, in
// order of precedence: command-line flags, MCPGATE_* environment variables
// (the flag name upper-cased with dashes as underscores: --public-url is
// MCPGATE_PUBLIC_URL), and the defaults below. Validate reports every bad
// setting at once, in plain words.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/mcpgate/mcpgate/internal/ratelimit"
)

// Config is the whole configuration of one mcpgate process.
type Config struct {
	// Storage (every subcommand).
	DataDir     string
	DatabaseURL string

	// Logging (every subcommand).
	LogLevel  string
	LogFormat string

	// Server (serve).
	Addr              string
	PublicURL         string
	Demo              bool
	MetricsAddr       string
	AllowedOrigins    []string
	TrustedProxies    []string // addresses or CIDR ranges of reverse proxies whose X-Forwarded-For is believed
	MaxBodyBytes      int64
	KeyCacheTTL       time.Duration
	KeyCacheSize      int
	ShutdownTimeout   time.Duration
	MCPSessionTimeout time.Duration

	// Browser sessions (serve).
	SessionIdleTimeout time.Duration // a browser session unused this long ends
	SessionLifetime    time.Duration // absolute lifetime of a browser session
	SessionKeyLifetime time.Duration // cap on the lifetime of a session's MCP key
	Retention          time.Duration // how long expired/revoked sessions and keys are kept before deletion
	// ServerKey is the base64 of at least 32 secret bytes, shared by every
	// node; empty: LoadServerKey uses (or creates) <data-dir>/server.key.
	ServerKey string

	// OAuth authorization server (serve).
	AccessTokenTTL      time.Duration // lifetime of JWT access tokens
	SigningAlg          string        // ES256, EdDSA or RS256
	SigningKeyRotation  time.Duration // how often a new signing key takes over
	RefreshIdle         time.Duration // a refresh token unused this long expires
	RefreshLifetime     time.Duration // absolute lifetime of a refresh-token family
	RefreshGrace        time.Duration // retried refresh of the same token within this window gets a valid pair
	CIMDAllowHosts      []string      // when set, only these hosts may serve client metadata documents
	CIMDDenyHosts       []string      // hosts never fetched for client metadata documents
	RegistrationUnused  time.Duration // dynamically registered clients never used are removed after this
	RegistrationIdle    time.Duration // dynamically registered clients idle this long are removed
	DisableRegistration bool          // turn off dynamic client registration (RFC 7591)
	// DisablePasswordLogin turns off the simple token login for scripts
	// (POST /auth/login, GET /auth/status: 404).
	DisablePasswordLogin bool
	// AccessTokenClaims names the custom claims of a browser session
	// (custom login, upstream roles mapping and kept claims) that are
	// copied into the OAuth access tokens issued from that session
	// (claims.go). Empty: none.
	AccessTokenClaims []string
	// IDTokenRoles puts the user's roles (stored and the sign-in's claim
	// roles, never admin) into ID tokens and /userinfo answers, for
	// relying parties that map roles (another mcpgate's roles_claim).
	IDTokenRoles bool

	ExternalIssuersFile string // JSON file of trusted external token issuers (external.go)
	// UpstreamProvidersFile lists the identity providers offered on the
	// login page (upstream.go).
	UpstreamProvidersFile string
	// Custom login (customlogin.go): the operator app's login page, its
	// shared secret, the button's name, and whether it is the only way in.
	CustomLoginURL, CustomLoginSecret, CustomLoginSecretFile, CustomLoginName string
	CustomLoginOnly                                                           bool
	// CustomLoginPublicKeyFile holds the app's public key(s), the
	// alternative to the shared secret (customloginkeys.go).
	CustomLoginPublicKeyFile string

	// RedisURL (redis://[:password@]host:port/db, or rediss:// for TLS)
	// makes every rate limit shared by the nodes using that Redis; empty:
	// each process limits on its own.
	RedisURL string
}

// Defaults returns a Config with every default filled in.
func Defaults() Config {
	return Config{
		DataDir:           ".",
		LogLevel:          "info",
		LogFormat:         "auto",
		Addr:              "127.0.0.1:8080",
		MaxBodyBytes:      1 << 20,
		KeyCacheTTL:       5 * time.Second,
		KeyCacheSize:      100_000,
		ShutdownTimeout:   15 * time.Second,
		MCPSessionTimeout: 30 * time.Minute,

		SessionIdleTimeout: 24 * time.Hour,
		SessionLifetime:    30 * 24 * time.Hour,
		SessionKeyLifetime: 7 * 24 * time.Hour,
		Retention:          30 * 24 * time.Hour,

		AccessTokenTTL:     time.Hour,
		SigningAlg:         "ES256",
		SigningKeyRotation: 30 * 24 * time.Hour,
		RefreshIdle:        7 * 24 * time.Hour,
		RefreshLifetime:    90 * 24 * time.Hour,
		RefreshGrace:       30 * time.Second,
		RegistrationUnused: 24 * time.Hour,
		RegistrationIdle:   90 * 24 * time.Hour,
	}
}

// RegisterStorage binds the flags every subcommand shares.
func (c *Config) RegisterStorage(fs *pflag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the SQLite database and the generated server key (server.key)")
	fs.StringVar(&c.DatabaseURL, "database-url", c.DatabaseURL, "database: postgres://… for PostgreSQL, or a SQLite file path (default <data-dir>/mcpgate.db)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text, json, or auto (text on a terminal, JSON otherwise)")
}

// RegisterServe binds the flags of `mcpgate serve`.
func (c *Config) RegisterServe(fs *pflag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", c.Addr, "address to listen on (host:port)")
	fs.StringVar(&c.PublicURL, "public-url", c.PublicURL, "public base URL clients use, for metadata and challenges (default http://<addr>)")
	fs.BoolVar(&c.Demo, "demo", c.Demo, "serve the demo payment tools and create the demo users alice, bob and charlie")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "address for the Prometheus /metrics listener (off when empty)")
	fs.StringSliceVar(&c.AllowedOrigins, "allowed-origins", c.AllowedOrigins, "extra browser origins (web apps) allowed to call /mcp and the cookie-authenticated JSON API (the public URL's origin is always allowed)")
	fs.StringSliceVar(&c.TrustedProxies, "trusted-proxies", c.TrustedProxies, "addresses or CIDR ranges of the reverse proxies in front of mcpgate (e.g. 10.0.0.0/8); from them the client address is read from X-Forwarded-For, for per-IP limits and the audit log")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", c.MaxBodyBytes, "largest accepted request body in bytes (larger: 413)")
	fs.DurationVar(&c.KeyCacheTTL, "key-cache-ttl", c.KeyCacheTTL, "how long a verified API key is cached; bounds how late other nodes see a revocation (0: no cache)")
	fs.IntVar(&c.KeyCacheSize, "key-cache-size", c.KeyCacheSize, "most API keys kept in the verification cache (0: no cache)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long a graceful shutdown waits for requests to finish")
	fs.DurationVar(&c.MCPSessionTimeout, "mcp-session-timeout", c.MCPSessionTimeout, "idle time after which an MCP session (2025-era protocol) is closed")
	fs.DurationVar(&c.SessionIdleTimeout, "session-idle-timeout", c.SessionIdleTimeout, "idle time after which a browser login session ends")
	fs.DurationVar(&c.SessionLifetime, "session-lifetime", c.SessionLifetime, "absolute lifetime of a browser login session")
	fs.DurationVar(&c.SessionKeyLifetime, "session-key-lifetime", c.SessionKeyLifetime, "longest lifetime of the MCP key of a browser session (it also ends with the session)")
	fs.DurationVar(&c.Retention, "retention", c.Retention, "how long expired or revoked sessions and API keys are kept before the cleaner deletes them (audit events are kept)")
	fs.DurationVar(&c.AccessTokenTTL, "access-token-ttl", c.AccessTokenTTL, "lifetime of OAuth access tokens (JWT)")
	fs.StringVar(&c.SigningAlg, "signing-alg", c.SigningAlg, "token signing algorithm: ES256, EdDSA or RS256")
	fs.DurationVar(&c.SigningKeyRotation, "signing-key-rotation", c.SigningKeyRotation, "how often a new token signing key takes over (old public keys stay published until their tokens expire)")
	fs.DurationVar(&c.RefreshIdle, "refresh-idle", c.RefreshIdle, "a refresh token unused this long expires")
	fs.DurationVar(&c.RefreshLifetime, "refresh-lifetime", c.RefreshLifetime, "absolute lifetime of a refresh-token family (then the user logs in again)")
	fs.DurationVar(&c.RefreshGrace, "refresh-grace", c.RefreshGrace, "window in which a retried refresh of the same token returns a valid pair instead of revoking the family")
	fs.StringSliceVar(&c.CIMDAllowHosts, "cimd-allow-hosts", c.CIMDAllowHosts, "only these hosts may serve OAuth client metadata documents (empty: any public host)")
	fs.StringSliceVar(&c.CIMDDenyHosts, "cimd-deny-hosts", c.CIMDDenyHosts, "hosts never fetched for OAuth client metadata documents")
	fs.DurationVar(&c.RegistrationUnused, "registration-unused-ttl", c.RegistrationUnused, "dynamically registered OAuth clients that never completed a login are removed after this")
	fs.DurationVar(&c.RegistrationIdle, "registration-idle-ttl", c.RegistrationIdle, "dynamically registered OAuth clients unused this long are removed")
	fs.BoolVar(&c.DisableRegistration, "disable-registration", c.DisableRegistration, "turn off dynamic client registration (RFC 7591); client metadata documents and pre-registered clients still work")
	fs.StringSliceVar(&c.AccessTokenClaims, "access-token-claims", c.AccessTokenClaims, "custom claims of the user's sign-in (custom login, upstream roles and kept claims) copied into OAuth access tokens, e.g. organization_id,roles (default none; see docs/configuration.md)")
	fs.BoolVar(&c.IDTokenRoles, "id-token-roles", c.IDTokenRoles, "put the user's roles (stored roles and the sign-in's claim roles, never admin) as \"roles\" into ID tokens and /userinfo answers, for relying parties that map roles, e.g. another mcpgate's roles_claim")
	fs.BoolVar(&c.DisablePasswordLogin, "disable-password-login-endpoint", c.DisablePasswordLogin, "turn off POST /auth/login and GET /auth/status, the email-and-password token login for scripts (the client sees the password; OAuth and API keys still work)")
	fs.StringVar(&c.ExternalIssuersFile, "external-issuers-file", c.ExternalIssuersFile, "JSON file listing trusted external token issuers whose access tokens /mcp accepts (JWKS or introspection; see docs/external-issuers.md)")
	fs.StringVar(&c.UpstreamProvidersFile, "upstream-providers-file", c.UpstreamProvidersFile, "JSON file listing upstream identity providers (OIDC, GitHub) offered as \"Continue with …\" on the login page (see docs/upstream-login.md)")
	fs.StringVar(&c.CustomLoginURL, "custom-login-url", c.CustomLoginURL, "login page of your own application for \"bring your own login\" (see docs/custom-login.md)")
	fs.StringVar(&c.CustomLoginSecret, "custom-login-secret", c.CustomLoginSecret, "shared secret (at least 32 bytes) your login application sends to POST /api/login-requests/{id}/user")
	fs.StringVar(&c.CustomLoginSecretFile, "custom-login-secret-file", c.CustomLoginSecretFile, "file holding the custom login shared secret")
	fs.StringVar(&c.CustomLoginPublicKeyFile, "custom-login-public-key-file", c.CustomLoginPublicKeyFile, "instead of a shared secret: PEM or JWKS file of your login application's public key(s); it then signs short-lived assertions (see docs/custom-login.md)")
	fs.StringVar(&c.CustomLoginName, "custom-login-name", c.CustomLoginName, "name on the login page's \"Continue with …\" button (default: the login URL's host)")
	fs.BoolVar(&c.CustomLoginOnly, "custom-login-only", c.CustomLoginOnly, "/login goes straight to the custom login page")
	fs.StringVar(&c.RedisURL, "redis-url", c.RedisURL, "Redis shared by every node for rate limits: redis://[:password@]host:port/db, or rediss:// for TLS (empty: limits per process)")
	fs.StringVar(&c.ServerKey, "server-key", c.ServerKey, "base64 of at least 32 secret bytes that derives session MCP keys; every node must use the same (default: <data-dir>/server.key, created on first start)")
}

// EnvName is the environment variable twin of a flag.
func EnvName(flag string) string {
	return "MCPGATE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// ApplyEnv sets every flag of fs that was not given on the command line from
// its MCPGATE_* variable, if set. Errors name the variable.
func ApplyEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		v := getenv(EnvName(f.Name))
		if v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %v", EnvName(f.Name), v, err))
		}
	})
	return errors.Join(errs...)
}

// DatabaseURLOrDefault is the database to open: --database-url, or the SQLite
// file mcpgate.db in the data directory.
func (c *Config) DatabaseURLOrDefault() string {
	if c.DatabaseURL != "" {
		return c.DatabaseURL
	}
	return filepath.Join(c.DataDir, "mcpgate.db")
}

// BaseURL is the public URL without a trailing slash, derived from the listen
// address when not configured.
func (c *Config) BaseURL() string {
	if c.PublicURL != "" {
		return strings.TrimRight(c.PublicURL, "/")
	}
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return "http://" + c.Addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// MCPURL is the URL of the MCP endpoint: the resource identifier of RFC 8707
// and RFC 9728.
func (c *Config) MCPURL() string { return c.BaseURL() + "/mcp" }

// ResourceMetadataURL is the protected-resource metadata URL for the MCP
// endpoint: the well-known suffix inserted between host and path
// (RFC 9728 §3.1).
func (c *Config) ResourceMetadataURL() string {
	return c.BaseURL() + "/.well-known/oauth-protected-resource/mcp"
}

// ValidateStorage checks the settings every subcommand uses.
func (c *Config) ValidateStorage() error {
	var errs []string
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Sprintf("--log-level %q: must be debug, info, warn or error", c.LogLevel))
	}
	switch c.LogFormat {
	case "auto", "text", "json":
	default:
		errs = append(errs, fmt.Sprintf("--log-format %q: must be text, json or auto", c.LogFormat))
	}
	if c.DatabaseURL == "" {
		if st, err := os.Stat(c.DataDir); err != nil {
			errs = append(errs, fmt.Sprintf("--data-dir %q: %v", c.DataDir, errors.Unwrap(err)))
		} else if !st.IsDir() {
			errs = append(errs, fmt.Sprintf("--data-dir %q: not a directory", c.DataDir))
		}
	} else if u, err := url.Parse(c.DatabaseURL); err == nil && u.Scheme != "" && u.Scheme != "postgres" && u.Scheme != "postgresql" && u.Scheme != "sqlite" && u.Scheme != "file" && len(u.Scheme) > 1 {
		errs = append(errs, fmt.Sprintf("--database-url: unsupported scheme %q (use postgres://… or a SQLite file path)", u.Scheme))
	}
	return joinErrs(errs)
}

// Validate checks everything `serve` needs, reporting every problem at once.
func (c *Config) Validate() error {
	var errs []string
	if err := c.ValidateStorage(); err != nil {
		errs = append(errs, err.Error())
	}
	addrOK := false
	if host, port, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Sprintf("--addr %q: must be host:port (for example 127.0.0.1:8080)", c.Addr))
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		errs = append(errs, fmt.Sprintf("--addr %q: port must be a number from 0 to 65535", c.Addr))
	} else {
		addrOK = true
		if c.PublicURL == "" && p == 0 {
			errs = append(errs, fmt.Sprintf("--addr %q picks a random port: set --public-url so clients are told the real one", c.Addr))
			addrOK = false
		} else if c.PublicURL == "" && host != "" && !IsLoopbackHost(host) {
			// Listening beyond this machine: clients need to be told the
			// real (https) URL; a derived http://localhost one would be wrong.
			errs = append(errs, fmt.Sprintf("--addr %q listens beyond this machine: set --public-url to the https URL clients use", c.Addr))
		} else if c.PublicURL == "" && host == "" {
			errs = append(errs, fmt.Sprintf("--addr %q listens on every interface: set --public-url to the https URL clients use (or listen on 127.0.0.1)", c.Addr))
		}
	}
	if c.PublicURL != "" || addrOK {
		if msg := checkPublicURL(c.BaseURL()); msg != "" {
			errs = append(errs, "--public-url "+strconv.Quote(c.PublicURL)+": "+msg)
		}
	}
	for _, o := range c.AllowedOrigins {
		if msg := checkOrigin(o); msg != "" {
			errs = append(errs, "--allowed-origins "+strconv.Quote(o)+": "+msg)
		}
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Sprintf("--metrics-addr %q: must be host:port", c.MetricsAddr))
		}
	}
	if _, err := c.TrustedProxyPrefixes(); err != nil {
		errs = append(errs, err.Error())
	}
	if c.MaxBodyBytes < 1024 || c.MaxBodyBytes > 64<<20 {
		errs = append(errs, fmt.Sprintf("--max-body-bytes %d: must be between 1024 and 67108864", c.MaxBodyBytes))
	}
	if c.KeyCacheTTL < 0 || c.KeyCacheTTL > time.Minute {
		errs = append(errs, fmt.Sprintf("--key-cache-ttl %s: must be between 0 (no cache) and 1m", c.KeyCacheTTL))
	}
	if c.KeyCacheSize < 0 {
		errs = append(errs, fmt.Sprintf("--key-cache-size %d: must not be negative", c.KeyCacheSize))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Sprintf("--shutdown-timeout %s: must be positive", c.ShutdownTimeout))
	}
	if c.MCPSessionTimeout < time.Minute {
		errs = append(errs, fmt.Sprintf("--mcp-session-timeout %s: must be at least 1m", c.MCPSessionTimeout))
	}
	if c.SessionIdleTimeout < time.Minute {
		errs = append(errs, fmt.Sprintf("--session-idle-timeout %s: must be at least 1m", c.SessionIdleTimeout))
	}
	if c.SessionLifetime < time.Minute {
		errs = append(errs, fmt.Sprintf("--session-lifetime %s: must be at least 1m", c.SessionLifetime))
	} else if c.SessionLifetime > 366*24*time.Hour {
		errs = append(errs, fmt.Sprintf("--session-lifetime %s: must be at most 8784h (366 days)", c.SessionLifetime))
	}
	if c.SessionIdleTimeout >= time.Minute && c.SessionLifetime >= time.Minute && c.SessionIdleTimeout > c.SessionLifetime {
		errs = append(errs, fmt.Sprintf("--session-idle-timeout %s: must not exceed --session-lifetime %s", c.SessionIdleTimeout, c.SessionLifetime))
	}
	if c.SessionKeyLifetime < time.Minute {
		errs = append(errs, fmt.Sprintf("--session-key-lifetime %s: must be at least 1m", c.SessionKeyLifetime))
	}
	if c.AccessTokenTTL < time.Minute || c.AccessTokenTTL > 24*time.Hour {
		errs = append(errs, fmt.Sprintf("--access-token-ttl %s: must be between 1m and 24h", c.AccessTokenTTL))
	}
	switch c.SigningAlg {
	case "ES256", "EdDSA", "RS256":
	default:
		errs = append(errs, fmt.Sprintf("--signing-alg %q: must be ES256, EdDSA or RS256", c.SigningAlg))
	}
	if c.SigningKeyRotation < time.Hour {
		errs = append(errs, fmt.Sprintf("--signing-key-rotation %s: must be at least 1h", c.SigningKeyRotation))
	}
	if c.RefreshIdle < time.Minute || c.RefreshLifetime < c.RefreshIdle {
		errs = append(errs, fmt.Sprintf("--refresh-idle %s / --refresh-lifetime %s: idle must be at least 1m and not longer than the lifetime", c.RefreshIdle, c.RefreshLifetime))
	}
	if c.RefreshGrace < 0 || c.RefreshGrace > 5*time.Minute {
		errs = append(errs, fmt.Sprintf("--refresh-grace %s: must be between 0 and 5m", c.RefreshGrace))
	}
	errs = append(errs, c.validateAccessTokenClaims()...)
	if c.RegistrationUnused < time.Hour || c.RegistrationIdle < time.Hour {
		errs = append(errs, "--registration-unused-ttl and --registration-idle-ttl must be at least 1h")
	}
	for _, h := range append(append([]string{}, c.CIMDAllowHosts...), c.CIMDDenyHosts...) {
		if h == "" || strings.ContainsAny(h, "/:@ ") {
			errs = append(errs, fmt.Sprintf("--cimd-allow-hosts/--cimd-deny-hosts %q: must be a bare host name such as app.example.com", h))
		}
	}
	if c.ExternalIssuersFile != "" {
		// Checked here, so a bad file is reported with everything else
		// before any database is touched.
		if _, err := c.ExternalIssuers(); err != nil {
			errs = append(errs, fmt.Sprintf("--external-issuers-file %q:\n%v", c.ExternalIssuersFile, err))
		}
	}
	if c.UpstreamProvidersFile != "" {
		if _, err := c.UpstreamProviders(); err != nil {
			errs = append(errs, err.Error())
		}
	}
	errs = append(errs, c.validateCustomLogin()...)
	if c.Retention < time.Hour {
		errs = append(errs, fmt.Sprintf("--retention %s: must be at least 1h", c.Retention))
	}
	if c.ServerKey != "" {
		if _, err := decodeServerKey(c.ServerKey); err != nil {
			errs = append(errs, "--server-key: "+err.Error())
		}
	}
	if c.RedisURL != "" {
		if _, err := ratelimit.ParseRedisURL(c.RedisURL); err != nil {
			errs = append(errs, "--redis-url "+err.Error())
		}
	}
	return joinErrs(errs)
}

// checkPublicURL: an absolute http(s) URL with no path, query or fragment;
// plain http only for loopback hosts, since tokens and keys travel in it.
func checkPublicURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "not a URL"
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return "must start with https:// (or http:// for a loopback address)"
	}
	if u.Host == "" || u.User != nil {
		return "must be a plain origin such as https://mcp.example.com"
	}
	if u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "must not have a path, query or fragment (serving under a path prefix is not supported yet)"
	}
	if u.Scheme == "http" && !IsLoopbackHost(u.Hostname()) {
		return "plain http is only allowed for loopback hosts (localhost, 127.0.0.1, ::1); use https"
	}
	return ""
}

func checkOrigin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "must be an origin such as https://app.example.com"
	}
	return ""
}

// IsLoopbackHost reports whether host names this machine.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func joinErrs(errs []string) error {
	if len(errs) == 0 {
		return nil
	}
	return errors.New(strings.Join(errs, "\n"))
}
