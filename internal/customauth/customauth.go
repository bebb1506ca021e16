// Package customauth is "bring your own login": users who live in the
// operator's own application sign in to mcpgate through that application.
//
// The flow:
//
//	GET /login/custom?return_to=/local/path
//	  → a login request (id + state, single use, 10 minutes) is stored as a
//	    login flow (internal/loginflow: in the database, by the hashes of id
//	    and state, the state itself sealed under the server key, so any
//	    node can go on with it), the state is bound to this browser by an
//	    HttpOnly SameSite=Lax cookie holding an HMAC of it under a key
//	    derived from the server key, and the browser goes to
//	    <login URL>?login_request_id=…&state=…
//	POST /api/login-requests/{login_request_id}/user   (operator app → mcpgate)
//	  Authorization: Bearer <shared secret>, or Bearer <assertion>: a JWT
//	  signed with the app's private key (key-pair mode, assertion.go)
//	  {"sub","email","email_verified","name", …custom claims}
//	  → the user's description is checked and attached to the request
//	    with the hash of a fresh one-time callback code (once: a
//	    conditional update, whichever node gets it); the answer is
//	    {"status":"ok","redirect_to":"<public URL>/login/callback?state=…&code=…"}
//	GET /login/callback?state=…&code=…                   (browser, sent to redirect_to by the app)
//	  → the code must be the request's (else unknown_request, nothing
//	    used up); the request is used up; then the browser cookie must be
//	    the one of the browser that started (else browser_mismatch: the
//	    app's redirect reached another browser than the one that started
//	    the sign-in — a forwarded login link); the user provisioned
//	    through identity.Provisioner (issuer "custom:<login URL origin>",
//	    subject = sub), a session started with the custom claims, 303 to
//	    return_to.
//
// Why both the code and the cookie: see loginflow/callback.go.
//
// Audit: login_request.created, login_request.completed and
// login_request.refused (reason bad_secret or bad_assertion, unknown_request,
// expired, replayed, browser_mismatch, invalid_claims, user_disabled; at
// the start rate_limited and too_many_pending). Details name the login
// flow by its public id (login_flow), never by the login request id,
// state or code.
package customauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/loginflow"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/verify"
)

// Audit event types.
const (
	TypeCreated   = "login_request.created"
	TypeCompleted = "login_request.completed"
	TypeRefused   = "login_request.refused"
)

// Refusal reasons.
const (
	ReasonBadSecret       = "bad_secret"
	ReasonUnknownRequest  = "unknown_request"
	ReasonExpired         = "expired"
	ReasonReplayed        = "replayed"
	ReasonBrowserMismatch = "browser_mismatch"
	ReasonInvalidClaims   = "invalid_claims"
	ReasonUserDisabled    = "user_disabled"
)

// RequestTTL is how long a login request may take.
const RequestTTL = loginflow.TTL

// Limits on the user description the operator app posts.
const (
	MaxBodyBytes   = 16 << 10
	MaxClaims      = session.MaxClaims
	MaxClaimBytes  = session.MaxClaimBytes
	maxSubject     = 255
	bindCookie     = "mcpgate_login_request" // "__Host-mcpgate_login_request" on https (loginflow.NewBindingCookie)
	cookiePath     = "/login/"
	maxIDOrState   = 100
	MinSecretBytes = 32
)

// Standard members of the posted body; everything else is a custom claim.
var standard = map[string]bool{"sub": true, "email": true, "email_verified": true, "name": true}

