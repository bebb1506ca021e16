package customauth

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/loginflow"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

const secret = "0123456789abcdef0123456789abcdef-test"

type recorder struct {
	mu  sync.Mutex
	evs []audit.Event
}

func (r *recorder) Record(_ context.Context, e audit.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, e)
}

func (r *recorder) last(typ string) audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.evs) - 1; i >= 0; i-- {
		if r.evs[i].Type == typ {
			return r.evs[i]
		}
	}
	return audit.Event{}
}

type fixture struct {
	t   *testing.T
	h   *Handler
	mux *http.ServeMux
	rec *recorder
	now time.Time
}

var serverKey = []byte("0123456789abcdef0123456789abcdef")

// newFixture: tests of refusals make more of them from one address than
// the default refusal budget allows (TestRefusalFlood tests that).
func newFixture(t *testing.T) *fixture {
	return newFixtureWith(t, loginflow.Options{Store: storetest.SQLite(t), ServerKey: serverKey,
		RefusalLimiter: ratelimit.NewMemory(time.Hour, 1000, 0)})
}

// newFixtureWith builds the handler over fo.Store (a *sqlstore.DB).
func newFixtureWith(t *testing.T, fo loginflow.Options) *fixture {
	return newFixtureAt(t, fo, "http://127.0.0.1")
}

