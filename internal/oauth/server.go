package oauth

// This file builds the authorization server core: the endpoints of OAuth
// 2.1 (draft-ietf-oauth-v2-1) that MCP clients use after discovery —
// authorization (authorize.go), the consent decision (consent.go, with
// the page in internal/web), the token endpoint (token.go, grants.go,
// refresh.go), revocation (RFC 7009, revoke.go), introspection (RFC 7662,
// introspect.go) and OIDC UserInfo (userinfo.go) — and the grant-state
// check authn uses for access tokens (GrantActive).
//
// The model (internal/store/oauth.go): a pending request becomes, on
// approval, a grant holding a single-use authorization code; redeeming the
// code issues an access token (a JWT whose "gid" is the grant id) and
// starts the grant's refresh-token family. Revoking the grant revokes all
// of it. Consents ("connected apps") remember, per user, client and
// resource, which scopes the user allowed; revoking one revokes its
// grants.

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/tokens"
	"github.com/mcpgate/mcpgate/verify"
)

// Identity scopes mcpgate offers next to every resource's own scopes.
const (
	ScopeOpenID        = "openid"         // OIDC Core §3.1.2.1: an ID token, and /userinfo
	ScopeProfile       = "profile"        // OIDC Core §5.4: the name claim
	ScopeEmail         = "email"          // OIDC Core §5.4: email and email_verified
	ScopeOfflineAccess = "offline_access" // OIDC Core §11 (see token.go for how refresh tokens are decided)
)

// IdentityScopes are the scopes every resource accepts besides its own.
var IdentityScopes = []string{ScopeOpenID, ScopeProfile, ScopeEmail, ScopeOfflineAccess}

// Defaults of ServerOptions.
const (
	DefaultCodeTTL         = 10 * time.Minute    // OAuth 2.1 §4.1.2: "A maximum authorization code lifetime of 10 minutes is RECOMMENDED"
	DefaultRequestTTL      = 10 * time.Minute    // the pending request across login and consent
	DefaultRefreshIdle     = 7 * 24 * time.Hour  // a refresh token unused this long dies
	DefaultRefreshAbsolute = 90 * 24 * time.Hour // no refresh after this long since the authorization
	DefaultRefreshGrace    = 30 * time.Second    // a rotated refresh token may be retried this long
	DefaultGrantCacheTTL   = 2 * time.Second     // GrantActive answers are reused this long (at most)
	DefaultAuthorizeBurst  = 60                  // authorization requests per client IP at once
	DefaultAuthorizeEvery  = time.Second         // then one more per second
	// CleanBatch is how many rows per kind the cleaner deletes per round.
	CleanBatch = 500
)

// Resource is a protected resource mcpgate issues tokens for (RFC 8707):
// the MCP endpoint, with its scopes.
type Resource struct {
	URL    string // the resource identifier, byte for byte as advertised (RFC 9728 §3.3); the token audience
	Name   string // shown on the consent page
	Scopes []string
	// ScopeDescriptions explain scopes in plain words on the consent page
	// (optional; common forms like "x:read" are described automatically).
	ScopeDescriptions map[string]string
}

