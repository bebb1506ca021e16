package oauth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// tokenRequest builds a token-endpoint style POST.
func tokenRequest(query string, form url.Values, authz ...string) *http.Request {
	target := "/token"
	if query != "" {
		target += "?" + query
	}
	r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, a := range authz {
		r.Header.Add("Authorization", a)
	}
	return r
}

func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

func TestAuthenticateClient(t *testing.T) {
	e := newEnv(t, ClientsOptions{})
	ctx := t.Context()
	pub, _, err := e.c.CreateStatic(ctx, StaticClient{Name: "Public", RedirectURIs: []string{"http://127.0.0.1/cb"}})
	if err != nil {
		t.Fatal(err)
	}
	conf, secret, err := e.c.CreateStatic(ctx, StaticClient{Name: "Service", Confidential: true})
	if err != nil {
		t.Fatal(err)
	}
	form := func(kv ...string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v
	}
	ok := []struct {
		name string
		req  *http.Request
		want string
	}{
		{"none", tokenRequest("", form("client_id", pub.ClientID)), pub.ClientID},
		{"client_secret_basic", tokenRequest("", form(), basic(conf.ClientID, secret)), conf.ClientID},
		{"basic with matching body client_id", tokenRequest("", form("client_id", conf.ClientID), basic(conf.ClientID, secret)), conf.ClientID},
		{"basic scheme in lower case", tokenRequest("", form(), "basic "+strings.TrimPrefix(basic(conf.ClientID, secret), "Basic ")), conf.ClientID},
		{"client_secret_post", tokenRequest("", form("client_id", conf.ClientID, "client_secret", secret)), conf.ClientID},
	}
	for _, tc := range ok {
		cl, err := e.c.AuthenticateClient(ctx, tc.req)
		if err != nil || cl.ClientID != tc.want {
			t.Errorf("%s: AuthenticateClient = %s, %v; want %s", tc.name, cl.ClientID, err, tc.want)
		}
	}
	// Success notes the use.
	if got, _ := e.st.GetOAuthClient(ctx, conf.ClientID); got.LastUsedAt.IsZero() {
		t.Error("successful authentication did not record the client's use")
	}

	bad := []struct {
		name   string
		req    *http.Request
		code   string
		reason string
	}{
		{"wrong secret (basic)", tokenRequest("", form(), basic(conf.ClientID, secret+"x")), "invalid_client", "bad_secret"},
		{"wrong secret (post)", tokenRequest("", form("client_id", conf.ClientID, "client_secret", "mcpgcs_guess")), "invalid_client", "bad_secret"},
		{"empty secret", tokenRequest("", form("client_id", conf.ClientID, "client_secret", "")), "invalid_client", "bad_secret"},
		{"secret of another client", tokenRequest("", form(), basic(pub.ClientID, secret)), "invalid_client", "unexpected_secret"},
		{"confidential without secret", tokenRequest("", form("client_id", conf.ClientID)), "invalid_client", "missing_secret"},
		{"public with a secret", tokenRequest("", form("client_id", pub.ClientID, "client_secret", "x")), "invalid_client", "unexpected_secret"},
		{"unknown client", tokenRequest("", form("client_id", "client_nope")), "invalid_client", "unknown_client"},
		{"unknown client (basic)", tokenRequest("", form(), basic("client_nope", "x")), "invalid_client", "unknown_client"},
		{"no client at all", tokenRequest("", form()), "invalid_client", "missing"},
		{"two methods", tokenRequest("", form("client_id", conf.ClientID, "client_secret", secret), basic(conf.ClientID, secret)), "invalid_request", "multiple_methods"},
		{"basic and another body client_id", tokenRequest("", form("client_id", pub.ClientID), basic(conf.ClientID, secret)), "invalid_request", "client_id_mismatch"},
		{"two Authorization headers", tokenRequest("", form(), basic(conf.ClientID, secret), basic(conf.ClientID, secret)), "invalid_request", "malformed"},
		{"duplicate client_id", tokenRequest("", url.Values{"client_id": {pub.ClientID, conf.ClientID}}), "invalid_request", "malformed"},
		{"duplicate client_secret", tokenRequest("", url.Values{"client_id": {conf.ClientID}, "client_secret": {"a", secret}}), "invalid_request", "malformed"},
		{"secret in the URL", tokenRequest("client_secret="+secret, form("client_id", conf.ClientID)), "invalid_request", "secret_in_url"},
		{"bearer scheme", tokenRequest("", form("client_id", pub.ClientID), "Bearer abc"), "invalid_client", "unsupported_method"},
		{"basic not base64", tokenRequest("", form(), "Basic !!!"), "invalid_client", "malformed"},
		{"basic without colon", tokenRequest("", form(), "Basic "+base64.StdEncoding.EncodeToString([]byte(conf.ClientID))), "invalid_client", "malformed"},
		{"basic bad escape", tokenRequest("", form(), "Basic "+base64.StdEncoding.EncodeToString([]byte("%zz:x"))), "invalid_client", "malformed"},
		{"hostile client_id", tokenRequest("", form("client_id", "client_\x00'--")), "invalid_client", "unknown_client"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.c.AuthenticateClient(ctx, tc.req)
			var aerr *ClientAuthError
			if !errors.As(err, &aerr) {
				t.Fatalf("err = %v, want a *ClientAuthError", err)
			}
			if aerr.Code != tc.code || aerr.Reason != tc.reason {
				t.Errorf("err = %s [%s], want %s [%s]", aerr.Code, aerr.Reason, tc.code, tc.reason)
			}
			if strings.Contains(aerr.Description, secret) {
				t.Error("the error description holds the secret")
			}
			rec := httptest.NewRecorder()
			aerr.Write(rec)
			var body map[string]string
			json.Unmarshal(rec.Body.Bytes(), &body)
			wantStatus := http.StatusBadRequest
			if tc.code == "invalid_client" {
				wantStatus = http.StatusUnauthorized
				if h := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(h, `Basic realm="mcpgate"`) {
					t.Errorf("WWW-Authenticate = %q", h)
				}
			}
			if rec.Code != wantStatus || body["error"] != tc.code || body["error_description"] == "" || rec.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("written error: %d %v %v", rec.Code, body, rec.Header())
			}
			ev := e.rec.last(t, EventClientAuthFailed)
			if ev.Reason != tc.reason || ev.Outcome != store.OutcomeDeny {
				t.Errorf("audit event = %+v", ev)
			}
			if b, _ := json.Marshal(ev); strings.Contains(string(b), secret) {
				t.Error("the audit event holds the secret")
			}
		})
	}
}

