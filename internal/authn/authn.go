// Package authn is the one place that turns a request's credential into a
// principal.Principal. It answers refusals with the challenges of RFC 6750 §3
// and RFC 9728 §5.1 and records every refusal, with its precise reason, in
// the audit log. Clients learn only "invalid_token"; operators learn why.
package authn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/federation"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
)

// KeyVerifier checks API keys (implemented by *apikeys.Service).
type KeyVerifier interface {
	Verify(ctx context.Context, plaintext string) (apikeys.Result, error)
}

// Options configure an Authenticator.
type Options struct {
	Keys  KeyVerifier
	Users func(ctx context.Context, id string) (store.User, error)
	// SessionClaims returns the custom claims kept with the browser session
	// a session key belongs to (custom login), so requests made with that
	// key carry them like cookie requests do. Nil: no claims for keys.
	SessionClaims       func(ctx context.Context, keyID string) (map[string]any, error)
	Audit               audit.Recorder
	Resource            string   // the protected resource's URL (audit "resource")
	ResourceMetadataURL string   // RFC 9728 metadata URL, sent in every challenge
	Scopes              []string // the resource's scopes, advertised in the 401 challenge
	AllowedOrigins      []string // browser origins allowed to call; others get 403
	UserCacheTTL        time.Duration
	Logger              *slog.Logger
	OnDecision          func(method, outcome, reason string) // metrics
	// RefusalLimiter bounds refused requests per client IP (default: in
	// memory, a burst of DefaultRefusalBurst, then one every
	// DefaultRefusalEvery). An error from it fails the request closed.
	RefusalLimiter ratelimit.Limiter

	// Sessions reads browser sessions for Account (nil: Account accepts
	// API keys only).
	Sessions *session.Manager
	// AccountScope is the scope a key needs on Account routes; default
	// DefaultAccountScope. Session principals always carry it.
	AccountScope string
	// AccessTokens, when set, makes Middleware (and Account) accept the
	// JWT access tokens of mcpgate's authorization server as Bearer
	// tokens next to API keys (jwt.go).
	AccessTokens *AccessTokens
	// External, when set, makes Middleware (and Account) accept the tokens
	// of trusted external issuers (external.go).
	External *federation.Federation

	// CSRFTrustedOrigins are origins (scheme://host[:port]) whose
	// cross-origin, cookie-authenticated, state-changing requests Account
	// accepts anyway (net/http.CrossOriginProtection.AddTrustedOrigin).
	// Default none: only same-origin browser requests may change state.
	CSRFTrustedOrigins []string
}

// DefaultAccountScope is the scope that lets an API key manage its owner's
// account (keys, sessions, audit) through the JSON API.
const DefaultAccountScope = "account"

// Authenticator is the authentication middleware.
type Authenticator struct {
	opts        Options
	origins     map[string]bool
	users       userCache
	claims      claimsCache      // session keys' session claims
	tokenClaims tokenClaimsCache // access tokens' claims (jwt.go)
	csrf        *http.CrossOriginProtection

	refusals   ratelimit.Limiter // per client IP, see floodLimited
	floodNotes ratelimit.Limiter // one audit note per IP and minute while limited
}

// New returns an Authenticator.
func New(opts Options) *Authenticator {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.OnDecision == nil {
		opts.OnDecision = func(string, string, string) {}
	}
	a := &Authenticator{opts: opts, origins: map[string]bool{}}
	for _, o := range opts.AllowedOrigins {
		a.origins[normalizeOrigin(o)] = true
	}
	a.users = userCache{ttl: opts.UserCacheTTL, entries: map[string]cachedUser{}}
	a.claims = claimsCache{ttl: time.Minute, entries: map[string]cachedClaims{}}
	a.refusals = opts.RefusalLimiter
	if a.refusals == nil {
		a.refusals = ratelimit.NewMemory(DefaultRefusalEvery, DefaultRefusalBurst, 100_000)
	}
	// Per process even when refusals are counted in Redis: it only thins
	// out audit notes (at most one per IP, minute and node), and needs no
	// backend that could fail.
	a.floodNotes = ratelimit.NewMemory(time.Minute, 1, 100_000)
	if a.opts.AccountScope == "" {
		a.opts.AccountScope = DefaultAccountScope
	}
	a.csrf = http.NewCrossOriginProtection()
	for _, o := range opts.CSRFTrustedOrigins {
		if err := a.csrf.AddTrustedOrigin(o); err != nil {
			opts.Logger.Warn("authn: ignoring an invalid CSRF trusted origin", "origin", o, "err", err)
		}
	}
	return a
}