// ServerOptions configure a Server. Store, Clients, Tokens, Audit, Users,
// Issuer and at least one Resource are required.
type ServerOptions struct {
	Store    store.Store
	Clients  *Clients
	Tokens   *tokens.Issuer
	Audit    audit.Recorder
	Sessions *session.Manager // the browser session of /authorize (nil: every request goes to the login page)
	Users    *identity.Service

	// Issuer is the authorization server's issuer identifier, byte for
	// byte as in its metadata (RFC 8414 §2; the "iss" of RFC 9207).
	Issuer string
	// Resources mcpgate serves; the first is the default when a request
	// names none.
	Resources []Resource

	CodeTTL         time.Duration // default 10 min
	RequestTTL      time.Duration // default 10 min
	RefreshIdle     time.Duration // default 7 days
	RefreshAbsolute time.Duration // default 90 days
	RefreshGrace    time.Duration // default 30 s; negative: no grace window
	GrantCacheTTL   time.Duration // default 2 s, at most 2 s; negative: no cache

	// AccessTokenClaims names the custom claims of the user's browser
	// session (--access-token-claims) copied into the grant when the user
	// approves, and from the grant into every access token it yields
	// (claims.go). Empty: none. Reserved protocol claims
	// (principal.ReservedClaim) are never copied.
	AccessTokenClaims []string

	// IDTokenRoles (--id-token-roles) puts "roles" into ID tokens and
	// /userinfo answers of grants with the openid scope: the user's
	// stored roles and the approving sign-in's claim roles, never admin
	// (idroles.go). Off: no roles claim.
	IDTokenRoles bool

	// ServerKey (the --server-key, at least 32 bytes; the same on every
	// node) derives the AES-256-GCM key that seals a rotated refresh
	// token's successor for the grace window (refresh.go). nil: a random
	// key per process: a grace retry is then refused (invalid_grant, the
	// family lives on) on another node or after a restart.
	ServerKey []byte

	// LoginPath and ConsentPath are the pages of internal/web (defaults
	// "/login" and "/oauth/consent").
	LoginPath, ConsentPath string
	// ErrorPage renders an HTML error in the site's layout (wire
	// web.Handler.ErrorPage); nil: a small built-in page.
	ErrorPage func(w http.ResponseWriter, r *http.Request, status int, title, message string)

	// AuthorizeLimiter limits requests to the authorization endpoint per
	// client IP: each may create a pending-request row. nil: an in-memory
	// limiter with a burst of DefaultAuthorizeBurst, then one request per
	// DefaultAuthorizeEvery (generous: users behind one NAT share it).
	AuthorizeLimiter ratelimit.Limiter

	Now    func() time.Time
	Logger *slog.Logger
}

// Server is the authorization server. Safe for concurrent use.
type Server struct {
	opts      ServerOptions
	st        store.Store
	log       *slog.Logger
	now       func() time.Time
	resources []Resource
	verifiers []*verify.Verifier // one per resource, same order
	grants    grantCache
}

// NewServer returns the server. It panics when a required option is
// missing (a wiring mistake).
func NewServer(opts ServerOptions) *Server {
	if opts.Store == nil || opts.Clients == nil || opts.Tokens == nil || opts.Audit == nil || opts.Users == nil {
		panic("oauth.NewServer: Store, Clients, Tokens, Audit and Users are required")
	}
	if opts.Issuer == "" || len(opts.Resources) == 0 {
		panic("oauth.NewServer: Issuer and at least one Resource are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.CodeTTL, DefaultCodeTTL)
	def(&opts.RequestTTL, DefaultRequestTTL)
	def(&opts.RefreshIdle, DefaultRefreshIdle)
	def(&opts.RefreshAbsolute, DefaultRefreshAbsolute)
	if opts.RefreshGrace == 0 {
		opts.RefreshGrace = DefaultRefreshGrace
	}
	if opts.GrantCacheTTL == 0 || opts.GrantCacheTTL > DefaultGrantCacheTTL {
		opts.GrantCacheTTL = DefaultGrantCacheTTL
	}
	opts.LoginPath = cmp.Or(opts.LoginPath, "/login")
	opts.ConsentPath = cmp.Or(opts.ConsentPath, "/oauth/consent")
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.AuthorizeLimiter == nil {
		opts.AuthorizeLimiter = ratelimit.NewMemory(DefaultAuthorizeEvery, DefaultAuthorizeBurst, 100_000)
	}
	for _, name := range opts.AccessTokenClaims {
		if name == "" || principal.ReservedClaim(name) {
			panic(fmt.Sprintf("oauth.NewServer: AccessTokenClaims names %q, which is not a custom claim", name))
		}
	}
	opts.AccessTokenClaims = slices.Clone(opts.AccessTokenClaims)
	s := &Server{opts: opts, st: opts.Store, log: opts.Logger, now: opts.Now}
	for _, r := range opts.Resources {
		if r.URL == "" {
			panic("oauth.NewServer: a Resource has no URL")
		}
		r.Scopes = slices.Clone(r.Scopes)
		s.resources = append(s.resources, r)
		v, err := verify.New(verify.Options{Issuer: opts.Issuer, Audience: r.URL, Keys: opts.Tokens.KeySet(), Now: opts.Now})
		if err != nil {
			panic("oauth.NewServer: " + err.Error())
		}
		s.verifiers = append(s.verifiers, v)
	}
	s.grants = grantCache{ttl: opts.GrantCacheTTL, entries: map[string]grantEntry{}}
	return s
}

// Issuer returns the issuer identifier.
func (s *Server) Issuer() string { return s.opts.Issuer }

// Resources returns the resources the server issues tokens for.
func (s *Server) Resources() []Resource { return slices.Clone(s.resources) }

// Routes mounts the endpoints below the issuer's path (for the issuer
// https://host that is /authorize, /token, /revoke, /introspect and
// /userinfo, which are also the root fallbacks of the 2025-03-26 MCP
// authorization spec). The metadata, /register and /jwks are mounted by
// the caller (MetadataHandler, Clients.RegisterHandler,
// tokens.Issuer.JWKSHandler).
func (s *Server) Routes(mux *http.ServeMux) {
	base := issuerPath(s.opts.Issuer)
	mux.Handle(base+"/authorize", http.HandlerFunc(s.authorize))
	mux.Handle(base+"/token", cors(http.HandlerFunc(s.token)))
	mux.Handle(base+"/revoke", cors(http.HandlerFunc(s.revoke)))
	mux.Handle(base+"/introspect", cors(http.HandlerFunc(s.introspect)))
	mux.Handle(base+"/userinfo", cors(http.HandlerFunc(s.userinfo)))
}

// issuerPath is the path of the issuer URL without a trailing slash.
func issuerPath(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil {
		return ""
	}
	return strings.TrimRight(u.EscapedPath(), "/")
}

// cors lets browser-based clients (the MCP Inspector, web apps) call the
// back-channel endpoints. They take no cookies: credentials travel in the
// body or the Authorization header the client sets itself, so any origin
// may call and no Access-Control-Allow-Credentials is sent.
func cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Add("Vary", "Origin")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Mcp-Protocol-Version")
			h.Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", "WWW-Authenticate")
		next.ServeHTTP(w, r)
	})
}

