package oauth

// This file is the client registry of the authorization server: how a
// client_id becomes a known client (MCP authorization, "Client
// Registration": Client ID Metadata Documents, pre-registration, dynamic
// registration), the operator's static clients, last-use bookkeeping and
// the reaper that keeps registrations from growing without bound.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/store"
)

// Audit event types of the client registry.
const (
	EventClientRegistered          = "client.registered"
	EventClientRegistrationRefused = "client.registration_refused"
	EventClientFetched             = "client.fetched"
	EventClientFetchFailed         = "client.fetch_failed"
	EventClientReaped              = "client.reaped"
	EventClientCreated             = "client.created" // by an operator
	EventClientDeleted             = "client.deleted" // by an operator
	EventClientAuthFailed          = "client.auth_failed"
)

// Defaults for ClientsOptions.
const (
	DefaultUnusedTTL        = 24 * time.Hour
	DefaultIdleTTL          = 90 * 24 * time.Hour
	DefaultTouchInterval    = time.Minute
	DefaultCIMDTimeout      = 5 * time.Second
	DefaultCIMDMaxBytes     = 16 << 10
	DefaultCIMDMinCache     = time.Minute
	DefaultCIMDMaxCache     = 24 * time.Hour
	DefaultCIMDDefaultCache = time.Hour
	DefaultMaxRegisterBytes = 64 << 10
	// ReapBatch is how many clients the reaper deletes per statement.
	ReapBatch = 500
)

// Errors of Resolve and AuthenticateClient. They come wrapped in a
// *ClientError whose Description explains what is wrong in words that may
// be shown to the user or client developer. Neither kind of error has a
// verified redirect URI behind it: the authorization endpoint must answer
// with its own error page, never with a redirect.
var (
	// ErrUnknownClient: no client has this client_id (RFC 6749 §4.1.2.1:
	// "invalid client identifier").
	ErrUnknownClient = errors.New("unknown client")
	// ErrInvalidClientMetadata: the client_id is a Client ID Metadata
	// Document URL, but the document cannot be used: the URL or its host
	// is not allowed, the fetch failed, or the document is invalid.
	ErrInvalidClientMetadata = errors.New("invalid client metadata")
)

// ClientError is a refusal of Resolve, with a readable Description and a
// short machine Reason (the audit reason).
type ClientError struct {
	Err         error  // ErrUnknownClient or ErrInvalidClientMetadata
	ClientID    string // as presented (may be attacker-chosen: quote it when displaying)
	Reason      string // e.g. "unknown_client", "address_not_allowed", "client_id_mismatch"
	Description string
}

func (e *ClientError) Error() string { return e.Description }
func (e *ClientError) Unwrap() error { return e.Err }

// Resolver looks up the addresses of a host name; *net.Resolver
// implements it. ClientsOptions.Resolver replaces the system resolver in
// tests (and lets them play DNS rebinding).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// ClientsOptions configure a Clients. Zero values select the defaults.
type ClientsOptions struct {
	// SupportedScopes are the scopes the server offers. Registered scope
	// lists are cut down to them; empty: no filtering.
	SupportedScopes []string

	// CIMDAllowHosts, when not empty, are the only hosts whose Client ID
	// Metadata Documents are fetched; CIMDDenyHosts are never fetched
	// (deny wins). An entry "example.com" matches that host only; an
	// entry ".example.com" or "*.example.com" matches its subdomains.
	CIMDAllowHosts, CIMDDenyHosts []string
	// CIMDAllowLoopback lets documents be fetched from loopback addresses.
	// For tests only (draft-ietf-oauth-client-id-metadata-document §8.6:
	// "Authorization servers MUST NOT apply this exception in production
	// deployments").
	CIMDAllowLoopback bool
	// CIMDRootCAs replaces the system roots for document fetches (tests).
	CIMDRootCAs *x509.CertPool
	// Resolver replaces the system DNS resolver for document fetches.
	Resolver Resolver
	// CIMDTimeout bounds one fetch (default 5 s); CIMDMaxBytes the document
	// size (default 16 KiB).
	CIMDTimeout  time.Duration
	CIMDMaxBytes int64
	// Cache lifetime bounds for fetched documents (defaults 1 min, 24 h)
	// and the lifetime when the response has no caching headers (1 h).
	CIMDMinCache, CIMDMaxCache, CIMDDefaultCache time.Duration

	// RegistrationLimiter limits dynamic registrations per client IP (nil:
	// no limit). Give it a generous burst: hosted connectors share egress
	// IPs.
	RegistrationLimiter ratelimit.Limiter
	// MaxRegisterBytes bounds a registration request body (default 64 KiB).
	MaxRegisterBytes int64

	// UnusedTTL: registrations (dcr, cimd) never used are reaped this long
	// after their creation (default 24 h); IdleTTL: used ones this long
	// after their last use (default 90 days). Negative: never.
	UnusedTTL, IdleTTL time.Duration
	// TouchInterval: last-used times are written at most this often per
	// client (default 1 min).
	TouchInterval time.Duration

	Now    func() time.Time
	Logger *slog.Logger
}

