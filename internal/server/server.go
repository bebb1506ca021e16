package server

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/api"
	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/customauth"
	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/federation"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/loginflow"
	"github.com/mcpgate/mcpgate/internal/mcpserver"
	"github.com/mcpgate/mcpgate/internal/metrics"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/tokens"
	"github.com/mcpgate/mcpgate/internal/upstream"
	"github.com/mcpgate/mcpgate/internal/web"
	"github.com/mcpgate/mcpgate/verify"
)

// Version is stamped at build time (-ldflags "-X …/server.Version=v1.2.3");
// otherwise the module version from the build info, or "dev".
var Version = ""

// VersionString returns the version to report.
func VersionString() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// Server is a built mcpgate server, ready to serve.
type Server struct {
	cfg     config.Config
	log     *slog.Logger
	core    *Core
	metrics *metrics.Metrics
	mcp     *mcpserver.Handler
	authn   *authn.Authenticator
	tokens  *tokens.Issuer
	clients *oauth.Clients
	oauth   *oauth.Server
	flows   *loginflow.Flows
	handler http.Handler
	// redis, with --redis-url, holds the rate limits every node shares
	// (see limiter).
	redis *redis.Client
}

// cimdLoopbackForTests lets tests serve client metadata documents on
// loopback (set only by export_test.go; never in production, see
// draft-ietf-oauth-client-id-metadata-document §8.6).
var (
	cimdLoopbackForTests bool
	cimdRootsForTests    *x509.CertPool
)