// Options configure the handler. LoginURL, Secret or PublicKeys, BaseURL,
// Flows, Accounts, Sessions, Audit, ErrorPage and SafeReturnTo are
// required.
type Options struct {
	LoginURL string // the operator app's login page
	Secret   []byte // shared secret the app authenticates with (≥ 32 bytes)
	// BaseURL is mcpgate's public URL: the callback URL handed to the app
	// is built on it, and on https the binding cookie is a __Host- cookie.
	BaseURL string
	// Flows keeps the login requests (shared with every node through the
	// store and the server key) and limits how many are started.
	Flows    *loginflow.Flows
	Accounts *identity.Provisioner
	Sessions *session.Manager
	Audit    audit.Recorder
	// ErrorPage renders a readable error in the site's layout.
	ErrorPage    func(w http.ResponseWriter, r *http.Request, status int, title, message string)
	SafeReturnTo func(string) string
	Now          func() time.Time
	Logger       *slog.Logger

	// PublicKeys, instead of Secret: the app signs assertions with the
	// private key of one of them (assertion.go).
	PublicKeys []verify.PublicKey
}

// User is what the operator app said about the user.
type User struct {
	Subject       string
	Email         string
	EmailVerified bool
	Name          string
	Claims        map[string]any // custom claims (string, json.Number, bool, []string)
}

// Handler serves the custom login endpoints.
type Handler struct {
	opts   Options
	issuer string
	auth   appAuth
	cookie loginflow.BindingCookie
}

// New builds the handler.
func New(opts Options) (*Handler, error) {
	if opts.Flows == nil || opts.Accounts == nil || opts.Sessions == nil || opts.Audit == nil || opts.ErrorPage == nil || opts.SafeReturnTo == nil {
		return nil, errors.New("customauth.New: Flows, Accounts, Sessions, Audit, ErrorPage and SafeReturnTo are required")
	}
	iss, err := Issuer(opts.LoginURL)
	if err != nil {
		return nil, err
	}
	if u, err := url.Parse(opts.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("customauth.New: BaseURL %q must be mcpgate's absolute public URL (the callback URL is built on it)", opts.BaseURL)
	}
	opts.BaseURL = strings.TrimRight(opts.BaseURL, "/")
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	auth, err := newAppAuth(opts)
	if err != nil {
		return nil, err
	}
	return &Handler{opts: opts, issuer: iss, auth: auth, cookie: loginflow.NewBindingCookie(bindCookie, cookiePath, opts.BaseURL)}, nil
}

// Issuer is the identity source name users of loginURL are linked under:
// "custom:" + the URL's origin.
func Issuer(loginURL string) (string, error) {
	u, err := url.Parse(loginURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("custom login URL %q: must be an absolute http(s) URL", loginURL)
	}
	return "custom:" + u.Scheme + "://" + strings.ToLower(u.Host), nil
}

// Routes mounts the endpoints.
func (h *Handler) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /login/custom", h.start)
	mux.HandleFunc("GET /login/callback", h.callback)
	mux.HandleFunc("POST /api/login-requests/{id}/user", h.postUser)
}

func pageHeaders(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
}