// Clients is the client registry. Safe for concurrent use.
type Clients struct {
	st    store.ClientStore
	rec   audit.Recorder
	opts  ClientsOptions
	fetch *fetcher

	mu      sync.Mutex
	flights map[string]*flight // CIMD fetches under way, by URL
}

// flight is one CIMD fetch that concurrent resolutions of the same URL
// wait for.
type flight struct {
	done chan struct{}
	c    store.OAuthClient
	err  error
}

// NewClients returns the registry over st (any store.Store will do). st
// and rec must not be nil.
func NewClients(st store.ClientStore, rec audit.Recorder, opts ClientsOptions) *Clients {
	if st == nil || rec == nil {
		panic("oauth.NewClients: nil store or audit recorder")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.UnusedTTL == 0 {
		opts.UnusedTTL = DefaultUnusedTTL
	}
	if opts.IdleTTL == 0 {
		opts.IdleTTL = DefaultIdleTTL
	}
	if opts.TouchInterval <= 0 {
		opts.TouchInterval = DefaultTouchInterval
	}
	if opts.CIMDTimeout <= 0 {
		opts.CIMDTimeout = DefaultCIMDTimeout
	}
	if opts.CIMDMaxBytes <= 0 {
		opts.CIMDMaxBytes = DefaultCIMDMaxBytes
	}
	if opts.CIMDMinCache <= 0 {
		opts.CIMDMinCache = DefaultCIMDMinCache
	}
	if opts.CIMDMaxCache <= 0 {
		opts.CIMDMaxCache = DefaultCIMDMaxCache
	}
	if opts.CIMDMaxCache < opts.CIMDMinCache {
		opts.CIMDMaxCache = opts.CIMDMinCache
	}
	if opts.CIMDDefaultCache <= 0 {
		opts.CIMDDefaultCache = DefaultCIMDDefaultCache
	}
	if opts.MaxRegisterBytes <= 0 {
		opts.MaxRegisterBytes = DefaultMaxRegisterBytes
	}
	return &Clients{st: st, rec: rec, opts: opts, fetch: newFetcher(opts), flights: map[string]*flight{}}
}

// Resolve finds the client named by clientID, as the authorization
// endpoint sees it:
//
//   - an https URL is a Client ID Metadata Document URL
//     (draft-ietf-oauth-client-id-metadata-document §3). A client an
//     operator registered under that URL wins (§7.2); otherwise the
//     document is used from the cache while fresh, and fetched (§5) and
//     validated (§4) when not;
//   - anything else is looked up among registered clients.
//
// Refusals are *ClientError wrapping ErrUnknownClient or
// ErrInvalidClientMetadata; other errors are internal (a database down).
// §5.1: "If the authorization server attempts to fetch the Client ID
// Metadata Document, and fetching the metadata document fails, the
// authorization server SHOULD abort the authorization request": failed
// fetches are not cached and no stale copy is used.
func (c *Clients) Resolve(ctx context.Context, clientID string) (store.OAuthClient, error) {
	if !plausibleClientID(clientID) {
		return store.OAuthClient{}, unknownClient(clientID)
	}
	if !isCIMDURL(clientID) {
		cl, err := c.st.GetOAuthClient(ctx, clientID)
		if errors.Is(err, store.ErrNotFound) {
			return store.OAuthClient{}, unknownClient(clientID)
		}
		return cl, err
	}
	return c.resolveCIMD(ctx, clientID, false)
}

// lookup finds a client for client authentication at the token,
// revocation and introspection endpoints. A CIMD client whose cached
// document went stale is still used as cached: its identity was
// established when it was authorised, and a refresh must not fail because
// the client's web site is down. Only a CIMD client never seen is fetched.
func (c *Clients) lookup(ctx context.Context, clientID string) (store.OAuthClient, error) {
	if !plausibleClientID(clientID) {
		return store.OAuthClient{}, unknownClient(clientID)
	}
	if !isCIMDURL(clientID) {
		cl, err := c.st.GetOAuthClient(ctx, clientID)
		if errors.Is(err, store.ErrNotFound) {
			return store.OAuthClient{}, unknownClient(clientID)
		}
		return cl, err
	}
	return c.resolveCIMD(ctx, clientID, true)
}

func unknownClient(clientID string) *ClientError {
	return &ClientError{Err: ErrUnknownClient, ClientID: clientID, Reason: "unknown_client", Description: "unknown client_id"}
}

// maxClientIDLen bounds a client_id (CIMD URLs included).
const maxClientIDLen = 2048

// plausibleClientID rejects what cannot be a client_id before any lookup:
// empty, overlong, non-printable or non-ASCII strings.
func plausibleClientID(id string) bool {
	if id == "" || len(id) > maxClientIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= 0x20 || id[i] >= 0x7f {
			return false
		}
	}
	return true
}

