package federation

import (
	"slices"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/principal"
)

// Bounds on mapped values: a token is at most 8 KiB, but an introspection
// answer could say more, and nothing unbounded reaches a principal (roles:
// principal.MaxClaimRoles, principal.MaxRoleBytes).
const maxScopes = 100

// mapIdentity builds the identity from verified claims with the issuer's
// claim mapping.
func (is *issuer) mapIdentity(m map[string]any, method string, exp time.Time) (*Identity, error) {
	cm := is.cfg.Claims
	sub, _ := lookup(m, cm.UserID).(string)
	if sub == "" {
		return nil, refuse(ReasonMalformed, is.cfg.Issuer, "user id claim %s missing or not a string", quote(cm.UserID))
	}
	id := &Identity{
		Issuer: is.cfg.Issuer, IssuerName: is.cfg.Name, Method: method, Subject: sub,
		ExpiresAt: exp, Claims: m,
	}
	id.Email, _ = lookup(m, cm.Email).(string)
	switch v := lookup(m, cm.EmailVerified).(type) {
	case bool:
		id.EmailVerified = v
	case string: // some providers (Cognito) send "true"
		id.EmailVerified = v == "true"
	}
	id.Name, _ = lookup(m, cm.Name).(string)
	if cm.Roles != "" {
		// Bounded, and never mcpgate's admin role (principal.ClaimRoles).
		id.Roles = principal.ClaimRoles(lookup(m, cm.Roles))
	}
	if s, ok := m["client_id"].(string); ok {
		id.ClientID = clip(s, 300)
	} else if s, ok := m["azp"].(string); ok {
		id.ClientID = clip(s, 300)
	}
	if s, ok := m["jti"].(string); ok {
		id.TokenID = clip(s, 200)
	}
	id.Scopes = is.scopes(m)
	return id, nil
}

// scopes: the token's scopes cut down to the resource's, or, when the
// token carries none, the static set (also cut down).
func (is *issuer) scopes(m map[string]any) []string {
	var raw []string
	if c := is.cfg.Claims.Scopes; c != "" {
		raw = stringList(lookup(m, c))
	} else if s, ok := m["scope"].(string); ok { // RFC 9068 §2.2.3, RFC 7662 §2.2
		raw = strings.Fields(s)
	} else {
		raw = stringList(m["scp"]) // Entra, Okta
	}
	if len(raw) == 0 {
		raw = is.cfg.StaticScopes
	}
	var out []string
	for _, s := range raw {
		if slices.Contains(is.f.opts.ResourceScopes, s) && !slices.Contains(out, s) {
			out = append(out, s)
			if len(out) == maxScopes {
				break
			}
		}
	}
	return out
}

// stringList reads a string (space-separated) or an array of strings.
func stringList(v any) []string {
	switch x := v.(type) {
	case string:
		return strings.Fields(x)
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok && s != "" && !strings.ContainsAny(s, " \t\r\n") {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// lookup finds a claim by name or dotted path (principal.LookupClaim).
func lookup(m map[string]any, path string) any { return principal.LookupClaim(m, path) }
