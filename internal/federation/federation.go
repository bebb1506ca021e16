// Package federation trusts identities from outside mcpgate. This file and
// its siblings implement trusted external issuers: access tokens minted by
// another authorization server (Keycloak, Auth0, Okta, Entra, Supabase,
// another mcpgate…) that the MCP endpoint accepts directly.
//
// Two modes per issuer (config.ExternalIssuer):
//
//   - "jwt": the token is a JWT verified locally against the issuer's JWKS
//     (verify.RemoteJWKS: cached; an unknown kid triggers a refetch at most
//     once per interval, so a flood of invented kids cannot hammer the
//     issuer), with an algorithm allow-list (never "none" or HMAC), the
//     audience required, and exp/nbf/iat checked with the issuer's skew.
//   - "introspection": the token (often opaque) is sent to the provider's
//     RFC 7662 endpoint; active answers are cached briefly (≤ 30 s, never
//     past exp), inactive ones never.
//
// Tokens name their issuer ("iss"); a JWT from an issuer that is not
// configured is refused (unknown_issuer), never passed through or tried
// elsewhere. Opaque tokens go to the introspection entry whose
// token_prefix they start with, or to the one entry without a prefix.
//
// An accepted token is mapped (config.ClaimMapping) to an Identity and its
// account provisioned just in time (identity.Provisioner), so the caller
// is a local user with an audit trail, keys and sessions.
package federation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/store"
)

// Principal methods of externally authenticated callers.
const (
	MethodExternalJWT           = "external_jwt"
	MethodExternalIntrospection = "external_introspection"
)

// Refusal reasons (audit "reason" of auth.rejected). They are precise on
// purpose; clients only learn "invalid_token".
const (
	ReasonUnknownIssuer         = "unknown_issuer"         // iss is not a configured issuer
	ReasonBadAudience           = "bad_audience"           // aud does not name this resource
	ReasonBadSignature          = "bad_signature"          // the signature does not verify
	ReasonBadAlgorithm          = "bad_algorithm"          // alg not allowed for the issuer (none, HS*, …) or not fitting the key
	ReasonExpired               = "expired"                // exp has passed (beyond the skew)
	ReasonNotYetValid           = "not_yet_valid"          // nbf or iat in the future (beyond the skew)
	ReasonUnknownKID            = "unknown_kid"            // no key with the token's kid, even after a refetch
	ReasonWrongType             = "wrong_type"             // typ header of another kind of JWT (logout, DPoP proof, …)
	ReasonWrongIssuer           = "wrong_issuer"           // an introspection answer names another issuer
	ReasonMalformed             = "malformed"              // not decodable, or a required claim missing or ill-typed
	ReasonIssuerUnavailable     = "issuer_unavailable"     // JWKS, discovery or introspection unreachable or garbled: 503
	ReasonIntrospectionInactive = "introspection_inactive" // the provider says the token is not active
)

// RefusalError is a refused external token. Reason is one of the Reason
// constants; Detail is for the audit log (never the token).
type RefusalError struct {
	Reason string
	Issuer string // the configured issuer, or the unknown one (clipped)
	Detail string
}

func (e *RefusalError) Error() string {
	return fmt.Sprintf("federation: %s: %s", e.Reason, e.Detail)
}

// Unavailable reports whether the refusal is the issuer's fault (answer
// 503 and let the client retry), not the token's.
func (e *RefusalError) Unavailable() bool { return e.Reason == ReasonIssuerUnavailable }

func refuse(reason, issuer, format string, args ...any) *RefusalError {
	return &RefusalError{Reason: reason, Issuer: clip(issuer, 200), Detail: fmt.Sprintf(format, args...)}
}