// isCIMDURL reports whether a client_id is meant as a Client ID Metadata
// Document URL. mcpgate's own client ids never start with "https://"
// (§7.1: an authorization server that generates client ids "SHOULD ensure
// that the client_id strings it generates do not start with https://").
func isCIMDURL(id string) bool { return strings.HasPrefix(id, "https://") }

// StaticClient is what an operator registers (mcpgate client add).
type StaticClient struct {
	Name         string
	RedirectURIs []string
	// Confidential clients get a secret (client_secret_basic or
	// client_secret_post); public ones authenticate with "none" and PKCE.
	Confidential bool
	Scopes       []string // empty: any scope the server offers
	// GrantTypes empty: authorization_code + refresh_token, or
	// client_credentials only for a confidential client without redirect
	// URIs. A client_credentials client needs Scopes (the grant refuses a
	// client without a scope list).
	GrantTypes      []string
	ApplicationType string // "", "web" or "native" ("": inferred from the redirect URIs)
}

// ValidationError says which field of a StaticClient is wrong.
type ValidationError struct {
	Field   string // "name", "redirect_uris", "scopes", "grant_types", "application_type"
	Message string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }

// CreateStatic registers an operator's client and returns it with its
// secret (confidential clients only; shown once: only its SHA-256 is
// kept). It follows the same rules as dynamic registration.
func (c *Clients) CreateStatic(ctx context.Context, req StaticClient) (store.OAuthClient, string, error) {
	name := strings.TrimSpace(req.Name)
	if name == "" {
		return store.OAuthClient{}, "", &ValidationError{"name", "required"}
	}
	if msg := checkDisplayText(name, maxNameLen); msg != "" {
		return store.OAuthClient{}, "", &ValidationError{"name", msg}
	}
	switch req.ApplicationType {
	case "", AppTypeWeb, AppTypeNative:
	default:
		return store.OAuthClient{}, "", &ValidationError{"application_type", `must be "web" or "native"`}
	}
	method := AuthMethodNone
	if req.Confidential {
		method = AuthMethodClientSecretBasic
	}
	grants := req.GrantTypes
	if len(grants) == 0 {
		// A confidential client without redirect URIs is a service
		// (client_credentials only); every other client signs users in and
		// gets client_credentials only when asked for (GrantTypes): a
		// client that acts for users should not also act without one.
		if len(req.RedirectURIs) > 0 || !req.Confidential {
			grants = []string{GrantAuthorizationCode, GrantRefreshToken}
		} else {
			grants = []string{GrantClientCredentials}
		}
	}
	grants, responses, msg := checkGrantTypes(grants, nil, false, method)
	if msg != "" {
		return store.OAuthClient{}, "", &ValidationError{"grant_types", msg}
	}
	uris, appType := []string(nil), req.ApplicationType
	if slices.Contains(grants, GrantAuthorizationCode) {
		if len(req.RedirectURIs) == 0 {
			return store.OAuthClient{}, "", &ValidationError{"redirect_uris", "at least one redirect URI is required for the authorization_code grant"}
		}
		if uris, appType, msg = validateRedirectURIs(req.RedirectURIs, req.ApplicationType); msg != "" {
			return store.OAuthClient{}, "", &ValidationError{"redirect_uris", msg}
		}
	} else if len(req.RedirectURIs) > 0 {
		return store.OAuthClient{}, "", &ValidationError{"redirect_uris", "redirect URIs need the authorization_code grant"}
	} else if appType == "" {
		appType = AppTypeWeb
	}
	scopes, msg := checkScopes(req.Scopes, nil)
	if msg != "" {
		return store.OAuthClient{}, "", &ValidationError{"scopes", msg}
	}
	now := c.opts.Now()
	cl := store.OAuthClient{
		ID: store.NewID("ocl"), ClientID: newClientID(), Kind: store.ClientKindStatic, Name: name,
		RedirectURIs: uris, GrantTypes: grants, ResponseTypes: responses, TokenEndpointAuthMethod: method,
		ApplicationType: appType, Scopes: scopes, CreatedAt: toMillis(now),
	}
	var secret string
	if req.Confidential {
		secret, cl.SecretHash = newClientSecret()
	}
	if err := c.st.CreateOAuthClient(ctx, cl); err != nil {
		return store.OAuthClient{}, "", fmt.Errorf("oauth: create client: %w", err)
	}
	c.rec.Record(ctx, audit.Event{
		Time: now, Type: EventClientCreated, Outcome: store.OutcomeAllow, CredentialID: cl.ID,
		Details: clientDetails(cl, map[string]any{"actor": actor(ctx)}),
	})
	return cl, secret, nil
}

