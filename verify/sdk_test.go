package verify_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"

	"github.com/mcpgate/mcpgate/verify"
)

// TestTokenVerifier: the go-sdk middleware accepts a valid token and hands
// the handler the subject and scopes, refuses others with 401 and a
// challenge, and refuses a token lacking a required scope with 403.
func TestTokenVerifier(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	// The SDK checks the expiry against the real clock.
	now := time.Now()
	v := newVerifier(t, staticKeys(t, k), func(o *verify.Options) { o.Now = time.Now })
	mw := auth.RequireBearerToken(v.TokenVerifier(), &auth.RequireBearerTokenOptions{
		ResourceMetadataURL: "https://tools.example.com/.well-known/oauth-protected-resource/mcp",
		Scopes:              []string{"payments:read"},
	})
	srv := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := auth.TokenInfoFromContext(r.Context())
		io.WriteString(w, info.UserID+" "+strings.Join(info.Scopes, ",")+" "+info.Extra["client_id"].(string))
	})))
	defer srv.Close()

	call := func(token string) (int, string, string) {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header.Get("WWW-Authenticate")
	}
	code, body, _ := call(mint(t, k, k.header(), claims(now)))
	if code != 200 || body != "usr_alice payments:read,payments:write https://client.example.com/metadata.json" {
		t.Errorf("valid token: %d %q", code, body)
	}
	code, _, challenge := call(mint(t, k, k.header(), with(claims(now), "aud", "https://other.example.com")))
	if code != http.StatusUnauthorized || !strings.Contains(challenge, "resource_metadata=") {
		t.Errorf("token for another resource: %d, challenge %q", code, challenge)
	}
	code, _, _ = call(mint(t, k, k.header(), with(claims(now), "scope", "payments:write")))
	if code != http.StatusForbidden {
		t.Errorf("token without the required scope: %d, want 403", code)
	}
}
