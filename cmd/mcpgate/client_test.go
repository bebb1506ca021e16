package main

import (
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/oauth"
)

type clientOut struct {
	ClientID     string   `json:"client_id"`
	ID           string   `json:"id"`
	Kind         string   `json:"kind"`
	Name         string   `json:"name"`
	Confidential bool     `json:"confidential"`
	AuthMethod   string   `json:"token_endpoint_auth_method"`
	AppType      string   `json:"application_type"`
	RedirectURIs []string `json:"redirect_uris"`
	GrantTypes   []string `json:"grant_types"`
	Scopes       []string `json:"scopes"`
	CreatedAt    string   `json:"created_at"`
	LastUsedAt   string   `json:"last_used_at"`
}

func (c cli) clients() []clientOut {
	c.t.Helper()
	return jsonLines[clientOut](c.t, c.ok("", "client", "list", "--json").stdout)
}

// parseKV reads the key=value lines of `client add`.
func parseKV(t *testing.T, stdout string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimRight(stdout, "\n"), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("stdout line %q is not key=value", line)
		}
		out[k] = v
	}
	return out
}

func TestClientAddListRemove(t *testing.T) {
	eachBackend(t, func(t *testing.T, c cli) {
		// A public native client.
		r := c.ok("", "client", "add", "--name", "Desk app", "--redirect-uri", "http://127.0.0.1/callback",
			"--redirect-uri", "com.example.desk:/cb", "--scopes", "payments:read,openid")
		kv := parseKV(t, r.stdout)
		pubID := kv["client_id"]
		if len(kv) != 1 || !strings.HasPrefix(pubID, "client_") {
			t.Fatalf("client add (public) stdout = %q, want only client_id=…", r.stdout)
		}
		for _, w := range []string{"created public client", pubID, "Desk app", "native", "auth method none", "payments:read openid"} {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("stderr %q does not mention %q", r.stderr, w)
			}
		}

		// A confidential service client: the secret once, on stdout only.
		r = c.ok("", "client", "add", "--name", "Billing service", "--confidential")
		kv = parseKV(t, r.stdout)
		confID, secret := kv["client_id"], kv["client_secret"]
		if len(kv) != 2 || !strings.HasPrefix(secret, "mcpgcs_") {
			t.Fatalf("client add --confidential stdout = %q", r.stdout)
		}
		if strings.Contains(r.stderr, secret) || !strings.Contains(r.stderr, "shown only this once") {
			t.Errorf("stderr = %q", r.stderr)
		}

		list := c.clients()
		if len(list) != 2 {
			t.Fatalf("client list --json = %d clients, want 2", len(list))
		}
		byID := map[string]clientOut{}
		for _, cl := range list {
			byID[cl.ClientID] = cl
		}
		gotPub := byID[pubID]
		gotPub.ID, gotPub.CreatedAt = "", ""
		want := clientOut{ClientID: pubID, Kind: "static", Name: "Desk app", AuthMethod: "none", AppType: "native",
			RedirectURIs: []string{"http://127.0.0.1/callback", "com.example.desk:/cb"},
			GrantTypes:   []string{"authorization_code", "refresh_token"}, Scopes: []string{"payments:read", "openid"}}
		if d := cmp.Diff(want, gotPub); d != "" {
			t.Errorf("public client in list (-want +got):\n%s", d)
		}
		if conf := byID[confID]; !conf.Confidential || conf.AuthMethod != "client_secret_basic" ||
			!cmp.Equal(conf.GrantTypes, []string{"client_credentials"}) {
			t.Errorf("confidential client in list = %+v", conf)
		}
		text := c.ok("", "client", "list").stdout
		if !strings.HasPrefix(text, "CLIENT_ID ") || !strings.Contains(text, pubID) || strings.Contains(text, secret) {
			t.Errorf("client list =\n%s", text)
		}
		if kinds := jsonLines[clientOut](t, c.ok("", "client", "list", "--json", "--kind", "dcr").stdout); len(kinds) != 0 {
			t.Errorf("--kind dcr listed %d clients", len(kinds))
		}

		// The printed secret is the one that authenticates, at full speed
		// (SHA-256), as the token endpoint will check it.
		core := c.core()
		reg := oauth.NewClients(core.DB, core.Audit, oauth.ClientsOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(confID+":"+secret)))
		if cl, err := reg.AuthenticateClient(t.Context(), req); err != nil || cl.ClientID != confID {
			t.Errorf("printed secret does not authenticate: %v", err)
		}

		r = c.ok("", "client", "remove", pubID)
		if !strings.Contains(r.stderr, "removed static client "+pubID) || r.stdout != "" {
			t.Errorf("client remove: stdout %q stderr %q", r.stdout, r.stderr)
		}
		if left := c.clients(); len(left) != 1 || left[0].ClientID != confID {
			t.Errorf("after remove: %+v", left)
		}
		c.fail("", []string{"client", "remove", pubID}, "no client", pubID)

		ev := c.audit("--type", "client.created")
		if len(ev) != 2 || ev[0].Details["actor"] != "cli" {
			t.Errorf("client.created events = %+v", ev)
		}
		if ev := c.audit("--type", "client.deleted"); len(ev) != 1 || ev[0].Details["client_id"] != pubID {
			t.Errorf("client.deleted events = %+v", ev)
		}
	})
}

