package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/verify"
)

// Bounds of what an issuer may send.
const (
	maxDiscoveryBytes = 256 << 10
	fetchTimeout      = 10 * time.Second
)

// issuer is one configured external issuer.
type issuer struct {
	cfg config.ExternalIssuer
	f   *Federation
	alg map[string]bool

	// Discovery and key set, loaded on first use.
	mu          sync.Mutex
	keys        verify.KeySource
	introURL    string
	lastAttempt time.Time // of a failed discovery
	lastErr     error

	intro *introspector
}

func newIssuer(cfg config.ExternalIssuer, f *Federation) (*issuer, error) {
	is := &issuer{cfg: cfg, f: f, alg: map[string]bool{}}
	if is.cfg.Name == "" {
		is.cfg.Name = cfg.Issuer
	}
	for _, a := range cfg.Algorithms {
		if strings.EqualFold(a, "none") || strings.HasPrefix(strings.ToUpper(a), "HS") {
			return nil, fmt.Errorf("federation: issuer %q: algorithm %q is never allowed", cfg.Issuer, a)
		}
		is.alg[a] = true
	}
	switch cfg.Mode {
	case config.ExternalModeJWT:
		if cfg.JWKSURI != "" {
			ks, err := is.remoteKeys(cfg.JWKSURI)
			if err != nil {
				return nil, err
			}
			is.keys = ks
		}
	case config.ExternalModeIntrospection:
		is.introURL = cfg.Introspection.Endpoint
		is.intro = newIntrospector(is)
	default:
		return nil, fmt.Errorf("federation: issuer %q: unknown mode %q", cfg.Issuer, cfg.Mode)
	}
	return is, nil
}

func (is *issuer) remoteKeys(jwksURI string) (*verify.RemoteKeySet, error) {
	ks, err := verify.RemoteJWKS(jwksURI, verify.RemoteOptions{
		HTTPClient: is.f.opts.HTTPClient, MinRefreshInterval: is.cfg.JWKSRefreshInterval,
		Now: is.f.opts.Now, Logger: is.f.opts.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("federation: issuer %q: %w", is.cfg.Issuer, err)
	}
	return ks, nil
}

// keySource returns the issuer's key set, discovering its jwks_uri first
// when configured so.
func (is *issuer) keySource(ctx context.Context) (verify.KeySource, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.keys != nil {
		return is.keys, nil
	}
	doc, err := is.discoverLocked(ctx)
	if err != nil {
		return nil, err
	}
	if doc.JWKSURI == "" {
		return nil, is.discoveryFailed(errors.New("the discovery document has no jwks_uri"))
	}
	ks, err := is.remoteKeys(doc.JWKSURI)
	if err != nil {
		return nil, is.discoveryFailed(err)
	}
	is.keys = ks
	return ks, nil
}

// introspectionURL returns the introspection endpoint, discovering it when
// configured so.
func (is *issuer) introspectionURL(ctx context.Context) (string, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.introURL != "" {
		return is.introURL, nil
	}
	doc, err := is.discoverLocked(ctx)
	if err != nil {
		return "", err
	}
	if doc.IntrospectionEndpoint == "" {
		return "", is.discoveryFailed(errors.New("the discovery document has no introspection_endpoint"))
	}
	if msg := secureURL(doc.IntrospectionEndpoint); msg != "" {
		return "", is.discoveryFailed(fmt.Errorf("introspection_endpoint %s %s", quote(doc.IntrospectionEndpoint), msg))
	}
	is.introURL = doc.IntrospectionEndpoint
	return is.introURL, nil
}

type discoveryDoc struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
}

// discoverLocked reads the issuer's OpenID Provider metadata (OIDC
// Discovery §4). A failure is remembered for the JWKS refresh interval, so
// tokens naming an unreachable issuer do not each cost a fetch. The caller
// holds is.mu (one discovery at a time per issuer).
func (is *issuer) discoverLocked(ctx context.Context) (*discoveryDoc, error) {
	now := is.f.opts.Now()
	if is.lastErr != nil && now.Sub(is.lastAttempt) < is.cfg.JWKSRefreshInterval {
		return nil, refuse(ReasonIssuerUnavailable, is.cfg.Issuer, "discovery failed recently, not retrying yet: %v", is.lastErr)
	}
	// OIDC Discovery §4: "appending /.well-known/openid-configuration to
	// the Issuer", any trailing "/" removed first.
	u := strings.TrimSuffix(is.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	var doc discoveryDoc
	if err := getJSON(ctx, is.f.opts.HTTPClient, u, maxDiscoveryBytes, &doc); err != nil {
		return nil, is.discoveryFailed(err)
	}
	// OIDC Discovery §4.3: "The issuer value returned MUST be identical to
	// the Issuer URL that was used as the prefix to
	// /.well-known/openid-configuration to retrieve the configuration
	// information."
	if doc.Issuer != is.cfg.Issuer {
		return nil, is.discoveryFailed(fmt.Errorf("the discovery document names issuer %s, not the configured %s", quote(doc.Issuer), quote(is.cfg.Issuer)))
	}
	if doc.JWKSURI != "" {
		if msg := secureURL(doc.JWKSURI); msg != "" {
			return nil, is.discoveryFailed(fmt.Errorf("jwks_uri %s %s", quote(doc.JWKSURI), msg))
		}
	}
	is.lastErr = nil
	return &doc, nil
}

func (is *issuer) discoveryFailed(err error) error {
	is.lastAttempt, is.lastErr = is.f.opts.Now(), err
	is.f.opts.Logger.Warn("federation: OpenID discovery failed", "issuer", is.cfg.Issuer, "err", err)
	return refuse(ReasonIssuerUnavailable, is.cfg.Issuer, "discovery: %v", err)
}

// getJSON fetches a JSON document of at most limit bytes.
func getJSON(ctx context.Context, client *http.Client, u string, limit int64, dst any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("GET %s: status %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if int64(len(body)) > limit {
		return fmt.Errorf("GET %s: document exceeds %d bytes", u, limit)
	}
	if err := json.Unmarshal(body, dst); err != nil {
		return fmt.Errorf("GET %s: not a JSON object: %v", u, err)
	}
	return nil
}

// secureURL: "" when u is an https URL (http only on loopback), else why not.
func secureURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || u.User != nil:
		return "is not an absolute URL without credentials"
	case u.Scheme == "https", u.Scheme == "http" && isLoopback(u.Hostname()):
		return ""
	}
	return "does not use https"
}
