package customauth

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
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
		LoginURL: "https://app.example.com/login", Secret: []byte(secret), BaseURL: "http://127.0.0.1", Flows: flows,
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
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Name != bindCookie {
		f.t.Fatalf("cookie %+v", c)
	}
	return u.Query().Get("login_request_id"), u.Query().Get("state"), c.Name + "=" + c.Value
}

func (f *fixture) post(id, auth, body string) *httptest.ResponseRecorder {
	return f.do("POST", "/api/login-requests/"+id+"/user", body, map[string]string{"Authorization": auth, "Content-Type": "application/json"})
}

const good = `{"sub":"u-1","email":"a@example.com","email_verified":true,"name":"A","roles":["member"],"organization_id":"org-1","level":3,"beta":true}`

func (f *fixture) callback(state, cookie string) *httptest.ResponseRecorder {
	return f.do("GET", "/login/callback?state="+url.QueryEscape(state), "", map[string]string{"Cookie": cookie})
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

func TestHappyPath(t *testing.T) {
	f := newFixture(t)
	id, state, cookie := f.start()
	if w := f.post(id, "Bearer "+secret, good); w.Code != 200 {
		t.Fatalf("post: %d %s", w.Code, w.Body)
	}
	w := f.callback(state, cookie)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/oauth/consent?x=1" {
		t.Fatalf("callback: %d %s %s", w.Code, w.Header().Get("Location"), w.Body)
	}
	ev := f.rec.last(TypeCompleted)
	if ev.UserID == "" || ev.Details["subject"] != "u-1" || ev.Details["issuer"] != "custom:https://app.example.com" {
		t.Fatalf("completed = %+v", ev)
	}
	// Replaying the callback is refused.
	f.callback(state, cookie)
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
	// The callback before any user was posted.
	f.callback(state, cookie)
	f.wantRefused(ReasonStateMismatch)

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
		f.wantRefused(ReasonInvalidClaims)
	}
	// Still usable after the bad bodies; a second POST is refused.
	if w := f.post(id, auth, good); w.Code != 200 {
		t.Fatalf("post: %d %s", w.Code, w.Body)
	}
	if w := f.post(id, auth, `{"sub":"evil"}`); w.Code != http.StatusConflict {
		t.Fatalf("second post: %d", w.Code)
	}
	f.wantRefused(ReasonReplayed)

	// A forged state, and a missing one.
	f.callback("forged", cookie)
	f.wantRefused(ReasonUnknownRequest)
	f.callback("", cookie)
	f.wantRefused(ReasonUnknownRequest)

	// Another browser (no cookie, or the cookie of another request).
	_, _, otherCookie := f.start()
	f.callback(state, "")
	f.wantRefused(ReasonBrowserMismatch)
	f.callback(state, otherCookie)
	f.wantRefused(ReasonBrowserMismatch)

	// A state from another request, with this request's id.
	id2, _, _ := f.start()
	w := f.do("GET", "/login/callback?state="+url.QueryEscape(state)+"&login_request_id="+id2, "", map[string]string{"Cookie": cookie})
	if w.Code != http.StatusBadRequest {
		t.Fatalf("mixed: %d", w.Code)
	}
	f.wantRefused(ReasonStateMismatch)

	// None of the refusals consumed the request: the real browser signs in.
	if w := f.callback(state, cookie); w.Code != http.StatusSeeOther {
		t.Fatalf("callback: %d %s", w.Code, w.Body)
	}
	if ev := f.rec.last(TypeCompleted); ev.Details["subject"] != "u-1" {
		t.Fatalf("completed = %+v", ev)
	}
	// Posting for a consumed request is a replay too.
	f.post(id, auth, good)
	f.wantRefused(ReasonReplayed)
}

func TestExpired(t *testing.T) {
	f := newFixture(t)
	id, state, cookie := f.start()
	f.now = f.now.Add(RequestTTL + time.Second)
	if w := f.post(id, "Bearer "+secret, good); w.Code != http.StatusGone {
		t.Fatalf("post: %d", w.Code)
	}
	f.wantRefused(ReasonExpired)

	f.now = time.Now()
	id, state, cookie = f.start()
	if w := f.post(id, "Bearer "+secret, good); w.Code != 200 {
		t.Fatalf("post: %d", w.Code)
	}
	f.now = f.now.Add(RequestTTL + time.Second)
	if w := f.callback(state, cookie); w.Code != http.StatusBadRequest {
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
	var stored strings.Builder
	rows, err := db.SQL().QueryContext(t.Context(), `SELECT id, kind, provider, state_hash, request_hash, return_to, posted_user FROM login_flows`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var cols [7][]byte
		if err := rows.Scan(&cols[0], &cols[1], &cols[2], &cols[3], &cols[4], &cols[5], &cols[6]); err != nil {
			t.Fatal(err)
		}
		for _, c := range cols {
			stored.Write(c)
		}
	}
	rows.Close()
	if s := stored.String(); s == "" || strings.Contains(s, state) || strings.Contains(s, id) {
		t.Fatalf("the stored login flow holds the state or the login request id in clear: %q", s)
	}

	if w := b.post(id, "Bearer "+secret, good); w.Code != 200 {
		t.Fatalf("post at the other node: %d %s", w.Code, w.Body)
	}
	if w := a.post(id, "Bearer "+secret, `{"sub":"evil"}`); w.Code != http.StatusConflict {
		t.Fatalf("second post at the first node: %d", w.Code)
	}
	const n = 8
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		node := []*fixture{a, b}[i%2]
		wg.Go(func() { codes[i] = node.callback(state, cookie).Code })
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
				if ev.Details["subject"] != "u-1" || ev.Details["claims"].(map[string]any)["organization_id"] != "org-1" {
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

	// A node with another server key cannot check the browser binding:
	// every node must share the key.
	c := newFixtureWith(t, loginflow.Options{Store: db, ServerKey: []byte("another server key of 32 bytes!!")})
	id, state, cookie = a.start()
	a.post(id, "Bearer "+secret, good)
	c.callback(state, cookie)
	c.wantRefused(ReasonBrowserMismatch)
	if w := b.callback(state, cookie); w.Code != http.StatusSeeOther {
		t.Fatalf("the refusal at the odd node used the request up: %d %s", w.Code, w.Body)
	}
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
