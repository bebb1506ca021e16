// Package upstream signs users in through upstream identity providers:
// "Continue with <provider>" on the login page. Generic OIDC providers
// (discovery, authorization code + PKCE + nonce + state, ID token verified
// with coreos/go-oidc) and GitHub (OAuth 2 + its user API) are supported.
//
// The flow:
//
//	GET /login/upstream/{name}?return_to=/local/path
//	  → 303 to the provider's authorization endpoint; the state's hash, the
//	    nonce and PKCE verifier (sealed) and return_to are stored as a login
//	    flow (internal/loginflow: in the database, 10 minutes, single use,
//	    so any node can finish it), bound to this browser by a cookie
//	    holding an HMAC of the state under a key derived from the server
//	    key. Starts are rate limited per client IP.
//	GET /login/upstream/{name}/callback?code=…&state=…
//	  → state checked (and consumed), code exchanged, ID token verified
//	    (audience = client_id, nonce; for a multi-tenant issuer, a tenant
//	    of quirks.allowed_tenants) or GitHub's user API asked, allow and
//	    deny rules applied, the user provisioned or linked by (issuer, subject)
//	    through identity.Provisioner, an mcpgate session started (keeping
//	    the roles of the provider's roles_claim as the "roles" custom claim
//	    and its custom_claims, see sessionClaims), 303 to return_to.
//
// The upstream's tokens never leave this package: they are used for the
// one login and dropped. MCP clients get mcpgate's own tokens through
// mcpgate's own OAuth flow, which continues at return_to.
//
// Every login attempt that reaches the callback is audited as
// upstream.login (provider, subject when known, outcome, reason).
package upstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/loginflow"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
)

// TypeLogin is the audit event of an upstream login attempt.
const TypeLogin = "upstream.login"

// Reasons of refused or failed upstream logins.
const (
	ReasonStateMismatch = "state_mismatch" // unknown, replayed, expired or other-browser state
	ReasonNonceMismatch = "nonce_mismatch"
	ReasonBadIDToken    = "bad_id_token" // missing, forged, expired, wrong audience or issuer
	ReasonNotAllowed    = "not_allowed"  // the allow rules refused the account
	ReasonUpstreamError = "upstream_error"
	ReasonDenied        = "denied_at_provider" // the provider returned an error (the user said no)
	ReasonUserDisabled  = "user_disabled"
	ReasonInvalidClaims = "invalid_claims" // subject or issuer unusable
)

// ReasonTenantNotAllowed: a multi-tenant provider's ID token is from a
// tenant not in quirks.allowed_tenants (audit detail "tenant").
const ReasonTenantNotAllowed = "tenant_not_allowed"

// FlowTTL is how long a started login may take.
const FlowTTL = loginflow.TTL

const (
	bindCookie      = "mcpgate_upstream" // "__Host-mcpgate_upstream" on https (loginflow.NewBindingCookie)
	defaultTimeout  = 10 * time.Second
	maxAPIBodyBytes = 1 << 20
)

// Options configure the handler. Providers, Flows, Accounts, Sessions,
// Audit and ErrorPage are required.
type Options struct {
	Providers []config.UpstreamProvider
	// BaseURL is mcpgate's public URL; callbacks are
	// BaseURL/login/upstream/{name}/callback.
	BaseURL string
	// Flows keeps the started logins (shared with every node through the
	// store and the server key) and limits how many are started.
	Flows    *loginflow.Flows
	Accounts *identity.Provisioner
	Sessions *session.Manager
	Audit    audit.Recorder
	// ErrorPage renders a readable error in the site's layout.
	ErrorPage func(w http.ResponseWriter, r *http.Request, status int, title, message string)
	// Timeout bounds each request to a provider (default 10 s).
	Timeout time.Duration
	// Transport, when set, is used for requests to providers.
	Transport http.RoundTripper
	Now       func() time.Time
	Logger    *slog.Logger
	// SafeReturnTo maps a requested return_to to a local path.
	SafeReturnTo func(string) string
}