// newFixtureAt builds the handler for mcpgate at public URL base.
func newFixtureAt(t *testing.T, fo loginflow.Options, base string) *fixture {
	db := fo.Store.(*sqlstore.DB)
	f := &fixture{t: t, rec: &recorder{}, now: time.Now(), mux: http.NewServeMux()}
	clock := func() time.Time { return f.now }
	fo.Logger = slog.New(slog.DiscardHandler)
	flows, err := loginflow.New(fo)
	if err != nil {
		t.Fatal(err)
	}
	users := identity.New(db, f.rec)
	h, err := New(Options{
		LoginURL: "https://app.example.com/login", Secret: []byte(secret), BaseURL: base, Flows: flows,
		Accounts: identity.NewProvisioner(users, db), Sessions: session.New(db, f.rec, session.Options{}),
		Audit: f.rec, SafeReturnTo: func(s string) string {
			if strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "//") {
				return s
			}
			return "/account"
		},
		ErrorPage: func(w http.ResponseWriter, _ *http.Request, status int, title, msg string) {
			http.Error(w, title+": "+msg, status)
		},
		Now: clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.h = h
	h.Routes(f.mux)
	return f
}

func (f *fixture) do(method, target, body string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	f.mux.ServeHTTP(w, r)
	return w
}

// start begins a login; it returns the id, state and browser cookie.
func (f *fixture) start() (id, state, cookie string) {
	f.t.Helper()
	w := f.do("GET", "/login/custom?return_to=%2Foauth%2Fconsent%3Fx%3D1", "", nil)
	if w.Code != http.StatusSeeOther {
		f.t.Fatalf("start: %d %s", w.Code, w.Body)
	}
	u, _ := url.Parse(w.Header().Get("Location"))
	if u.Host != "app.example.com" || u.Path != "/login" {
		f.t.Fatalf("redirected to %s", u)
	}
	c := w.Result().Cookies()[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Name != f.h.cookie.Name {
		f.t.Fatalf("cookie %+v", c)
	}
	return u.Query().Get("login_request_id"), u.Query().Get("state"), c.Name + "=" + c.Value
}

func (f *fixture) post(id, auth, body string) *httptest.ResponseRecorder {
	return f.do("POST", "/api/login-requests/"+id+"/user", body, map[string]string{"Authorization": auth, "Content-Type": "application/json"})
}

const good = `{"sub":"u-1","email":"a@example.com","email_verified":true,"name":"A","roles":["member"],"organization_id":"org-1","level":3,"beta":true}`

// postOK posts body for login request id with the shared secret and
// returns the redirect_to of mcpgate's answer.
func (f *fixture) postOK(id, body string) string {
	f.t.Helper()
	return f.redirectOf(f.post(id, "Bearer "+secret, body))
}

// redirectOf is the redirect_to of a 200 answer to a posted user.
func (f *fixture) redirectOf(w *httptest.ResponseRecorder) string {
	f.t.Helper()
	var answer map[string]string
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &answer) != nil || answer["status"] != "ok" || len(answer) != 2 {
		f.t.Fatalf("post: %d %s", w.Code, w.Body)
	}
	if !strings.HasPrefix(answer["redirect_to"], f.h.opts.BaseURL+"/login/callback?state=") {
		f.t.Fatalf("redirect_to %q is not mcpgate's callback", answer["redirect_to"])
	}
	return answer["redirect_to"]
}

// callback sends a browser with cookie to target, an absolute callback
// URL (redirect_to) or a path with a query.
func (f *fixture) callback(target, cookie string) *httptest.ResponseRecorder {
	u, err := url.Parse(target)
	if err != nil {
		f.t.Fatal(err)
	}
	return f.do("GET", "/login/callback?"+u.RawQuery, "", map[string]string{"Cookie": cookie})
}

// callbackURL is the callback path for state and code.
func callbackURL(state, code string) string {
	return "/login/callback?state=" + url.QueryEscape(state) + "&code=" + url.QueryEscape(code)
}

// stateAndCode splits a redirect_to.
func stateAndCode(t *testing.T, redirectTo string) (state, code string) {
	t.Helper()
	u, err := url.Parse(redirectTo)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("state"), u.Query().Get("code")
}

func (f *fixture) wantRefused(reason string) {
	f.t.Helper()
	if ev := f.rec.last(TypeRefused); ev.Reason != reason {
		f.t.Fatalf("last refusal = %q (%+v), want %q", ev.Reason, ev, reason)
	}
	f.rec.mu.Lock()
	f.rec.evs = nil
	f.rec.mu.Unlock()
}

// TestHappyPath: the app posts the user and gets the callback URL for the
// browser (the request's state and a one-time code); that browser, which
// started the sign-in, signs in; the audit record names the claims, not
// their values.
func TestHappyPath(t *testing.T) {
	f := newFixture(t)
	id, state, cookie := f.start()
	redirect := f.postOK(id, good)
	gotState, code := stateAndCode(t, redirect)
	if gotState != state || len(code) != 43 || redirect != "http://127.0.0.1"+callbackURL(state, code) {
		t.Fatalf("redirect_to %q, want the callback with this request's state and a 256-bit code", redirect)
	}
	w := f.callback(redirect, cookie)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/oauth/consent?x=1" {
		t.Fatalf("callback: %d %s %s", w.Code, w.Header().Get("Location"), w.Body)
	}
	ev := f.rec.last(TypeCompleted)
	if ev.UserID == "" || ev.Details["subject"] != "u-1" || ev.Details["issuer"] != "custom:https://app.example.com" {
		t.Fatalf("completed = %+v", ev)
	}
	if !cmp.Equal(ev.Details["claims"], []string{"beta", "level", "organization_id", "roles"}) {
		t.Errorf("completed claims = %#v, want the claim names only", ev.Details["claims"])
	}
	// Replaying the callback is refused.
	if w := f.callback(redirect, cookie); w.Code != http.StatusBadRequest {
		t.Errorf("replay without a session: %d, want the error page", w.Code)
	}
	f.wantRefused(ReasonReplayed)
	// Back after signing in: the browser that holds the new session goes
	// on to its account instead of an error page; still audited.
	var session string
	for _, c := range w.Result().Cookies() {
		if strings.Contains(c.Name, "session") && c.Value != "" {
			session = c.Name + "=" + c.Value
		}
	}
	if session == "" {
		t.Fatalf("no session cookie from the callback: %v", w.Result().Cookies())
	}
	if back := f.callback(redirect, cookie+"; "+session); back.Code != http.StatusSeeOther || back.Header().Get("Location") != "/" {
		t.Errorf("Back to the used callback while signed in: %d %q, want 303 to /", back.Code, back.Header().Get("Location"))
	}
	f.wantRefused(ReasonReplayed)
}

