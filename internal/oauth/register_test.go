package oauth

import (
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/store"
)

// register posts body to the registration handler from ip.
func register(t *testing.T, e *env, ip, contentType, body string) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/register", strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if ip != "" {
		req.RemoteAddr = ip + ":40000"
	}
	rec := httptest.NewRecorder()
	e.c.RegisterHandler().ServeHTTP(rec, req)
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("response is not JSON (%d): %q", rec.Code, rec.Body.String())
	}
	return rec, out
}

const publicReg = `{"client_name":"Claude","redirect_uris":["http://localhost:33418/callback","https://claude.ai/api/mcp/auth_callback"],
	"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none",
	"scope":"payments:read openid unknown:scope","client_uri":"https://claude.ai","logo_uri":"javascript:alert(1)",
	"software_id":"claude","software_version":"1.0","contacts":["a@example.com"],"x-vendor-extension":{"a":[1,2,3]}}`

func TestRegisterPublicClient(t *testing.T) {
	e := newEnv(t, ClientsOptions{SupportedScopes: []string{"payments:read", "payments:write", "openid"}})
	rec, got := register(t, e, "192.0.2.1", "application/json; charset=utf-8", publicReg)
	if rec.Code != http.StatusCreated {
		t.Fatalf("status %d: %v", rec.Code, got)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	id, _ := got["client_id"].(string)
	if !strings.HasPrefix(id, "client_") {
		t.Errorf("client_id = %q", id)
	}
	want := map[string]any{
		"client_id":                  id,
		"client_id_issued_at":        float64(e.clock.Now().Unix()),
		"redirect_uris":              []any{"http://localhost:33418/callback", "https://claude.ai/api/mcp/auth_callback"},
		"token_endpoint_auth_method": "none",
		"grant_types":                []any{"authorization_code", "refresh_token"},
		"response_types":             []any{"code"},
		"application_type":           "native", // inferred from the loopback URI
		"client_name":                "Claude",
		"client_uri":                 "https://claude.ai",
		// logo_uri javascript: dropped; unknown scope dropped
		"scope":            "payments:read openid",
		"software_id":      "claude",
		"software_version": "1.0",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("registration response (-want +got):\n%s", d)
	}
	cl, err := e.st.GetOAuthClient(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if cl.Kind != store.ClientKindDCR || !cl.Public() || cl.DedupKey == "" || cl.LogoURI != "" {
		t.Errorf("stored client = %+v", cl)
	}
	ev := e.rec.last(t, EventClientRegistered)
	if ev.Outcome != store.OutcomeAllow || ev.Details["client_id"] != id || ev.Details["deduplicated"] != false || ev.ClientIP != "" && ev.ClientIP != "192.0.2.1" {
		t.Errorf("audit event = %+v", ev)
	}
}

func TestRegisterConfidentialClient(t *testing.T) {
	e := newEnv(t, ClientsOptions{})
	// token_endpoint_auth_method omitted: RFC 7591 §2 default client_secret_basic.
	body := `{"client_name":"Backend","redirect_uris":["https://backend.example.com/cb"],"grant_types":["authorization_code","refresh_token"]}`
	rec, got := register(t, e, "", "application/json", body)
	if rec.Code != http.StatusCreated {
		t.Fatalf("status %d: %v", rec.Code, got)
	}
	secret, _ := got["client_secret"].(string)
	if !strings.HasPrefix(secret, clientSecretPrefix) || len(secret) < 40 {
		t.Fatalf("client_secret = %q", secret)
	}
	if got["client_secret_expires_at"] != float64(0) || got["token_endpoint_auth_method"] != AuthMethodClientSecretBasic ||
		got["application_type"] != AppTypeWeb {
		t.Errorf("response = %v", got)
	}
	cl, err := e.st.GetOAuthClient(t.Context(), got["client_id"].(string))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(secret))
	if string(cl.SecretHash) != string(sum[:]) || cl.DedupKey != "" {
		t.Errorf("stored secret hash or dedup key wrong: %+v", cl)
	}
	ev := e.rec.last(t, EventClientRegistered)
	if b, _ := json.Marshal(ev); strings.Contains(string(b), secret) {
		t.Error("the audit event holds the secret")
	}
	// Identical confidential registrations are never merged: each has its own secret.
	_, again := register(t, e, "", "application/json", body)
	if again["client_id"] == got["client_id"] || again["client_secret"] == secret {
		t.Error("a second confidential registration reused the first client")
	}
}

// H1: open registration never creates a service client: anyone could
// register one and mint user-less tokens.
func TestRegisterRefusesClientCredentials(t *testing.T) {
	e := newEnv(t, ClientsOptions{})
	for _, body := range []string{
		`{"client_name":"Svc","grant_types":["client_credentials"]}`,
		`{"client_name":"Svc","grant_types":["client_credentials"],"token_endpoint_auth_method":"client_secret_post","scope":"payments:read"}`,
		`{"client_name":"Both","redirect_uris":["https://backend.example.com/cb"],"grant_types":["authorization_code","client_credentials"]}`,
	} {
		rec, got := register(t, e, "", "application/json", body)
		if rec.Code != http.StatusBadRequest || got["error"] != errInvalidClientMetadata {
			t.Fatalf("register %s: %d %v; want 400 invalid_client_metadata", body, rec.Code, got)
		}
		if d, _ := got["error_description"].(string); !strings.Contains(d, "mcpgate client add --confidential") {
			t.Errorf("error_description %q does not point to the operator command", d)
		}
	}
	if all, err := e.st.ListOAuthClients(t.Context(), ""); err != nil || len(all) != 0 {
		t.Errorf("clients stored: %v %v", all, err)
	}
	if ev := e.rec.last(t, EventClientRegistrationRefused); ev.Reason != "client_credentials_not_allowed" {
		t.Errorf("refusal audited with reason %q", ev.Reason)
	}
}

func TestRegisterDeduplicatesPublicClients(t *testing.T) {
	e := newEnv(t, ClientsOptions{})
	body := `{"client_name":"mcp-remote","redirect_uris":["http://127.0.0.1:5555/oauth/callback"],"token_endpoint_auth_method":"none"}`
	_, first := register(t, e, "192.0.2.1", "application/json", body)
	// The same metadata, with keys in another order and lists reordered,
	// from another address, later.
	e.clock.Advance(time.Hour)
	_, second := register(t, e, "198.51.100.7", "application/json",
		`{"token_endpoint_auth_method":"none","redirect_uris":["http://127.0.0.1:5555/oauth/callback"],"client_name":"mcp-remote","grant_types":["authorization_code"]}`)
	if first["client_id"] != second["client_id"] || second["client_id_issued_at"] != first["client_id_issued_at"] {
		t.Errorf("identical public registrations got different clients: %v vs %v", first["client_id"], second["client_id"])
	}
	if ev := e.rec.last(t, EventClientRegistered); ev.Details["deduplicated"] != true {
		t.Errorf("second registration not marked deduplicated: %v", ev.Details)
	}
	// A re-registration counts as a use: it will not be reaped as never used.
	cl, _ := e.st.GetOAuthClient(t.Context(), first["client_id"].(string))
	if cl.LastUsedAt.IsZero() {
		t.Error("dedup hit did not note a use")
	}
	// Different metadata: a different client.
	_, other := register(t, e, "192.0.2.1", "application/json",
		`{"client_name":"mcp-remote","redirect_uris":["http://127.0.0.1:5556/oauth/callback"],"token_endpoint_auth_method":"none"}`)
	if other["client_id"] == first["client_id"] {
		t.Error("different metadata deduplicated")
	}
	// Concurrent identical registrations end up as one client.
	body = `{"client_name":"racer","redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}`
	var wg sync.WaitGroup
	ids := make(chan string, 10)
	for range 10 {
		wg.Go(func() {
			req := httptest.NewRequest(http.MethodPost, "/register", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			e.c.RegisterHandler().ServeHTTP(rec, req)
			var out map[string]any
			json.Unmarshal(rec.Body.Bytes(), &out)
			if rec.Code != http.StatusCreated {
				t.Errorf("concurrent registration: %d %v", rec.Code, out)
			}
			id, _ := out["client_id"].(string)
			ids <- id
		})
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	if len(seen) != 1 {
		t.Errorf("10 concurrent identical registrations produced %d clients", len(seen))
	}
}

func TestRegisterRefusals(t *testing.T) {
	e := newEnv(t, ClientsOptions{SupportedScopes: []string{"payments:read"}})
	tests := []struct {
		name, body string
		status     int
		code       string
		want       string // in error_description
	}{
		{"not JSON", `client_name=x`, 400, errInvalidClientMetadata, "JSON object"},
		{"array", `[{"redirect_uris":["https://a.example/cb"]}]`, 400, errInvalidClientMetadata, "JSON object"},
		{"truncated", `{"redirect_uris":["https://a.example/cb"]`, 400, errInvalidClientMetadata, "malformed"},
		{"trailing data", `{"redirect_uris":["https://a.example/cb"]} {}`, 400, errInvalidClientMetadata, "after the JSON object"},
		{"duplicate member", `{"redirect_uris":["https://a.example/cb"],"redirect_uris":["https://evil.example/cb"]}`, 400, errInvalidClientMetadata, "appears twice"},
		{"empty", ``, 400, errInvalidClientMetadata, "JSON object"},
		{"no redirect_uris", `{"client_name":"x","token_endpoint_auth_method":"none"}`, 400, errInvalidRedirectURI, "redirect_uris is required"},
		{"empty redirect_uris", `{"redirect_uris":[]}`, 400, errInvalidRedirectURI, "redirect_uris is required"},
		{"redirect_uris a string", `{"redirect_uris":"https://a.example/cb"}`, 400, errInvalidRedirectURI, "array of strings"},
		{"redirect_uris numbers", `{"redirect_uris":[1]}`, 400, errInvalidRedirectURI, "array of strings"},
		{"fragment", `{"redirect_uris":["https://a.example/cb#x"]}`, 400, errInvalidRedirectURI, "fragment"},
		{"userinfo", `{"redirect_uris":["https://good.example@evil.example/cb"]}`, 400, errInvalidRedirectURI, "userinfo"},
		{"plain http", `{"redirect_uris":["http://evil.example/cb"]}`, 400, errInvalidRedirectURI, "not loopback"},
		{"javascript", `{"redirect_uris":["javascript:alert(document.cookie)"]}`, 400, errInvalidRedirectURI, "cannot be a redirect target"},
		{"data", `{"redirect_uris":["data:text/html;base64,PHNjcmlwdD4="]}`, 400, errInvalidRedirectURI, "cannot be a redirect target"},
		{"wildcard", `{"redirect_uris":["https://*.example.com/cb"]}`, 400, errInvalidRedirectURI, "wildcard"},
		{"unicode host", `{"redirect_uris":["https://exаmple.com/cb"]}`, 400, errInvalidRedirectURI, "non-ASCII"},
		{"escaped unicode host", `{"redirect_uris":["https://ex\u0430mple.com/cb"]}`, 400, errInvalidRedirectURI, "non-ASCII"},
		{"web with loopback", `{"application_type":"web","redirect_uris":["http://127.0.0.1/cb"]}`, 400, errInvalidRedirectURI, `application_type "web"`},
		{"bad application_type", `{"application_type":"desktop","redirect_uris":["https://a.example/cb"]}`, 400, errInvalidClientMetadata, "application_type"},
		{"implicit grant", `{"redirect_uris":["https://a.example/cb"],"grant_types":["implicit"]}`, 400, errInvalidClientMetadata, `"implicit" is not supported`},
		{"password grant", `{"redirect_uris":["https://a.example/cb"],"grant_types":["password"]}`, 400, errInvalidClientMetadata, "not supported"},
		{"token response", `{"redirect_uris":["https://a.example/cb"],"response_types":["token"]}`, 400, errInvalidClientMetadata, "only \"code\""},
		{"inconsistent types", `{"redirect_uris":["https://a.example/cb"],"grant_types":["refresh_token"],"response_types":["code"]}`, 400, errInvalidClientMetadata, "needs the authorization_code grant"},
		{"public client_credentials", `{"grant_types":["client_credentials"],"token_endpoint_auth_method":"none"}`, 400, errInvalidClientMetadata, "cannot be registered dynamically"},
		{"private_key_jwt", `{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"private_key_jwt"}`, 400, errInvalidClientMetadata, "not supported"},
		{"auth method not a string", `{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":1}`, 400, errInvalidClientMetadata, "must be a string"},
		{"name with RLO", `{"redirect_uris":["https://a.example/cb"],"client_name":"Goo\u202egle"}`, 400, errInvalidClientMetadata, "client_name"},
		{"name with control", `{"redirect_uris":["https://a.example/cb"],"client_name":"a\u0007b"}`, 400, errInvalidClientMetadata, "client_name"},
		{"name too long", `{"redirect_uris":["https://a.example/cb"],"client_name":"` + strings.Repeat("n", 201) + `"}`, 400, errInvalidClientMetadata, "client_name"},
		{"bad scope token", `{"redirect_uris":["https://a.example/cb"],"scope":"payments:read \"quoted\""}`, 400, errInvalidClientMetadata, "scope"},
		{"no offered scope", `{"redirect_uris":["https://a.example/cb"],"scope":"admin root"}`, 400, errInvalidClientMetadata, "none of the requested scopes"},
		{"too many URIs", `{"redirect_uris":[` + strings.TrimSuffix(strings.Repeat(`"https://a.example/cb",`, 21), ",") + `]}`, 400, errInvalidRedirectURI, "at most 20"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec, got := register(t, e, "", "application/json", tc.body)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %v", rec.Code, tc.status, got)
			}
			if tc.code == "" {
				return
			}
			desc, _ := got["error_description"].(string)
			if got["error"] != tc.code || !strings.Contains(desc, tc.want) {
				t.Errorf("error = %v %q, want %s mentioning %q", got["error"], desc, tc.code, tc.want)
			}
			ev := e.rec.last(t, EventClientRegistrationRefused)
			if ev.Outcome != store.OutcomeDeny || ev.Reason == "" || ev.Details["description"] != desc {
				t.Errorf("refusal audit event = %+v", ev)
			}
		})
	}
	if all, _ := e.st.ListOAuthClients(t.Context(), ""); len(all) != 0 {
		t.Errorf("%d clients stored by refused registrations", len(all))
	}
}

func TestRegisterTransportRefusals(t *testing.T) {
	e := newEnv(t, ClientsOptions{MaxRegisterBytes: 1024})
	valid := `{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"none"}`

	rec, got := register(t, e, "", "text/plain", valid)
	if rec.Code != http.StatusBadRequest || got["error"] != errInvalidClientMetadata {
		t.Errorf("text/plain: %d %v", rec.Code, got)
	}
	rec, got = register(t, e, "", "", valid)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("no Content-Type: %d %v", rec.Code, got)
	}
	// Oversized, announced and not announced.
	big := `{"redirect_uris":["https://a.example/cb"],"client_name":"` + strings.Repeat("x", 2000) + `"}`
	rec, got = register(t, e, "", "application/json", big)
	if rec.Code != http.StatusRequestEntityTooLarge || e.rec.last(t, EventClientRegistrationRefused).Reason != "body_too_large" {
		t.Errorf("oversized body: %d %v", rec.Code, got)
	}
	req := httptest.NewRequest(http.MethodPost, "/register", strings.NewReader(big))
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = -1 // chunked: no length announced
	w := httptest.NewRecorder()
	e.c.RegisterHandler().ServeHTTP(w, req)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized chunked body: %d %s", w.Code, w.Body)
	}
	// Deeply nested unknown member: ignored if it parses, refused if not.
	deep := `{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"none","x":` + strings.Repeat("[", 400) + strings.Repeat("]", 400) + `}`
	if rec, got := register(t, e, "", "application/json", deep); rec.Code != http.StatusCreated {
		t.Errorf("unknown nested member: %d %v", rec.Code, got)
	}
	// Methods.
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		w := httptest.NewRecorder()
		e.c.RegisterHandler().ServeHTTP(w, httptest.NewRequest(m, "/register", nil))
		if w.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s /register = %d", m, w.Code)
		}
	}
	// CORS preflight for browser-based clients.
	pre := httptest.NewRequest(http.MethodOptions, "/register", nil)
	pre.Header.Set("Origin", "http://localhost:6274")
	pre.Header.Set("Access-Control-Request-Method", "POST")
	w = httptest.NewRecorder()
	e.c.RegisterHandler().ServeHTTP(w, pre)
	if w.Code != http.StatusNoContent || w.Header().Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(w.Header().Get("Access-Control-Allow-Headers"), "Content-Type") {
		t.Errorf("preflight: %d %v", w.Code, w.Header())
	}
}

