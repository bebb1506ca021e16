package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
)

// httpResult is a finished exchange of the curl-like helpers below.
type httpResult struct {
	status int
	header http.Header
	body   []byte
}

func (r httpResult) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("not a JSON object (status %d): %s", r.status, r.body)
	}
	return m
}

// send is curl: one request, the whole answer.
func send(t *testing.T, method, u, contentType, body string, h ...string) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(h); i += 2 {
		req.Header.Set(h[i], h[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return httpResult{resp.StatusCode, resp.Header, data}
}

func (e *env) directLogin(t *testing.T, email, password string) httpResult {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"email": email, "password": password})
	return send(t, "POST", e.base+"/auth/login", "application/json", string(b))
}

// The whole life of a simple-login token on the real server: login, a
// tool call, /auth/status, refresh at /token, revocation at /revoke.
func TestDirectLoginLifecycle(t *testing.T) {
	e := newEnv(t)
	const alice = "alice@example.com"

	r := e.directLogin(t, alice, e.pws[alice])
	if r.status != http.StatusOK || r.header.Get("Cache-Control") != "no-store" || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("login: %d %v %s", r.status, r.header, r.body)
	}
	m := r.json(t)
	at, _ := m["access_token"].(string)
	rt, _ := m["refresh_token"].(string)
	if at == "" || rt == "" || m["token_type"] != "bearer" || m["message"] != "Login successful" || m["expires_in"].(float64) <= 0 {
		t.Fatalf("login answer: %s", r.body)
	}
	clientID, _ := m["client_id"].(string)

	// A normal access token: /mcp as alice (balance 180).
	cs, err := e.connect(bearer(at), "")
	if err != nil {
		t.Fatal(err)
	}
	if b := e.balance(cs); b != 180 {
		t.Errorf("alice's balance with the login token = %v", b)
	}
	cs.Close()

	st := send(t, "GET", e.base+"/auth/status", "", "", "Authorization", "Bearer "+at)
	sm := st.json(t)
	if st.status != http.StatusOK || st.header.Get("Cache-Control") != "no-store" || sm["authenticated"] != true ||
		sm["user"].(map[string]any)["id"] != e.ids[alice] || sm["user"].(map[string]any)["email"] != alice ||
		sm["method"] != "oauth" || sm["expires_at"] == nil || !slices.Contains(sm["scopes"].([]any), any("payments:read")) {
		t.Errorf("status: %d %s", st.status, st.body)
	}
	st = send(t, "GET", e.base+"/auth/status", "", "", "X-API-Key", e.keys["bob@example.com"])
	if sm := st.json(t); st.status != http.StatusOK || sm["method"] != "api_key" || sm["user"].(map[string]any)["email"] != "bob@example.com" {
		t.Errorf("status with an API key: %d %s", st.status, st.body)
	}

	// Audited: the password check and the token.
	if ev := e.lastAudit("login.succeeded"); ev.UserID != e.ids[alice] {
		t.Errorf("login.succeeded: %+v", ev)
	}
	if ev := e.lastAudit("oauth.token_issued"); ev.UserID != e.ids[alice] || ev.Details["grant_type"] != "direct_login" || ev.Resource != e.base+"/mcp" {
		t.Errorf("oauth.token_issued: %+v", ev)
	}

	// Refresh at /token as the built-in public client.
	form := func(v url.Values) string { return v.Encode() }
	ref := send(t, "POST", e.base+"/token", "application/x-www-form-urlencoded",
		form(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {clientID}}))
	rm := ref.json(t)
	at2, _ := rm["access_token"].(string)
	rt2, _ := rm["refresh_token"].(string)
	if ref.status != http.StatusOK || at2 == "" || rt2 == "" || rt2 == rt {
		t.Fatalf("refresh: %d %s", ref.status, ref.body)
	}
	cs, err = e.connect(bearer(at2), "")
	if err != nil {
		t.Fatal(err)
	}
	if b := e.balance(cs); b != 180 {
		t.Errorf("balance with the refreshed token = %v", b)
	}
	cs.Close()

	// Revoke at /revoke: every token of the login stops.
	rev := send(t, "POST", e.base+"/revoke", "application/x-www-form-urlencoded", form(url.Values{"token": {rt2}, "client_id": {clientID}}))
	if rev.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", rev.status, rev.body)
	}
	for _, tok := range []string{at, at2} {
		if resp := post(t, e.base+"/mcp", bearer(tok), initBody); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("/mcp after revocation: %d", resp.StatusCode)
		}
	}
	st = send(t, "GET", e.base+"/auth/status", "", "", "Authorization", "Bearer "+at2)
	if st.status != http.StatusUnauthorized || !strings.Contains(st.header.Get("WWW-Authenticate"), `error="invalid_token"`) ||
		!strings.Contains(st.header.Get("WWW-Authenticate"), "resource_metadata=") {
		t.Errorf("status after revocation: %d %v %s", st.status, st.header, st.body)
	}
	ref = send(t, "POST", e.base+"/token", "application/x-www-form-urlencoded",
		form(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt2}, "client_id": {clientID}}))
	if ref.status != http.StatusBadRequest || ref.json(t)["error"] != "invalid_grant" {
		t.Errorf("refresh after revocation: %d %s", ref.status, ref.body)
	}

	// No credential: /mcp's challenge (its scope list follows the served tools).
	st = send(t, "GET", e.base+"/auth/status", "", "")
	if ch := st.header.Get("WWW-Authenticate"); st.status != http.StatusUnauthorized || !strings.HasPrefix(ch, `Bearer scope="`) ||
		!strings.HasSuffix(ch, `resource_metadata="`+e.base+`/.well-known/oauth-protected-resource/mcp"`) || st.json(t)["error"] != "unauthorized" {
		t.Errorf("status without a credential: %d %v %s", st.status, st.header, st.body)
	}
}

