package upstream

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/loginflow"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

// get sends a GET to the handler from b with header name, value pairs h.
func (e *env) get(b *http.Client, path string, h ...string) (*http.Response, string) {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
	for i := 0; i+1 < len(h); i += 2 {
		req.Header.Set(h[i], h[i+1])
	}
	resp, err := b.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func (e *env) reasons() map[string]int {
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	out := map[string]int{}
	for _, ev := range e.rec.events {
		if ev.Type == TypeLogin && ev.Outcome == store.OutcomeDeny {
			out[ev.Reason]++
		}
	}
	return out
}

// REVIEW-5 F3: every refused callback costs an audit row, so refusals are
// limited per client: past the budget the callback answers a readable 429
// page with Retry-After and the audit log gets one rate_limited note
// (naming the provider and the refusal) instead of a row per request. A
// real sign-in from the same client still goes through.
func TestCallbackRefusalFlood(t *testing.T) {
	const budget = 5
	e := newEnvWith(t, loginflow.Options{Store: storetest.SQLite(t), ServerKey: serverKey,
		RefusalLimiter: ratelimit.NewMemory(time.Hour, budget, 0)})
	for i := range budget + 20 {
		resp, body := e.get(browser(), fmt.Sprintf("/login/upstream/corp/callback?code=c&state=forged-%d", i))
		want := http.StatusBadRequest
		if i >= budget {
			want = http.StatusTooManyRequests
		}
		if resp.StatusCode != want || (want == http.StatusTooManyRequests &&
			(resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "Too many refused sign-ins"))) {
			t.Fatalf("callback %d: %d %v %s, want %d", i+1, resp.StatusCode, resp.Header, body, want)
		}
	}
	if got := e.reasons(); got[ReasonStateMismatch] != budget || got[loginflow.ReasonRateLimited] != 1 || len(got) != 2 {
		t.Errorf("audited refusals %v, want %d %s and one %s", got, budget, ReasonStateMismatch, loginflow.ReasonRateLimited)
	}
	if ev := e.rec.last(t, TypeLogin); ev.Details["provider"] != "corp" || ev.Details["last_reason"] != ReasonStateMismatch {
		t.Errorf("the flood note %+v, want the provider and the refusal it stands for", ev.Details)
	}
	if resp, body := e.login("corp"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a real sign-in from the limited client: %d %s", resp.StatusCode, body)
	}
}

// REVIEW-5 F4 (3): another site cannot start sign-ins from its visitors'
// browsers: the browser goes to the login page, nothing is stored, the
// provider is not asked. A same-origin navigation (the login page's
// button) starts as before.
func TestCrossSiteStartGoesToTheLoginPage(t *testing.T) {
	e := newEnv(t)
	b := browser()
	resp, body := e.get(b, "/login/upstream/corp?return_to="+url.QueryEscape("/oauth/consent?x=1"), "Sec-Fetch-Site", "cross-site")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?return_to=%2Foauth%2Fconsent%3Fx%3D1" || len(resp.Cookies()) != 0 {
		t.Fatalf("cross-site start: %d Location %q cookies %v %s", resp.StatusCode, resp.Header.Get("Location"), resp.Cookies(), body)
	}
	var n int
	if err := e.db.(*sqlstore.DB).SQL().QueryRowContext(t.Context(), `SELECT COUNT(*) FROM login_flows`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d flows stored (%v)", n, err)
	}
	if got := e.reasons(); len(got) != 0 {
		t.Errorf("audited %v", got)
	}
	resp, _ = e.get(b, "/login/upstream/corp", "Sec-Fetch-Site", "same-origin")
	if loc, _ := url.Parse(resp.Header.Get("Location")); resp.StatusCode != http.StatusSeeOther || loc.Query().Get("state") == "" {
		t.Errorf("same-origin start: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// REVIEW-5 F4 (2): one client's sign-ins in progress are bounded (429,
// audited under the provider), not only the total.
func TestSignInsInProgressPerClient(t *testing.T) {
	e := newEnvWith(t, loginflow.Options{Store: storetest.SQLite(t), ServerKey: serverKey,
		StartLimiter: ratelimit.NewMemory(time.Hour, 100, 0), MaxPendingPerSource: 2})
	e.start(browser(), "corp")
	e.start(browser(), "corp")
	resp, body := e.get(browser(), "/login/upstream/corp")
	e.refused(t, resp, body, http.StatusTooManyRequests, loginflow.ReasonTooManyPendingFromSource)
	if resp.Header.Get("Retry-After") != "60" || len(resp.Cookies()) != 0 {
		t.Errorf("over the client's share: Retry-After %q, cookies %v", resp.Header.Get("Retry-After"), resp.Cookies())
	}
}