// H1: an operator client with redirect URIs does not get client_credentials
// unless asked for; a service client without scopes is warned about.
func TestClientAddGrantDefaults(t *testing.T) {
	c := newSQLite(t)
	r := c.ok("", "client", "add", "--name", "Web app", "--confidential", "--redirect-uri", "https://web.example/cb")
	if !strings.Contains(r.stderr, "grant types [authorization_code refresh_token]") {
		t.Errorf("confidential client with redirect URIs: stderr %q, want grant types authorization_code refresh_token only", r.stderr)
	}
	r = c.ok("", "client", "add", "--name", "Both", "--confidential", "--redirect-uri", "https://web.example/cb",
		"--grant-types", "authorization_code,client_credentials", "--scopes", "payments:read")
	if !strings.Contains(r.stderr, "grant types [authorization_code client_credentials]") || strings.Contains(r.stderr, "Warning") {
		t.Errorf("explicit grant types: stderr %q", r.stderr)
	}
	r = c.ok("", "client", "add", "--name", "Service", "--confidential")
	if !strings.Contains(r.stderr, "grant types [client_credentials]") || !strings.Contains(r.stderr, "--scopes") {
		t.Errorf("service client without scopes: stderr %q, want a warning naming --scopes", r.stderr)
	}
}

func TestClientAddRefusals(t *testing.T) {
	c := newSQLite(t)
	for _, tc := range []struct {
		args  []string
		wants []string
	}{
		{[]string{"--redirect-uri", "https://a.example/cb"}, []string{`"name" not set`}},
		{[]string{"--name", "x"}, []string{"--redirect-uri", "at least one redirect URI"}},
		{[]string{"--name", "x", "--redirect-uri", "http://evil.example/cb"}, []string{"--redirect-uri", "not loopback"}},
		{[]string{"--name", "x", "--redirect-uri", "https://good.example@evil.example/cb"}, []string{"--redirect-uri", "userinfo"}},
		{[]string{"--name", "x", "--redirect-uri", "https://a.example/cb#frag"}, []string{"--redirect-uri", "fragment"}},
		{[]string{"--name", "x", "--redirect-uri", "javascript:alert(1)"}, []string{"--redirect-uri", "cannot be a redirect target"}},
		{[]string{"--name", "x", "--redirect-uri", "https://*.example.com/cb"}, []string{"--redirect-uri", "wildcard"}},
		{[]string{"--name", "x", "--redirect-uri", "http://127.0.0.1/cb", "--application-type", "web"}, []string{"--redirect-uri", "application_type"}},
		{[]string{"--name", "x", "--redirect-uri", "https://a.example/cb", "--application-type", "tv"}, []string{"--application-type"}},
		{[]string{"--name", "x", "--grant-types", "client_credentials"}, []string{"--grant-types", "confidential"}},
		{[]string{"--name", "x", "--redirect-uri", "https://a.example/cb", "--grant-types", "implicit"}, []string{"--grant-types", "not supported"}},
		{[]string{"--name", "x", "--redirect-uri", "https://a.example/cb", "--scopes", `a,"b"`}, []string{"--scopes"}},
		{[]string{"--name", "bell\a", "--redirect-uri", "https://a.example/cb"}, []string{"--name", "control"}},
		{[]string{"--name", "  ", "--redirect-uri", "https://a.example/cb"}, []string{"--name", "required"}},
	} {
		c.fail("", append([]string{"client", "add"}, tc.args...), tc.wants...)
	}
	c.fail("", []string{"client", "list", "--kind", "other"}, "--kind")
	c.fail("", []string{"client", "remove"}, "accepts 1 arg")
	if got := c.clients(); len(got) != 0 {
		t.Errorf("refused commands stored clients: %+v", got)
	}
}