// OriginAllowed reports whether a browser origin may call the resource.
func (a *Authenticator) OriginAllowed(origin string) bool { return a.origins[normalizeOrigin(origin)] }

// InvalidateUser drops a user's cached profile (after a disable or change).
func (a *Authenticator) InvalidateUser(id string) { a.users.drop(id) }

// queryCredentialNames are query parameters that carry credentials in other
// products. OAuth 2.1 §5.1.1 forbids access tokens in the query (they end up
// in logs, history and Referer headers), so we refuse them loudly.
var queryCredentialNames = []string{"access_token", "api_key", "apikey", "api-key", "key", "token", "x-api-key", "bearer"}

// refusal is a decided rejection.
type refusal struct {
	status      int
	reason      string
	challenge   httpx.Challenge
	description string // for bodies that are not challenges (403 origin)
	keyID       string
	userID      string
	details     map[string]any
	method      string // for metrics; "" = derived from the reason (API key or none)
}

// Middleware authenticates every request and passes it on with a principal
// in its context, or answers the refusal.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ref, err := a.authenticate(r)
		if err != nil {
			a.unavailable(w, err)
			return
		}
		if ref != nil {
			a.refuse(w, r, ref)
			return
		}
		a.opts.OnDecision(p.Method, store.OutcomeAllow, "")
		next.ServeHTTP(w, r.WithContext(principal.With(r.Context(), p)))
	})
}

// unavailable answers a storage failure: fail closed, without pretending
// the credential is bad.
func (a *Authenticator) unavailable(w http.ResponseWriter, err error) {
	a.opts.Logger.Error("authentication unavailable", "err", err)
	a.opts.OnDecision(principal.MethodAPIKey, store.OutcomeDeny, "error")
	w.Header().Set("Retry-After", "5")
	httpx.WriteOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "authentication is temporarily unavailable; try again shortly")
}

func (a *Authenticator) refuse(w http.ResponseWriter, r *http.Request, ref *refusal) {
	if a.floodLimited(w, r, ref) {
		return
	}
	method := ref.method
	if method == "" {
		method = principal.MethodAPIKey
		switch ref.reason {
		case audit.ReasonMissing, audit.ReasonQueryCredential, audit.ReasonOrigin, audit.ReasonAmbiguous:
			method = "none" // refused before any credential was examined
		}
	}
	a.opts.OnDecision(method, store.OutcomeDeny, ref.reason)
	a.opts.Audit.Record(r.Context(), audit.Event{
		Type: audit.TypeAuthRejected, Outcome: store.OutcomeDeny, Reason: ref.reason,
		UserID: ref.userID, CredentialID: ref.keyID, Resource: a.opts.Resource, Details: ref.details,
	})
	if ref.status == http.StatusServiceUnavailable { // an external issuer is down: not the token's fault
		w.Header().Set("Retry-After", "5")
		httpx.WriteOAuthError(w, ref.status, "temporarily_unavailable", ref.description)
		return
	}
	if ref.status == http.StatusForbidden && ref.challenge == (httpx.Challenge{}) {
		httpx.WriteJSON(w, ref.status, httpx.OAuthError{Error: "forbidden", Description: ref.description})
		return
	}
	ref.challenge.ResourceMetadata = a.opts.ResourceMetadataURL
	httpx.WriteChallenge(w, ref.status, ref.challenge)
}

