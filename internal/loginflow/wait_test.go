package loginflow

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

// refusing is a start limiter that refuses every start with one delay.
type refusing time.Duration

func (d refusing) Allow(context.Context, string) (ratelimit.Decision, error) {
	return ratelimit.Decision{RetryAfter: time.Duration(d)}, nil
}

// TestAllowStartPageSaysTheWait: the 429 page names the same wait as
// Retry-After, in proper English ("1 second", not "1 seconds").
func TestAllowStartPageSaysTheWait(t *testing.T) {
	for _, tc := range []struct {
		wait       time.Duration
		retryAfter string
		message    string
	}{
		{300 * time.Millisecond, "1", "mcpgate received too many sign-in attempts from your network. Wait 1 second, then go back to the sign-in page and try again."},
		{1500 * time.Millisecond, "2", "mcpgate received too many sign-in attempts from your network. Wait 2 seconds, then go back to the sign-in page and try again."},
	} {
		fl, err := New(Options{Store: storetest.SQLite(t), ServerKey: key, StartLimiter: refusing(tc.wait), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		var status int
		var message string
		page := func(_ http.ResponseWriter, _ *http.Request, s int, _, msg string) { status, message = s, msg }
		w := httptest.NewRecorder()
		if fl.AllowStart(w, httptest.NewRequest("GET", "/login/custom", nil), "custom", page, func(string, map[string]any) {}) {
			t.Fatal("a refusing limiter let the start through")
		}
		if status != http.StatusTooManyRequests || w.Header().Get("Retry-After") != tc.retryAfter || message != tc.message {
			t.Errorf("wait %v: status %d, Retry-After %q, message %q; want 429, %q, %q", tc.wait, status, w.Header().Get("Retry-After"), message, tc.retryAfter, tc.message)
		}
	}
}
