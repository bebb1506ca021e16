package config

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestEnvFillsFlagsNotGiven(t *testing.T) {
	c := Defaults()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	c.RegisterStorage(fs)
	c.RegisterServe(fs)
	if err := fs.Parse([]string{"--addr", "127.0.0.1:9999"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"MCPGATE_ADDR":       "127.0.0.1:1111", // flag wins
		"MCPGATE_PUBLIC_URL": "https://mcp.example.com",
		"MCPGATE_DEMO":       "true",
	}
	if err := ApplyEnv(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:9999" || c.PublicURL != "https://mcp.example.com" || !c.Demo {
		t.Errorf("got addr=%q public=%q demo=%v", c.Addr, c.PublicURL, c.Demo)
	}
	if got := c.MCPURL(); got != "https://mcp.example.com/mcp" {
		t.Errorf("MCPURL = %q", got)
	}
	if got := c.ResourceMetadataURL(); got != "https://mcp.example.com/.well-known/oauth-protected-resource/mcp" {
		t.Errorf("ResourceMetadataURL = %q", got)
	}
}

func TestApplyEnvNamesTheBadVariable(t *testing.T) {
	c := Defaults()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	c.RegisterServe(fs)
	err := ApplyEnv(fs, func(k string) string {
		if k == "MCPGATE_MAX_BODY_BYTES" {
			return "lots"
		}
		return ""
	})
	if err == nil || !strings.Contains(err.Error(), "MCPGATE_MAX_BODY_BYTES") {
		t.Fatalf("err = %v", err)
	}
}

func TestDerivedPublicURL(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:8080": "http://127.0.0.1:8080",
		":8080":          "http://localhost:8080",
		"0.0.0.0:9000":   "http://localhost:9000",
		"[::1]:8080":     "http://[::1]:8080",
	} {
		c := Defaults()
		c.Addr = addr
		if got := c.BaseURL(); got != want {
			t.Errorf("addr %q: BaseURL = %q, want %q", addr, got, want)
		}
	}
	c := Defaults()
	c.PublicURL = "https://mcp.example.com/"
	if got := c.MCPURL(); got != "https://mcp.example.com/mcp" {
		t.Errorf("trailing slash not trimmed: %q", got)
	}
}

func TestValidateReportsEveryProblemAtOnce(t *testing.T) {
	c := Defaults()
	c.DataDir = t.TempDir()
	c.Addr = "nonsense"
	c.PublicURL = "http://mcp.example.com"
	c.LogLevel = "loud"
	c.AllowedOrigins = []string{"app.example.com"}
	c.MaxBodyBytes = 10
	c.RedisURL = "redis://:s3cret-pw@redis.internal:6379/zero"
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate accepted a bad config")
	}
	for _, want := range []string{"--addr", "--public-url", "plain http is only allowed for loopback", "--log-level", "--allowed-origins", "--max-body-bytes", "--redis-url redis://:xxxxx@redis.internal:6379/zero: redis: invalid database number"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestNonLoopbackAddrNeedsPublicURL(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:8080", ":8080", "192.0.2.10:8080", "127.0.0.1:0"} {
		c := Defaults()
		c.DataDir = t.TempDir()
		c.Addr = addr
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "set --public-url") {
			t.Errorf("addr %s without a public URL: %v", addr, err)
		}
		c.PublicURL = "https://mcp.example.com"
		if err := c.Validate(); err != nil {
			t.Errorf("addr %s with a public URL: %v", addr, err)
		}
	}
	c := Defaults()
	c.DataDir = t.TempDir()
	c.Addr = "nonsense"
	if err := c.Validate(); err == nil || strings.Contains(err.Error(), "--public-url") {
		t.Errorf("a bad --addr also blames the (unset) public URL: %v", err)
	}
}

func TestValidateAcceptsDefaultsAndHTTPS(t *testing.T) {
	c := Defaults()
	c.DataDir = t.TempDir()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	c.PublicURL = "https://mcp.example.com"
	c.AllowedOrigins = []string{"https://app.example.com"}
	c.DatabaseURL = "postgres://u@db/x"
	if err := c.Validate(); err != nil {
		t.Fatalf("https: %v", err)
	}
	for _, bad := range []string{"https://mcp.example.com/base", "https://u:p@mcp.example.com", "ftp://x", "https://x?a=b"} {
		c.PublicURL = bad
		if err := c.Validate(); err == nil {
			t.Errorf("public URL %q accepted", bad)
		}
	}
}

