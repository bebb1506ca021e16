package verify_test

import (
	"testing"

	"github.com/mcpgate/mcpgate/verify"
)

// TestWrongAudience: a token minted for another resource of the same
// issuer is refused (no token passthrough, RFC 8707 / MCP security best
// practices), whatever resembles our identifier.
func TestWrongAudience(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	v := newVerifier(t, staticKeys(t, k))
	for name, aud := range map[string]any{
		"another resource":   "https://other.example.com/mcp",
		"trailing slash":     testAudience + "/",
		"prefix":             "https://tools.example.com",
		"case":               "https://TOOLS.example.com/mcp",
		"path suffix":        testAudience + "/admin",
		"the issuer":         testIssuer,
		"array without ours": []string{"https://a.example.com", "https://b.example.com"},
		"empty string":       "",
	} {
		t.Run(name, func(t *testing.T) {
			wantErr(t, v, mint(t, k, k.header(), with(claims(t0), "aud", aud)), verify.ErrAudience)
		})
	}
	wantErr(t, v, mint(t, k, k.header(), with(claims(t0), "aud", []string{})), verify.ErrMalformed)

	// The same token is fine for the resource it was minted for.
	other := newVerifier(t, staticKeys(t, k), func(o *verify.Options) { o.Audience = "https://other.example.com/mcp" })
	mustVerify(t, other, mint(t, k, k.header(), with(claims(t0), "aud", "https://other.example.com/mcp")))

	if _, err := verify.New(verify.Options{Issuer: testIssuer, Keys: staticKeys(t, k)}); err == nil {
		t.Error("New without Audience succeeded")
	}
}