func TestRefusals(t *testing.T) {
	f := newFixture(t)
	auth := "Bearer " + secret

	// Wrong, missing, or non-Bearer secret: 401, nothing stored.
	id, state, cookie := f.start()
	for _, a := range []string{"Bearer wrong", "", "Basic " + secret, "Bearer " + secret + "x"} {
		if w := f.post(id, a, good); w.Code != http.StatusUnauthorized {
			t.Fatalf("secret %q: %d", a, w.Code)
		}
		f.wantRefused(ReasonBadSecret)
	}
	// The callback before any user was posted: there is no code yet.
	f.callback("/login/callback?state="+url.QueryEscape(state), cookie)
	f.wantRefused(ReasonUnknownRequest)
	f.callback(callbackURL(state, loginflow.Token()), cookie)
	f.wantRefused(ReasonUnknownRequest)

	// Unknown request id.
	if w := f.post("lr_nope", auth, good); w.Code != http.StatusNotFound {
		t.Fatalf("unknown: %d", w.Code)
	}
	f.wantRefused(ReasonUnknownRequest)

	// Absurd claims: 400, nothing stored (the request stays usable).
	bad := []string{
		``, `[]`, `"x"`, `{}`, `{"sub":""}`, `{"sub":"` + strings.Repeat("a", 256) + `"}`, `{"sub":1}`,
		`{"sub":"u","email_verified":"yes"}`, `{"sub":"u","x":{"a":1}}`, `{"sub":"u","x":[1,2]}`, `{"sub":"u","x":null}`,
		`{"sub":"u","x":"` + strings.Repeat("a", 1100) + `"}`, `{"sub":"u"} {"sub":"v"}`,
		`{"sub":"u","x":["` + strings.Repeat("a", 600) + `","` + strings.Repeat("b", 600) + `"]}`,
		`{"sub":"u","pad":"` + strings.Repeat("a", 17<<10) + `"}`,
		// A repeated member, at any level, even with the same value.
		`{"sub":"u-100","name":"x","sub":"u-1"}`, `{"sub":"u","sub":"u"}`,
		`{"sub":"u","roles":["member"],"roles":["auditor"]}`, `{"sub":"u","x":{"a":1,"a":2}}`,
	}
	many := `{"sub":"u"`
	for i := range 33 {
		many += `,"c` + string(rune('a'+i%26)) + string(rune('a'+i/26)) + `":1`
	}
	bad = append(bad, many+"}")
	for _, b := range bad {
		w := f.post(id, auth, b)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "error_description") {
			t.Fatalf("body %.60q: %d %s", b, w.Code, w.Body)
		}
		// The operator's audit log says what was wrong, as the app was told.
		if ev := f.rec.last(TypeRefused); ev.Details["error"] == nil || ev.Details["error"] == "" {
			t.Errorf("body %.60q: the refusal's audit details %v do not say why", b, ev.Details)
		}
		f.wantRefused(ReasonInvalidClaims)
	}
	// Still usable after the bad bodies; a second POST is refused.
	redirect := f.postOK(id, good)
	_, code := stateAndCode(t, redirect)
	if w := f.post(id, auth, `{"sub":"evil"}`); w.Code != http.StatusConflict || strings.Contains(w.Body.String(), "redirect_to") {
		t.Fatalf("second post: %d %s", w.Code, w.Body)
	}
	f.wantRefused(ReasonReplayed)

	// Without this request's code, whatever the state, the cookie, or
	// the login request id: unknown_request, and nothing is used up.
	id2, state2, cookie2 := f.start()
	_, code2 := stateAndCode(t, f.postOK(id2, `{"sub":"u-2"}`))
	for name, target := range map[string]string{
		"forged state":           callbackURL("forged", code),
		"no state":               callbackURL("", code),
		"no code":                "/login/callback?state=" + url.QueryEscape(state),
		"empty code":             callbackURL(state, ""),
		"forged code":            callbackURL(state, loginflow.Token()),
		"another request's code": callbackURL(state, code2),
		"the login request id":   callbackURL(state, id),
		"the state as the code":  callbackURL(state, state),
		"an oversized code":      callbackURL(state, code+strings.Repeat("A", 100)),
	} {
		if w := f.callback(target, cookie); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "not valid") {
			t.Fatalf("%s: %d %s", name, w.Code, w.Body)
		}
		f.wantRefused(ReasonUnknownRequest)
	}

	// None of the refusals consumed the request: the real browser signs in.
	if w := f.callback(redirect, cookie); w.Code != http.StatusSeeOther {
		t.Fatalf("callback: %d %s", w.Code, w.Body)
	}
	if ev := f.rec.last(TypeCompleted); ev.Details["subject"] != "u-1" {
		t.Fatalf("completed = %+v", ev)
	}
	// Posting for a consumed request is a replay too.
	f.post(id, auth, good)
	f.wantRefused(ReasonReplayed)
	// The other request is untouched too.
	if w := f.callback(callbackURL(state2, code2), cookie2); w.Code != http.StatusSeeOther {
		t.Fatalf("the other request's callback: %d %s", w.Code, w.Body)
	}
}