func TestMissingDataDir(t *testing.T) {
	c := Defaults()
	c.DataDir = t.TempDir() + "/nope"
	if err := c.ValidateStorage(); err == nil || !strings.Contains(err.Error(), "--data-dir") {
		t.Fatalf("err = %v", err)
	}
}

func TestOAuthSettingsValidated(t *testing.T) {
	c := Defaults()
	c.DataDir = t.TempDir()
	c.AccessTokenTTL = time.Second
	c.SigningAlg = "HS256"
	c.RefreshGrace = time.Hour
	c.CIMDAllowHosts = []string{"https://x.example/"}
	err := c.Validate()
	if err == nil {
		t.Fatal("bad OAuth settings accepted")
	}
	for _, want := range []string{"--access-token-ttl", "--signing-alg", "--refresh-grace", "--cimd-allow-hosts"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
}

// parseServe is the serve command's configuration from flags args and
// environment env (flags win).
func parseServe(t *testing.T, args []string, env map[string]string) Config {
	t.Helper()
	c := Defaults()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	c.RegisterStorage(fs)
	c.RegisterServe(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := ApplyEnv(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	return c
}

// The simple token login is on by default; the flag or its MCPGATE_* twin
// turns it off.
func TestDisablePasswordLoginEndpoint(t *testing.T) {
	parse := func(args []string, env map[string]string) Config { return parseServe(t, args, env) }
	if c := parse(nil, nil); c.DisablePasswordLogin {
		t.Error("off by default")
	}
	if c := parse([]string{"--disable-password-login-endpoint"}, nil); !c.DisablePasswordLogin {
		t.Error("the flag did not turn it off")
	}
	if c := parse(nil, map[string]string{"MCPGATE_DISABLE_PASSWORD_LOGIN_ENDPOINT": "true"}); !c.DisablePasswordLogin {
		t.Error("the environment variable did not turn it off")
	}
	if c := parse([]string{"--disable-password-login-endpoint=false"}, map[string]string{"MCPGATE_DISABLE_PASSWORD_LOGIN_ENDPOINT": "true"}); c.DisablePasswordLogin {
		t.Error("the flag must win over the environment")
	}
}

// Roles in ID tokens are opt-in, by flag or MCPGATE_ID_TOKEN_ROLES.
func TestIDTokenRoles(t *testing.T) {
	parse := func(args []string, env map[string]string) Config { return parseServe(t, args, env) }
	if parse(nil, nil).IDTokenRoles {
		t.Error("on by default")
	}
	if !parse([]string{"--id-token-roles"}, nil).IDTokenRoles {
		t.Error("the flag did not turn it on")
	}
	if !parse(nil, map[string]string{"MCPGATE_ID_TOKEN_ROLES": "true"}).IDTokenRoles {
		t.Error("the environment variable did not turn it on")
	}
}

func TestRedisURL(t *testing.T) {
	c := Defaults()
	c.DataDir = t.TempDir()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	c.RegisterStorage(fs)
	c.RegisterServe(fs)
	env := map[string]string{"MCPGATE_REDIS_URL": "rediss://:s3cret-pw@redis.internal:6380/2"}
	if err := ApplyEnv(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if c.RedisURL != env["MCPGATE_REDIS_URL"] {
		t.Fatalf("MCPGATE_REDIS_URL did not set RedisURL: %q", c.RedisURL)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("a valid rediss URL was refused: %v", err)
	}
	for u, want := range map[string]string{
		"http://:s3cret-pw@redis.internal:6379": "must start with redis:// or rediss://",
		"redis://:s3cret-pw@:6379/0":            "must name a host",
		"redis://:s3cret%pw@redis.internal":     "malformed URL",
		"redis://:s3cret-pw@redis.internal/0/1": "invalid URL path",
	} {
		c.RedisURL = u
		err := c.Validate()
		switch {
		case err == nil:
			t.Errorf("--redis-url %q accepted", u)
		case !strings.Contains(err.Error(), "--redis-url") || !strings.Contains(err.Error(), want):
			t.Errorf("--redis-url %q: %v, want %q", u, err, want)
		case strings.Contains(err.Error(), "s3cret"):
			t.Errorf("--redis-url %q: the password is in the error: %v", u, err)
		}
	}
}