// List returns the clients of kind ("" = all), newest first.
func (c *Clients) List(ctx context.Context, kind string) ([]store.OAuthClient, error) {
	return c.st.ListOAuthClients(ctx, kind)
}

// Get returns a registered client by client_id without fetching anything
// (ErrNotFound from the store when unknown).
func (c *Clients) Get(ctx context.Context, clientID string) (store.OAuthClient, error) {
	return c.st.GetOAuthClient(ctx, clientID)
}

// Delete removes a client of any kind (an operator's decision) and audits
// it. store.ErrNotFound when there is none. Tokens and grants issued to
// the client are not this package's: the caller revokes them.
func (c *Clients) Delete(ctx context.Context, clientID string) (store.OAuthClient, error) {
	cl, err := c.st.DeleteOAuthClient(ctx, clientID)
	if err != nil {
		return store.OAuthClient{}, err
	}
	c.rec.Record(ctx, audit.Event{
		Time: c.opts.Now(), Type: EventClientDeleted, Outcome: store.OutcomeAllow, CredentialID: cl.ID,
		Details: clientDetails(cl, map[string]any{"actor": actor(ctx)}),
	})
	return cl, nil
}

// NoteUse records that the client was used now: its last-used time is
// written when it is older than the touch interval (so at most about once
// a minute per client, and at once on first use, which takes a fresh
// registration out of the 24-hour reaping rule). A failed write is logged,
// not returned: bookkeeping never fails a token request.
func (c *Clients) NoteUse(ctx context.Context, cl store.OAuthClient) {
	now := c.opts.Now()
	if !cl.LastUsedAt.IsZero() && now.Sub(cl.LastUsedAt) < c.opts.TouchInterval {
		return
	}
	if err := c.st.TouchOAuthClient(ctx, cl.ClientID, toMillis(now)); err != nil {
		c.opts.Logger.Warn("oauth: recording client use failed", "client", cl.ID, "err", err)
	}
}

// Reap deletes registrations (dcr and cimd clients) never used within
// UnusedTTL of their creation, or unused for IdleTTL, in batches, auditing
// each as client.reaped, and returns how many it deleted. Static clients
// are never reaped. Several nodes may reap at once.
func (c *Clients) Reap(ctx context.Context) (int, error) {
	now := c.opts.Now()
	var unusedBefore, idleBefore time.Time
	if c.opts.UnusedTTL > 0 {
		unusedBefore = toMillis(now.Add(-c.opts.UnusedTTL))
	}
	if c.opts.IdleTTL > 0 {
		idleBefore = toMillis(now.Add(-c.opts.IdleTTL))
	}
	if unusedBefore.IsZero() && idleBefore.IsZero() {
		return 0, nil
	}
	total := 0
	for ctx.Err() == nil {
		gone, err := c.st.ReapOAuthClients(ctx, unusedBefore, idleBefore, ReapBatch)
		if err != nil {
			return total, fmt.Errorf("oauth: reap clients: %w", err)
		}
		for _, cl := range gone {
			reason := "idle"
			if cl.LastUsedAt.IsZero() {
				reason = "never_used"
			}
			c.rec.Record(ctx, audit.Event{
				Time: now, Type: EventClientReaped, Outcome: store.OutcomeAllow, Reason: reason, CredentialID: cl.ID,
				Details: clientDetails(cl, map[string]any{"actor": "system"}),
			})
		}
		total += len(gone)
		if len(gone) < ReapBatch {
			break
		}
	}
	return total, ctx.Err()
}