// Refusal flood control: each refusal costs an audit row (and often a
// database read), so a client that keeps being refused is slowed down per
// client IP. Only refusals count: a valid credential from the same address
// is never held back. Past the limit the client gets 429 and the audit log
// gets one rate_limited event per IP and minute instead of a row per request.
// When the limiter cannot decide (a shared Redis is down) the request fails
// closed: 503 with Retry-After, and no audit row per request either.
const (
	DefaultRefusalEvery = time.Second // sustained refusals per IP: one a second…
	DefaultRefusalBurst = 120         // …after a burst of 120
)

func (a *Authenticator) floodLimited(w http.ResponseWriter, r *http.Request, ref *refusal) bool {
	src := httpx.ClientKey(r) // an IPv6 /64 is one client
	d, err := a.refusals.Allow(r.Context(), src)
	if err != nil {
		a.unavailable(w, fmt.Errorf("authn: refusal rate limit: %w", err))
		return true
	}
	if d.Allowed {
		return false
	}
	a.opts.OnDecision("none", store.OutcomeDeny, audit.ReasonRateLimited)
	if note, err := a.floodNotes.Allow(r.Context(), src); err == nil && note.Allowed {
		a.opts.Audit.Record(r.Context(), audit.Event{
			Type: audit.TypeAuthRejected, Outcome: store.OutcomeDeny, Reason: audit.ReasonRateLimited,
			Resource: a.opts.Resource, Details: map[string]any{"last_reason": ref.reason, "note": "further refusals from this address within the minute are counted in metrics only"},
		})
	}
	secs := int(d.RetryAfter.Seconds()) + 1
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	httpx.WriteOAuthError(w, http.StatusTooManyRequests, "too_many_requests", fmt.Sprintf("too many refused requests from this address; try again in %d s", secs))
	return true
}

func (a *Authenticator) authenticate(r *http.Request) (*principal.Principal, *refusal, error) {
	if ref := a.checkQuery(r); ref != nil {
		return nil, ref, nil
	}
	if ref := a.checkOrigin(r); ref != nil {
		return nil, ref, nil
	}
	p, ref, err := a.authenticateKey(r)
	if err != nil || ref != nil {
		return nil, ref, err
	}
	if ref := a.checkResourceScope(p); ref != nil {
		return nil, ref, nil
	}
	return p, nil, nil
}

// checkQuery refuses credentials in the URL query.
func (a *Authenticator) checkQuery(r *http.Request) *refusal {
	if name := queryCredential(r.URL); name != "" {
		return &refusal{status: http.StatusBadRequest, reason: audit.ReasonQueryCredential,
			challenge: httpx.Challenge{Error: "invalid_request",
				Description: "credentials in the URL query are refused because URLs end up in logs; send the key in the Authorization header (Bearer) or X-API-Key"},
			details: map[string]any{"parameter": name}}
	}
	return nil
}

// checkOrigin refuses browser requests from origins not allowed on /mcp.
func (a *Authenticator) checkOrigin(r *http.Request) *refusal {
	if origins := r.Header.Values("Origin"); len(origins) > 0 {
		// DNS-rebinding and cross-site protection (MCP transports spec,
		// "Security Warning": servers MUST validate the Origin header).
		if len(origins) > 1 || !a.OriginAllowed(origins[0]) {
			return &refusal{status: http.StatusForbidden, reason: audit.ReasonOrigin,
				description: "requests from this origin are not allowed",
				details:     map[string]any{"origin": truncate(strings.Join(origins, ","), 200)}}
		}
	}
	return nil
}