// Refusals: one answer for a wrong password and an unknown email, the
// login page's rate limit, clear errors for bad input, never a 500.
func TestDirectLoginRefusalsOnTheServer(t *testing.T) {
	e := newEnv(t)
	const bob = "bob@example.com"
	wrong := e.directLogin(t, bob, "not-"+e.pws[bob])
	unknown := e.directLogin(t, "nobody@example.com", "not-"+e.pws[bob])
	if wrong.status != http.StatusUnauthorized || unknown.status != wrong.status || string(wrong.body) != string(unknown.body) {
		t.Errorf("wrong password %d %s / unknown email %d %s", wrong.status, wrong.body, unknown.status, unknown.body)
	}
	if ev := e.lastAudit("login.failed"); ev.Reason != "unknown_user" {
		t.Errorf("login.failed: %+v", ev)
	}

	for _, c := range []struct {
		name, ct, body string
		status         int
		code           string
	}{
		{"form body", "application/x-www-form-urlencoded", "email=bob%40example.com&password=x", 415, "unsupported_media_type"},
		{"no content type", "", `{"email":"bob@example.com","password":"x"}`, 415, "unsupported_media_type"},
		{"garbage", "application/json", `{"email":`, 400, "invalid_request"},
		{"not an object", "application/json", `["bob@example.com","x"]`, 400, "invalid_request"},
		{"unknown field", "application/json", `{"email":"bob@example.com","password":"x","grant_type":"password"}`, 400, "invalid_request"},
		{"missing email", "application/json", `{"password":"x"}`, 400, "invalid_request"},
		{"missing password", "application/json", `{"email":"bob@example.com"}`, 400, "invalid_request"},
		{"wrong type", "application/json", `{"email":"bob@example.com","password":42}`, 400, "invalid_request"},
		{"huge", "application/json", `{"email":"bob@example.com","password":"` + strings.Repeat("p", 2<<20) + `"}`, 413, "request_too_large"},
	} {
		r := send(t, "POST", e.base+"/auth/login", c.ct, c.body)
		if r.status != c.status || r.json(t)["error"] != c.code || r.json(t)["message"] == "" {
			t.Errorf("%s: %d %s", c.name, r.status, r.body)
		}
	}

	// The login page's per-account limit (10 attempts at once) applies.
	var last httpResult
	for range 12 {
		if last = e.directLogin(t, bob, "guess"); last.status == http.StatusTooManyRequests {
			break
		}
	}
	if last.status != http.StatusTooManyRequests || last.header.Get("Retry-After") == "" || last.json(t)["error"] != "rate_limited" {
		t.Fatalf("rate limit: %d %v %s", last.status, last.header, last.body)
	}
	// The right password does not get past it either.
	if r := e.directLogin(t, bob, e.pws[bob]); r.status != http.StatusTooManyRequests {
		t.Errorf("right password while limited: %d %s", r.status, r.body)
	}
	// The limit is shared with the login page: the JSON login is limited too.
	b, _ := json.Marshal(map[string]string{"email": bob, "password": e.pws[bob]})
	if r := send(t, "POST", e.base+"/api/auth/login", "application/json", string(b)); r.status != http.StatusTooManyRequests {
		t.Errorf("/api/auth/login while limited: %d %s", r.status, r.body)
	}
}

