// Package customauth is "bring your own login": users who live in the
// operator's own application sign in to mcpgate through that application.
//
// The flow:
//
//	GET /login/custom?return_to=/local/path
//	  → a login request (id + state, single use, 10 minutes) is kept here in
//	    memory, the state is bound to this browser by an HttpOnly
//	    SameSite=Lax cookie holding HMAC(state), and the browser goes to
//	    <login URL>?login_request_id=…&state=…
//	POST /api/login-requests/{login_request_id}/user   (operator app → mcpgate)
//	  Authorization: Bearer <shared secret>, or Bearer <assertion>: a JWT
//	  signed with the app's private key (key-pair mode, assertion.go)
//	  {"sub","email","email_verified","name", …custom claims}
//	  → the user's description is checked and attached to the request (once)
//	GET /login/callback?state=…                          (browser)
//	  → state, request, freshness, single use and the browser cookie checked;
//	    the user provisioned through identity.Provisioner (issuer
//	    "custom:<login URL origin>", subject = sub), a session started with
//	    the custom claims, 303 to return_to.
//
// Audit: login_request.created, login_request.completed and
// login_request.refused (reason bad_secret or bad_assertion, unknown_request,
// expired, replayed, state_mismatch, browser_mismatch, invalid_claims).
package customauth

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/identity"
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
	ReasonStateMismatch   = "state_mismatch"
	ReasonBrowserMismatch = "browser_mismatch"
	ReasonInvalidClaims   = "invalid_claims"
	ReasonUserDisabled    = "user_disabled"
)

// RequestTTL is how long a login request may take.
const RequestTTL = 10 * time.Minute

// Limits on the user description the operator app posts.
const (
	MaxBodyBytes   = 16 << 10
	MaxClaims      = 32
	MaxClaimBytes  = 1 << 10
	maxSubject     = 255
	maxPending     = 10_000
	bindCookie     = "mcpgate_login_request"
	cookiePath     = "/login/"
	maxIDOrState   = 100
	MinSecretBytes = 32
)

// Standard members of the posted body; everything else is a custom claim.
var standard = map[string]bool{"sub": true, "email": true, "email_verified": true, "name": true}

// Options configure the handler. LoginURL, Secret or PublicKeys, Accounts,
// Sessions, Audit, ErrorPage and SafeReturnTo are required.
type Options struct {
	LoginURL string // the operator app's login page
	Secret   []byte // shared secret the app authenticates with (≥ 32 bytes)
	BaseURL  string // mcpgate's public URL (Secure cookies when https)
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

type request struct {
	id, state string
	returnTo  string
	expires   time.Time
	user      *User
	used      bool // the callback consumed it (kept until expiry to say "replayed")
}

// Handler serves the custom login endpoints.
type Handler struct {
	opts   Options
	issuer string
	mac    []byte // key of the browser-binding HMAC (per process, like the requests)
	auth   appAuth

	mu      sync.Mutex
	byID    map[string]*request
	byState map[string]*request
}

// New builds the handler.
func New(opts Options) (*Handler, error) {
	if opts.Accounts == nil || opts.Sessions == nil || opts.Audit == nil || opts.ErrorPage == nil || opts.SafeReturnTo == nil {
		return nil, errors.New("customauth.New: Accounts, Sessions, Audit, ErrorPage and SafeReturnTo are required")
	}
	iss, err := Issuer(opts.LoginURL)
	if err != nil {
		return nil, err
	}
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
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &Handler{opts: opts, issuer: iss, mac: key, auth: auth, byID: map[string]*request{}, byState: map[string]*request{}}, nil
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
	req := &request{
		id: "lr_" + randToken(), state: randToken(),
		returnTo: h.opts.SafeReturnTo(r.URL.Query().Get("return_to")),
		expires:  h.opts.Now().Add(RequestTTL),
	}
	if !h.put(req) {
		w.Header().Set("Retry-After", "60")
		h.opts.ErrorPage(w, r, http.StatusServiceUnavailable, "Too many sign-ins in progress", "Please try again in a minute.")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: bindCookie, Value: h.bind(req.state), Path: cookiePath, MaxAge: int(RequestTTL / time.Second),
		HttpOnly: true, Secure: strings.HasPrefix(h.opts.BaseURL, "https://"), SameSite: http.SameSiteLaxMode,
	})
	h.opts.Audit.Record(r.Context(), audit.Event{Type: TypeCreated, Outcome: store.OutcomeAllow,
		Details: map[string]any{"login_request_id": req.id}})
	u, _ := url.Parse(h.opts.LoginURL)
	q := u.Query()
	q.Set("login_request_id", req.id)
	q.Set("state", req.state)
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// bind is the cookie value that ties state to the browser that started it.
func (h *Handler) bind(state string) string {
	m := hmac.New(sha256.New, h.mac)
	m.Write([]byte("mcpgate custom login\x00" + state))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (h *Handler) put(req *request) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.byID) >= maxPending {
		h.sweepLocked()
		if len(h.byID) >= maxPending {
			return false
		}
	}
	h.byID[req.id] = req
	h.byState[req.state] = req
	return true
}

func (h *Handler) sweepLocked() {
	now := h.opts.Now()
	for id, v := range h.byID {
		if now.After(v.expires) {
			delete(h.byID, id)
			delete(h.byState, v.state)
		}
	}
}