// TestForwardedLoginLink (review #5, F1): whoever starts a sign-in holds
// the binding cookie but never sees the callback code; the browser the
// app redirects (the victim's, who signed in at the app through a
// forwarded link) has the code but not the cookie. That browser uses the
// request up and is told what happened; the starter's browser then gets
// nothing, with or without guessing.
func TestForwardedLoginLink(t *testing.T) {
	for name, victimCookie := range map[string]func(f *fixture) string{
		"no cookie":                   func(*fixture) string { return "" },
		"its own cookie of a request": func(f *fixture) string { _, _, c := f.start(); return c },
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			id, state, attackerCookie := f.start()
			// The attacker polls before anything happened: nothing to learn.
			f.callback("/login/callback?state="+url.QueryEscape(state), attackerCookie)
			f.wantRefused(ReasonUnknownRequest)

			// The victim signs in at the app; the app posts the victim and
			// redirects the victim's browser.
			redirect := f.postOK(id, `{"sub":"victim","email":"v@example.com","email_verified":true}`)
			w := f.callback(redirect, victimCookie(f))
			body := w.Body.String()
			if w.Code != http.StatusBadRequest || !strings.Contains(body, "started in another browser") ||
				!strings.Contains(body, "someone may have sent you this link") || len(w.Result().Cookies()) != 0 {
				t.Fatalf("the victim's callback: %d %v %s", w.Code, w.Result().Cookies(), body)
			}
			ev := f.rec.last(TypeRefused)
			if ev.Reason != ReasonBrowserMismatch || ev.Details["used_up"] != true || ev.Details["login_flow"] == nil {
				t.Fatalf("refusal = %+v", ev)
			}
			f.wantRefused(ReasonBrowserMismatch)

			// The attacker's browser, with its cookie: no code, or even the
			// victim's code — the request is gone.
			f.callback("/login/callback?state="+url.QueryEscape(state), attackerCookie)
			f.wantRefused(ReasonUnknownRequest)
			if w := f.callback(redirect, attackerCookie); w.Code != http.StatusBadRequest {
				t.Fatalf("the starter's browser with the code after the victim's refusal: %d %s", w.Code, w.Body)
			}
			f.wantRefused(ReasonReplayed)
			if ev := f.rec.last(TypeCompleted); ev.Type != "" {
				t.Fatalf("a sign-in completed: %+v", ev)
			}
		})
	}
}