// resourceByURL returns the served resource a resource indicator names.
// RFC 8707 §2: the value "MUST be an absolute URI … MUST NOT include a
// fragment component". mcpgate compares it with the served resources after
// a light normalisation (scheme and host case, a default port, one
// trailing slash), so that "https://Host/mcp/" names https://host/mcp; the
// token's audience is always the configured URL.
func (s *Server) resourceByURL(raw string) (Resource, bool) {
	for _, r := range s.resources {
		if r.URL == raw {
			return r, true
		}
	}
	want, ok := normalizeResource(raw)
	if !ok {
		return Resource{}, false
	}
	for _, r := range s.resources {
		if n, ok := normalizeResource(r.URL); ok && n == want {
			return r, true
		}
	}
	return Resource{}, false
}

func normalizeResource(raw string) (string, bool) {
	if raw == "" || len(raw) > 2048 || strings.ContainsAny(raw, "#\\ ") {
		return "", false
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" || u.User != nil || u.Opaque != "" {
		return "", false
	}
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	host = strings.TrimSuffix(host, map[string]string{"https": ":443", "http": ":80"}[scheme])
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	q := ""
	if u.RawQuery != "" {
		q = "?" + u.RawQuery
	}
	return scheme + "://" + host + path + q, true
}

// knownScopes are the scopes a request for r may name.
func knownScopes(r Resource) []string {
	return append(slices.Clone(r.Scopes), IdentityScopes...)
}

// ScopeView is a scope with its description in plain words.
type ScopeView struct {
	Name        string
	Description string
}

// describeScopes explains scopes for people.
func describeScopes(r Resource, scopes []string) []ScopeView {
	out := make([]ScopeView, 0, len(scopes))
	for _, sc := range scopes {
		out = append(out, ScopeView{Name: sc, Description: describeScope(r, sc)})
	}
	return out
}

