// Package mcpserver is mcpgate's MCP endpoint: the go-sdk Streamable HTTP
// transport behind per-principal authorization.
//
// A request reaches Handler after the authn middleware has put a
// principal.Principal into its context. Handler then, in order:
//
//  1. refuses a Mcp-Session-Id that belongs to another caller (audited);
//  2. reads the body (bounded), refuses one that is not strictly JSON-RPC,
//     and lets the Policy refuse any tools/call the caller lacks scopes or
//     roles for, with a 403 (an insufficient_scope challenge for scopes, a
//     missing_roles error for roles), before a tool runs (audited);
//  3. strips the caller's credentials from the request and hands the
//     principal to the SDK as an auth.TokenInfo (see bearerBridge);
//  4. routes the request to one of two SDK handlers over the same
//     mcp.Server: a stateless one for the 2026-07-28 protocol, a stateful
//     one (sessions) for the protocols before it.
//
// Inside the SDK, a receiving middleware filters tools/list by scope and
// role and audits every tools/call, and each tool handler runs with the request's
// principal in its context (principal.From).
package mcpserver

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/store"
)

// Defaults for Options.
const (
	DefaultMaxBodyBytes   = 1 << 20 // 1 MiB
	DefaultSessionTimeout = 30 * time.Minute
)

const (
	protocolVersionHeader = "Mcp-Protocol-Version"
	sessionIDHeader       = "Mcp-Session-Id"

	// statelessProtocol is the first protocol version without sessions
	// (SEP-2575). Versions are dates, so string order is time order; the SDK
	// compares them the same way.
	statelessProtocol = "2026-07-28"

	// placeholderToken stands in for the caller's credential inside the SDK
	// (see bearerBridge). It is not a secret and grants nothing by itself.
	placeholderToken = "principal"
)

// credentialHeaders are removed before the SDK sees a request: tool code can
// read RequestExtra.Header and must never see a credential.
var credentialHeaders = []string{"Authorization", "Proxy-Authorization", "X-API-Key", "Cookie"}

// Options configure a Handler.
type Options struct {
	Name    string // server name in initialize/discover results; default "mcpgate"
	Version string // default "dev"

	Registry *Registry      // required
	Audit    audit.Recorder // required

	// ResourceMetadataURL is the RFC 9728 metadata URL put into
	// insufficient_scope challenges.
	ResourceMetadataURL string
	// ResourceURL is this endpoint's URL, the resource in audit events.
	ResourceURL string

	MaxBodyBytes   int64         // default DefaultMaxBodyBytes
	SessionTimeout time.Duration // idle stateful sessions close after this; default DefaultSessionTimeout
	Logger         *slog.Logger  // default slog.Default()
}

// Handler serves the MCP endpoint. Create it with New.
type Handler struct {
	opts     Options
	logger   *slog.Logger
	audit    audit.Recorder
	registry *Registry
	server   *mcp.Server
	policy   *Policy
	sessions *sessionBindings

	stateless http.Handler // protocol >= 2026-07-28
	stateful  http.Handler // everything else

	closed atomic.Bool
}

