package customauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/loginflow"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

// startFrom starts a login request from the client address remote
// ("ip:port"), with header name, value pairs h.
func (f *fixture) startFrom(remote string, h ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "/login/custom?return_to=%2Foauth%2Fconsent%3Fx%3D1", nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(h); i += 2 {
		r.Header.Set(h[i], h[i+1])
	}
	w := httptest.NewRecorder()
	f.mux.ServeHTTP(w, r)
	return w
}

func countFlows(t *testing.T, db *sqlstore.DB) int {
	t.Helper()
	var n int
	if err := db.SQL().QueryRowContext(t.Context(), `SELECT COUNT(*) FROM login_flows`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *fixture) reasons() []string {
	f.rec.mu.Lock()
	defer f.rec.mu.Unlock()
	var out []string
	for _, ev := range f.rec.evs {
		if ev.Type == TypeRefused {
			out = append(out, ev.Reason)
		}
	}
	return out
}

// REVIEW-5 F4: with the default start burst, one IPv6 /64 starting a sign-in
// from a new address each time gets one start budget, not one per
// address, so it cannot fill the sign-ins in progress for everybody else.
func TestIPv6SlashSixtyFourCannotFillTheTotal(t *testing.T) {
	db := storetest.SQLite(t)
	const total = 100
	f := newFixtureWith(t, loginflow.Options{Store: db, ServerKey: serverKey, MaxPending: total,
		StartLimiter: ratelimit.NewMemory(time.Hour, loginflow.DefaultStartBurst, 0)})
	ok := 0
	for i := range total {
		if f.startFrom(fmt.Sprintf("[2001:db8:1:1::%x]:4444", i+1)).Code == http.StatusSeeOther {
			ok++
		}
	}
	if ok != loginflow.DefaultStartBurst {
		t.Errorf("one /64 started %d sign-ins from %d addresses; want at most its one budget of %d", ok, total, loginflow.DefaultStartBurst)
	}
	if w := f.startFrom("198.51.100.7:5555"); w.Code != http.StatusSeeOther {
		t.Fatalf("another user's start after the /64's flood: %d %s", w.Code, w.Body)
	}
}

// REVIEW-5 F4 (2): one client holds at most MaxPendingPerSource sign-ins
// in progress: the next start is 429 with Retry-After and a readable page,
// stores nothing and is audited once; other clients still start, and a
// finished sign-in makes room again.
func TestSignInsInProgressPerClient(t *testing.T) {
	db := storetest.SQLite(t)
	f := newFixtureWith(t, loginflow.Options{Store: db, ServerKey: serverKey,
		StartLimiter: ratelimit.NewMemory(time.Hour, 1000, 0), MaxPending: 100, MaxPendingPerSource: 3})
	var first *httptest.ResponseRecorder
	for i := range 3 {
		w := f.startFrom(fmt.Sprintf("[2001:db8:5:5::%x]:4444", i+1))
		if w.Code != http.StatusSeeOther {
			t.Fatalf("start %d of the /64: %d %s", i+1, w.Code, w.Body)
		}
		if first == nil {
			first = w
		}
	}
	for i := range 2 {
		w := f.startFrom("[2001:db8:5:5::99]:4444")
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "60" || len(w.Result().Cookies()) != 0 ||
			!strings.Contains(w.Body.String(), "too many unfinished sign-ins") {
			t.Fatalf("start %d over the /64's share: %d %q %s", i+4, w.Code, w.Header().Get("Retry-After"), w.Body)
		}
	}
	if got := f.reasons(); len(got) != 1 || got[0] != loginflow.ReasonTooManyPendingFromSource {
		t.Errorf("audited refusals %v, want one %s", got, loginflow.ReasonTooManyPendingFromSource)
	}
	if n := countFlows(t, db); n != 3 {
		t.Errorf("%d flows stored, want the 3 allowed", n)
	}
	if w := f.startFrom("203.0.113.1:80"); w.Code != http.StatusSeeOther {
		t.Errorf("another client: %d %s", w.Code, w.Body)
	}
	// The first sign-in of the /64 finishes: room for one more.
	u, _ := url.Parse(first.Header().Get("Location"))
	redirect := f.postOK(u.Query().Get("login_request_id"), good)
	c := first.Result().Cookies()[0]
	if w := f.callback(redirect, c.Name+"="+c.Value); w.Code != http.StatusSeeOther {
		t.Fatalf("callback: %d %s", w.Code, w.Body)
	}
	if w := f.startFrom("[2001:db8:5:5::99]:4444"); w.Code != http.StatusSeeOther {
		t.Errorf("after one sign-in finished: %d %s", w.Code, w.Body)
	}
}

// REVIEW-5 F4 (3): a start another site's page caused (an <img>, a link,
// a form on another site) stores nothing and sets no cookie: the browser
// goes to the login page, whose button (a same-origin navigation) starts
// the sign-in. Starts the user or an application opened, and clients
// without Fetch Metadata, start as before.
func TestCrossSiteStartGoesToTheLoginPage(t *testing.T) {
	db := storetest.SQLite(t)
	f := newFixtureWith(t, loginflow.Options{Store: db, ServerKey: serverKey})
	for _, site := range []string{"cross-site", "same-site"} {
		w := f.startFrom("192.0.2.1:1234", "Sec-Fetch-Site", site, "Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "image")
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/login?return_to=%2Foauth%2Fconsent%3Fx%3D1" ||
			len(w.Result().Cookies()) != 0 {
			t.Fatalf("%s start: %d Location %q cookies %v", site, w.Code, w.Header().Get("Location"), w.Result().Cookies())
		}
	}
	if n, evs := countFlows(t, db), f.reasons(); n != 0 || len(evs) != 0 {
		t.Fatalf("cross-site starts stored %d flows and audited %v", n, evs)
	}
	for _, site := range []string{"same-origin", "none", ""} {
		w := f.startFrom("192.0.2.1:1234", "Sec-Fetch-Site", site)
		if loc, _ := url.Parse(w.Header().Get("Location")); w.Code != http.StatusSeeOther || loc.Host != "app.example.com" {
			t.Errorf("start with Sec-Fetch-Site %q: %d %s", site, w.Code, w.Header().Get("Location"))
		}
	}
}

// REVIEW-5 F3: refusals at the app's API and at the browser callback
// share one per-client budget; past it the API answers 429 in its JSON
// shape and the callback a 429 page, each with Retry-After, and the audit
// log gets one rate_limited note per client and minute instead of a row
// per refusal. A valid post from the same client still goes through.
func TestRefusalFlood(t *testing.T) {
	f := newFixtureWith(t, loginflow.Options{Store: storetest.SQLite(t), ServerKey: serverKey,
		RefusalLimiter: ratelimit.NewMemory(time.Hour, loginflow.DefaultRefusalBurst, 0)})
	id, _, _ := f.start()
	var limited int
	for i := range loginflow.DefaultRefusalBurst + 10 {
		var w *httptest.ResponseRecorder
		if i%2 == 0 {
			w = f.post("lr_unknown", "Bearer wrong-secret", good)
		} else {
			w = f.callback(callbackURL(fmt.Sprintf("state-%d", i), "forged-code"), "")
		}
		if w.Code != http.StatusTooManyRequests {
			continue
		}
		limited++
		if w.Header().Get("Retry-After") == "" || w.Header().Get("WWW-Authenticate") != "" {
			t.Fatalf("429 headers %v", w.Header())
		}
		if i%2 == 0 && (!strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") || !strings.Contains(w.Body.String(), `"error":"too_many_requests"`)) {
			t.Fatalf("limited post: %s %s", w.Header().Get("Content-Type"), w.Body)
		}
	}
	if limited != 10 {
		t.Errorf("%d of %d refusals limited, want the 10 past the budget of %d", limited, loginflow.DefaultRefusalBurst+10, loginflow.DefaultRefusalBurst)
	}
	got := f.reasons()
	notes := 0
	for _, r := range got {
		if r == loginflow.ReasonRateLimited {
			notes++
		}
	}
	if len(got) != loginflow.DefaultRefusalBurst+1 || notes != 1 {
		t.Errorf("audited %d refusals (%d notes), want %d and one rate_limited note", len(got), notes, loginflow.DefaultRefusalBurst)
	}
	if ev := f.rec.last(TypeRefused); ev.Reason != loginflow.ReasonRateLimited || ev.Details["last_reason"] == nil || ev.Details["stage"] == nil {
		t.Errorf("the note %+v, want the refusal it stands for and its stage", ev)
	}
	if w := f.post(id, "Bearer "+secret, good); w.Code != http.StatusOK {
		t.Errorf("a valid post from the limited client: %d %s", w.Code, w.Body)
	}
}

// failingLimiter is a limiter that cannot decide (a shared Redis down).
type failingLimiter struct{}

func (failingLimiter) Allow(context.Context, string) (ratelimit.Decision, error) {
	return ratelimit.Decision{}, errors.New("redis: connection refused")
}

// When the refusal limiter cannot decide, refusals fail closed: 503 with
// Retry-After in each route's shape, and no audit row per request.
func TestRefusalLimiterDownFailsClosed(t *testing.T) {
	f := newFixtureWith(t, loginflow.Options{Store: storetest.SQLite(t), ServerKey: serverKey, RefusalLimiter: failingLimiter{}})
	w := f.post("lr_unknown", "Bearer wrong-secret", good)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), `"error":"temporarily_unavailable"`) {
		t.Errorf("post: %d %v %s", w.Code, w.Header(), w.Body)
	}
	w = f.callback(callbackURL("state-x", "forged-code"), "")
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "Temporarily unavailable") {
		t.Errorf("callback: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if got := f.reasons(); len(got) != 0 {
		t.Errorf("audited %v while failing closed", got)
	}
}