// New opens the store, builds every component and, with --demo, makes sure
// the demo users and ledger exist (printing new secrets once to out).
func New(ctx context.Context, cfg config.Config, log *slog.Logger, out io.Writer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	rdb, err := openRedis(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	m := metrics.New()
	core, err := OpenCore(ctx, cfg, log, func(e audit.Event) {
		switch e.Type {
		case audit.TypeToolCalled:
			outcome := e.Outcome
			if isErr, _ := e.Details["is_error"].(bool); isErr {
				outcome = "error"
			}
			m.ToolCalls.WithLabelValues(e.Tool, outcome).Inc()
		case audit.TypeToolDenied:
			m.ToolCalls.WithLabelValues(e.Tool, store.OutcomeDeny).Inc()
		}
	})
	if err != nil {
		closeRedis(rdb)
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, core: core, metrics: m, redis: rdb}
	if err := s.build(ctx, out); err != nil {
		s.Close()
		return nil, err
	}
	if rdb != nil {
		log.Info("rate limits shared through Redis", "redis", ratelimit.RedactRedisURL(cfg.RedisURL))
	}
	return s, nil
}

func (s *Server) build(ctx context.Context, out io.Writer) error {
	cfg := s.cfg
	reg := mcpserver.NewRegistry()
	if cfg.Demo {
		if err := bootstrapDemo(ctx, s.core, out); err != nil {
			return err
		}
		demo.Register(reg, s.core.DB)
	}
	// Reserve the key cache's scope slots for the real scopes, so keys with
	// made-up scopes cannot push them out of the cacheable set.
	if err := apikeys.RegisterScopes(append(reg.AllScopes(), authn.DefaultAccountScope)...); err != nil {
		return err
	}
	s.mcp = mcpserver.New(mcpserver.Options{
		Name: "mcpgate", Version: VersionString(), Registry: reg, Audit: s.core.Audit,
		ResourceURL: cfg.MCPURL(), ResourceMetadataURL: cfg.ResourceMetadataURL(),
		MaxBodyBytes: cfg.MaxBodyBytes, SessionTimeout: cfg.MCPSessionTimeout, Logger: s.log,
	})

	// The OAuth 2.1 authorization server: its issuer is the public URL, and
	// it serves one protected resource, the MCP endpoint.
	issuer := cfg.BaseURL()
	identityScopes := oauth.IdentityScopes
	iss, err := tokens.NewIssuer(ctx, s.core.DB, s.core.ServerKey, tokens.Options{
		Issuer: issuer, Algorithm: cfg.SigningAlg, AccessTokenTTL: cfg.AccessTokenTTL,
		RotateEvery: cfg.SigningKeyRotation, Logger: s.log,
	})
	if err != nil {
		return fmt.Errorf("token signing keys: %w", err)
	}
	s.tokens = iss
	s.clients = oauth.NewClients(s.core.DB, s.core.Audit, oauth.ClientsOptions{
		SupportedScopes: append(reg.AllScopes(), identityScopes...),
		CIMDAllowHosts:  cfg.CIMDAllowHosts, CIMDDenyHosts: cfg.CIMDDenyHosts,
		// Generous: hosted connectors register from shared egress IPs.
		RegistrationLimiter: s.limiter("oauth-register", 6*time.Second, 100),
		UnusedTTL:           cfg.RegistrationUnused, IdleTTL: cfg.RegistrationIdle,
		CIMDAllowLoopback: cimdLoopbackForTests,
		CIMDRootCAs:       cimdRootsForTests,
		Logger:            s.log,
	})
	grantable := append(reg.AllScopes(), authn.DefaultAccountScope)
	// Upstream identity providers (--upstream-providers-file): "Continue
	// with …" on the login page.
	upstreams, err := cfg.UpstreamProviders()
	if err != nil {
		return err
	}
	var buttons []web.LoginProvider
	for _, p := range upstreams {
		buttons = append(buttons, web.LoginProvider{Name: p.Name, DisplayName: p.DisplayName})
	}
	sources, err := identitySources(cfg, upstreams)
	if err != nil {
		return err
	}
	pages := web.New(web.Options{
		Sessions: s.core.Sessions, Users: s.core.Users, Keys: s.core.Keys, Store: s.core.DB,
		GrantableScopes: grantable, MCPURL: cfg.MCPURL(), Audit: s.core.Audit, Logger: s.log,
		LoginProviders: buttons, CustomLogin: customButton(cfg), IdentitySources: sources,
	})
	s.oauth = oauth.NewServer(oauth.ServerOptions{
		Store: s.core.DB, Clients: s.clients, Tokens: iss, Audit: s.core.Audit,
		Sessions: s.core.Sessions, Users: s.core.Users, Issuer: issuer,
		Resources:   []oauth.Resource{{URL: cfg.MCPURL(), Name: "the MCP server at " + strings.TrimPrefix(strings.TrimPrefix(issuer, "https://"), "http://"), Scopes: reg.AllScopes()}},
		RefreshIdle: cfg.RefreshIdle, RefreshAbsolute: cfg.RefreshLifetime, RefreshGrace: refreshGrace(cfg.RefreshGrace),
		ErrorPage: pages.ErrorPage, Logger: s.log,
		// Seals the one successor a grace-window retry gets back.
		ServerKey:        s.core.ServerKey,
		AuthorizeLimiter: s.limiter("oauth-authorize", oauth.DefaultAuthorizeEvery, oauth.DefaultAuthorizeBurst),
		// The sign-in's custom claims that access tokens carry.
		AccessTokenClaims: cfg.AccessTokenClaimNames(),
		// Roles in ID tokens and /userinfo, for relying parties.
		IDTokenRoles: cfg.IDTokenRoles,
	})
	s.core.Users.SetLoginLimiters(
		s.limiter("login-account", identity.DefaultLoginAccountEvery, identity.DefaultLoginAccountBurst),
		s.limiter("login-ip", identity.DefaultLoginIPEvery, identity.DefaultLoginIPBurst))
	verifier, err := verify.New(verify.Options{Issuer: issuer, Audience: cfg.MCPURL(), Keys: iss.KeySet()})
	if err != nil {
		return err
	}

	// Trusted external issuers (--external-issuers-file): their tokens are
	// accepted on /mcp for just-in-time provisioned users.
	var external *federation.Federation
	if issuers, err := cfg.ExternalIssuers(); err != nil {
		return err
	} else if len(issuers) > 0 {
		external, err = federation.New(issuers, federation.Options{ResourceScopes: reg.AllScopes(),
			Accounts: identity.NewProvisioner(s.core.Users, s.core.DB), Logger: s.log})
		if err != nil {
			return err
		}
	}

	origins := append([]string{cfg.BaseURL()}, cfg.AllowedOrigins...)
	s.authn = authn.New(authn.Options{
		Keys: s.core.Keys, Users: s.core.DB.GetUser, Audit: s.core.Audit,
		SessionClaims: s.sessionKeyClaims,
		Resource:      cfg.MCPURL(), ResourceMetadataURL: cfg.ResourceMetadataURL(),
		Scopes: reg.AllScopes(), AllowedOrigins: origins, UserCacheTTL: cfg.KeyCacheTTL, Logger: s.log,
		Sessions: s.core.Sessions,
		// A web app on another origin that the operator allowed may also
		// make cookie-authenticated calls (login, credentials, facade).
		CSRFTrustedOrigins: cfg.AllowedOrigins,
		AccessTokens:       &authn.AccessTokens{Verifier: verifier, GrantActive: s.oauth.GrantActive},
		RefusalLimiter:     s.limiter("authn-refusal", authn.DefaultRefusalEvery, authn.DefaultRefusalBurst),
		External:           external,
		OnDecision: func(method, outcome, reason string) {
			s.metrics.AuthDecisions.WithLabelValues(method, outcome, reason).Inc()
		},
	})
	s.core.Users.OnUserChanged(s.authn.InvalidateUser)

	mux := http.NewServeMux()
	mcpChain := s.authn.Middleware(s.mcp)
	mux.Handle("/mcp", httpx.CORS(s.authn.OriginAllowed, mcpChain))
	// The JSON API answers browser web apps on allowed origins too (CORS
	// with credentials, so the cookie flow works cross-origin; CSRF
	// protection trusts the same origins).
	apiMux := http.NewServeMux()
	apiOpts := api.Options{
		Sessions: s.core.Sessions, Users: s.core.Users, Keys: s.core.Keys, Store: s.core.DB, Authn: s.authn,
		MCPHandler: mcpChain, MCPURL: cfg.MCPURL(), GrantableScopes: grantable, SessionKeyScopes: reg.AllScopes(),
		CSRFTrustedOrigins: cfg.AllowedOrigins, Apps: s.oauth, Logger: s.log,
	}
	if !cfg.DisablePasswordLogin {
		// POST /auth/login, GET /auth/status: simple token login for scripts.
		apiOpts.DirectLogin = s.oauth
	}
	api.New(apiOpts).Routes(apiMux)
	mux.Handle("/api/", httpx.CORS(s.authn.OriginAllowed, apiMux))
	mux.Handle("/auth/", httpx.CORS(s.authn.OriginAllowed, apiMux))
	pages.Routes(mux)
	pages.OAuthRoutes(mux, s.oauth)
	// Sign-ins through upstream providers and the custom login keep their
	// pending state in the store, so any node can finish them.
	s.flows, err = loginflow.New(loginflow.Options{Store: s.core.DB, ServerKey: s.core.ServerKey, Logger: s.log,
		StartLimiter:   s.limiter("login-start", loginflow.DefaultStartEvery, loginflow.DefaultStartBurst),
		RefusalLimiter: s.limiter("login-refusal", loginflow.DefaultRefusalEvery, loginflow.DefaultRefusalBurst)})
	if err != nil {
		return err
	}
	if len(upstreams) > 0 {
		up, err := upstream.New(upstream.Options{
			Providers: upstreams, BaseURL: cfg.BaseURL(), Flows: s.flows,
			Accounts: identity.NewProvisioner(s.core.Users, s.core.DB), Sessions: s.core.Sessions,
			Audit: s.core.Audit, ErrorPage: pages.ErrorPage, SafeReturnTo: web.SafeReturnTo,
			Logger: s.log,
		})
		if err != nil {
			return err
		}
		up.Routes(mux)
	}
	if cfg.CustomLoginURL != "" {
		// Bring your own login (--custom-login-url): /login/custom,
		// /login/callback, POST /api/login-requests/{id}/user, the app
		// authenticating with a shared secret or signed assertions.
		var (
			secret string
			keys   []verify.PublicKey
			err    error
		)
		if cfg.CustomLoginPublicKeyFile != "" {
			keys, err = cfg.CustomLoginPublicKeys()
		} else {
			secret, err = cfg.CustomLoginSecretValue()
		}
		if err != nil {
			return err
		}
		ca, err := customauth.New(customauth.Options{
			LoginURL: cfg.CustomLoginURL, Secret: []byte(secret), PublicKeys: keys, BaseURL: cfg.BaseURL(), Flows: s.flows,
			Accounts: identity.NewProvisioner(s.core.Users, s.core.DB), Sessions: s.core.Sessions,
			Audit: s.core.Audit, ErrorPage: pages.ErrorPage, SafeReturnTo: web.SafeReturnTo, Logger: s.log,
		})
		if err != nil {
			return err
		}
		ca.Routes(mux)
	}

	// Authorization-server metadata (RFC 8414, OIDC discovery), JWKS,
	// registration (RFC 7591) and the endpoints.
	md := oauth.NewServerMetadata(issuer, append(reg.AllScopes(), identityScopes...), []string{cfg.SigningAlg})
	if cfg.IDTokenRoles {
		md.ClaimsSupported = append(md.ClaimsSupported, "roles")
	}
	if cfg.DisableRegistration {
		md.RegistrationEndpoint = ""
	} else {
		mux.Handle("/register", s.clients.RegisterHandler())
	}
	for _, p := range oauth.MetadataPaths(issuer) {
		mux.Handle(p, oauth.MetadataHandler(md))
	}
	mux.Handle("/jwks", iss.JWKSHandler())
	s.oauth.Routes(mux)

	prm := oauth.ProtectedResourceHandler(oauth.ProtectedResourceMetadata{
		Resource:               cfg.MCPURL(),
		AuthorizationServers:   []string{issuer},
		ScopesSupported:        reg.AllScopes(),
		BearerMethodsSupported: []string{"header"},
		ResourceName:           "mcpgate",
	})
	// RFC 9728 §3.1: the well-known suffix is inserted before the resource's
	// path; clients that only know the origin try the root form.
	mux.Handle("/.well-known/oauth-protected-resource/mcp", prm)
	mux.Handle("/.well-known/oauth-protected-resource", prm)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusNotFound, httpx.OAuthError{Error: "not_found", Description: "no such endpoint; the MCP endpoint is " + cfg.MCPURL()})
	})
	proxies, err := cfg.TrustedProxyPrefixes()
	if err != nil {
		return err
	}
	s.handler = httpx.Common(mux, s.log, cfg.MaxBodyBytes, func(r *http.Request, route string, status int, d time.Duration) {
		if route == "" {
			route = "unmatched"
		}
		s.metrics.ObserveRequest(route, status, d)
	}, proxies...)
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.core.DB.Ping(ctx); err != nil {
		s.log.Warn("readiness check failed", "err", err)
		httpx.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": "database unreachable"})
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// Handler is the whole HTTP surface (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.handler }

// Core exposes the services (for tests and the CLI).
func (s *Server) Core() *Core { return s.core }

// customButton is the login page's custom login button, if configured.
func customButton(cfg config.Config) *web.CustomLogin {
	if cfg.CustomLoginURL == "" {
		return nil
	}
	return &web.CustomLogin{DisplayName: cfg.CustomLoginDisplayName(), Only: cfg.CustomLoginOnly}
}

// identitySources names the configured external identity sources for the
// pages, by the issuer their users' identities are linked under.
func identitySources(cfg config.Config, upstreams []config.UpstreamProvider) ([]web.IdentitySource, error) {
	var out []web.IdentitySource
	for _, p := range upstreams {
		out = append(out, web.IdentitySource{Issuer: p.Issuer, Label: p.DisplayName, Kind: web.SourceUpstream})
	}
	if cfg.CustomLoginURL != "" {
		iss, err := customauth.Issuer(cfg.CustomLoginURL)
		if err != nil {
			return nil, err
		}
		out = append(out, web.IdentitySource{Issuer: iss, Label: cfg.CustomLoginDisplayName(), Kind: web.SourceCustom})
	}
	issuers, err := cfg.ExternalIssuers()
	if err != nil {
		return nil, err
	}
	for _, e := range issuers {
		out = append(out, web.IdentitySource{Issuer: e.Issuer, Label: cmp.Or(e.Name, e.Issuer), Kind: web.SourceExternal})
	}
	return out, nil
}

// sessionKeyClaims returns the custom claims of the browser session a
// session key belongs to (nil when it has none).
func (s *Server) sessionKeyClaims(ctx context.Context, keyID string) (map[string]any, error) {
	k, err := s.core.DB.GetAPIKey(ctx, keyID)
	if err != nil || k.SessionID == "" {
		return nil, err
	}
	sess, err := s.core.DB.GetSession(ctx, k.SessionID)
	if err != nil {
		return nil, err
	}
	return authn.DecodeSessionClaims(sess.Claims), nil
}

// refreshGrace maps the flag (0: no grace window) to oauth's option (0:
// default, negative: none).
func refreshGrace(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// OAuthClients exposes the OAuth client registry (for tests and embedding).
func (s *Server) OAuthClients() *oauth.Clients { return s.clients }

// Metrics exposes the collectors (for tests).
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// HTTPServer returns the http.Server mcpgate serves with: header size and
// read-header time are bounded (a slow or huge header cannot pin a
// connection); there is no write timeout because MCP responses may be
// long-lived SSE streams.
func (s *Server) HTTPServer() *http.Server {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(s.mcp.Close)
	return srv
}

// Run serves until ctx is cancelled, then shuts down gracefully: stop
// accepting, let requests drain (up to the shutdown timeout), flush
// last-used times and audit events, close the store. ready, when not nil,
// receives the bound address once listening.
func (s *Server) Run(ctx context.Context, ready func(addr net.Addr)) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		s.Close()
		return fmt.Errorf("listening on %s: %w", s.cfg.Addr, err)
	}
	srv := s.HTTPServer()
	srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	var msrv *http.Server
	if s.cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", s.cfg.MetricsAddr)
		if err != nil {
			srv.Close()
			s.Close()
			return fmt.Errorf("listening on metrics address %s: %w", s.cfg.MetricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", s.metrics.Handler())
		msrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- msrv.Serve(mln) }()
		s.log.Info("metrics listening", "addr", mln.Addr().String())
	}
	keysCtx, stopKeys := context.WithCancel(context.Background())
	go s.core.Keys.Run(keysCtx)
	// The cleaner ends idle sessions and deletes what is past retention.
	go s.core.Sessions.Run(keysCtx, time.Hour, s.cfg.Retention)
	// Signing-key rotation, registration reaping, expired grant clean-up,
	// expired pending sign-ins.
	go s.tokens.Run(keysCtx)
	go s.clients.Run(keysCtx, time.Hour)
	go s.oauth.Run(keysCtx, time.Hour, s.cfg.Retention)
	// Expired upstream and custom sign-ins (every 10 minutes: they live 10).
	go s.flows.Run(keysCtx, loginflow.CleanEvery)
	s.log.Info("mcpgate listening", "addr", ln.Addr().String(), "mcp_url", s.cfg.MCPURL(), "version", VersionString(), "demo", s.cfg.Demo)
	if ready != nil {
		ready(ln.Addr())
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.log.Warn("requests still running at shutdown timeout; closing them", "err", err)
		srv.Close()
	}
	if msrv != nil {
		msrv.Shutdown(sctx)
	}
	stopKeys()
	if err := s.Close(); err != nil {
		s.log.Error("closing", "err", err)
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// Close flushes and closes the core (store, audit, key last-used) and the
// Redis client.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.core.Close(ctx)
	closeRedis(s.redis)
	return err
}

func closeRedis(c *redis.Client) {
	if c != nil {
		c.Close()
	}
}