// start creates a login request and sends the browser to the login URL.
func (h *Handler) start(w http.ResponseWriter, r *http.Request) {
	pageHeaders(w)
	note := func(reason string, details map[string]any) {
		h.opts.Audit.Record(r.Context(), audit.Event{Type: TypeRefused, Outcome: store.OutcomeDeny, Reason: reason, Details: details})
	}
	if !h.opts.Flows.AllowStart(w, r, store.LoginFlowCustom, h.opts.ErrorPage, note) {
		return
	}
	id, state := "lr_"+loginflow.Token(), loginflow.Token()
	now := h.opts.Now()
	// The state is sealed into the row: postUser, on whichever node, puts
	// it into the callback URL it answers with.
	f, err := h.opts.Flows.Create(r.Context(), store.LoginFlow{
		Kind: store.LoginFlowCustom, StateHash: loginflow.Hash(state), RequestHash: loginflow.Hash(id),
		ReturnTo: h.opts.SafeReturnTo(r.URL.Query().Get("return_to")), Source: httpx.ClientKey(r),
		CreatedAt: now, ExpiresAt: now.Add(RequestTTL),
	}, []byte(state))
	switch {
	case errors.Is(err, store.ErrFull):
		h.opts.Flows.RefuseFull(w, r, err, store.LoginFlowCustom, h.opts.ErrorPage, note)
		return
	case err != nil:
		h.unavailable(w, r, err)
		return
	}
	h.cookie.Set(w, h.opts.Flows.Binding(store.LoginFlowCustom, state), RequestTTL)
	h.opts.Audit.Record(r.Context(), audit.Event{Type: TypeCreated, Outcome: store.OutcomeAllow,
		Details: map[string]any{"login_flow": f.ID}})
	u, _ := url.Parse(h.opts.LoginURL)
	q := u.Query()
	q.Set("login_request_id", id)
	q.Set("state", state)
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// postUser: the operator app says who signed in.
func (h *Handler) postUser(w http.ResponseWriter, r *http.Request) {
	httpx.LogRoute(r) // the path holds the login request id
	w.Header().Set("Cache-Control", "no-store")
	id := r.PathValue("id")
	refuse := func(status int, reason, msg string, details map[string]any) {
		d := map[string]any{"stage": "post_user"}
		if h.refusalLimited(w, r, reason, d, jsonError) {
			return
		}
		for k, v := range details {
			d[k] = v
		}
		h.opts.Audit.Record(r.Context(), audit.Event{Type: TypeRefused, Outcome: store.OutcomeDeny, Reason: reason, Details: d})
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mcpgate login requests"`)
		}
		httpx.WriteJSON(w, status, map[string]string{"error": reason, "error_description": msg})
	}
	if f := h.auth.authenticate(r, id); f != nil {
		refuse(http.StatusUnauthorized, f.reason, f.message, f.details)
		return
	}
	u, err := parseUser(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		msg := err.Error() // mcpgate's own words; claim names in it are ≤ 64 bytes, quoted
		if len(msg) > 300 {
			msg = strings.ToValidUTF8(msg[:300], "")
		}
		refuse(http.StatusBadRequest, ReasonInvalidClaims, msg, map[string]any{"error": msg})
		return
	}
	var f store.LoginFlow
	err = store.ErrNotFound
	code, codeHash := loginflow.NewCallbackCode()
	if id != "" && len(id) <= maxIDOrState {
		// Once only, whichever node the app reaches: a conditional update,
		// which also keeps the callback code's hash.
		f, err = h.opts.Flows.Store().SetLoginFlowUser(r.Context(), loginflow.Hash(id), encodeUser(u), codeHash, h.opts.Now())
	}
	flow := map[string]any{"login_flow": f.ID}
	switch {
	case errors.Is(err, store.ErrNotFound):
		refuse(http.StatusNotFound, ReasonUnknownRequest, "no such login request", nil)
	case errors.Is(err, store.ErrExpired):
		refuse(http.StatusGone, ReasonExpired, "the login request is older than 10 minutes; start the sign-in again", flow)
	case errors.Is(err, store.ErrReplayed):
		refuse(http.StatusConflict, ReasonReplayed, "a user was already posted for this login request", flow)
	case err != nil:
		h.opts.Logger.LogAttrs(r.Context(), slog.LevelError, "customauth: storing the posted user failed", slog.Any("err", err))
		w.Header().Set("Retry-After", "5")
		httpx.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable",
			"error_description": "mcpgate could not store the user right now; try again in a moment"})
	default:
		redirect, err := h.redirectTo(f, code)
		if err != nil {
			// The user is attached but the state does not open (this node
			// has another server key, or the request was started by a
			// version that did not seal it): nobody can finish this
			// request, and posting again would be a replay.
			h.opts.Logger.LogAttrs(r.Context(), slog.LevelError, "customauth: cannot build the callback URL", slog.Any("err", err))
			httpx.WriteJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error",
				"error_description": "mcpgate could not build the callback URL for this login request; the sign-in must be started again"})
			return
		}
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok", "redirect_to": redirect})
	}
}

// redirectTo is the URL the app sends the browser that signed in to:
// mcpgate's callback with the request's state (opened from the row) and
// the one-time callback code. Only that browser gets the code; the one
// that started the sign-in holds the binding cookie; the callback wants
// both.
func (h *Handler) redirectTo(f store.LoginFlow, code string) (string, error) {
	state, err := h.opts.Flows.Open(f)
	if err != nil {
		return "", err
	}
	return h.opts.BaseURL + "/login/callback?state=" + url.QueryEscape(string(state)) + "&code=" + url.QueryEscape(code), nil
}

