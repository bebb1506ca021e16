// Package app is a tiny "your own application" for mcpgate's bring your
// own login: its own user table and login form. When mcpgate sends a
// browser here with ?login_request_id=…&state=…, the user signs in with
// this app's password; the app then tells mcpgate who it is
// (POST /api/login-requests/{id}/user with the shared secret, or with an
// assertion signed by the app's private key: assertion.go) and sends the
// browser to mcpgate's /login/callback?state=….
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
	Roles                                     []string
}

// DemoUsers is the app's user table.
var DemoUsers = []User{
	{ID: "u-100", Email: "carol@acme.example", Name: "Carol", Password: "carol-password", OrganizationID: "org-acme", Roles: []string{"member"}},
	{ID: "u-200", Email: "dave@globex.example", Name: "Dave", Password: "dave-password", OrganizationID: "org-globex", Roles: []string{"member", "auditor"}},
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
<input type="hidden" name="login_request_id" value="{{.ID}}"><input type="hidden" name="state" value="{{.State}}">
<label for="username">Email</label><input id="username" name="username" type="email" required>
<label for="pw">Password</label><input id="pw" name="password" type="password" required>
<button id="signin" type="submit">Sign in</button></form></body></html>`))

type view struct{ ID, State, Error string }

// ServeHTTP serves GET and POST /login.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/login" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		if q.Get("login_request_id") == "" || q.Get("state") == "" {
			http.Error(w, "open this page through mcpgate's sign-in", http.StatusBadRequest)
			return
		}
		page.Execute(w, view{ID: q.Get("login_request_id"), State: q.Get("state")})
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		v := view{ID: r.PostForm.Get("login_request_id"), State: r.PostForm.Get("state")}
		u, ok := a.check(r.PostForm.Get("username"), r.PostForm.Get("password"))
		if !ok {
			v.Error = "Incorrect email or password."
			w.WriteHeader(http.StatusUnprocessableEntity)
			page.Execute(w, v)
			return
		}
		if err := a.postUser(r.Context(), v.ID, u); err != nil {
			http.Error(w, "mcpgate refused the sign-in: "+err.Error(), http.StatusBadGateway)
			return
		}
		http.Redirect(w, r, strings.TrimRight(a.MCPGateURL, "/")+"/login/callback?state="+url.QueryEscape(v.State), http.StatusSeeOther)
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

// postUser tells mcpgate who signed in for the login request.
func (a *App) postUser(ctx context.Context, id string, u User) error {
	body, _ := json.Marshal(map[string]any{
		"sub": u.ID, "email": u.Email, "email_verified": true, "name": u.Name,
		"roles": u.Roles, "organization_id": u.OrganizationID,
	})
	endpoint := strings.TrimRight(a.MCPGateURL, "/") + "/api/login-requests/" + url.PathEscape(id) + "/user"
	credential := a.Secret
	if a.Key != nil {
		var err error
		if credential, err = a.assertion(id, endpoint); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+credential)
	req.Header.Set("Content-Type", "application/json")
	c := a.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s: %s", resp.Status, msg)
	}
	return nil
}