// New builds the endpoint and installs every tool of opts.Registry; tools
// cannot be added to the registry afterwards. It panics without a Registry
// or an Audit recorder.
func New(opts Options) *Handler {
	if opts.Registry == nil {
		panic("mcpserver.New: Options.Registry is required")
	}
	if opts.Audit == nil {
		panic("mcpserver.New: Options.Audit is required")
	}
	if opts.Name == "" {
		opts.Name = "mcpgate"
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.SessionTimeout <= 0 {
		opts.SessionTimeout = DefaultSessionTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	h := &Handler{
		opts:     opts,
		logger:   opts.Logger,
		audit:    opts.Audit,
		registry: opts.Registry,
		sessions: newSessionBindings(opts.SessionTimeout, time.Now),
	}
	h.policy = &Policy{
		ToolScopes:          opts.Registry.Scopes,
		ToolRoles:           opts.Registry.Roles,
		ResourceMetadataURL: opts.ResourceMetadataURL,
		ResourceURL:         opts.ResourceURL,
		Audit:               opts.Audit,
	}

	// The SDK logs every session connect and disconnect at Info (twice per
	// request on the stateless handler); keep its warnings and errors only.
	sdkLogger := slog.New(minLevel{opts.Logger.Handler().WithAttrs([]slog.Attr{slog.String("component", "mcp-sdk")}), slog.LevelWarn})
	h.server = mcp.NewServer(&mcp.Implementation{Name: opts.Name, Version: opts.Version}, &mcp.ServerOptions{
		Logger:       sdkLogger,
		SetCacheable: setCacheable,
		// Only tools; no logging capability (the SDK's historical default).
		// The tool set is fixed, so there are no list_changed notifications.
		Capabilities: &mcp.ServerCapabilities{Tools: &mcp.ToolCapabilities{}},
	})
	h.server.AddReceivingMiddleware(h.receivingMiddleware)
	opts.Registry.installAll(h.server, &toolEnv{logger: opts.Logger})

	getServer := func(*http.Request) *mcp.Server { return h.server }
	base := mcp.StreamableHTTPOptions{
		Logger:              sdkLogger,
		SessionTimeout:      opts.SessionTimeout,
		MaxRequestBodyBytes: opts.MaxBodyBytes,
		// The SDK's DNS-rebinding guard refuses requests that arrive on a
		// loopback address with a non-loopback Host. It protects MCP servers
		// that trust anyone who can reach them; here every request is
		// authenticated first (a rebinding page holds no mcpgate credential),
		// and the guard would refuse all traffic relayed by a reverse proxy on
		// the same host.
		DisableLocalhostProtection: true,
	}
	stateless := base
	stateless.Stateless = true
	h.stateless = h.bearerBridge(mcp.NewStreamableHTTPHandler(getServer, &stateless))
	h.stateful = h.bearerBridge(mcp.NewStreamableHTTPHandler(getServer, &base))
	return h
}

// ServeHTTP implements http.Handler.
//
// Two SDK handlers serve the two generations of the protocol. Clients of the
// 2026-07-28 protocol (SEP-2575) have no sessions: they send server/discover
// and then every request with "Mcp-Protocol-Version: 2026-07-28" and the
// version in _meta, and the SDK serves that protocol only on a Stateless
// handler. A stateful handler answers such requests with "unsupported
// protocol version" (and answers server/discover with only the older
// versions), which would push every new client back to the legacy
// handshake. Clients of 2025-11-25 and earlier send initialize without the
// header, then the negotiated version and the Mcp-Session-Id they were
// given, and use GET (server-to-client stream) and DELETE; only a stateful
// handler keeps those sessions. So the header decides: >= 2026-07-28 goes to
// the stateless handler, anything else (including no header) to the
// stateful one.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.closed.Load() {
		httpx.WriteOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the MCP endpoint is shutting down")
		return
	}
	p := principal.From(r.Context())
	owner := subject(p)
	if owner == "" {
		// authn runs before this handler and never lets an unauthenticated
		// request through: this is a wiring bug. Fail closed.
		h.logger.Error("mcp request without a principal: is the authn middleware in front of the MCP handler?", "path", r.URL.Path)
		httpx.WriteChallenge(w, http.StatusUnauthorized, httpx.Challenge{ResourceMetadata: h.opts.ResourceMetadataURL})
		return
	}

	sid := r.Header.Get(sessionIDHeader)
	if sid != "" {
		switch res, _ := h.sessions.acquire(sid, owner); res {
		case bindMismatch:
			h.refuseSession(w, r, p, sid)
			return
		case bindOwner:
			defer h.sessions.release(sid)
		}
	}

	var decision Decision
	if r.Method == http.MethodPost {
		var ok bool
		if decision, ok = h.policy.Enforce(w, r, p, h.opts.MaxBodyBytes); !ok {
			return
		}
	}

	inner := r.Clone(r.Context()) // deep-copies the header; r stays intact for outer middleware
	for _, k := range credentialHeaders {
		inner.Header.Del(k)
	}
	inner.Header.Set("Authorization", "Bearer "+placeholderToken)

	if r.Header.Get(protocolVersionHeader) >= statelessProtocol {
		h.stateless.ServeHTTP(w, inner)
		return
	}

	switch {
	case sid == "" && r.Method == http.MethodPost:
		if decision.Has("initialize") {
			if status, msg := h.sessions.admit(owner); status != 0 {
				httpx.WriteOAuthError(w, status, "too_many_sessions", msg)
				return
			}
		}
		sw := &sessionWriter{ResponseWriter: w, onHeader: func(status int, hdr http.Header) {
			if id := hdr.Get(sessionIDHeader); id != "" && status < 300 {
				h.sessions.bind(id, owner)
			}
		}}
		h.stateful.ServeHTTP(sw, inner)
	case sid != "":
		sw := &sessionWriter{ResponseWriter: w}
		h.stateful.ServeHTTP(sw, inner)
		status := sw.Status()
		// 404: the SDK no longer knows the session (timed out or closed).
		if status == http.StatusNotFound || (r.Method == http.MethodDelete && status >= 200 && status < 300) {
			h.sessions.forget(sid)
		}
	default:
		h.stateful.ServeHTTP(w, inner)
	}
}