// TestBindingCookieOnHTTPS (review #5, F5): on an https public URL the
// binding cookie is a __Host- cookie (Path=/, Secure), which a sibling
// subdomain cannot set; the plain name is not read there, so a planted
// mcpgate_login_request cookie binds nothing.
func TestBindingCookieOnHTTPS(t *testing.T) {
	f := newFixtureAt(t, loginflow.Options{Store: storetest.SQLite(t), ServerKey: serverKey}, "https://mcp.example.com")
	w := f.do("GET", "/login/custom", "", nil)
	cs := w.Result().Cookies()
	if len(cs) != 1 || cs[0].Name != "__Host-mcpgate_login_request" || cs[0].Path != "/" || !cs[0].Secure || !cs[0].HttpOnly || cs[0].Domain != "" {
		t.Fatalf("binding cookie on https: %+v", cs)
	}
	loc, _ := url.Parse(w.Header().Get("Location"))
	id, value := loc.Query().Get("login_request_id"), cs[0].Value
	redirect := f.postOK(id, good)
	if !strings.HasPrefix(redirect, "https://mcp.example.com/login/callback?") {
		t.Fatalf("redirect_to %q", redirect)
	}
	// A cookie under the plain name (as a sibling host could plant one) is
	// not the binding: refused, and the request is used up.
	if w := f.callback(redirect, "mcpgate_login_request="+value); w.Code != http.StatusBadRequest {
		t.Fatalf("plain-named cookie on https: %d %s", w.Code, w.Body)
	}
	f.wantRefused(ReasonBrowserMismatch)

	id, _, cookie := f.start()
	w = f.callback(f.postOK(id, good), cookie)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("callback with the __Host- cookie: %d %s", w.Code, w.Body)
	}
	if c := w.Result().Cookies(); len(c) == 0 || c[0].Name != "__Host-mcpgate_login_request" || c[0].MaxAge >= 0 || c[0].Path != "/" {
		t.Errorf("the binding cookie is not cleared: %+v", c)
	}

	// On plain http (loopback development) it keeps its plain name and
	// path.
	plain := newFixture(t)
	if c := plain.do("GET", "/login/custom", "", nil).Result().Cookies(); len(c) != 1 || c[0].Name != "mcpgate_login_request" || c[0].Path != "/login/" || c[0].Secure {
		t.Errorf("binding cookie on http: %+v", c)
	}
}

// TestPostedUser: what the app posts is read one way only — a repeated
// member is refused (review #5, F11) — and the roles claim is kept as
// every login source keeps claim roles: bounded, never "admin" (F12).
func TestPostedUser(t *testing.T) {
	for _, body := range []string{
		`{"sub":"u-100","name":"x","roles":["member"],"sub":"u-1","roles":["auditor"]}`,
		`{"sub":"u-1","email":"a@example.com","email":"b@example.com"}`,
	} {
		if u, err := parseUser(strings.NewReader(body)); err == nil || !strings.Contains(err.Error(), "appears twice") {
			t.Errorf("parseUser(%s) = %+v, %v; want a refused repeated member", body, u, err)
		}
	}
	// Protocol claims are not user attributes: the app cannot set them.
	for _, name := range []string{"iss", "AUD", "exp", "scope", "acr", "client_id"} {
		body := `{"sub":"u-1","` + name + `":"x"}`
		if u, err := parseUser(strings.NewReader(body)); err == nil || !strings.Contains(err.Error(), "protocol claim") {
			t.Errorf("parseUser(%s) = %+v, %v; want a refused protocol claim", body, u, err)
		}
	}
	for body, want := range map[string][]string{
		`{"sub":"u","roles":["admin","auditor","Admin","auditor","ADMIN"]}`:   {"auditor"},
		`{"sub":"u","roles":"member  auditor admin"}`:                         {"member", "auditor"},
		`{"sub":"u","roles":["admin"]}`:                                       nil,
		`{"sub":"u","roles":["bad role","` + strings.Repeat("r", 129) + `"]}`: nil,
	} {
		u, err := parseUser(strings.NewReader(body))
		if err != nil {
			t.Fatalf("parseUser(%s): %v", body, err)
		}
		got, ok := u.Claims["roles"]
		if want == nil && ok || want != nil && !cmp.Equal(got, want) {
			t.Errorf("parseUser(%s) roles = %#v (present %v), want %#v", body, got, ok, want)
		}
		// The stored form reads back the same, on any node.
		again, err := parseUser(strings.NewReader(encodeUser(u)))
		if err != nil || !cmp.Equal(again, u) {
			t.Errorf("stored %s reads back as %+v, %v", encodeUser(u), again, err)
		}
	}
}