// parseUser reads and checks the posted user description.
func parseUser(body io.Reader) (*User, error) {
	raw, err := io.ReadAll(body)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, fmt.Errorf("the body is larger than %d bytes", MaxBodyBytes)
		}
		return nil, errors.New("the body could not be read")
	}
	// One reading for every node and every later reader: a repeated member
	// ({"sub":"u-100",…,"sub":"u-1"}, perhaps spliced in through a display
	// name the app copied into its JSON) is refused, not "last one wins".
	if err := httpx.CheckJSON(raw); err != nil {
		return nil, fmt.Errorf("the body is not acceptable JSON: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, errors.New("the body must be a JSON object")
	}
	if dec.More() {
		return nil, errors.New("the body must be a single JSON object")
	}
	u := &User{Claims: map[string]any{}}
	text := func(name string, max int, required bool) (string, error) {
		v, ok := m[name]
		if !ok || v == nil {
			if required {
				return "", fmt.Errorf("%q is required", name)
			}
			return "", nil
		}
		s, ok := v.(string)
		if !ok || !utf8.ValidString(s) || strings.ContainsRune(s, 0) || len(s) > max || (required && s == "") {
			return "", fmt.Errorf("%q must be a string of %d to %d bytes", name, btoi(required), max)
		}
		return s, nil
	}
	if u.Subject, err = text("sub", maxSubject, true); err != nil {
		return nil, err
	}
	if u.Email, err = text("email", 254, false); err != nil {
		return nil, err
	}
	if u.Name, err = text("name", 200, false); err != nil {
		return nil, err
	}
	if v, ok := m["email_verified"]; ok && v != nil {
		b, ok := v.(bool)
		if !ok {
			return nil, errors.New(`"email_verified" must be true or false`)
		}
		u.EmailVerified = b
	}
	for k, v := range m {
		if standard[k] {
			continue
		}
		if len(u.Claims) >= MaxClaims {
			return nil, fmt.Errorf("at most %d custom claims are accepted", MaxClaims)
		}
		if k == "" || len(k) > 64 || !utf8.ValidString(k) || strings.ContainsRune(k, 0) {
			return nil, errors.New("claim names must be 1 to 64 bytes of text")
		}
		if principal.ReservedClaim(k) {
			// A protocol claim (iss, aud, exp, scope, acr, …) is not
			// something an application says about a user; a tool reading
			// principal.Claims["iss"] must not find the app's word there.
			return nil, fmt.Errorf("claim %q is a protocol claim, not a user attribute", k)
		}
		cv, err := claimValue(v)
		if err != nil {
			return nil, fmt.Errorf("claim %q: %v", k, err)
		}
		if k == principal.RolesClaim {
			// Kept as every login source keeps claim roles
			// (principal.ClaimRoles: bounded, plain, never "admin"), so
			// neither the session nor an access token copying "roles"
			// ever says admin.
			roles := principal.ClaimRoles(cv)
			if len(roles) == 0 {
				continue
			}
			cv = roles
		}
		u.Claims[k] = cv
	}
	return u, nil
}

