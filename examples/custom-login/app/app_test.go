package app

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// fakeMCPGate answers POST /api/login-requests/{id}/user with redirectTo
// (relative to its URL unless absolute) and keeps the posted users.
func fakeMCPGate(t *testing.T, redirectTo string) (*httptest.Server, *[]map[string]any) {
	t.Helper()
	var posted []map[string]any
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var u map[string]any
		if r.Method != http.MethodPost || r.URL.Path != "/api/login-requests/lr_1/user" || json.NewDecoder(r.Body).Decode(&u) != nil {
			http.Error(w, "unexpected", http.StatusBadRequest)
			return
		}
		posted = append(posted, u)
		to := redirectTo
		if strings.HasPrefix(to, "/") {
			to = srv.URL + to
		}
		json.NewEncoder(w).Encode(map[string]string{"status": "ok", "redirect_to": to})
	}))
	t.Cleanup(srv.Close)
	return srv, &posted
}

func signIn(a *App, email, password string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{
		"login_request_id": {"lr_1"}, "username": {email}, "password": {password},
	}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	a.ServeHTTP(w, r)
	return w
}

// TestAppSendsBrowserToRedirectTo: after the password check the app posts
// the user with its real email verification state and sends the browser
// exactly where mcpgate's answer says (the callback with state and the
// one-time code), and nowhere but mcpgate's callback.
func TestAppSendsBrowserToRedirectTo(t *testing.T) {
	mcpgate, posted := fakeMCPGate(t, "/login/callback?state=S&code=C")
	a := &App{MCPGateURL: mcpgate.URL + "/", Secret: strings.Repeat("s", 32), Users: []User{
		{ID: "u-1", Email: "v@example.com", EmailVerified: true, Password: "pw-1"},
		{ID: "u-2", Email: "n@example.com", EmailVerified: false, Password: "pw-2"},
	}}
	for _, u := range a.Users {
		w := signIn(a, u.Email, u.Password)
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != mcpgate.URL+"/login/callback?state=S&code=C" {
			t.Fatalf("%s: %d %q %s", u.ID, w.Code, w.Header().Get("Location"), w.Body)
		}
		got := (*posted)[len(*posted)-1]
		if got["sub"] != u.ID || got["email_verified"] != u.EmailVerified {
			t.Errorf("posted %v for %s, want its own email_verified %v", got, u.ID, u.EmailVerified)
		}
	}
	if w := signIn(a, "v@example.com", "wrong"); w.Code != http.StatusUnprocessableEntity || len(*posted) != 2 {
		t.Errorf("wrong password: %d, %d posts", w.Code, len(*posted))
	}

	evil, _ := fakeMCPGate(t, "https://evil.example/login/callback?state=S&code=C")
	a.MCPGateURL = evil.URL
	if w := signIn(a, "v@example.com", "pw-1"); w.Code != http.StatusBadGateway || w.Header().Get("Location") != "" {
		t.Errorf("redirect_to elsewhere: %d %q", w.Code, w.Header().Get("Location"))
	}
}
