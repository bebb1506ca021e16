package oauth

// The authorization endpoint (OAuth 2.1 §4.1.1, RFC 6749 §3.1, §4.1),
// with PKCE (RFC 7636), resource indicators (RFC 8707) and the "iss"
// response parameter (RFC 9207).
//
// Order of checks, as RFC 6749 §4.1.2.1 requires: first the client and its
// redirect URI. "If the request fails due to a missing, invalid, or
// mismatching redirection URI, or if the client identifier is missing or
// invalid, the authorization server SHOULD inform the resource owner of the
// error and MUST NOT automatically redirect the user-agent to the invalid
// redirection URI." Those refusals are an HTML page: mcpgate is never an
// open redirector. Everything after that is answered at the verified
// redirect URI with error, error_description, state and iss — for clients
// an operator registered (static) only. A client nobody vouched for
// (dynamically registered, or a Client ID Metadata Document) chose its own
// redirect URIs, so redirecting errors to them without the user doing
// anything would make mcpgate an open redirector for anyone who registers
// (RFC 9700 §4.11.2); its errors are shown on mcpgate's own page instead.
// Once the user has acted (Deny on the consent page), the redirect with
// access_denied is what the user asked for.
//
// A valid request is kept server-side (store.OAuthRequest, 10 minutes,
// single use) while the user logs in and consents; the browser carries
// only its id. A logged-in user who already consented to every requested
// scope for this client and resource gets the code at once — except for a
// public client redirecting to a loopback address or a private-use scheme
// (see confirmEachTime): any local program can claim those, so the user
// confirms each time (RFC 8252 §8.6).
//
// Requests are rate-limited per client IP (ServerOptions.AuthorizeLimiter):
// each one may create a pending-request row.

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
)

// Limits on attacker-chosen request values.
const (
	maxStateLen = 2048
	maxNonceLen = 512
	maxScopeLen = 2048
)

// authzError is a refusal of an authorization request after the client
// and redirect URI were verified: it goes back to the client (RFC 6749
// §4.1.2.1).
type authzError struct {
	code, description, reason string
}