// Handler serves /login/upstream/….
type Handler struct {
	opts      Options
	client    *http.Client
	providers map[string]*provider
	cookie    loginflow.BindingCookie
}

// flow is what the callback needs of a started login.
type flow struct {
	nonce    string
	verifier string
	returnTo string
}

// flowSecrets is what a login flow keeps sealed: the callback needs both
// in clear, and neither may be read from the database alone.
type flowSecrets struct {
	Verifier string `json:"v"`
	Nonce    string `json:"n"`
}

// New builds the handler.
func New(opts Options) (*Handler, error) {
	if opts.Flows == nil || opts.Accounts == nil || opts.Sessions == nil || opts.Audit == nil || opts.ErrorPage == nil || opts.SafeReturnTo == nil {
		return nil, errors.New("upstream.New: Flows, Accounts, Sessions, Audit, ErrorPage and SafeReturnTo are required")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	tr := opts.Transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	h := &Handler{
		opts: opts, providers: map[string]*provider{}, cookie: loginflow.NewBindingCookie(bindCookie, "/login/upstream/", opts.BaseURL),
		client: &http.Client{
			Timeout: opts.Timeout, Transport: tr,
			// Never follow a provider's redirects with the token or code.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	for _, p := range opts.Providers {
		h.providers[p.Name] = &provider{cfg: p, h: h}
	}
	return h, nil
}

// Routes mounts the login and callback endpoints.
func (h *Handler) Routes(mux *http.ServeMux) {
	mux.HandleFunc("/login/upstream/{name}", h.secure(h.start))
	mux.HandleFunc("/login/upstream/{name}/callback", h.secure(h.callback))
}

func (h *Handler) secure(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Cache-Control", "no-store")
		hd.Set("Referrer-Policy", "no-referrer") // the code and state must not leak onwards
		hd.Set("X-Frame-Options", "DENY")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			hd.Set("Allow", "GET, HEAD")
			h.opts.ErrorPage(w, r, http.StatusMethodNotAllowed, "Method not allowed", "This address does not accept "+r.Method+" requests.")
			return
		}
		next(w, r)
	}
}

func (h *Handler) provider(w http.ResponseWriter, r *http.Request) (*provider, bool) {
	p, ok := h.providers[r.PathValue("name")]
	if !ok {
		h.opts.ErrorPage(w, r, http.StatusNotFound, "Unknown sign-in provider", "This server does not offer sign-in with that provider. Go back to the sign-in page and pick another way.")
	}
	return p, ok
}

// start sends the browser to the provider.
func (h *Handler) start(w http.ResponseWriter, r *http.Request) {
	p, ok := h.provider(w, r)
	if !ok {
		return
	}
	// Each start may cost a discovery request and stores a row.
	if !h.opts.Flows.AllowStart(w, r, store.LoginFlowUpstream, h.opts.ErrorPage, h.startRefused(r, p.cfg.Name)) {
		return
	}
	oc, err := p.oauthConfig(r.Context())
	if err != nil {
		h.opts.Logger.LogAttrs(r.Context(), slog.LevelWarn, "upstream: provider unavailable", slog.String("provider", p.cfg.Name), slog.Any("err", err))
		h.record(r, p.cfg.Name, "", store.OutcomeDeny, ReasonUpstreamError, map[string]any{"stage": "discovery"})
		h.opts.ErrorPage(w, r, http.StatusBadGateway, "Sign-in provider unavailable",
			p.cfg.DisplayName+" could not be reached. Please try again in a moment, or sign in another way.")
		return
	}
	state, sec := loginflow.Token(), flowSecrets{Verifier: oauth2.GenerateVerifier(), Nonce: loginflow.Token()}
	secret, _ := json.Marshal(sec)
	now := h.opts.Now()
	_, err = h.opts.Flows.Create(r.Context(), store.LoginFlow{
		Kind: store.LoginFlowUpstream, Provider: p.cfg.Name, StateHash: loginflow.Hash(state),
		ReturnTo: h.opts.SafeReturnTo(r.URL.Query().Get("return_to")), Source: httpx.ClientKey(r),
		CreatedAt: now, ExpiresAt: now.Add(FlowTTL),
	}, secret)
	switch {
	case errors.Is(err, store.ErrFull):
		h.opts.Flows.RefuseFull(w, r, err, store.LoginFlowUpstream, h.opts.ErrorPage, h.startRefused(r, p.cfg.Name))
		return
	case err != nil:
		h.unavailable(w, r, err)
		return
	}
	h.cookie.Set(w, h.opts.Flows.Binding(store.LoginFlowUpstream, state), FlowTTL)
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(sec.Verifier)}
	if p.cfg.Type == config.UpstreamOIDC {
		opts = append(opts, oauth2.SetAuthURLParam("nonce", sec.Nonce))
	}
	opts = append(opts, p.extraParams()...)
	http.Redirect(w, r, oc.AuthCodeURL(state, opts...), http.StatusSeeOther)
}

