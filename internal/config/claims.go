package config

// --access-token-claims (MCPGATE_ACCESS_TOKEN_CLAIMS): which custom claims
// of a browser session are copied into the OAuth access tokens issued from
// it. A session's custom claims are what the sign-in vouched for: the
// claims bring-your-own-login posted, or an upstream identity provider's
// roles mapping ("roles") and kept claims. See docs/configuration.md.
//
// The default is none. An access token is a JWT its client can read, and
// every resource server the client shows it to: copying a claim discloses
// it to all of them, for as long as the token lives. The operator names
// the claims that should travel; everything else stays on the server.

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mcpgate/mcpgate/internal/principal"
)

// Limits of --access-token-claims: a session keeps at most 32 custom
// claims, each named by at most 64 bytes.
const (
	maxAccessTokenClaims   = 32
	maxAccessTokenClaimLen = 64
)

// identityClaims describe the user. They are never custom claims (a
// sign-in's sub, email and name update the user, whose id is the token's
// sub), so copying them is not possible.
var identityClaims = map[string]bool{"sub": true, "email": true, "email_verified": true, "name": true}

// IdentityClaim reports whether name is one of the user-describing claims
// (sub, email, email_verified, name) that are never custom claims.
func IdentityClaim(name string) bool { return identityClaims[strings.ToLower(name)] }

// AccessTokenClaimNames returns --access-token-claims with the spaces
// around each name trimmed ("organization_id, roles" is two names) and
// empty names dropped.
func (c *Config) AccessTokenClaimNames() []string {
	var out []string
	for _, name := range c.AccessTokenClaims {
		if name = strings.TrimSpace(name); name != "" {
			out = append(out, name)
		}
	}
	return out
}

// validateAccessTokenClaims reports the problems of --access-token-claims.
func (c *Config) validateAccessTokenClaims() []string {
	names := c.AccessTokenClaimNames()
	var errs []string
	bad := func(name, msg string) {
		errs = append(errs, "--access-token-claims "+strconv.Quote(clipStr(name))+": "+msg)
	}
	if len(names) > maxAccessTokenClaims {
		errs = append(errs, fmt.Sprintf("--access-token-claims: %d claims named, at most %d (a session keeps at most %d custom claims)",
			len(names), maxAccessTokenClaims, maxAccessTokenClaims))
	}
	seen := map[string]bool{}
	for _, name := range names {
		switch {
		case len(name) > maxAccessTokenClaimLen || !utf8.ValidString(name) ||
			strings.ContainsFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
			bad(name, fmt.Sprintf("a claim name is 1 to %d bytes of text without spaces", maxAccessTokenClaimLen))
		case principal.ReservedClaim(name):
			bad(name, "a protocol claim of access tokens, which a sign-in must never set (reserved: "+
				strings.Join(principal.ReservedClaims(), " ")+")")
		case IdentityClaim(name):
			bad(name, "describes the user, not a custom claim: the token's sub is the user, whose email and name mcpgate keeps")
		case seen[name]:
			bad(name, "named twice")
		}
		seen[name] = true
	}
	return errs
}