// Identity is an accepted external token, mapped to mcpgate's terms.
type Identity struct {
	Issuer     string // the configured issuer
	IssuerName string // the entry's name (or the issuer)
	Method     string // MethodExternalJWT or MethodExternalIntrospection
	Subject    string // the user id claim
	// UserID is the provisioned local user.
	UserID string
	// Provisioned: the account was looked up (or created) in the store for
	// this token rather than found in the link cache; callers audit the
	// acceptance then, once per account and LinkCacheTTL.
	Provisioned   bool
	Email         string
	EmailVerified bool
	Name          string
	Roles         []string  // from the roles claim
	Scopes        []string  // token scopes ∩ the resource's scopes, or the static set
	ClientID      string    // "client_id" or "azp", when present
	TokenID       string    // "jti", when present
	ExpiresAt     time.Time // zero: unknown
	// Claims holds every claim of the token (or introspection answer).
	Claims map[string]any
}

// Provisioner turns an external account into a local user
// (*identity.Provisioner).
type Provisioner interface {
	Provision(ctx context.Context, a identity.ExternalAccount) (store.User, error)
}

// Options configure a Federation.
type Options struct {
	// ResourceScopes are the scopes the MCP resource defines; token scopes
	// (and static scopes) are cut down to them.
	ResourceScopes []string
	// Accounts provisions users. Required.
	Accounts Provisioner
	// HTTPClient fetches discovery documents and JWKS and calls
	// introspection endpoints. Default: 10 s timeout, redirects only to
	// https.
	HTTPClient *http.Client
	// LinkCacheTTL is how long a (issuer, subject) → user link is reused
	// before the account is provisioned (and its login recorded) again.
	// Default one minute.
	LinkCacheTTL time.Duration
	Now          func() time.Time
	Logger       *slog.Logger
}

// Federation accepts tokens of the configured external issuers. It is safe
// for concurrent use.
type Federation struct {
	opts     Options
	byIssuer map[string]*issuer
	opaque   []*issuer // introspection entries with a token prefix, longest first
	fallback *issuer   // the introspection entry without a prefix
	links    linkCache
}