func TestDecodeBasicFormEncoding(t *testing.T) {
	// RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
	id, secret := "https://app.example.com/client.json?v=1", "p@ss:w rd+%/é"
	got, gotSecret, ok := decodeBasic(strings.TrimPrefix(basic(id, secret), "Basic "))
	if !ok || got != id || gotSecret != secret {
		t.Errorf("decodeBasic = %q, %q, %v", got, gotSecret, ok)
	}
	// A colon in the encoded secret is fine: the first colon splits.
	raw := base64.StdEncoding.EncodeToString([]byte("client_x:a:b"))
	if id, s, ok := decodeBasic(raw); !ok || id != "client_x" || s != "a:b" {
		t.Errorf("decodeBasic(a:b) = %q, %q, %v", id, s, ok)
	}
	for _, bad := range []string{"", "!!", base64.StdEncoding.EncodeToString([]byte(":secret")), base64.StdEncoding.EncodeToString([]byte("nocolon"))} {
		if _, _, ok := decodeBasic(bad); ok {
			t.Errorf("decodeBasic(%q) accepted", bad)
		}
	}
}

// TestAuthenticateCIMDClientStale: a CIMD client authenticates from its
// cached document even after the cache lifetime, so refreshes survive the
// client's site being down; the authorization endpoint (Resolve) does not.
func TestAuthenticateCIMDClientStale(t *testing.T) {
	e, d := cimdEnv(t, ClientsOptions{})
	id := d.url("example.com", "/c.json")
	d.set("/c.json", docResponse{body: cimdDoc(id, ""), headers: map[string]string{"Cache-Control": "max-age=60"}})
	// Never seen: authentication fetches it.
	if cl, err := e.c.AuthenticateClient(t.Context(), tokenRequest("", url.Values{"client_id": {id}})); err != nil || cl.Kind != store.ClientKindCIMD {
		t.Fatalf("AuthenticateClient(new CIMD client) = %+v, %v", cl, err)
	}
	d.set("/c.json", docResponse{status: http.StatusServiceUnavailable})
	e.clock.Advance(time.Hour)
	if _, err := e.c.AuthenticateClient(t.Context(), tokenRequest("", url.Values{"client_id": {id}})); err != nil {
		t.Errorf("stale CIMD client at the token endpoint: %v", err)
	}
	_, err := e.c.Resolve(t.Context(), id)
	wantClientError(t, err, ErrInvalidClientMetadata, "http_status")
	// A CIMD client never authenticates with a secret.
	_, err = e.c.AuthenticateClient(t.Context(), tokenRequest("", url.Values{}, basic(id, "whatever")))
	var aerr *ClientAuthError
	if !errors.As(err, &aerr) || aerr.Reason != "unexpected_secret" {
		t.Errorf("CIMD client with a secret: %v", err)
	}
}