func describeScope(r Resource, sc string) string {
	if d := r.ScopeDescriptions[sc]; d != "" {
		return d
	}
	name := cmp.Or(r.Name, "this server")
	switch {
	case sc == ScopeOpenID:
		return "Confirm who you are (your mcpgate account id)"
	case sc == ScopeProfile:
		return "See your name"
	case sc == ScopeEmail:
		return "See your email address"
	case sc == ScopeOfflineAccess:
		return "Stay connected while you are away (renew its access without asking you again)"
	case strings.HasSuffix(sc, ":read"):
		return "Read your " + strings.TrimSuffix(sc, ":read") + " data through the tools of " + name
	case strings.HasSuffix(sc, ":write"):
		return "Change your " + strings.TrimSuffix(sc, ":write") + " data through the tools of " + name + " (for example, make changes on your behalf)"
	}
	return "Use the \"" + sc + "\" permission of " + name
}

// ---- secrets ----

// newSecret returns 256 random bits, base64url, with prefix, and the
// SHA-256 of the whole string.
func newSecret(prefix string) (string, []byte) {
	var b [32]byte
	rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	s := prefix + base64.RawURLEncoding.EncodeToString(b[:])
	return s, hashSecret(s)
}

func hashSecret(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// refreshTokenPrefix marks mcpgate refresh tokens for secret scanners
// ("mcpgr_" + 43 base64url characters). Authorization codes carry no
// prefix: they live minutes and are single use.
const refreshTokenPrefix = "mcpgr_"

// ---- GrantActive ----

// GrantActive reports whether the grant an access token names (its "gid")
// is live: not revoked, not past its absolute lifetime, and not deleted
// (a deleted client or user takes its grants along). authn calls it for
// every JWT; answers are cached for at most GrantCacheTTL (2 s), and a
// revocation in this process evicts at once, so a revoked grant's tokens
// stop working within seconds on every node.
func (s *Server) GrantActive(ctx context.Context, grantID string) (bool, error) {
	now := s.now()
	if active, ok := s.grants.get(grantID, now); ok {
		return active, nil
	}
	gen := s.grants.generation()
	g, err := s.st.GetOAuthGrant(ctx, grantID)
	active := false
	switch {
	case err == nil:
		active = g.Active(now)
	case errors.Is(err, store.ErrNotFound):
	default:
		return false, fmt.Errorf("oauth: grant state: %w", err)
	}
	s.grants.put(grantID, active, now, gen)
	return active, nil
}

// grantCache holds GrantActive answers briefly. It is bounded (cleared
// when full) and a generation counter keeps an answer read before an
// eviction from being cached after it.
type grantCache struct {
	ttl     time.Duration
	mu      sync.Mutex
	gen     uint64
	entries map[string]grantEntry
}

type grantEntry struct {
	active bool
	until  time.Time
}

const grantCacheMax = 100_000

func (c *grantCache) get(id string, now time.Time) (bool, bool) {
	if c.ttl <= 0 {
		return false, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if !ok || !now.Before(e.until) {
		return false, false
	}
	return e.active, true
}

func (c *grantCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (c *grantCache) put(id string, active bool, now time.Time, gen uint64) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.entries) >= grantCacheMax {
		clear(c.entries)
	}
	c.entries[id] = grantEntry{active: active, until: now.Add(c.ttl)}
}

// evict forgets grants (after a revocation in this process).
func (c *grantCache) evict(ids ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, id := range ids {
		delete(c.entries, id)
	}
}

// ---- upkeep ----

// Clean deletes expired pending requests, unredeemed codes, grants that
// ended (expired or revoked) more than retention ago and stale refresh
// tokens, in batches, and returns how many rows it deleted. Several nodes
// may clean at once.
func (s *Server) Clean(ctx context.Context, retention time.Duration) (int, error) {
	now := s.now()
	total := 0
	for ctx.Err() == nil {
		n, err := s.st.DeleteExpiredOAuth(ctx, now, now.Add(-max(retention, 0)), CleanBatch)
		total += n
		if err != nil {
			return total, fmt.Errorf("oauth: clean: %w", err)
		}
		if n < CleanBatch {
			break
		}
	}
	return total, ctx.Err()
}

// Run cleans at once and then every `every` (default 1 h) until ctx ends.
func (s *Server) Run(ctx context.Context, every, retention time.Duration) {
	if every <= 0 {
		every = time.Hour
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n, err := s.Clean(ctx, retention); err != nil && ctx.Err() == nil {
			s.log.Warn("oauth: cleaning expired authorization state failed; will retry", "err", err)
		} else if n > 0 {
			s.log.Info("oauth: deleted expired authorization state", "rows", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RevokeUserGrants revokes every live grant of a user (their refresh
// tokens at once, their access tokens within seconds) and returns how many
// it revoked. Consents stay: the user need not consent again, only
// authorize again. Wire it to password changes and disables
// (identity.Service.OnCredentialsChangedContext).
func (s *Server) RevokeUserGrants(ctx context.Context, userID, reason string) (int, error) {
	gs, err := s.st.RevokeUserOAuthGrants(ctx, userID, s.now(), reason)
	if err != nil {
		return 0, fmt.Errorf("oauth: revoke grants of user: %w", err)
	}
	ids := make([]string, 0, len(gs))
	for _, g := range gs {
		ids = append(ids, g.ID)
	}
	s.grants.evict(ids...)
	if len(gs) > 0 {
		s.opts.Audit.Record(ctx, audit.Event{
			Type: audit.TypeOAuthGrantRevoked, Outcome: store.OutcomeAllow, Reason: reason, UserID: userID,
			Details: map[string]any{"grants": len(gs), "grant_ids": ids},
		})
	}
	return len(gs), nil
}

// ---- shared HTTP helpers ----

// backChannel is the common start of the back-channel endpoints (token,
// revoke, introspect): responses are never cached, only POST is served, and
// the client authenticates (RFC 6749 §2.3). ok is false when the answer has
// been written.
func (s *Server) backChannel(w http.ResponseWriter, r *http.Request, clause string) (store.OAuthClient, bool) {
	writeNoStore(w)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		httpx.WriteOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "use POST ("+clause+")")
		return store.OAuthClient{}, false
	}
	cl, err := s.opts.Clients.AuthenticateClient(r.Context(), r)
	if err != nil {
		var aerr *ClientAuthError
		if errors.As(err, &aerr) {
			aerr.Write(w)
		} else {
			s.unavailable(w, r, err)
		}
		return store.OAuthClient{}, false
	}
	return cl, true
}

// writeNoStore marks a response as not cacheable (RFC 6749 §5.1).
func writeNoStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// singleValues refuses parameters given more than once (RFC 6749 §3.1,
// §3.2: "Request and response parameters MUST NOT be included more than
// once"), except those in multi. It returns the first offender.
func singleValues(v url.Values, multi ...string) string {
	for k, vs := range v {
		if len(vs) > 1 && !slices.Contains(multi, k) {
			return k
		}
	}
	return ""
}

// clip shortens attacker-chosen text for audit details.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// redirectHost is where a redirect URI sends the browser, for people: the
// host of an http(s) URI, or the scheme of a private-use one ("cursor:").
func redirectHost(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return ""
	}
	if u.Scheme == "http" || u.Scheme == "https" {
		return u.Host
	}
	return u.Scheme + ":"
}

// errorPage answers with a readable HTML error: the authorization endpoint
// uses it whenever the client or its redirect URI cannot be trusted (RFC
// 6749 §4.1.2.1: "the authorization server SHOULD inform the resource
// owner of the error and MUST NOT automatically redirect the user-agent to
// the invalid redirection URI").
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, status int, title, message string) {
	writeNoStore(w)
	if s.opts.ErrorPage != nil {
		s.opts.ErrorPage(w, r, status, title, message)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_ = fallbackErrorPage.Execute(w, struct {
		Status         int
		Title, Message string
	}{status, title, message})
}

var fallbackErrorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · mcpgate</title>
<body style="font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#1b1f27">
<p style="color:#8a93a2;text-transform:uppercase;font-size:.8rem;font-weight:650">Error {{.Status}}</p>
<h1 style="font-size:1.5rem">{{.Title}}</h1>
<p>{{.Message}}</p>
</body></html>
`))

// unavailable answers a storage or signing failure on a JSON endpoint.
func (s *Server) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	if !errors.Is(err, context.Canceled) {
		s.log.LogAttrs(r.Context(), slog.LevelError, "oauth: request failed",
			slog.String("path", r.URL.Path), slog.Any("err", err))
	}
	w.Header().Set("Retry-After", "5")
	httpx.WriteOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the authorization server cannot complete this request right now; try again shortly")
}