// startRefused audits a refused start (rate limit, too many in progress)
// and the note of a refusal flood at the callback.
func (h *Handler) startRefused(r *http.Request, provider string) loginflow.Note {
	return func(reason string, details map[string]any) {
		h.record(r, provider, "", store.OutcomeDeny, reason, details)
	}
}

// take uses up the login flow of state at the callback of provider and
// returns what the rest of the callback needs, or why the state is
// refused (for the audit details; the reason is always state_mismatch),
// or a storage error. Single use comes first and whatever the outcome of
// the other checks, so a state is never tried twice, on any node.
func (h *Handler) take(r *http.Request, provider, state string) (*flow, string, error) {
	if state == "" || len(state) > 200 {
		return nil, "unknown", nil
	}
	f, err := h.opts.Flows.Store().UseLoginFlow(r.Context(), store.LoginFlowUpstream, loginflow.Hash(state), h.opts.Now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, "unknown", nil
	case errors.Is(err, store.ErrReplayed):
		return nil, "replayed", nil
	case errors.Is(err, store.ErrExpired):
		return nil, "expired", nil
	case err != nil:
		return nil, "", err
	case f.Provider != provider:
		return nil, "other_provider", nil
	case !h.opts.Flows.Bound(r, h.cookie.Name, store.LoginFlowUpstream, state):
		return nil, "browser_mismatch", nil
	}
	raw, err := h.opts.Flows.Open(f)
	if err != nil {
		return nil, "", err
	}
	var sec flowSecrets
	if err := json.Unmarshal(raw, &sec); err != nil {
		return nil, "", fmt.Errorf("upstream: the secrets of %s: %w", f.ID, err)
	}
	return &flow{nonce: sec.Nonce, verifier: sec.Verifier, returnTo: f.ReturnTo}, "", nil
}