// --disable-password-login-endpoint: both endpoints are 404, the rest
// works.
func TestDirectLoginSwitchedOff(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.DisablePasswordLogin = true })
	const alice = "alice@example.com"
	if r := e.directLogin(t, alice, e.pws[alice]); r.status != http.StatusNotFound || r.json(t)["error"] != "not_found" {
		t.Errorf("login switched off: %d %s", r.status, r.body)
	}
	if r := send(t, "GET", e.base+"/auth/status", "", "", "X-API-Key", e.keys[alice]); r.status != http.StatusNotFound {
		t.Errorf("status switched off: %d %s", r.status, r.body)
	}
	cs, err := e.connect(bearer(e.keys[alice]), "")
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if b := e.balance(cs); b != 180 {
		t.Errorf("balance with a key = %v", b)
	}
}

// A small Node client (interop/ts/simple-login.mjs) logs in with fetch and
// calls a tool with the official TypeScript SDK client and the bearer
// token. Needs node and `npm ci` in interop/ts (skipped without them,
// except on CI).
func TestDirectLoginNodeClient(t *testing.T) {
	node, client := nodeClient(t)
	script := filepath.Join(filepath.Dir(client), "simple-login.mjs")
	e := newEnv(t)
	const alice = "alice@example.com"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, script, e.base, alice, e.pws[alice]).Output()
	var res struct {
		BadStatus       int            `json:"badStatus"`
		BadError        string         `json:"badError"`
		LoginStatus     int            `json:"loginStatus"`
		TokenType       string         `json:"tokenType"`
		Message         string         `json:"message"`
		HasRefreshToken bool           `json:"hasRefreshToken"`
		StatusStatus    int            `json:"statusStatus"`
		StatusEmail     string         `json:"statusEmail"`
		StatusMethod    string         `json:"statusMethod"`
		Tools           []string       `json:"tools"`
		Balance         map[string]any `json:"balance"`
		BalanceIsError  bool           `json:"balanceIsError"`
		Error           string         `json:"error"`
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		t.Fatalf("node printed %q (%v): %v", out, err, jerr)
	}
	if err != nil || res.Error != "" {
		t.Fatalf("node client failed: %v: %s", err, res.Error)
	}
	if res.BadStatus != 401 || res.BadError != "invalid_credentials" || res.LoginStatus != 200 || res.TokenType != "bearer" ||
		res.Message != "Login successful" || !res.HasRefreshToken || res.StatusStatus != 200 || res.StatusEmail != alice || res.StatusMethod != "oauth" {
		t.Errorf("node client saw: %+v", res)
	}
	if !slices.Contains(res.Tools, "getAccountBalance") || res.BalanceIsError || res.Balance["balance"] != float64(180) || res.Balance["email"] != alice {
		t.Errorf("tools %v, balance %v (isError %v)", res.Tools, res.Balance, res.BalanceIsError)
	}
}

// The README's simple login, with the real curl: a token from
// POST /auth/login, then GET /auth/status with it; a wrong password is a
// 401 in JSON.
func TestDirectLoginCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl is required on CI (.ci/run installs it)")
		}
		t.Skip("curl not installed")
	}
	e := newEnv(t)
	const alice = "alice@example.com"
	run := func(args ...string) (int, map[string]any) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, curl, append([]string{"-sS", "-w", "\n%{http_code}"}, args...)...).Output()
		if err != nil {
			t.Fatalf("curl %v: %v", args, err)
		}
		text := strings.TrimSpace(string(out))
		cut := strings.LastIndexByte(text, '\n')
		if cut < 0 {
			t.Fatalf("curl %v printed %q", args, out)
		}
		body, code := text[:cut], text[cut+1:]
		var m map[string]any
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("curl %v printed %q, not JSON", args, out)
		}
		status, _ := strconv.Atoi(code)
		return status, m
	}
	creds, _ := json.Marshal(map[string]string{"email": alice, "password": e.pws[alice]})
	status, login := run("-X", "POST", "-H", "Content-Type: application/json", "-d", string(creds), e.base+"/auth/login")
	tok, _ := login["access_token"].(string)
	if status != 200 || tok == "" || login["token_type"] != "bearer" || login["message"] != "Login successful" || login["expires_in"] == nil {
		t.Fatalf("POST /auth/login: %d %v", status, login)
	}
	status, st := run("-H", "Authorization: Bearer "+tok, e.base+"/auth/status")
	user, _ := st["user"].(map[string]any)
	if status != 200 || st["authenticated"] != true || user["email"] != alice || user["id"] != e.ids[alice] {
		t.Errorf("GET /auth/status: %d %v", status, st)
	}
	status, bad := run("-X", "POST", "-H", "Content-Type: application/json", "-d", `{"email":"alice@example.com","password":"wrong"}`, e.base+"/auth/login")
	if status != 401 || bad["error"] != "invalid_credentials" {
		t.Errorf("wrong password: %d %v", status, bad)
	}
}