// authenticateKey verifies the API key the request carries in its
// Authorization (Bearer) or X-API-Key header.
func (a *Authenticator) authenticateKey(r *http.Request) (*principal.Principal, *refusal, error) {
	auths := r.Header.Values("Authorization")
	keys := r.Header.Values("X-Api-Key")
	invalid := func(reason string, details map[string]any) *refusal {
		return &refusal{status: http.StatusUnauthorized, reason: reason,
			challenge: httpx.Challenge{Error: "invalid_token", Description: "the access token is invalid"}, details: details}
	}
	// RFC 6750 §3.1: "If the request lacks any authentication information
	// (e.g., the client was unaware that authentication is necessary or
	// attempted using an unsupported authentication method), the resource
	// server SHOULD NOT include an error code or other error information."
	noBearer := func(reason string, details map[string]any) *refusal {
		return &refusal{status: http.StatusUnauthorized, reason: reason,
			challenge: httpx.Challenge{Scope: strings.Join(a.opts.Scopes, " ")}, details: details}
	}
	var token string
	switch {
	case len(auths)+len(keys) == 0:
		return nil, noBearer(audit.ReasonMissing, nil), nil
	case len(auths)+len(keys) > 1:
		// RFC 6750 §3.1: more than one method → invalid_request (400).
		return nil, &refusal{status: http.StatusBadRequest, reason: audit.ReasonAmbiguous,
			challenge: httpx.Challenge{Error: "invalid_request", Description: "send exactly one credential: one Authorization header or one X-API-Key header"}}, nil
	case len(keys) == 1:
		token = strings.TrimSpace(keys[0])
	default:
		scheme, rest, ok := strings.Cut(strings.TrimSpace(auths[0]), " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return nil, noBearer(audit.ReasonMalformed, map[string]any{"problem": "authorization scheme is not Bearer"}), nil
		}
		if ok {
			token = strings.TrimSpace(rest)
		}
	}
	if token == "" {
		return nil, noBearer(audit.ReasonMalformed, map[string]any{"problem": "empty credential"}), nil
	}
	if !strings.HasPrefix(token, apikeys.KeyPrefix) {
		// Access tokens travel in Authorization only (RFC 6750 §2.1).
		if jwt, ok := a.takesExternal(token); ok && len(keys) == 0 {
			return a.authenticateExternal(r, token, jwt)
		}
		if a.opts.AccessTokens != nil && len(keys) == 0 && looksLikeJWT(token) {
			return a.authenticateJWT(r, token)
		}
		return nil, invalid(audit.ReasonMalformed, map[string]any{"problem": "not an mcpgate credential"}), nil
	}
	res, err := a.opts.Keys.Verify(r.Context(), token)
	if err != nil {
		reason := ""
		switch {
		case errors.Is(err, apikeys.ErrMalformed):
			reason = audit.ReasonMalformed
		case errors.Is(err, apikeys.ErrUnknown):
			reason = audit.ReasonUnknown
		case errors.Is(err, apikeys.ErrRevoked):
			reason = audit.ReasonRevoked
		case errors.Is(err, apikeys.ErrExpired):
			reason = audit.ReasonExpired
		case errors.Is(err, apikeys.ErrDisabledUser):
			reason = audit.ReasonDisabledUser
		default:
			return nil, nil, err
		}
		ref := invalid(reason, nil)
		if reason != audit.ReasonMalformed {
			// The visible prefix is what users see in key lists; it is not secret.
			ref.details = map[string]any{"key_prefix": apikeys.DisplayPrefix(token)}
		}
		// Refusals of a known key carry its id and owner so the audit
		// event says whose key was refused.
		var refused *apikeys.RefusedError
		if errors.As(err, &refused) {
			ref.keyID, ref.userID = refused.KeyID, refused.UserID
			if refused.Detail != "" {
				if ref.details == nil {
					ref.details = map[string]any{}
				}
				ref.details["problem"] = refused.Detail
			}
		}
		return nil, ref, nil
	}
	u, err := a.users.get(r.Context(), res.UserID(), a.opts.Users)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, invalid(audit.ReasonUnknown, map[string]any{"problem": "owner no longer exists"}), nil
		}
		return nil, nil, err
	}
	if u.Disabled {
		ref := invalid(audit.ReasonDisabledUser, nil)
		ref.keyID, ref.userID = res.KeyID(), u.ID
		return nil, ref, nil
	}
	p := &principal.Principal{
		UserID: u.ID, Email: u.Email, Name: u.DisplayName, Roles: u.Roles,
		Scopes: res.Scopes(), Method: principal.MethodAPIKey, CredentialID: res.KeyID(),
		ExpiresAt: res.ExpiresAt(),
	}
	if res.Kind() == store.KeyKindSession && a.opts.SessionClaims != nil {
		// The browser session's custom claims, and the roles of its
		// "roles" claim next to the user's own (never "admin").
		cc, err := a.claims.get(r.Context(), res.KeyID(), a.opts.SessionClaims)
		if err != nil {
			return nil, nil, err
		}
		p.Claims, p.Roles = cc.claims, principal.MergeRoles(u.Roles, cc.roles)
	}
	return p, nil, nil
}

