package oauth

import (
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/store"
)

func TestClassifyRedirectURI(t *testing.T) {
	valid := []struct {
		uri  string
		kind redirectKind
	}{
		{"https://app.example.com/callback", redirectHTTPS},
		{"https://app.example.com:8443/cb?x=1&y=2", redirectHTTPS},
		{"https://xn--bcher-kva.example/cb", redirectHTTPS},
		{"https://192.0.2.10/cb", redirectHTTPS},
		{"https://[2001:db8::1]/cb", redirectHTTPS},
		{"http://127.0.0.1/callback", redirectLoopback},
		{"http://127.0.0.1:51004/oauth2redirect/example-provider", redirectLoopback},
		{"http://[::1]:61023/cb", redirectLoopback},
		{"http://localhost:3000/callback", redirectLoopback},
		{"http://localhost", redirectLoopback},
		{"cursor://anysphere.cursor-mcp/oauth/callback", redirectPrivateUse},
		{"vscode://vscode.github-authentication/did-authenticate", redirectPrivateUse},
		{"com.example.app:/oauth2redirect/example-provider", redirectPrivateUse},
		{"com.example.app:cb", redirectPrivateUse},
		// The allowlist of well-known MCP client schemes without a period.
		{"vscode-insiders://vscode.github-authentication/did-authenticate", redirectPrivateUse},
		{"windsurf://codeium.windsurf/oauth/callback", redirectPrivateUse},
		{"claude://claude.ai/oauth/callback", redirectPrivateUse},
		{"zed://oauth/callback", redirectPrivateUse},
	}
	for _, tc := range valid {
		kind, msg := classifyRedirectURI(tc.uri)
		if msg != "" || kind != tc.kind {
			t.Errorf("classifyRedirectURI(%q) = %v, %q; want kind %v", tc.uri, kind, msg, tc.kind)
		}
	}
	invalid := []struct{ uri, want string }{
		{"", "empty"},
		{"https://app.example.com/cb#frag", "fragment"},
		{"https://app.example.com/cb#", "fragment"},
		{"https://good.example@evil.example/cb", "userinfo"},
		{"https://good.example:pw@evil.example/cb", "userinfo"},
		{"http://127.0.0.1@evil.example/cb", "userinfo"},
		{"https://*.example.com/cb", "wildcard"},
		{"https://app.example.com/*", "wildcard"},
		{"http://evil.example/cb", "not loopback"},
		{"http://127.0.0.1.evil.example/cb", "not loopback"},
		{"http://localhost.evil.example/cb", "not loopback"},
		{"http://127.0.0.2/cb", "not loopback"},
		{"http://[::1%25eth0]/cb", "not loopback"},
		{"http://127.0.0.1:0/cb", "not loopback"},
		{"http://127.0.0.1:99999/cb", "not loopback"},
		{"http://127.0.0.1:/cb", "not loopback"},
		{"HTTPS://app.example.com/cb", "lower-case scheme"},
		{"https:app.example.com/cb", "https://host/path"},
		{"https:///cb", "no host"},
		{"https://app.example.com:/cb", "empty port"},
		{"https://app.example.com:0/cb", "invalid port"},
		{"https://exämple.com/cb", "non-ASCII"},
		{"https://аpple.com/cb", "non-ASCII"}, // Cyrillic а
		{"https://app.example.com/c b", "white space"},
		{"https://app.example.com/\x00", "control"},
		{`https://good.example\@evil.example/`, "backslash"},
		{"https://-bad-.example/cb", "invalid host name"},
		{"https://a_b.example/cb", "invalid host name"},
		{"javascript:alert(1)", "cannot be a redirect target"},
		{"JavaScript:alert(1)", "lower-case scheme"},
		{"data:text/html,<script>alert(1)</script>", "cannot be a redirect target"},
		{"file:///etc/passwd", "cannot be a redirect target"},
		{"vbscript:msgbox", "cannot be a redirect target"},
		{"intent://scan/#Intent;scheme=zxing;end", "fragment"},
		{"intent://scan/", "cannot be a redirect target"},
		{"c:/windows", "cannot be a redirect target"},
		// M1, RFC 8252 §8.4: private-use schemes must be reverse-DNS based.
		{"myapp://callback", "not reverse-DNS"},
		{"mcp:/cb", "not reverse-DNS"},
		{"slack://open", "not reverse-DNS"},
		{"cursorx://cb", "not reverse-DNS"},
		{"/relative/path", "not an absolute URI"},
		{"//evil.example/cb", "not an absolute URI"},
		{"https://app.example.com/" + strings.Repeat("a", 2000), "longer than"},
	}
	for _, tc := range invalid {
		kind, msg := classifyRedirectURI(tc.uri)
		if msg == "" || kind != 0 {
			t.Errorf("classifyRedirectURI(%q) accepted it as kind %v, want a refusal mentioning %q", tc.uri, kind, tc.want)
			continue
		}
		if !strings.Contains(msg, tc.want) {
			t.Errorf("classifyRedirectURI(%q) = %q, want it to mention %q", tc.uri, msg, tc.want)
		}
	}
}