// TestRequestLogHidesLoginRequestID (review #5, I1): the request log shows
// the route of POST /api/login-requests/{id}/user, not the id.
func TestRequestLogHidesLoginRequestID(t *testing.T) {
	f := newFixture(t)
	var out strings.Builder
	h := httpx.Common(f.mux, slog.New(slog.NewTextHandler(&out, nil)), 1<<20, nil)
	id, _, _ := f.start()
	r := httptest.NewRequest("POST", "/api/login-requests/"+id+"/user", strings.NewReader(good))
	r.Header.Set("Authorization", "Bearer "+secret)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK || strings.Contains(out.String(), id) || !strings.Contains(out.String(), "/api/login-requests/{id}/user") {
		t.Fatalf("post %d; request log:\n%s", w.Code, out.String())
	}
}

func TestExpired(t *testing.T) {
	f := newFixture(t)
	id, _, _ := f.start()
	f.now = f.now.Add(RequestTTL + time.Second)
	if w := f.post(id, "Bearer "+secret, good); w.Code != http.StatusGone {
		t.Fatalf("post: %d", w.Code)
	}
	f.wantRefused(ReasonExpired)

	f.now = time.Now()
	id, _, cookie := f.start()
	redirect := f.postOK(id, good)
	f.now = f.now.Add(RequestTTL + time.Second)
	if w := f.callback(redirect, cookie); w.Code != http.StatusBadRequest {
		t.Fatalf("callback: %d", w.Code)
	}
	f.wantRefused(ReasonExpired)
}

func TestNewRefusesShortSecretAndBadURL(t *testing.T) {
	if _, err := Issuer("ftp://x/login"); err == nil {
		t.Fatal("ftp login URL accepted")
	}
	_, err := New(Options{Secret: []byte("short")})
	if err == nil {
		t.Fatal("New without options accepted")
	}
}