// callback finishes the login.
func (h *Handler) callback(w http.ResponseWriter, r *http.Request) {
	p, ok := h.provider(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	name := p.cfg.Name
	fail := func(status int, reason, subject string, details map[string]any, title, msg string) {
		// Each refusal costs an audit row: limited per client.
		if h.opts.Flows.RefusalLimited(w, r, store.LoginFlowUpstream, reason, h.opts.ErrorPage, h.startRefused(r, name)) {
			return
		}
		h.record(r, name, subject, store.OutcomeDeny, reason, details)
		h.opts.ErrorPage(w, r, status, title, msg)
	}
	retry := "Go back to the sign-in page and try again."
	f, problem, err := h.take(r, name, q.Get("state"))
	switch {
	case err != nil:
		h.unavailable(w, r, err)
		return
	case problem == "replayed" && h.signedIn(r):
		// Back after signing in: the link is used, the browser is in.
		// Audited like any replay; the user goes on, not to an error page.
		h.record(r, name, "", store.OutcomeDeny, ReasonStateMismatch, map[string]any{"state_problem": problem,
			"note": "revisited by a signed-in browser (Back)"})
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	case problem != "":
		fail(http.StatusBadRequest, ReasonStateMismatch, "", map[string]any{"state_problem": problem}, "Sign-in expired or invalid",
			"This sign-in link is not valid any more (it was already used, is older than 10 minutes, or was started in another browser). "+retry)
		return
	}
	h.cookie.Clear(w)
	if e := q.Get("error"); e != "" {
		fail(http.StatusForbidden, ReasonDenied, "", map[string]any{"error": clip(e, 100), "error_description": clip(q.Get("error_description"), 300)},
			"Sign-in cancelled", p.cfg.DisplayName+" did not sign you in. "+retry)
		return
	}
	code := q.Get("code")
	if code == "" || len(code) > 4096 {
		fail(http.StatusBadRequest, ReasonUpstreamError, "", map[string]any{"stage": "callback", "error": "no code"}, "Sign-in failed",
			p.cfg.DisplayName+" sent an unusable answer. "+retry)
		return
	}
	acct, rf := p.account(r.Context(), code, f)
	if rf != nil {
		h.opts.Logger.LogAttrs(r.Context(), slog.LevelWarn, "upstream: login refused", slog.String("provider", name),
			slog.String("reason", rf.reason), slog.Any("err", rf.err))
		d := map[string]any{"error": clip(errString(rf.err), 300)}
		if rf.tenant != "" {
			d["tenant"] = rf.tenant
		}
		switch rf.reason {
		case ReasonTenantNotAllowed:
			fail(http.StatusForbidden, rf.reason, rf.subject, d, "Not allowed",
				"Accounts of your organisation's "+p.cfg.DisplayName+" directory are not allowed to sign in to this server. Ask your mcpgate administrator.")
		case ReasonUpstreamError:
			fail(http.StatusBadGateway, rf.reason, rf.subject, d, "Sign-in failed", p.cfg.DisplayName+" did not answer correctly. Please try again in a moment, or sign in another way.")
		default:
			fail(http.StatusForbidden, rf.reason, rf.subject, d, "Sign-in refused", p.cfg.DisplayName+" sent an answer mcpgate cannot trust. "+retry)
		}
		return
	}
	if p.cfg.TreatEmailAsVerified && acct.Email != "" {
		acct.EmailVerified = true // the operator vouches for this provider's addresses
	}
	msg, ok := allowed(p.cfg.Allow, acct)
	if ok {
		msg, ok = notDenied(p.cfg.Deny, acct)
	}
	if !ok {
		// What the operator needs to tell "wrong domain" from "not
		// verified" (the address itself stays out of the audit log).
		d := map[string]any{"rule": msg, "email_verified": acct.EmailVerified}
		if domain, ok := identity.EmailDomain(acct.Email); ok {
			d["email_domain"] = domain
		}
		fail(http.StatusForbidden, ReasonNotAllowed, acct.Subject, d, "Not allowed",
			"Your "+p.cfg.DisplayName+" account is not allowed to sign in to this server ("+msg+"). Ask your mcpgate administrator.")
		return
	}
	// Checked before anything is stored: a refused sign-in provisions no one.
	claims, err := sessionClaims(p.cfg, acct)
	if err != nil {
		fail(http.StatusForbidden, ReasonInvalidClaims, acct.Subject, map[string]any{"error": clip(err.Error(), 300)}, "Sign-in refused",
			p.cfg.DisplayName+" described your account in a way mcpgate cannot keep ("+clip(err.Error(), 200)+"). Ask your mcpgate administrator.")
		return
	}
	u, err := h.opts.Accounts.Provision(r.Context(), identity.ExternalAccount{
		Issuer: acct.Issuer, Subject: acct.Subject, Email: acct.Email, EmailVerified: acct.EmailVerified,
		Name: acct.Name, LinkByEmail: p.cfg.LinkByEmail, Via: "upstream_login",
	})
	if err != nil {
		if _, ok := errors.AsType[*identity.ValidationError](err); ok {
			fail(http.StatusForbidden, ReasonInvalidClaims, "", map[string]any{"error": clip(err.Error(), 300)}, "Sign-in refused",
				p.cfg.DisplayName+" described your account in a way mcpgate cannot use. Ask your mcpgate administrator.")
			return
		}
		h.unavailable(w, r, err)
		return
	}
	if u.Disabled {
		fail(http.StatusForbidden, ReasonUserDisabled, acct.Subject, map[string]any{"user_id": u.ID}, "Account disabled",
			"Your mcpgate account is disabled. Ask your mcpgate administrator.")
		return
	}
	sess, err := h.opts.Sessions.StartWithClaims(r.Context(), w, r, u, claims)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	details := map[string]any{"provider": name, "subject": acct.Subject, "issuer": acct.Issuer}
	if len(claims) > 0 {
		details["claims"] = slices.Sorted(maps.Keys(claims)) // names only: details stay small
	}
	h.opts.Audit.Record(r.Context(), audit.Event{
		Type: TypeLogin, Outcome: store.OutcomeAllow, UserID: u.ID, CredentialID: sess.ID, Details: details,
	})
	http.Redirect(w, r, f.returnTo, http.StatusSeeOther)
}

func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	h.opts.Logger.LogAttrs(r.Context(), slog.LevelError, "upstream: login failed", slog.Any("err", err))
	w.Header().Set("Retry-After", "5")
	h.opts.ErrorPage(w, r, http.StatusServiceUnavailable, "Temporarily unavailable",
		"mcpgate could not complete this sign-in right now. Please try again in a moment.")
}

