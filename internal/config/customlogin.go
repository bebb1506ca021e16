package config

// Bring your own login (custom auth): --custom-login-url names the
// operator application's login page, --custom-login-secret (or
// --custom-login-secret-file) the shared secret that application uses to
// tell mcpgate who signed in, or --custom-login-public-key-file its public
// key(s) when it signs assertions instead (customloginkeys.go). See
// docs/custom-login.md.

import (
	"fmt"
	"net/url"
	"os"
	"strings"
)

// MinCustomLoginSecretBytes is the shortest accepted shared secret.
const MinCustomLoginSecretBytes = 32

// CustomLoginSecretValue returns the shared secret from the flag or the
// file (surrounding whitespace trimmed).
func (c *Config) CustomLoginSecretValue() (string, error) {
	if c.CustomLoginSecret != "" && c.CustomLoginSecretFile != "" {
		return "", fmt.Errorf("--custom-login-secret and --custom-login-secret-file: set only one")
	}
	if c.CustomLoginSecretFile != "" {
		b, err := os.ReadFile(c.CustomLoginSecretFile)
		if err != nil {
			return "", fmt.Errorf("--custom-login-secret-file: %v", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return c.CustomLoginSecret, nil
}

// validateCustomLogin reports the problems of the custom login settings.
func (c *Config) validateCustomLogin() []string {
	var errs []string
	hasSecret := c.CustomLoginSecret != "" || c.CustomLoginSecretFile != ""
	if c.CustomLoginURL == "" {
		if hasSecret || c.CustomLoginPublicKeyFile != "" || c.CustomLoginOnly || c.CustomLoginName != "" {
			errs = append(errs, "--custom-login-*: set --custom-login-url too (the login page of your application)")
		}
		return errs
	}
	u, err := url.Parse(c.CustomLoginURL)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		errs = append(errs, fmt.Sprintf("--custom-login-url %q: must be an absolute https URL", c.CustomLoginURL))
	case u.Scheme == "http" && !IsLoopbackHost(u.Hostname()):
		errs = append(errs, fmt.Sprintf("--custom-login-url %q: must use https (http only on loopback)", c.CustomLoginURL))
	case u.User != nil || u.Fragment != "":
		errs = append(errs, fmt.Sprintf("--custom-login-url %q: must not carry credentials or a fragment", c.CustomLoginURL))
	}
	// The app authenticates with exactly one of a shared secret or a key pair.
	switch {
	case hasSecret && c.CustomLoginPublicKeyFile != "":
		errs = append(errs, "--custom-login-secret and --custom-login-public-key-file: set only one (a shared secret, or your application's public key)")
	case c.CustomLoginPublicKeyFile != "":
		if _, err := c.CustomLoginPublicKeys(); err != nil {
			errs = append(errs, err.Error())
		}
	case !hasSecret:
		errs = append(errs, "--custom-login-url: say how your application authenticates to mcpgate: --custom-login-secret (or --custom-login-secret-file), or --custom-login-public-key-file")
	default:
		secret, err := c.CustomLoginSecretValue()
		switch {
		case err != nil:
			errs = append(errs, err.Error())
		case len(secret) < MinCustomLoginSecretBytes:
			errs = append(errs, fmt.Sprintf("--custom-login-secret: must be at least %d bytes (or use --custom-login-secret-file)", MinCustomLoginSecretBytes))
		}
	}
	if len(c.CustomLoginName) > 60 {
		errs = append(errs, "--custom-login-name: at most 60 bytes")
	}
	return errs
}

// CustomLoginDisplayName is the button's name: --custom-login-name, or
// the login URL's host.
func (c *Config) CustomLoginDisplayName() string {
	if c.CustomLoginName != "" {
		return c.CustomLoginName
	}
	if u, err := url.Parse(c.CustomLoginURL); err == nil && u.Host != "" {
		return u.Host
	}
	return "your organisation"
}