// New builds a Federation. Nothing is fetched yet: discovery documents
// and key sets are loaded on first use (an issuer that is down at start
// does not stop mcpgate; its tokens get issuer_unavailable until it is
// back).
func New(issuers []config.ExternalIssuer, opts Options) (*Federation, error) {
	if opts.Accounts == nil {
		return nil, errors.New("federation: Options.Accounts is required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.LinkCacheTTL <= 0 {
		opts.LinkCacheTTL = time.Minute
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = defaultHTTPClient()
	}
	f := &Federation{opts: opts, byIssuer: map[string]*issuer{}, links: linkCache{m: map[string]cachedLink{}}}
	for _, cfg := range issuers {
		if _, dup := f.byIssuer[cfg.Issuer]; dup {
			return nil, fmt.Errorf("federation: issuer %q listed twice", cfg.Issuer)
		}
		is, err := newIssuer(cfg, f)
		if err != nil {
			return nil, err
		}
		f.byIssuer[cfg.Issuer] = is
		if cfg.Mode == config.ExternalModeIntrospection {
			if cfg.Introspection.TokenPrefix == "" {
				if f.fallback != nil {
					return nil, fmt.Errorf("federation: issuers %q and %q both take opaque tokens without a token prefix", f.fallback.cfg.Issuer, cfg.Issuer)
				}
				f.fallback = is
			} else {
				f.opaque = append(f.opaque, is)
			}
		}
		for _, s := range cfg.StaticScopes {
			if !slices.Contains(opts.ResourceScopes, s) {
				opts.Logger.Warn("federation: a static scope is not a scope of the MCP resource and is never granted", "issuer", cfg.Issuer, "scope", s)
			}
		}
	}
	slices.SortFunc(f.opaque, func(a, b *issuer) int {
		return len(b.cfg.Introspection.TokenPrefix) - len(a.cfg.Introspection.TokenPrefix)
	})
	return f, nil
}

// TakesOpaque reports whether an opaque (non-JWT) bearer token goes to one
// of the introspection entries.
func (f *Federation) TakesOpaque(token string) bool { return f.opaqueIssuer(token) != nil }

func (f *Federation) opaqueIssuer(token string) *issuer {
	for _, is := range f.opaque {
		if strings.HasPrefix(token, is.cfg.Introspection.TokenPrefix) {
			return is
		}
	}
	return f.fallback
}

// Authenticate verifies a bearer token of an external issuer and returns
// the identity, with its local user provisioned. A refused token is a
// *RefusalError (Unavailable: answer 503); any other error is a storage
// failure. jwt says whether the token has the shape of a JWT.
func (f *Federation) Authenticate(ctx context.Context, token string, jwt bool) (*Identity, error) {
	var (
		id  *Identity
		err error
	)
	if jwt {
		id, err = f.authenticateJWT(ctx, token)
	} else if is := f.opaqueIssuer(token); is != nil {
		id, err = is.introspect(ctx, token)
	} else {
		return nil, refuse(ReasonUnknownIssuer, "", "an opaque token, and no introspection issuer takes it")
	}
	if err != nil {
		return nil, err
	}
	if err := f.provision(ctx, id); err != nil {
		return nil, err
	}
	return id, nil
}

func (f *Federation) authenticateJWT(ctx context.Context, token string) (*Identity, error) {
	tok, err := parseJWT(token)
	if err != nil {
		return nil, err
	}
	iss, _ := tok.claims["iss"].(string)
	is, ok := f.byIssuer[iss]
	if !ok || iss == "" {
		return nil, refuse(ReasonUnknownIssuer, iss, "iss %s is not a configured external issuer", quote(iss))
	}
	if is.cfg.Mode == config.ExternalModeIntrospection {
		return is.introspect(ctx, token)
	}
	return is.verifyJWT(ctx, tok)
}

// provision links the identity to its local user (cached briefly).
func (f *Federation) provision(ctx context.Context, id *Identity) error {
	key := id.Issuer + "\x00" + id.Subject
	now := f.opts.Now()
	if uid, ok := f.links.get(key, now); ok {
		id.UserID = uid
		return nil
	}
	is := f.byIssuer[id.Issuer]
	u, err := f.opts.Accounts.Provision(ctx, identity.ExternalAccount{
		Issuer: id.Issuer, Subject: id.Subject, Email: id.Email, EmailVerified: id.EmailVerified, Name: id.Name,
		LinkByEmail: is.cfg.LinkByEmail, Via: id.Method,
	})
	if err != nil {
		var ve *identity.ValidationError
		if errors.As(err, &ve) {
			return refuse(ReasonMalformed, id.Issuer, "claim %s: %s", ve.Field, ve.Message)
		}
		return err
	}
	id.UserID, id.Provisioned = u.ID, true
	f.links.put(key, u.ID, now.Add(f.opts.LinkCacheTTL))
	return nil
}

// Forget drops the cached link of an account (e.g. its user is gone), so
// the next token provisions it afresh.
func (f *Federation) Forget(issuer, subject string) { f.links.drop(issuer + "\x00" + subject) }

type cachedLink struct {
	userID string
	until  time.Time
}

type linkCache struct {
	mu sync.Mutex
	m  map[string]cachedLink
}

const linkCacheMax = 10_000

func (c *linkCache) get(key string, now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || !now.Before(e.until) {
		return "", false
	}
	return e.userID, true
}

func (c *linkCache) put(key, userID string, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= linkCacheMax {
		clear(c.m)
	}
	c.m[key] = cachedLink{userID: userID, until: until}
}

func (c *linkCache) drop(key string) {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
}

// defaultHTTPClient: bounded time, redirects only to https (or loopback
// http), never to a plain-http host an attacker could sit on.
func defaultHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			if req.URL.Scheme != "https" && !(req.URL.Scheme == "http" && isLoopback(req.URL.Hostname())) {
				return errors.New("redirect to a non-https URL")
			}
			return nil
		},
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// clip cuts s to n bytes (valid UTF-8) for logs and audit details.
func clip(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "?")
}

// quote quotes an attacker-chosen value for a detail message.
func quote(s string) string {
	if len(s) > 80 {
		return fmt.Sprintf("%q…", clip(s, 80))
	}
	return fmt.Sprintf("%q", s)
}