// authorize serves GET and POST /authorize.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	writeNoStore(w)
	if !s.allowAuthorize(w, r) {
		return
	}
	var params url.Values
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		var err error
		if params, err = url.ParseQuery(r.URL.RawQuery); err != nil {
			s.refusePage(w, r, "", audit.ReasonInvalidRequest, nil, http.StatusBadRequest, "Invalid authorization request",
				"The link that brought you here is malformed. Go back to the application and start again.")
			return
		}
	case http.MethodPost:
		// OIDC Core §3.1.2.1: POST with form serialization.
		if err := r.ParseForm(); err != nil {
			s.refusePage(w, r, "", audit.ReasonInvalidRequest, nil, http.StatusBadRequest, "Invalid authorization request",
				"The form that brought you here could not be read. Go back to the application and start again.")
			return
		}
		params = r.PostForm
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		s.errorPage(w, r, http.StatusMethodNotAllowed, "Method not allowed", "This address accepts GET and POST only.")
		return
	}
	ctx := r.Context()

	// 1. The client (RFC 6749 §4.1.2.1: "missing or invalid" → no redirect).
	clientID := params.Get("client_id")
	if len(params["client_id"]) != 1 || clientID == "" {
		s.refusePage(w, r, clientID, audit.ReasonUnknownClient, map[string]any{"problem": "client_id missing or repeated"},
			http.StatusBadRequest, "Unknown application",
			"The application that sent you here did not identify itself correctly, so mcpgate cannot continue. Contact the application's developer.")
		return
	}
	cl, err := s.opts.Clients.Resolve(ctx, clientID)
	if err != nil {
		var cerr *ClientError
		if !errors.As(err, &cerr) {
			s.unavailablePage(w, r, err)
			return
		}
		reason := audit.ReasonUnknownClient
		// The client_id is not echoed: it is attacker-chosen text on
		// mcpgate's page (the audit event records it).
		msg := "mcpgate does not know the application that sent you here, so it cannot continue. The application may need to register again."
		if errors.Is(err, ErrInvalidClientMetadata) {
			reason = audit.ReasonInvalidClientMetadata
			msg = "mcpgate could not use the metadata of the application that sent you here: " + cerr.Description + "."
		}
		s.refusePage(w, r, clientID, reason, map[string]any{"problem": cerr.Reason}, http.StatusBadRequest, "Unknown application", msg)
		return
	}

	// 2. The redirect URI: exact match, loopback any port (OAuth 2.1
	// §2.3.1, RFC 8252 §7.3; MatchRedirectURI).
	redirectURI, provided := params.Get("redirect_uri"), true
	switch {
	case len(params["redirect_uri"]) > 1:
		s.refusePage(w, r, clientID, audit.ReasonRedirectMismatch, map[string]any{"problem": "redirect_uri repeated"},
			http.StatusBadRequest, "Invalid redirect address", "The application sent more than one address to return to, so mcpgate cannot continue.")
		return
	case redirectURI == "":
		// OAuth 2.1 §4.1.1: redirect_uri is OPTIONAL "if only one redirect
		// URI is registered". A lone loopback registration still needs the
		// request's port, so it must be named.
		if len(cl.RedirectURIs) != 1 || isLoopbackRedirect(cl.RedirectURIs[0]) {
			s.refusePage(w, r, clientID, audit.ReasonMissingRedirectURI, nil, http.StatusBadRequest, "Missing redirect address",
				"The application did not say where to send you back, so mcpgate cannot continue. Contact the application's developer.")
			return
		}
		redirectURI, provided = cl.RedirectURIs[0], false
	case !MatchRedirectURI(cl, redirectURI):
		s.refusePage(w, r, clientID, audit.ReasonRedirectMismatch, map[string]any{"redirect_uri": clip(redirectURI, 300)},
			http.StatusBadRequest, "Invalid redirect address",
			"The address the application asked mcpgate to send you back to is not registered for it. For your safety, mcpgate will not send you there.")
		return
	}
	state := params.Get("state")
	if !validVSChars(state, maxStateLen) {
		state = "" // never echo what cannot be echoed unchanged
	}
	back := redirectBack{uri: redirectURI, state: state, iss: s.opts.Issuer, status: http.StatusFound}
	if r.Method == http.MethodPost {
		back.status = http.StatusSeeOther
	}

	// 3. Everything else goes back to the client: redirected for static
	// clients, on mcpgate's page for unverified ones (refuse).
	req, aerr := s.parseAuthorization(params, cl, redirectURI, provided)
	if aerr != nil {
		s.refuse(w, r, cl, back, aerr)
		return
	}
	var (
		user *store.User
		sess store.Session // the user's sign-in: the grant's claims come from it (claims.go)
	)
	if s.opts.Sessions != nil {
		cur, err := s.opts.Sessions.Current(r)
		switch {
		case err == nil:
			user, sess = &cur.User, cur.Session
		case !errors.Is(err, session.ErrNoSession):
			s.unavailablePage(w, r, err)
			return
		}
	}
	ev := audit.Event{
		Type: audit.TypeOAuthAuthorizeRequested, Outcome: store.OutcomeAllow, Resource: req.Resource,
		Details: map[string]any{"client_id": cl.ClientID, "client_kind": cl.Kind, "scopes": req.Scopes,
			"redirect_uri": clip(req.RedirectURI, 300), "prompt": req.Prompt},
	}
	if user != nil {
		ev.UserID = user.ID
	}
	s.opts.Audit.Record(ctx, ev)
	// OIDC Core §3.1.2.1 prompt: "consent" and "login" always show the
	// consent page (a signed-in user is not made to sign in again: the
	// page names the account and offers to sign out); "none" never shows
	// a page.
	prompts := strings.Fields(req.Prompt)
	if user != nil && !slices.Contains(prompts, "consent") && !slices.Contains(prompts, "login") {
		consented, err := s.consented(ctx, user.ID, cl.ClientID, req.Resource, req.Scopes)
		if err != nil {
			s.unavailablePage(w, r, err)
			return
		}
		if consented && !confirmEachTime(cl, req.RedirectURI) {
			// Consent given before covers the request: no page to show.
			loc, err := s.issueCode(ctx, "", req, *user, sess, cl, nil)
			if err != nil {
				s.unavailablePage(w, r, err)
				return
			}
			http.Redirect(w, r, loc, back.status)
			return
		}
	}
	if slices.Contains(prompts, "none") {
		// OIDC Core §3.1.2.1: prompt=none must not show any page.
		// A public client at a loopback or private-use redirect gets
		// consent_required even when the user allowed it before: the user
		// must confirm each time (confirmEachTime).
		if user == nil {
			s.refuse(w, r, cl, back, &authzError{"login_required", "the user is not signed in to mcpgate", audit.ReasonLoginRequired})
		} else {
			s.refuse(w, r, cl, back, &authzError{"consent_required", "the user has not yet allowed this application, or must confirm it each time", audit.ReasonConsentRequired})
		}
		return
	}
	req.ID = store.NewID("areq")
	req.CreatedAt = s.now()
	req.ExpiresAt = req.CreatedAt.Add(s.opts.RequestTTL)
	if err := s.st.CreateOAuthRequest(ctx, req); err != nil {
		s.unavailablePage(w, r, err)
		return
	}
	s.bindBrowser(w, req.ID)
	consent := s.opts.ConsentPath + "?request=" + url.QueryEscape(req.ID)
	if user == nil {
		http.Redirect(w, r, s.opts.LoginPath+"?return_to="+url.QueryEscape(consent), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, consent, http.StatusSeeOther)
}