func TestValidateRedirectURIsApplicationType(t *testing.T) {
	tests := []struct {
		name    string
		uris    []string
		appType string
		want    string // effective application type, or "" for a refusal
	}{
		{"https only infers web", []string{"https://a.example/cb"}, "", AppTypeWeb},
		{"loopback infers native", []string{"https://a.example/cb", "http://127.0.0.1/cb"}, "", AppTypeNative},
		{"custom scheme infers native", []string{"cursor://x/cb"}, "", AppTypeNative},
		{"native may use all three", []string{"https://a.example/cb", "http://[::1]/cb", "com.example.app:/cb"}, AppTypeNative, AppTypeNative},
		{"web with https", []string{"https://a.example/cb"}, AppTypeWeb, AppTypeWeb},
		{"web may not use loopback", []string{"http://localhost:6274/oauth/callback"}, AppTypeWeb, ""},
		{"web may not use a custom scheme", []string{"vscode://x/cb"}, AppTypeWeb, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, got, msg := validateRedirectURIs(tc.uris, tc.appType)
			if tc.want == "" {
				if msg == "" || !strings.Contains(msg, `application_type "web"`) {
					t.Errorf("validateRedirectURIs = %q, %q; want a refusal naming application_type web", got, msg)
				}
				return
			}
			if msg != "" || got != tc.want {
				t.Errorf("validateRedirectURIs = %q, %q; want %q", got, msg, tc.want)
			}
		})
	}
	uris, _, msg := validateRedirectURIs([]string{"https://a.example/cb", "https://a.example/cb", "https://b.example/cb"}, "")
	if msg != "" || len(uris) != 2 {
		t.Errorf("duplicates not removed: %q, %q", uris, msg)
	}
	many := make([]string, maxRedirectURIs+1)
	for i := range many {
		many[i] = "https://a.example/cb" + strings.Repeat("x", i)
	}
	if _, _, msg := validateRedirectURIs(many, ""); !strings.Contains(msg, "at most") {
		t.Errorf("%d redirect URIs: %q, want a refusal", len(many), msg)
	}
}

func TestMatchRedirectURI(t *testing.T) {
	cl := store.OAuthClient{RedirectURIs: []string{
		"https://app.example.com/callback",
		"http://127.0.0.1/callback",
		"http://[::1]:8080/cb?x=1",
		"http://localhost/callback",
		"cursor://anysphere.cursor-mcp/oauth/callback",
	}}
	tests := []struct {
		uri  string
		want bool
	}{
		// exact matches
		{"https://app.example.com/callback", true},
		{"http://127.0.0.1/callback", true},
		{"cursor://anysphere.cursor-mcp/oauth/callback", true},
		// RFC 8252 §7.3: any port on loopback
		{"http://127.0.0.1:51004/callback", true},
		{"http://127.0.0.1:1/callback", true},
		{"http://[::1]/cb?x=1", true},
		{"http://[::1]:61023/cb?x=1", true},
		{"http://localhost:51212/callback", true},
		// ... but nothing else may vary
		{"http://127.0.0.1:51004/callback/", false},
		{"http://127.0.0.1:51004/Callback", false},
		{"http://127.0.0.1:51004/callback?x=1", false},
		{"http://127.0.0.1:51004/callback#frag", false},
		{"http://[::1]:61023/cb", false},
		{"http://localhost:51004/cb?x=1", false},
		{"http://[::1]:51004/callback", false},     // other loopback host
		{"http://localhost:51004/cb?x=2", false},   // other query
		{"http://127.0.0.1:0/callback", false},     // invalid port
		{"http://127.0.0.1:65536/callback", false}, // invalid port
		{"http://127.0.0.1:80@evil.example/callback", false},
		{"http://user@127.0.0.1:5000/callback", false},
		{"http://127.0.0.1.evil.example:5000/callback", false},
		{"https://127.0.0.1:5000/callback", false}, // scheme must stay http
		{"HTTP://127.0.0.1:5000/callback", false},
		// https: exact only (no port, path, case or trailing-slash tricks)
		{"https://app.example.com:443/callback", false},
		{"https://app.example.com:8443/callback", false},
		{"https://app.example.com/callback/", false},
		{"https://app.example.com/callback/../evil", false},
		{"https://app.example.com/callback?next=https://evil.example", false},
		{"https://app.example.com/callback#", false},
		{"https://APP.example.com/callback", false},
		{"https://app.example.com.evil.example/callback", false},
		{"https://app.example.com@evil.example/callback", false},
		{"https://evil.example/callback", false},
		{"https://app.example.com/callback%2F..%2Fevil", false},
		{"cursor://anysphere.cursor-mcp/oauth/callback/x", false},
		{"javascript:alert(1)", false},
		{"", false},
	}
	for _, tc := range tests {
		if got := MatchRedirectURI(cl, tc.uri); got != tc.want {
			t.Errorf("MatchRedirectURI(%q) = %v, want %v", tc.uri, got, tc.want)
		}
	}
	// A registration with an explicit loopback port still accepts any port.
	withPort := store.OAuthClient{RedirectURIs: []string{"http://127.0.0.1:3000/cb"}}
	if !MatchRedirectURI(withPort, "http://127.0.0.1:49152/cb") || !MatchRedirectURI(withPort, "http://127.0.0.1/cb") {
		t.Error("a loopback registration with a port did not accept another port")
	}
	// Port variance never applies to a registered https URI.
	if MatchRedirectURI(store.OAuthClient{RedirectURIs: []string{"https://localhost/cb"}}, "https://localhost:4443/cb") {
		t.Error("port variance applied to an https URI")
	}
}
