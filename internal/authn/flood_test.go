package authn_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

type failingLimiter struct{}

func (failingLimiter) Allow(context.Context, string) (ratelimit.Decision, error) {
	return ratelimit.Decision{}, errors.New("redis down")
}

// floodEnv is /mcp behind the middleware with the given refusal limiter.
func floodEnv(t *testing.T, lim ratelimit.Limiter) (http.Handler, *recorder) {
	db := storetest.SQLite(t)
	rec := &recorder{}
	a := authn.New(authn.Options{
		Keys: apikeys.New(db, rec, apikeys.Options{}), Users: db.GetUser, Audit: rec, Resource: base + "/mcp",
		ResourceMetadataURL: base + "/.well-known/oauth-protected-resource/mcp", RefusalLimiter: lim,
	})
	return a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("a request without a credential reached the handler")
	})), rec
}

func refusedCall(h http.Handler, ip string) (*httptest.ResponseRecorder, map[string]any) {
	r := httptest.NewRequest(http.MethodPost, base+"/mcp", nil)
	r.RemoteAddr = ip + ":4711"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var body map[string]any
	json.Unmarshal(w.Body.Bytes(), &body)
	return w, body
}

// Past the refusal burst an address gets 429 with Retry-After, and the
// audit log one note instead of a row per request.
func TestRefusalFloodIsLimited(t *testing.T) {
	h, rec := floodEnv(t, ratelimit.NewMemory(time.Minute, 2, 0))
	for i := range 2 {
		if w, _ := refusedCall(h, "192.0.2.1"); w.Code != http.StatusUnauthorized {
			t.Fatalf("refusal %d: %d, want 401", i+1, w.Code)
		}
	}
	rec.take()
	for range 3 {
		w, body := refusedCall(h, "192.0.2.1")
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || body["error"] != "too_many_requests" {
			t.Fatalf("past the burst: %d %v %v, want 429 too_many_requests with Retry-After", w.Code, w.Header(), body)
		}
	}
	if evs := rec.take(); len(evs) != 1 || evs[0].Reason != audit.ReasonRateLimited {
		t.Errorf("audit = %+v, want one rate_limited note", evs)
	}
	if w, _ := refusedCall(h, "192.0.2.2"); w.Code != http.StatusUnauthorized {
		t.Errorf("another address: %d, want 401", w.Code)
	}
}

// A refusal limiter that cannot decide (shared Redis down) fails closed:
// 503 with Retry-After in the OAuth error shape, and no audit row per
// request (the flood it guards against).
func TestRefusalLimiterFailureFailsClosed(t *testing.T) {
	h, rec := floodEnv(t, failingLimiter{})
	w, body := refusedCall(h, "192.0.2.1")
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || body["error"] != "temporarily_unavailable" {
		t.Fatalf("refusal limiter down: %d %v %v, want 503 temporarily_unavailable with Retry-After", w.Code, w.Header(), body)
	}
	if evs := rec.take(); len(evs) != 0 {
		t.Errorf("audit = %+v, want nothing", evs)
	}
}