// Close ends every open session (waiting for tool calls in flight) and makes
// the handler answer 503 from then on. It is safe to call more than once.
func (h *Handler) Close() {
	if !h.closed.CompareAndSwap(false, true) {
		return
	}
	for ss := range h.server.Sessions() {
		_ = ss.Close()
	}
	h.sessions.forgetAll()
}

// bearerBridge hands the request's principal to the SDK.
//
// The SDK reads per-request identity only from auth.TokenInfoFromContext,
// whose context key is unexported and set only by auth.RequireBearerToken.
// It needs that identity twice: it binds each stateful session to
// TokenInfo.UserID and refuses the session to anyone else, and it gives
// tool handlers RequestExtra.TokenInfo. authn has already verified the real
// credential, and tool code must never see it (it can read
// RequestExtra.Header), so ServeHTTP replaces the credential headers with
// "Authorization: Bearer principal" and this wrapper runs RequireBearerToken
// with a verifier that ignores the placeholder's value and describes the
// principal already in the context. The placeholder is removed again before
// the SDK runs, so tools see no Authorization header at all.
func (h *Handler) bearerBridge(next http.Handler) http.Handler {
	verify := func(ctx context.Context, token string, r *http.Request) (*auth.TokenInfo, error) {
		p := principal.From(ctx)
		if p == nil || token != placeholderToken {
			return nil, auth.ErrInvalidToken
		}
		info := httpx.InfoFrom(ctx)
		if info.ClientIP == "" {
			info.ClientIP = httpx.ClientIP(r)
		}
		if info.UserAgent == "" {
			info.UserAgent = httpx.UserAgent(r)
		}
		return &auth.TokenInfo{
			UserID:     subject(p),
			Scopes:     slices.Clone(p.Scopes),
			Expiration: p.ExpiresAt, // zero for keys that never expire
			Extra:      map[string]any{extraPrincipal: p, extraRequestInfo: info},
		}, nil
	}
	strip := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del("Authorization") // r.Header is ServeHTTP's private clone
		next.ServeHTTP(w, r)
	})
	// An expired principal (authn should have refused it) gets the SDK's 401
	// with a challenge pointing at the metadata, so clients re-authorize.
	return auth.RequireBearerToken(verify, &auth.RequireBearerTokenOptions{
		AllowMissingExpiration: true,
		ResourceMetadataURL:    h.opts.ResourceMetadataURL,
	})(strip)
}

// refuseSession answers a request that presents another caller's session.
func (h *Handler) refuseSession(w http.ResponseWriter, r *http.Request, p *principal.Principal, sid string) {
	h.audit.Record(r.Context(), audit.Event{
		Type:         audit.TypeSessionRefused,
		Outcome:      store.OutcomeDeny,
		Reason:       audit.ReasonSessionOwner,
		UserID:       p.UserID,
		CredentialID: p.CredentialID,
		Resource:     h.opts.ResourceURL,
		// The session's owner is not named: this event is the caller's own
		// activity, and users will be able to read it.
		Details: map[string]any{"session": sessionRef(sid), "method": r.Method},
	})
	httpx.WriteOAuthError(w, http.StatusForbidden, "forbidden", "session belongs to another user")
}

// subject is who owns a session: the user, or for a principal without one
// (a machine client) its client or credential. "" means no identity at all.
func subject(p *principal.Principal) string {
	switch {
	case p == nil:
		return ""
	case p.UserID != "":
		return p.UserID
	case p.ClientID != "":
		return "client:" + p.ClientID
	case p.CredentialID != "":
		return "credential:" + p.CredentialID
	}
	return ""
}

// minLevel drops log records below min.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(attrs), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}