func TestRegisterRateLimit(t *testing.T) {
	lim := ratelimit.NewMemory(time.Hour, 3, 0)
	e := newEnv(t, ClientsOptions{RegistrationLimiter: lim})
	body := func(i int) string {
		return `{"redirect_uris":["https://a.example/cb` + string(rune('a'+i)) + `"],"token_endpoint_auth_method":"none"}`
	}
	for i := range 3 {
		if rec, got := register(t, e, "203.0.113.9", "application/json", body(i)); rec.Code != http.StatusCreated {
			t.Fatalf("registration %d within the burst: %d %v", i, rec.Code, got)
		}
	}
	rec, got := register(t, e, "203.0.113.9", "application/json", body(4))
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" || got["error"] != "too_many_requests" {
		t.Errorf("over the burst: %d %v %v", rec.Code, rec.Header(), got)
	}
	if ev := e.rec.last(t, EventClientRegistrationRefused); ev.Reason != "rate_limited" {
		t.Errorf("refusal reason = %q", ev.Reason)
	}
	// Another address has its own bucket.
	if rec, _ := register(t, e, "203.0.113.10", "application/json", body(5)); rec.Code != http.StatusCreated {
		t.Errorf("another IP was limited too: %d", rec.Code)
	}
	// A limiter that cannot decide fails closed.
	e2 := newEnv(t, ClientsOptions{RegistrationLimiter: failingLimiter{}})
	if rec, got := register(t, e2, "", "application/json", body(0)); rec.Code != http.StatusServiceUnavailable ||
		rec.Header().Get("Retry-After") == "" || got["error"] != "temporarily_unavailable" {
		t.Errorf("failing limiter: %d %v %v, want 503 temporarily_unavailable with Retry-After", rec.Code, rec.Header(), got)
	}
}

// M1, RFC 8252 §8.4: dynamic registration accepts reverse-DNS private-use
// schemes and the allowlisted MCP client schemes only.
func TestRegisterPrivateUseSchemes(t *testing.T) {
	e := newEnv(t, ClientsOptions{})
	for uri, ok := range map[string]bool{
		"com.example.app:/callback":                    true,
		"cursor://anysphere.cursor-mcp/oauth/callback": true,
		"vscode://vscode.github-authentication/cb":     true,
		"myapp://callback":                             false,
		"evil:/cb":                                     false,
	} {
		rec, got := register(t, e, "", "application/json",
			`{"client_name":"Native","redirect_uris":["`+uri+`"],"token_endpoint_auth_method":"none"}`)
		switch {
		case ok && rec.Code != http.StatusCreated:
			t.Errorf("register %s: %d %v, want 201", uri, rec.Code, got)
		case !ok && (rec.Code != http.StatusBadRequest || got["error"] != errInvalidRedirectURI):
			t.Errorf("register %s: %d %v, want 400 invalid_redirect_uri", uri, rec.Code, got)
		}
	}
}