func (h *Handler) record(r *http.Request, provider, subject, outcome, reason string, details map[string]any) {
	d := map[string]any{"provider": provider}
	if subject != "" {
		d["subject"] = clip(subject, 255)
	}
	for k, v := range details {
		d[k] = v
	}
	h.opts.Audit.Record(r.Context(), audit.Event{Type: TypeLogin, Outcome: outcome, Reason: reason, Details: d})
}

// account is what a provider said about the user.
type account struct {
	Issuer, Subject, Email, Name string
	EmailVerified                bool
	Groups                       []string
	Claims                       map[string]any
}

// refusal is a failed callback: the audit reason, the subject and the
// tenant when known.
type refusal struct {
	reason, subject, tenant string
	err                     error
}

// sessionClaims are the custom claims an OIDC sign-in keeps with its
// session: the roles of the provider's roles_claim (principal.ClaimRoles:
// bounded, never "admin") as "roles", and the custom_claims present in
// the ID token, each checked like bring-your-own-login's claims
// (session.ClaimValue: a string, number, boolean or array of strings of at
// most 1 KiB). A claim that does not fit refuses the sign-in, naming it.
func sessionClaims(cfg config.UpstreamProvider, acct account) (map[string]any, error) {
	out := map[string]any{}
	if cfg.RolesClaim != "" {
		if roles := principal.ClaimRoles(principal.LookupClaim(acct.Claims, cfg.RolesClaim)); len(roles) > 0 {
			v, err := session.ClaimValue(roles)
			if err != nil {
				return nil, fmt.Errorf("the roles of claim %q: %v", clip(cfg.RolesClaim, 100), err)
			}
			out[principal.RolesClaim] = v
		}
	}
	for _, name := range cfg.CustomClaims {
		raw, ok := acct.Claims[name]
		if !ok || raw == nil {
			continue
		}
		v, err := session.ClaimValue(raw)
		if err != nil {
			return nil, fmt.Errorf("claim %q: %v", name, err)
		}
		out[name] = v
	}
	return out, nil
}