// postUser: the operator app says who signed in.
func (h *Handler) postUser(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	id := r.PathValue("id")
	refuse := func(status int, reason, msg string, details map[string]any) {
		d := map[string]any{"stage": "post_user"}
		if len(id) <= maxIDOrState {
			d["login_request_id"] = strings.ToValidUTF8(id, "?")
		}
		for k, v := range details {
			d[k] = v
		}
		h.opts.Audit.Record(r.Context(), audit.Event{Type: TypeRefused, Outcome: store.OutcomeDeny, Reason: reason, Details: d})
		httpx.WriteJSON(w, status, map[string]string{"error": reason, "error_description": msg})
	}
	if f := h.auth.authenticate(r, id); f != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mcpgate login requests"`)
		refuse(http.StatusUnauthorized, f.reason, f.message, f.details)
		return
	}
	u, err := parseUser(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		refuse(http.StatusBadRequest, ReasonInvalidClaims, err.Error(), nil)
		return
	}
	h.mu.Lock()
	req := h.byID[id]
	var reason string
	switch {
	case req == nil:
		reason = ReasonUnknownRequest
	case h.opts.Now().After(req.expires):
		reason = ReasonExpired
	case req.used || req.user != nil:
		reason = ReasonReplayed
	default:
		req.user = u
	}
	h.mu.Unlock()
	switch reason {
	case ReasonUnknownRequest:
		refuse(http.StatusNotFound, reason, "no such login request", nil)
	case ReasonExpired:
		refuse(http.StatusGone, reason, "the login request is older than 10 minutes; start the sign-in again", nil)
	case ReasonReplayed:
		refuse(http.StatusConflict, reason, "a user was already posted for this login request", nil)
	default:
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok", "callback": "/login/callback?state=" + url.QueryEscape(req.state)})
	}
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
		cv, err := claimValue(v)
		if err != nil {
			return nil, fmt.Errorf("claim %q: %v", k, err)
		}
		u.Claims[k] = cv
	}
	return u, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// claimValue accepts a string, number, bool or array of strings whose JSON
// form is at most MaxClaimBytes.
func claimValue(v any) (any, error) {
	switch v := v.(type) {
	case string, json.Number, bool:
		if s, ok := v.(string); ok && (!utf8.ValidString(s) || strings.ContainsRune(s, 0)) {
			return nil, errors.New("must be valid text")
		}
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok || !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
				return nil, errors.New("arrays may hold strings only")
			}
			out = append(out, s)
		}
		if b, _ := json.Marshal(out); len(b) > MaxClaimBytes {
			return nil, fmt.Errorf("is longer than %d bytes", MaxClaimBytes)
		}
		return out, nil
	default:
		return nil, errors.New("must be a string, number, boolean or array of strings")
	}
	if b, _ := json.Marshal(v); len(b) > MaxClaimBytes {
		return nil, fmt.Errorf("is longer than %d bytes", MaxClaimBytes)
	}
	return v, nil
}

// callback: the browser comes back from the operator app.
func (h *Handler) callback(w http.ResponseWriter, r *http.Request) {
	pageHeaders(w)
	q := r.URL.Query()
	state, wantID := q.Get("state"), q.Get("login_request_id")
	retry := "Go back to the sign-in page and try again."
	var reqID string
	fail := func(status int, reason string, details map[string]any, title, msg string) {
		d := map[string]any{"stage": "callback"}
		if reqID != "" {
			d["login_request_id"] = reqID
		}
		for k, v := range details {
			d[k] = v
		}
		h.opts.Audit.Record(r.Context(), audit.Event{Type: TypeRefused, Outcome: store.OutcomeDeny, Reason: reason, Details: d})
		h.opts.ErrorPage(w, r, status, title, msg)
	}
	invalid := "This sign-in link is not valid (it was already used, is older than 10 minutes, or was started in another browser). " + retry

	h.mu.Lock()
	var req *request
	if state != "" && len(state) <= maxIDOrState {
		req = h.byState[state]
	}
	reason := ""
	var u *User
	switch {
	case req == nil:
		reason = ReasonUnknownRequest
	case wantID != "" && wantID != req.id:
		reason = ReasonStateMismatch
	case h.opts.Now().After(req.expires):
		reason = ReasonExpired
	case req.used:
		reason = ReasonReplayed
	case !h.boundTo(r, req.state):
		reason = ReasonBrowserMismatch
	case req.user == nil:
		reason = ReasonStateMismatch // the app never said who signed in for this request
	default:
		req.used = true // single use, from here on
		u = req.user
	}
	if req != nil {
		reqID = req.id
	}
	h.mu.Unlock()
	if reason != "" {
		fail(http.StatusBadRequest, reason, nil, "Sign-in expired or invalid", invalid)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: bindCookie, Value: "", Path: cookiePath, MaxAge: -1, HttpOnly: true,
		Secure: strings.HasPrefix(h.opts.BaseURL, "https://"), SameSite: http.SameSiteLaxMode})

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
	h.opts.Audit.Record(r.Context(), audit.Event{
		Type: TypeCompleted, Outcome: store.OutcomeAllow, UserID: acct.ID, CredentialID: sess.ID,
		Details: map[string]any{"login_request_id": reqID, "issuer": h.issuer, "subject": u.Subject, "claims": u.Claims},
	})
	http.Redirect(w, r, req.returnTo, http.StatusSeeOther)
}

func (h *Handler) boundTo(r *http.Request, state string) bool {
	c, err := r.Cookie(bindCookie)
	if err != nil {
		return false
	}
	return hmac.Equal([]byte(c.Value), []byte(h.bind(state)))
}

func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	h.opts.Logger.LogAttrs(r.Context(), slog.LevelError, "customauth: login failed", slog.Any("err", err))
	w.Header().Set("Retry-After", "5")
	h.opts.ErrorPage(w, r, http.StatusServiceUnavailable, "Temporarily unavailable",
		"mcpgate could not complete this sign-in right now. Please try again in a moment.")
}

func randToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