// parseAuthorization checks the parameters of a request whose client and
// redirect URI are verified, and returns the request to keep.
func (s *Server) parseAuthorization(p url.Values, cl store.OAuthClient, redirectURI string, provided bool) (store.OAuthRequest, *authzError) {
	invalid := func(reason, desc string) *authzError { return &authzError{"invalid_request", desc, reason} }
	if k := singleValues(p, "resource"); k != "" {
		return store.OAuthRequest{}, invalid(audit.ReasonInvalidRequest, "the "+k+" parameter appears more than once")
	}
	// OIDC Core §6: request objects are not supported.
	if p.Has("request") {
		return store.OAuthRequest{}, &authzError{"request_not_supported", "request objects are not supported", audit.ReasonInvalidRequest}
	}
	if p.Has("request_uri") {
		return store.OAuthRequest{}, &authzError{"request_uri_not_supported", "request_uri is not supported", audit.ReasonInvalidRequest}
	}
	// RFC 6749 §3.1.1: response_type is required; OAuth 2.1 keeps "code" only.
	switch rt := p.Get("response_type"); rt {
	case "code":
	case "":
		return store.OAuthRequest{}, invalid(audit.ReasonUnsupportedResponseType, "response_type is required (use code)")
	default:
		return store.OAuthRequest{}, &authzError{"unsupported_response_type", "only response_type=code is supported", audit.ReasonUnsupportedResponseType}
	}
	if rm := p.Get("response_mode"); rm != "" && rm != "query" {
		return store.OAuthRequest{}, invalid(audit.ReasonInvalidRequest, "only response_mode=query is supported")
	}
	// RFC 6749 §4.1.2.1 unauthorized_client: "The client is not authorized
	// to request an authorization code using this method."
	if !slices.Contains(cl.GrantTypes, GrantAuthorizationCode) {
		return store.OAuthRequest{}, &authzError{"unauthorized_client", "this client is not registered for the authorization_code grant", audit.ReasonUnauthorizedClient}
	}

	// PKCE (RFC 7636 §4.3, §4.4.1; OAuth 2.1 §4.1.1: S256 only, and the
	// MCP spec requires it). RFC 7636 §4.3: the method "defaults to plain
	// if not present in the request", so a missing method is plain, and
	// plain is refused: a downgrade cannot be argued into.
	challenge, method := p.Get("code_challenge"), p.Get("code_challenge_method")
	switch {
	case challenge == "":
		return store.OAuthRequest{}, invalid(audit.ReasonPKCEMissing, "code_challenge is required (PKCE with S256)")
	case method != "S256":
		return store.OAuthRequest{}, invalid(audit.ReasonPKCEMethod, "code_challenge_method must be S256; plain is not supported")
	case !validChallenge(challenge):
		// RFC 7636 §4.2: BASE64URL(SHA256(verifier)) is 43 characters.
		return store.OAuthRequest{}, invalid(audit.ReasonPKCEChallenge, "code_challenge must be the 43-character base64url SHA-256 of the code verifier")
	}

	// RFC 8707 §2: the resource the token is for. One per request here.
	res := s.resources[0]
	switch rs := p["resource"]; {
	case len(rs) > 1:
		return store.OAuthRequest{}, &authzError{"invalid_target", "request one resource at a time", audit.ReasonInvalidTarget}
	case len(rs) == 1:
		var ok bool
		if res, ok = s.resourceByURL(rs[0]); !ok {
			return store.OAuthRequest{}, &authzError{"invalid_target", "this authorization server does not issue tokens for that resource", audit.ReasonInvalidTarget}
		}
	case len(s.resources) > 1:
		return store.OAuthRequest{}, &authzError{"invalid_target", "name the resource (RFC 8707 resource parameter)", audit.ReasonInvalidTarget}
	}

	scopes, aerr := s.requestedScopes(p.Get("scope"), len(p["scope"]) > 0, res, cl)
	if aerr != nil {
		return store.OAuthRequest{}, aerr
	}
	nonce := p.Get("nonce")
	if !validVSChars(nonce, maxNonceLen) {
		return store.OAuthRequest{}, invalid(audit.ReasonInvalidRequest, "nonce is too long or contains characters outside printable ASCII")
	}
	if state := p.Get("state"); !validVSChars(state, maxStateLen) {
		return store.OAuthRequest{}, invalid(audit.ReasonInvalidRequest, "state is too long or contains characters outside printable ASCII")
	}
	prompt := strings.Join(strings.Fields(p.Get("prompt")), " ")
	for _, v := range strings.Fields(prompt) {
		switch v {
		case "none", "login", "consent", "select_account":
		default:
			return store.OAuthRequest{}, invalid(audit.ReasonInvalidRequest, "unknown prompt value")
		}
	}
	if strings.Contains(" "+prompt+" ", " none ") && prompt != "none" {
		// OIDC Core §3.1.2.1: "none" with any other value is an error.
		return store.OAuthRequest{}, invalid(audit.ReasonInvalidRequest, "prompt=none cannot be combined with other values")
	}
	return store.OAuthRequest{
		ClientID: cl.ClientID, RedirectURI: redirectURI, RedirectURIProvided: provided,
		Scopes: scopes, Resource: res.URL, State: p.Get("state"), CodeChallenge: challenge,
		Nonce: nonce, Prompt: prompt,
	}, nil
}