// Run reaps at once and then every `every` (default 1 h) until ctx is done.
func (c *Clients) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = time.Hour
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := c.Reap(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			c.opts.Logger.Warn("oauth: client reaper failed; will retry", "err", err)
		case n > 0:
			c.opts.Logger.Info("oauth: reaped unused client registrations", "clients", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ClientDisplayHost is the host a consent page must show for a client
// (draft-ietf-oauth-client-id-metadata-document §8.5: "The authorization
// server SHOULD display the hostname of the client_id on the authorization
// interface"): the client_id's host for CIMD clients, "" otherwise.
func ClientDisplayHost(cl store.OAuthClient) string {
	if cl.Kind != store.ClientKindCIMD {
		return ""
	}
	return urlHost(cl.ClientID)
}

// ClientVerified reports whether an operator vouched for the client
// (static clients). Consent pages say when a client is unverified.
func ClientVerified(cl store.OAuthClient) bool { return cl.Kind == store.ClientKindStatic }

// AllowsGrant reports whether the client may use grant at the token
// endpoint. RFC 7591 §2: grant_types are the grants "the client can use";
// a client registered for authorization_code may also refresh what it got
// (OAuth 2.1 §4.3), since most clients of the 2025 MCP revisions do not
// list refresh_token.
//
// client_credentials is for confidential clients an operator registered
// (static) only: a self-registered client (dcr, cimd) never gets a token
// without a user, even when its stored metadata lists the grant (a
// registration made before dynamic registration refused it).
func AllowsGrant(cl store.OAuthClient, grant string) bool {
	if slices.Contains(cl.GrantTypes, grant) {
		return grant != GrantClientCredentials || (!cl.Public() && cl.Kind == store.ClientKindStatic)
	}
	return grant == GrantRefreshToken && slices.Contains(cl.GrantTypes, GrantAuthorizationCode)
}

// newClientID returns a fresh client_id: 128 random bits, never a URL.
func newClientID() string { return store.NewID("client") }

// clientSecretPrefix marks mcpgate client secrets (secret scanners).
const clientSecretPrefix = "mcpgcs_"

// newClientSecret returns a fresh secret (256 random bits) and its
// SHA-256. A high-entropy secret needs no slow hash: SHA-256 lets the token
// endpoint authenticate at full speed (the issue forbids bcrypt/argon2 on
// that path) while a leaked database still reveals no usable secret.
func newClientSecret() (string, []byte) {
	var b [32]byte
	rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	secret := clientSecretPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	h := sha256.Sum256([]byte(secret))
	return secret, h[:]
}

// clientDetails describes a client for an audit event: never a secret.
func clientDetails(cl store.OAuthClient, extra map[string]any) map[string]any {
	d := map[string]any{"client_id": cl.ClientID, "kind": cl.Kind, "name": cl.Name, "auth_method": cl.TokenEndpointAuthMethod}
	if len(cl.RedirectURIs) > 0 {
		d["redirect_uris"] = cl.RedirectURIs
	}
	for k, v := range extra {
		d[k] = v
	}
	return d
}

// actor names who made a change: "cli" for the command line (no request
// in the context), else the request's client IP is in the event anyway.
func actor(ctx context.Context) string {
	if v, ok := ctx.Value(actorKey{}).(string); ok && v != "" {
		return v
	}
	return "cli"
}

type actorKey struct{}

// WithActor returns ctx naming who changes clients (audit "actor"), e.g. a
// user id for an admin page; the default is "cli".
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

func toMillis(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }

// noStore marks a response as not cacheable (RFC 6749 §5.1, RFC 7591 §3.2).
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}