// TestTwoNodes: two handlers over one database with one server key (two
// mcpgate nodes behind a load balancer): a login request started on one
// is completed through the other, the stored row holds neither the id nor
// the state, and racing callbacks on both nodes sign in exactly once.
func TestTwoNodes(t *testing.T) {
	db := storetest.SQLite(t)
	a := newFixtureWith(t, loginflow.Options{Store: db, ServerKey: serverKey})
	b := newFixtureWith(t, loginflow.Options{Store: db, ServerKey: serverKey})

	id, state, cookie := a.start()
	redirect := b.postOK(id, good) // at the other node
	_, code := stateAndCode(t, redirect)
	var stored strings.Builder
	rows, err := db.SQL().QueryContext(t.Context(), `SELECT id, kind, provider, state_hash, request_hash, sealed, return_to, posted_user, callback_hash FROM login_flows`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var cols [9][]byte
		if err := rows.Scan(&cols[0], &cols[1], &cols[2], &cols[3], &cols[4], &cols[5], &cols[6], &cols[7], &cols[8]); err != nil {
			t.Fatal(err)
		}
		for _, c := range cols {
			stored.Write(c)
		}
	}
	rows.Close()
	if s := stored.String(); s == "" || strings.Contains(s, state) || strings.Contains(s, id) || strings.Contains(s, code) {
		t.Fatalf("the stored login flow holds the state, the login request id or the callback code in clear: %q", s)
	}

	if w := a.post(id, "Bearer "+secret, `{"sub":"evil"}`); w.Code != http.StatusConflict {
		t.Fatalf("second post at the first node: %d", w.Code)
	}
	const n = 8
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		node := []*fixture{a, b}[i%2]
		wg.Go(func() { codes[i] = node.callback(redirect, cookie).Code })
	}
	wg.Wait()
	won := 0
	for _, c := range codes {
		switch c {
		case http.StatusSeeOther:
			won++
		case http.StatusBadRequest:
		default:
			t.Errorf("callback answered %d", c)
		}
	}
	if won != 1 {
		t.Fatalf("racing callbacks on two nodes: %d signed in (codes %v), want exactly 1", won, codes)
	}
	var completed, replayed int
	for _, f := range []*fixture{a, b} {
		f.rec.mu.Lock()
		for _, ev := range f.rec.evs {
			switch {
			case ev.Type == TypeCompleted:
				completed++
				if ev.Details["subject"] != "u-1" || !slices.Contains(ev.Details["claims"].([]string), "organization_id") {
					t.Errorf("completed = %+v", ev)
				}
			case ev.Type == TypeRefused && ev.Reason == ReasonReplayed && ev.Details["stage"] == "callback":
				replayed++
			}
		}
		f.rec.mu.Unlock()
	}
	if completed != 1 || replayed != n-1 {
		t.Errorf("audit: %d completed, %d replayed; want 1 and %d", completed, replayed, n-1)
	}

	// A node with another server key can neither open the state to
	// answer the app (500) nor check the browser binding (the callback
	// is refused, and uses the request up like any callback with the
	// right code): every node must share the key.
	c := newFixtureWith(t, loginflow.Options{Store: db, ServerKey: []byte("another server key of 32 bytes!!")})
	id, _, _ = a.start()
	if w := c.post(id, "Bearer "+secret, good); w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "started again") {
		t.Fatalf("post at the node with another key: %d %s", w.Code, w.Body)
	}
	id, _, cookie = a.start()
	redirect = a.postOK(id, good)
	c.callback(redirect, cookie)
	c.wantRefused(ReasonBrowserMismatch)
	if w := b.callback(redirect, cookie); w.Code != http.StatusBadRequest {
		t.Fatalf("after the refusal at the odd node: %d %s", w.Code, w.Body)
	}
	b.wantRefused(ReasonReplayed)
}

// TestStartLimits: starting login requests is limited per client IP
// (429 with Retry-After, audited once) and in total (503 when too many
// are in progress), each answered with a readable page and nothing stored.
func TestStartLimits(t *testing.T) {
	db := storetest.SQLite(t)
	f := newFixtureWith(t, loginflow.Options{Store: db, ServerKey: serverKey,
		StartLimiter: ratelimit.NewMemory(time.Hour, 3, 0), MaxPending: 2})
	count := func() int {
		var n int
		if err := db.SQL().QueryRowContext(t.Context(), `SELECT COUNT(*) FROM login_flows`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	f.start()
	f.start()
	w := f.do("GET", "/login/custom", "", nil)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "60" || !strings.Contains(w.Body.String(), "Too many sign-ins in progress") {
		t.Fatalf("over the cap: %d %q %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	f.wantRefused(loginflow.ReasonTooManyPending)
	for i := range 3 {
		w := f.do("GET", "/login/custom", "", nil)
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "Too many sign-ins") ||
			len(w.Result().Cookies()) != 0 {
			t.Fatalf("start %d over the rate: %d %q %v %s", i+4, w.Code, w.Header().Get("Retry-After"), w.Result().Cookies(), w.Body)
		}
	}
	f.rec.mu.Lock()
	limited := 0
	for _, ev := range f.rec.evs {
		if ev.Type == TypeRefused && ev.Reason == loginflow.ReasonRateLimited {
			limited++
		}
	}
	f.rec.mu.Unlock()
	if limited != 1 {
		t.Errorf("%d rate_limited events for one flood, want 1", limited)
	}
	if n := count(); n != 2 {
		t.Errorf("%d login flows stored, want the 2 allowed", n)
	}
}