// allowed applies the allow rules; every configured rule must hold.
func allowed(a config.UpstreamAllow, acct account) (string, bool) {
	if len(a.EmailDomains) > 0 {
		domain, ok := identity.EmailDomain(acct.Email)
		if !acct.EmailVerified || !ok || !slices.Contains(a.EmailDomains, domain) {
			return "verified email domain", false
		}
	}
	if len(a.Groups) > 0 && !anyIn(acct.Groups, a.Groups) {
		return "group membership", false
	}
	for name, want := range a.Claims {
		if !anyIn(claimStrings(acct.Claims[name]), want) {
			return "claim " + clip(name, 60), false
		}
	}
	return "", true
}

// notDenied applies the deny rules; any rule that matches refuses. A deny
// rule errs on the side of refusing: an email's domain matches whether or
// not the provider verified the address, and an address whose domain
// cannot be read reliably (one identity.EmailDomain does not accept, such
// as a non-ASCII look-alike) is refused when there are email-domain rules.
func notDenied(d config.UpstreamRules, acct account) (string, bool) {
	if len(d.EmailDomains) > 0 && acct.Email != "" {
		domain, ok := identity.EmailDomain(acct.Email)
		if !ok {
			return "unreadable email address", false
		}
		if slices.Contains(d.EmailDomains, domain) {
			return "denied email domain", false
		}
	}
	if len(d.Groups) > 0 && (elsewhere(acct.Claims, "groups") || acct.Claims["hasgroups"] == true) {
		return "group list not in the ID token", false
	}
	if anyIn(acct.Groups, d.Groups) {
		return "denied group", false
	}
	for name, values := range d.Claims {
		if elsewhere(acct.Claims, name) {
			return "claim " + clip(name, 60) + " not in the ID token", false
		}
		if anyIn(claimStrings(acct.Claims[name]), values) {
			return "denied claim " + clip(name, 60), false
		}
	}
	return "", true
}

// elsewhere reports whether the ID token says claim name is kept at
// another source instead of in the token: an aggregated or distributed
// claim, listed in "_claim_names" (OIDC Core §5.6.2). Entra ID does this
// with "groups" for a user in too many groups ("groups overage"; with
// "hasgroups": true in tokens of the implicit flow). mcpgate does not
// fetch such claims, so a deny rule on them cannot tell and refuses.
func elsewhere(claims map[string]any, name string) bool {
	names, _ := claims["_claim_names"].(map[string]any)
	_, ok := names[name]
	return ok
}

func anyIn(have, want []string) bool {
	for _, h := range have {
		for _, w := range want {
			if h == w {
				return true
			}
		}
	}
	return false
}

// claimStrings reads a claim that is a string, a bool, or an array of
// strings.
func claimStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case bool:
		if v {
			return []string{"true"}
		}
		return []string{"false"}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// issuerTenant returns the tenant id of iss when iss equals the issuer
// template tmpl with a tenant id (config.TenantIDPattern: ASCII letters,
// digits, '-') in the place of "{tenantid}".
func issuerTenant(tmpl, iss string) (string, bool) {
	i := strings.Index(tmpl, "{tenantid}")
	if i < 0 {
		return "", false
	}
	re := "^" + regexp.QuoteMeta(tmpl[:i]) + "(" + config.TenantIDPattern + ")" + regexp.QuoteMeta(tmpl[i+len("{tenantid}"):]) + "$"
	m := regexp.MustCompile(re).FindStringSubmatch(iss)
	if m == nil {
		return "", false
	}
	return m[1], true
}

func clip(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "?")
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// signedIn reports whether r comes with a live mcpgate session.
func (h *Handler) signedIn(r *http.Request) bool {
	_, err := h.opts.Sessions.Current(r)
	return err == nil
}
