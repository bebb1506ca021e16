package httpx

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestChallengeString(t *testing.T) {
	for _, tc := range []struct {
		c    Challenge
		want string
	}{
		{Challenge{ResourceMetadata: "https://h/.well-known/oauth-protected-resource/mcp", Scope: "a b"},
			`Bearer scope="a b", resource_metadata="https://h/.well-known/oauth-protected-resource/mcp"`},
		{Challenge{Error: "invalid_token", Description: `say "hi"\now`},
			`Bearer error="invalid_token", error_description="say \"hi\"\\now"`},
		{Challenge{Error: "insufficient_scope", Description: "bad\r\nInjected: header", Scope: "x"},
			`Bearer error="insufficient_scope", error_description="badInjected: header", scope="x"`},
		{Challenge{}, "Bearer"},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}

func TestCommonLimitsBodiesAndRecovers(t *testing.T) {
	h := Common(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic("boom")
		}
		buf := make([]byte, 4096)
		for {
			if _, err := r.Body.Read(buf); err != nil {
				if strings.Contains(err.Error(), "too large") {
					WriteJSON(w, http.StatusRequestEntityTooLarge, OAuthError{Error: "request_too_large"})
				}
				return
			}
		}
	}), discardLogger(), 1024, nil)

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("x", 2048))))
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body with Content-Length: %d", rec.Code)
	}
	req := httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("x", 2048)))
	req.ContentLength = -1 // chunked: the limit must hold while reading
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized chunked body: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/panic", nil))
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "boom") {
		t.Errorf("panic: %d %q", rec.Code, rec.Body.String())
	}
	if rec.Header().Get("X-Content-Type-Options") != "nosniff" || rec.Header().Get("X-Frame-Options") != "DENY" {
		t.Errorf("security headers missing: %v", rec.Header())
	}
}

// TestLogRoute: a handler whose path holds a bearer handle (a login
// request id) has its route pattern logged instead of the path; other
// requests keep their path.
func TestLogRoute(t *testing.T) {
	var out strings.Builder
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/login-requests/{id}/user", func(w http.ResponseWriter, r *http.Request) {
		LogRoute(r)
		w.WriteHeader(http.StatusNotFound)
	})
	mux.HandleFunc("GET /api/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {})
	h := Common(mux, slog.New(slog.NewTextHandler(&out, nil)), 1024, nil)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/api/login-requests/lr_SECRETHANDLE/user", nil))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/api/sessions/ses_visible", nil))
	log := out.String()
	if strings.Contains(log, "SECRETHANDLE") || !strings.Contains(log, "path=/api/login-requests/{id}/user status=404") {
		t.Errorf("the login request id is in the request log, or the route is not:\n%s", log)
	}
	if !strings.Contains(log, "path=/api/sessions/ses_visible") {
		t.Errorf("an ordinary path is not logged:\n%s", log)
	}
}