// encodeUser is the stored form of u: the flat JSON object parseUser
// reads back at the callback (on whichever node).
func encodeUser(u *User) string {
	m := make(map[string]any, len(u.Claims)+4)
	for k, v := range u.Claims {
		m[k] = v
	}
	m["sub"] = u.Subject
	if u.Email != "" {
		m["email"] = u.Email
	}
	if u.Name != "" {
		m["name"] = u.Name
	}
	if u.EmailVerified {
		m["email_verified"] = true
	}
	b, _ := json.Marshal(m) // strings, json.Numbers, bools and []string only
	return string(b)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// claimValue accepts a string, number, bool or array of strings whose JSON
// form is at most MaxClaimBytes (session.ClaimValue: the same rules for
// every login source that keeps claims with a session).
func claimValue(v any) (any, error) { return session.ClaimValue(v) }

// callback: the browser comes back from the operator app.
func (h *Handler) callback(w http.ResponseWriter, r *http.Request) {
	pageHeaders(w)
	q := r.URL.Query()
	var flowID string
	fail := func(status int, reason string, details map[string]any, title, msg string) {
		d := map[string]any{"stage": "callback"}
		if h.refusalLimited(w, r, reason, d, h.opts.ErrorPage) {
			return
		}
		if flowID != "" {
			d["login_flow"] = flowID
		}
		for k, v := range details {
			d[k] = v
		}
		h.opts.Audit.Record(r.Context(), audit.Event{Type: TypeRefused, Outcome: store.OutcomeDeny, Reason: reason, Details: d})
		h.opts.ErrorPage(w, r, status, title, msg)
	}

	f, reason, err := h.take(r, q.Get("state"), q.Get("code"))
	flowID = f.ID
	switch {
	case err != nil:
		h.unavailable(w, r, err)
		return
	case reason == ReasonBrowserMismatch:
		fail(http.StatusBadRequest, reason, map[string]any{"used_up": true,
			"note": "the callback code was right but the browser did not start this sign-in: a login link opened in another browser, possibly forwarded by whoever started it"},
			"Sign-in started in another browser",
			"This sign-in was started in another browser, so it cannot be finished here. It has been cancelled, and nobody can use it now. "+
				"If you did not start it, someone may have sent you this link to get into your account; they have not got in. "+
				"If you did start it, go back to the sign-in page in this browser and sign in again.")
		return
	case reason == ReasonReplayed && h.signedIn(r):
		// Back after signing in: the link is used, the browser is in.
		// Audited like any replay; the user goes on, not to an error page.
		h.opts.Audit.Record(r.Context(), audit.Event{Type: TypeRefused, Outcome: store.OutcomeDeny, Reason: reason,
			Details: map[string]any{"stage": "callback", "login_flow": flowID, "note": "revisited by a signed-in browser (Back)"}})
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	case reason != "":
		fail(http.StatusBadRequest, reason, nil, "Sign-in expired or invalid",
			"This sign-in link is not valid (it is incomplete, was already used, or is older than 10 minutes). Go back to the sign-in page and try again.")
		return
	}
	u, err := parseUser(strings.NewReader(f.User))
	if err != nil {
		h.unavailable(w, r, fmt.Errorf("the stored user of %s does not read back: %w", f.ID, err))
		return
	}
	h.cookie.Clear(w)

	acct, err := h.opts.Accounts.Provision(r.Context(), identity.ExternalAccount{
		Issuer: h.issuer, Subject: u.Subject, Email: u.Email, EmailVerified: u.EmailVerified,
		Name: u.Name, Via: "custom_login",
	})
	if err != nil {
		if _, ok := errors.AsType[*identity.ValidationError](err); ok {
			fail(http.StatusForbidden, ReasonInvalidClaims, map[string]any{"error": err.Error()}, "Sign-in refused",
				"Your sign-in application described your account in a way mcpgate cannot use. Ask your administrator.")
			return
		}
		h.unavailable(w, r, err)
		return
	}
	if acct.Disabled {
		fail(http.StatusForbidden, ReasonUserDisabled, map[string]any{"user_id": acct.ID}, "Account disabled",
			"Your mcpgate account is disabled. Ask your mcpgate administrator.")
		return
	}
	sess, err := h.opts.Sessions.StartWithClaims(r.Context(), w, r, acct, u.Claims)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	details := map[string]any{"login_flow": f.ID, "issuer": h.issuer, "subject": u.Subject}
	if len(u.Claims) > 0 {
		details["claims"] = slices.Sorted(maps.Keys(u.Claims)) // names only, as every login records them
	}
	h.opts.Audit.Record(r.Context(), audit.Event{
		Type: TypeCompleted, Outcome: store.OutcomeAllow, UserID: acct.ID, CredentialID: sess.ID, Details: details,
	})
	http.Redirect(w, r, f.ReturnTo, http.StatusSeeOther)
}

// take checks the callback's state and code and uses the login request
// up. It returns the used flow, or the flow (if any) and why it is
// refused, or a storage error.
//
// Without the request's callback code nothing is used up and the answer is
// unknown_request, whatever the state names: whoever holds a state (the
// browser that started, or anyone it leaked to) learns nothing about the
// request by polling, and cannot spoil the user's sign-in. With the code,
// the request is used up first (of racing callbacks on any nodes exactly
// one wins), and only then is the browser cookie checked: a browser with
// the code but without the cookie is the one the app sent back after
// someone else started the sign-in — exactly a forwarded login link — so
// the request must die there rather than wait for the starter's browser.
func (h *Handler) take(r *http.Request, state, code string) (store.LoginFlow, string, error) {
	if state == "" || len(state) > maxIDOrState || code == "" || len(code) > maxIDOrState {
		return store.LoginFlow{}, ReasonUnknownRequest, nil
	}
	st := h.opts.Flows.Store()
	f, err := st.GetLoginFlow(r.Context(), store.LoginFlowCustom, loginflow.Hash(state))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.LoginFlow{}, ReasonUnknownRequest, nil
	case err != nil:
		return store.LoginFlow{}, "", err
	case !loginflow.CallbackCodeMatches(f, code):
		return f, ReasonUnknownRequest, nil
	}
	f, err = st.UseLoginFlow(r.Context(), store.LoginFlowCustom, f.StateHash, h.opts.Now())
	switch {
	case errors.Is(err, store.ErrReplayed):
		return f, ReasonReplayed, nil
	case errors.Is(err, store.ErrExpired):
		return f, ReasonExpired, nil
	case errors.Is(err, store.ErrNotFound):
		return f, ReasonUnknownRequest, nil
	case err != nil:
		return f, "", err
	case !h.opts.Flows.Bound(r, h.cookie.Name, store.LoginFlowCustom, state):
		return f, ReasonBrowserMismatch, nil
	}
	return f, "", nil
}