// requestedScopes validates the scope parameter (RFC 6749 §3.3). Only
// known scopes are accepted: the resource's own and the identity scopes;
// a client that registered a scope list may ask for its resource scopes
// only from that list (identity scopes are always allowed: the user sees
// and approves them).
//
// An omitted scope defaults to the resource's scopes (those the client may
// ask for). The MCP authorization spec asks clients to send the scopes of
// the challenge or of scopes_supported, so a request without scope comes
// from an older client that expects the server's default; the consent page
// still lists every scope for the user to see.
func (s *Server) requestedScopes(raw string, given bool, res Resource, cl store.OAuthClient) ([]string, *authzError) {
	allowedForClient := func(sc string) bool {
		return slices.Contains(IdentityScopes, sc) || len(cl.Scopes) == 0 || slices.Contains(cl.Scopes, sc)
	}
	if len(raw) > maxScopeLen {
		return nil, &authzError{"invalid_scope", "the scope parameter is too long", audit.ReasonInvalidScope}
	}
	if !given || strings.TrimSpace(raw) == "" {
		var out []string
		for _, sc := range res.Scopes {
			if allowedForClient(sc) {
				out = append(out, sc)
			}
		}
		if len(out) == 0 {
			return nil, &authzError{"invalid_scope", "name the scopes to request", audit.ReasonInvalidScope}
		}
		return out, nil
	}
	known := knownScopes(res)
	var out []string
	for _, sc := range strings.Split(raw, " ") {
		switch {
		case sc == "":
			continue // tolerate doubled spaces
		case !slices.Contains(known, sc):
			return nil, &authzError{"invalid_scope", "unknown scope " + quoteURI(clip(sc, 100)) + "; this server offers: " + strings.Join(known, " "), audit.ReasonInvalidScope}
		case !allowedForClient(sc):
			return nil, &authzError{"invalid_scope", "this client is not registered for scope " + quoteURI(sc), audit.ReasonInvalidScope}
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out, nil
}

// consented reports whether the user's consent for the client and
// resource covers every scope.
func (s *Server) consented(ctx context.Context, userID, clientID, resource string, scopes []string) (bool, error) {
	c, err := s.st.GetOAuthConsent(ctx, userID, clientID, resource)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	for _, sc := range scopes {
		if !slices.Contains(c.Scopes, sc) {
			return false, nil
		}
	}
	return true, nil
}

// redirectBack is where authorization responses go once the redirect URI
// is verified.
type redirectBack struct {
	uri, state, iss string
	status          int
}

// url builds the response: the parameters are added to the redirect URI's
// query, keeping the query it was registered with (RFC 6749 §3.1.2: "MUST
// retain the query component when adding additional query parameters"),
// with state when the request had one (§4.1.2) and iss always (RFC 9207
// §2: "the iss parameter … MUST be included in all authorization
// responses").
func (b redirectBack) url(params url.Values) string {
	if b.state != "" {
		params.Set("state", b.state)
	}
	params.Set("iss", b.iss)
	sep := "?"
	if strings.Contains(b.uri, "?") {
		sep = "&"
		if strings.HasSuffix(b.uri, "?") || strings.HasSuffix(b.uri, "&") {
			sep = ""
		}
	}
	return b.uri + sep + params.Encode()
}

// refuse answers a refusal raised before the user interacted: at the
// verified redirect URI for a client an operator registered (RFC 6749
// §4.1.2.1), on mcpgate's own page for any other client (RFC 9700
// §4.11.2: a self-registered redirect URI must not receive automatic
// redirects, or mcpgate becomes an open redirector).
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, cl store.OAuthClient, back redirectBack, e *authzError) {
	if ClientVerified(cl) {
		s.refuseRedirect(w, r, cl, back, e)
		return
	}
	s.refusePage(w, r, cl.ClientID, e.reason, map[string]any{"error": e.code, "error_description": e.description},
		http.StatusBadRequest, "Request refused",
		"mcpgate refused the request of the application that sent you here: "+e.description+" ("+e.code+"). "+
			"mcpgate does not send you back to an application it cannot verify. Return to the application and try again, or contact its developer.")
}

// confirmEachTime reports whether an authorization of cl at redirectURI
// must be confirmed by the user every time, even when consent given before
// covers it. RFC 8252 §8.6: for a public client whose redirect is a
// loopback address or a private-use URI scheme, "the authorization server
// SHOULD NOT process authorization requests automatically without user
// consent or interaction": any local program can listen on a loopback
// port or claim a scheme, and with its own PKCE verifier it would get a
// code silently. Confidential clients prove themselves at the token
// endpoint; https redirects are bound to their host.
func confirmEachTime(cl store.OAuthClient, redirectURI string) bool {
	if !cl.Public() {
		return false
	}
	kind, _ := classifyRedirectURI(redirectURI)
	return kind != redirectHTTPS // loopback, private-use, or anything unclassifiable
}

// ConfirmEachTime reports whether the consent page must ask the user even
// when consent given before covers the request (see confirmEachTime): the
// consent page of internal/web calls it before approving without a
// question. An unknown client answers true.
func (s *Server) ConfirmEachTime(ctx context.Context, clientID, redirectURI string) (bool, error) {
	cl, err := s.opts.Clients.Get(ctx, clientID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return true, nil
	case err != nil:
		return true, err
	}
	return confirmEachTime(cl, redirectURI), nil
}

// allowAuthorize applies the per-client-IP rate limit of the authorization
// endpoint; when it refuses it has answered (429 with Retry-After, or 503
// when the limiter cannot decide: fail closed).
func (s *Server) allowAuthorize(w http.ResponseWriter, r *http.Request) bool {
	d, err := s.opts.AuthorizeLimiter.Allow(r.Context(), "oauth-authorize:"+httpx.ClientKey(r))
	switch {
	case err != nil:
		s.unavailablePage(w, r, err)
		return false
	case d.Allowed:
		return true
	}
	secs := int64(math.Ceil(d.RetryAfter.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	s.errorPage(w, r, http.StatusTooManyRequests, "Too many requests",
		"mcpgate received too many authorization requests from your network. Wait "+httpx.WaitSeconds(secs)+
			", then go back to the application and try again.")
	return false
}

// refuseRedirect sends an error back to the verified redirect URI (RFC
// 6749 §4.1.2.1) and audits it.
func (s *Server) refuseRedirect(w http.ResponseWriter, r *http.Request, cl store.OAuthClient, back redirectBack, e *authzError) {
	s.opts.Audit.Record(r.Context(), audit.Event{
		Type: audit.TypeOAuthAuthorizeRefused, Outcome: store.OutcomeDeny, Reason: e.reason,
		Details: map[string]any{"client_id": cl.ClientID, "error": e.code, "error_description": e.description, "redirected": true},
	})
	http.Redirect(w, r, back.url(url.Values{"error": {e.code}, "error_description": {e.description}}), back.status)
}

// refusePage answers a refusal with an HTML page (no redirect) and audits it.
func (s *Server) refusePage(w http.ResponseWriter, r *http.Request, clientID, reason string, details map[string]any, status int, title, msg string) {
	d := map[string]any{"client_id": clip(clientID, 300), "redirected": false}
	for k, v := range details {
		d[k] = v
	}
	s.opts.Audit.Record(r.Context(), audit.Event{
		Type: audit.TypeOAuthAuthorizeRefused, Outcome: store.OutcomeDeny, Reason: reason, Details: d,
	})
	s.errorPage(w, r, status, title, msg)
}

func (s *Server) unavailablePage(w http.ResponseWriter, r *http.Request, err error) {
	if !errors.Is(err, context.Canceled) {
		s.log.ErrorContext(r.Context(), "oauth: authorization failed", "err", err)
	}
	w.Header().Set("Retry-After", "5")
	s.errorPage(w, r, http.StatusServiceUnavailable, "Temporarily unavailable",
		"mcpgate could not complete this request right now. Please try again in a moment.")
}

// validChallenge: 43 characters of the base64url alphabet (RFC 7636 §4.2).
func validChallenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	for i := 0; i < len(c); i++ {
		ch := c[i]
		if !(ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
			return false
		}
	}
	return true
}

// validVSChars: at most n characters of %x20-7E (RFC 6749 Appendix A.5
// "state = 1*VSCHAR"); "" is valid (absent).
func validVSChars(s string, n int) bool {
	if len(s) > n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func isLoopbackRedirect(uri string) bool {
	_, ok := loopbackParts(uri)
	return ok
}
