// Package app is a tiny "your own application" for mcpgate's bring your
// own login: its own user table and login form. When mcpgate sends a
// browser here with ?login_request_id=…&state=…, the user signs in with
// this app's password; the app then tells mcpgate who it is
// (POST /api/login-requests/{id}/user with the shared secret, or with an
// assertion signed by the app's private key: assertion.go) and sends the
// browser to the redirect_to URL of mcpgate's answer
// (/login/callback?state=…&code=…). It never builds that URL itself: the
// one-time code in it is what proves to mcpgate that the browser coming
// back is the one that signed in here.
//
// The app keeps no session of its own, so every sign-in asks for the
// password. An app that recognises users already signed in must still ask
// them ("Continue to mcpgate as carol?") before posting them for a login
// request: the request may have been started by someone else who sent
// the link (docs/custom-login.md).
package app

import (
	"bytes"
	"context"
	"crypto"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// User is a row of the app's own user table.
type User struct {
	ID, Email, Name, Password, OrganizationID string
	// EmailVerified: the app confirmed that the user receives mail at
	// Email (say, by a link sent at sign-up). The app sends this, never a
	// constant true: mcpgate gives a verified address to the user it
	// creates, and an upstream provider with link_by_email later links
	// the address's real owner into that user — an account prepared in
	// advance by someone who never proved the address (pre-account
	// takeover). An unverified address gets a placeholder instead.
	EmailVerified bool
	Roles         []string
}

// DemoUsers is the app's user table.
var DemoUsers = []User{
	{ID: "u-100", Email: "carol@acme.example", EmailVerified: true, Name: "Carol", Password: "carol-password", OrganizationID: "org-acme", Roles: []string{"member"}},
	{ID: "u-200", Email: "dave@globex.example", EmailVerified: true, Name: "Dave", Password: "dave-password", OrganizationID: "org-globex", Roles: []string{"member", "auditor"}},
}

// App is the login application.
type App struct {
	MCPGateURL string // mcpgate's public URL
	Secret     string // the shared secret (mcpgate's --custom-login-secret)
	// Key, when set, signs an assertion instead of sending Secret; mcpgate
	// has its public key (--custom-login-public-key-file).
	Key    crypto.Signer
	Users  []User
	Client *http.Client
}

var page = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Example app sign-in</title>
<style>body{font-family:system-ui,sans-serif;max-width:22rem;margin:4rem auto}label,input,button{display:block;width:100%;margin:.3rem 0}</style></head>
<body><h1>Example app</h1><p>Sign in with your Example app account to continue to mcpgate.</p>
{{if .Error}}<p role="alert" style="color:#b00">{{.Error}}</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="login_request_id" value="{{.ID}}">
<label for="username">Email</label><input id="username" name="username" type="email" required>
<label for="pw">Password</label><input id="pw" name="password" type="password" required>
<button id="signin" type="submit">Sign in</button></form></body></html>`))

type view struct{ ID, Error string }

// ServeHTTP serves GET and POST /login.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/login" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	switch r.Method {
	case http.MethodGet:
		// The app needs only the login request id; the state mcpgate
		// sends along comes back in redirect_to.
		id := r.URL.Query().Get("login_request_id")
		if id == "" {
			http.Error(w, "open this page through mcpgate's sign-in", http.StatusBadRequest)
			return
		}
		page.Execute(w, view{ID: id})
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		v := view{ID: r.PostForm.Get("login_request_id")}
		u, ok := a.check(r.PostForm.Get("username"), r.PostForm.Get("password"))
		if !ok {
			v.Error = "Incorrect email or password."
			w.WriteHeader(http.StatusUnprocessableEntity)
			page.Execute(w, v)
			return
		}
		next, err := a.postUser(r.Context(), v.ID, u)
		if err != nil {
			http.Error(w, "mcpgate refused the sign-in: "+err.Error(), http.StatusBadGateway)
			return
		}
		// To this browser, the one that just signed in: redirect_to
		// carries the one-time code mcpgate wants back from it.
		http.Redirect(w, r, next, http.StatusSeeOther)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (a *App) check(email, password string) (User, bool) {
	for _, u := range a.Users {
		if strings.EqualFold(u.Email, strings.TrimSpace(email)) && subtle.ConstantTimeCompare([]byte(u.Password), []byte(password)) == 1 {
			return u, true
		}
	}
	return User{}, false
}

// postUser tells mcpgate who signed in for the login request and returns
// where to send the browser (redirect_to).
func (a *App) postUser(ctx context.Context, id string, u User) (string, error) {
	body, _ := json.Marshal(map[string]any{
		"sub": u.ID, "email": u.Email, "email_verified": u.EmailVerified, "name": u.Name,
		"roles": u.Roles, "organization_id": u.OrganizationID,
	})
	endpoint := endpointBase(a.MCPGateURL) + "/api/login-requests/" + url.PathEscape(id) + "/user"
	credential := a.Secret
	if a.Key != nil {
		var err error
		if credential, err = a.assertion(id, endpoint); err != nil {
			return "", err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+credential)
	req.Header.Set("Content-Type", "application/json")
	c := a.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return "", fmt.Errorf("%s: %s", resp.Status, msg)
	}
	var answer struct {
		Status     string `json:"status"`
		RedirectTo string `json:"redirect_to"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<10)).Decode(&answer); err != nil || answer.Status != "ok" {
		return "", fmt.Errorf("unexpected answer from mcpgate (%v)", err)
	}
	// Only ever to mcpgate's own callback: the app is no open redirector.
	if !strings.HasPrefix(answer.RedirectTo, endpointBase(a.MCPGateURL)+"/login/callback?") {
		return "", fmt.Errorf("redirect_to %q is not mcpgate's callback", answer.RedirectTo)
	}
	return answer.RedirectTo, nil
}

func endpointBase(mcpgateURL string) string { return strings.TrimRight(mcpgateURL, "/") }