// refusalLimited passes a refusal (reason) through the per-client refusal
// limit of loginflow; true when that has answered (429, or 503 when the
// limiter fails) and the refusal must be neither audited nor answered. The
// one note per client and minute is audited with details (the stage).
func (h *Handler) refusalLimited(w http.ResponseWriter, r *http.Request, reason string, details map[string]any, page loginflow.Page) bool {
	return h.opts.Flows.RefusalLimited(w, r, store.LoginFlowCustom, reason, page, func(reason string, more map[string]any) {
		for k, v := range details {
			more[k] = v
		}
		h.opts.Audit.Record(r.Context(), audit.Event{Type: TypeRefused, Outcome: store.OutcomeDeny, Reason: reason, Details: more})
	})
}

// jsonError answers the app's API call in the shape of the endpoint's
// other errors: {"error", "error_description"} (too_many_requests,
// temporarily_unavailable).
func jsonError(w http.ResponseWriter, _ *http.Request, status int, _, msg string) {
	code := "too_many_requests"
	if status == http.StatusServiceUnavailable {
		code = "temporarily_unavailable"
	}
	httpx.WriteJSON(w, status, map[string]string{"error": code, "error_description": msg})
}

func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	h.opts.Logger.LogAttrs(r.Context(), slog.LevelError, "customauth: login failed", slog.Any("err", err))
	w.Header().Set("Retry-After", "5")
	h.opts.ErrorPage(w, r, http.StatusServiceUnavailable, "Temporarily unavailable",
		"mcpgate could not complete this sign-in right now. Please try again in a moment.")
}

// signedIn reports whether r comes with a live mcpgate session.
func (h *Handler) signedIn(r *http.Request) bool {
	_, err := h.opts.Sessions.Current(r)
	return err == nil
}
