package principal

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Roles from claims.
//
// A principal's roles are the user's own (stored by mcpgate, set by an
// administrator) plus roles a login source or token vouched for in a claim:
// the mapped roles claim of a trusted external issuer, the roles claim an
// upstream identity provider's roles mapping put into the browser session,
// the "roles" custom claim of bring-your-own-login, and that same claim
// copied into mcpgate's access tokens. Claim roles count for tool
// decisions (mcpserver.Require) only: mcpgate's own administrator powers
// come from the stored roles alone, so RoleAdmin is never taken from a
// claim — an application that can describe its users must not be able to
// make one of them an mcpgate administrator.

// RoleAdmin is mcpgate's administrator role (every user's audit events,
// the admin pages). Only an administrator can give it (user roles).
const RoleAdmin = "admin"

// RolesClaim is the claim whose roles count for tool decisions.
const RolesClaim = "roles"

// Bounds on roles taken from a claim: nothing unbounded reaches a
// principal.
const (
	MaxClaimRoles = 100
	MaxRoleBytes  = 128
)

// ClaimRoles reads roles from a claim value: an array of strings, or one
// string of space-separated roles. Entries that are not plain short text
// (longer than MaxRoleBytes, invalid UTF-8, control characters, inner
// whitespace), duplicates and RoleAdmin (in any letter case) are dropped;
// at most MaxClaimRoles are kept. Anything else (a number, an object) has
// no roles.
func ClaimRoles(v any) []string {
	var list []string
	switch x := v.(type) {
	case string:
		list = strings.Fields(x)
	case []string:
		list = x
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok {
				list = append(list, s)
			}
		}
	}
	var out []string
	for _, r := range list {
		if r == "" || len(r) > MaxRoleBytes || !utf8.ValidString(r) || strings.ContainsFunc(r, unicode.IsControl) ||
			strings.ContainsFunc(r, unicode.IsSpace) || strings.EqualFold(r, RoleAdmin) || slices.Contains(out, r) {
			continue
		}
		out = append(out, r)
		if len(out) == MaxClaimRoles {
			break
		}
	}
	return out
}

// MergeRoles returns the user's stored roles plus the claim roles they do
// not hold yet. RoleAdmin is never added (whatever claimRoles says). The
// result is stored itself when nothing is added (no allocation), otherwise
// a new slice: stored is never modified.
func MergeRoles(stored, claimRoles []string) []string {
	var out []string
	for _, r := range claimRoles {
		if strings.EqualFold(r, RoleAdmin) || slices.Contains(stored, r) || slices.Contains(out, r) {
			continue
		}
		if out == nil {
			out = make([]string, 0, len(stored)+len(claimRoles))
			out = append(out, stored...)
		}
		out = append(out, r)
	}
	if out == nil {
		return stored
	}
	return out
}

// reservedClaims are JWT claim names with a protocol meaning: registered
// claims (RFC 7519 §4.1), the access-token claims of RFC 9068 §2.2,
// mcpgate's grant id, the authentication claims of OpenID Connect (Core
// §2, §3.1.3.6; RFC 9068 §2.2.1), token binding and delegation (RFC 7800
// cnf, RFC 8693 act and may_act) and the usual names of scopes (scp) and
// token types (typ). A custom claim by one of these names would be read
// as that protocol claim by a resource server — a login source could, for
// instance, move a token's audience or scope, or claim a stronger
// authentication than happened — so they are never copied as custom
// claims into mcpgate's tokens or sessions.
var reservedClaims = map[string]bool{
	// RFC 7519 §4.1
	"iss": true, "sub": true, "aud": true, "exp": true, "nbf": true, "iat": true, "jti": true,
	// RFC 9068 §2.2, RFC 8693 §4.3, mcpgate's grant id
	"client_id": true, "scope": true, "scp": true, "gid": true, "typ": true,
	// OpenID Connect: authentication and ID-token claims
	"azp": true, "auth_time": true, "acr": true, "amr": true, "nonce": true, "at_hash": true, "c_hash": true, "sid": true,
	// RFC 7800, RFC 8693
	"cnf": true, "act": true, "may_act": true,
}

// ReservedClaim reports whether name (in any letter case) is a protocol
// claim that must never be set from a custom claim.
func ReservedClaim(name string) bool { return reservedClaims[strings.ToLower(name)] }

// ReservedClaims returns the reserved claim names, sorted (for messages
// and documentation).
func ReservedClaims() []string {
	out := make([]string, 0, len(reservedClaims))
	for k := range reservedClaims {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// LookupClaim finds a claim by name: the full name first (namespaced
// claims such as "https://example.com/roles" contain dots), then as a
// dotted path into nested objects ("realm_access.roles").
func LookupClaim(m map[string]any, path string) any {
	if path == "" {
		return nil
	}
	if v, ok := m[path]; ok {
		return v
	}
	var cur any = m
	for part := range strings.SplitSeq(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if cur, ok = obj[part]; !ok {
			return nil
		}
	}
	return cur
}
