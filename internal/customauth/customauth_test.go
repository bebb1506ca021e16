package customauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/session"
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

func newFixture(t *testing.T) *fixture {
	db := storetest.SQLite(t)
	f := &fixture{t: t, rec: &recorder{}, now: time.Now(), mux: http.NewServeMux()}
	clock := func() time.Time { return f.now }
	users := identity.New(db, f.rec)
	h, err := New(Options{
		LoginURL: "https://app.example.com/login", Secret: []byte(secret), BaseURL: "http://127.0.0.1",
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