// claimsCache keeps the custom claims of session keys briefly (they never
// change during a session), so a cached key check costs no extra read.
type claimsCache struct {
	ttl     time.Duration
	mu      sync.Mutex
	entries map[string]cachedClaims
}

type cachedClaims struct {
	claims map[string]any
	roles  []string // principal.ClaimRoles of the "roles" claim
	until  time.Time
}

func (c *claimsCache) get(ctx context.Context, keyID string, load func(context.Context, string) (map[string]any, error)) (cachedClaims, error) {
	now := time.Now()
	c.mu.Lock()
	e, ok := c.entries[keyID]
	c.mu.Unlock()
	if ok && now.Before(e.until) {
		return e, nil
	}
	claims, err := load(ctx, keyID)
	if err != nil {
		return cachedClaims{}, err
	}
	e = cachedClaims{claims: claims, roles: principal.ClaimRoles(claims[principal.RolesClaim]), until: now.Add(c.ttl)}
	c.mu.Lock()
	if len(c.entries) >= userCacheMax {
		clear(c.entries)
	}
	c.entries[keyID] = e
	c.mu.Unlock()
	return e, nil
}

// queryCredential scans the raw query itself, splitting on both '&' and ';':
// url.Query silently drops pairs that contain ';', which would let
// "?x=1;token=…" slip past.
func queryCredential(u *url.URL) string {
	for _, pair := range strings.FieldsFunc(u.RawQuery, func(r rune) bool { return r == '&' || r == ';' }) {
		rawName, rawValue, _ := strings.Cut(pair, "=")
		name, err1 := url.QueryUnescape(rawName)
		value, err2 := url.QueryUnescape(rawValue)
		if err1 != nil || err2 != nil {
			name, value = rawName, rawValue
		}
		for _, cred := range queryCredentialNames {
			if strings.EqualFold(name, cred) {
				return truncate(name, 64)
			}
		}
		if strings.Contains(value, apikeys.KeyPrefix) || strings.Contains(name, apikeys.KeyPrefix) {
			return truncate(strings.ReplaceAll(name, apikeys.KeyPrefix, "…"), 64)
		}
	}
	return ""
}

// normalizeOrigin lower-cases an origin and drops a default port, so that
// "HTTPS://App.example.com:443" matches "https://app.example.com".
func normalizeOrigin(o string) string {
	o = strings.ToLower(strings.TrimRight(strings.TrimSpace(o), "/"))
	switch {
	case strings.HasPrefix(o, "https://"):
		o = strings.TrimSuffix(o, ":443")
	case strings.HasPrefix(o, "http://"):
		o = strings.TrimSuffix(o, ":80")
	}
	return o
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// userCache keeps user profiles briefly so a cached key check does not cost
// a user read. Disable and password changes drop entries immediately.
type userCache struct {
	ttl     time.Duration
	mu      sync.Mutex
	entries map[string]cachedUser
}

type cachedUser struct {
	u     store.User
	until time.Time
}

const userCacheMax = 10_000

func (c *userCache) get(ctx context.Context, id string, load func(context.Context, string) (store.User, error)) (store.User, error) {
	now := time.Now()
	if c.ttl > 0 {
		c.mu.Lock()
		e, ok := c.entries[id]
		c.mu.Unlock()
		if ok && now.Before(e.until) {
			return e.u, nil
		}
	}
	u, err := load(ctx, id)
	if err != nil || c.ttl <= 0 {
		return u, err
	}
	c.mu.Lock()
	if len(c.entries) >= userCacheMax {
		clear(c.entries)
	}
	c.entries[id] = cachedUser{u: u, until: now.Add(c.ttl)}
	c.mu.Unlock()
	return u, nil
}

func (c *userCache) drop(id string) {
	c.mu.Lock()
	delete(c.entries, id)
	c.mu.Unlock()
}
