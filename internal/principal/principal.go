// Package principal defines who is calling. After the authn middleware every
// request carries exactly one Principal; handlers and tools read it and never
// parse credentials themselves.
package principal

import (
	"context"
	"slices"
	"time"
)

// Authentication methods.
const (
	MethodAPIKey  = "api_key"
	MethodSession = "session" // browser session cookie (account pages and API)
)

// Principal is an authenticated caller.
type Principal struct {
	UserID       string
	Email        string
	Name         string
	Roles        []string // the user's stored roles, plus roles the credential's claims carry (claims.go: never RoleAdmin)
	Scopes       []string
	Method       string         // how the caller authenticated (MethodAPIKey, …)
	CredentialID string         // id of the key or token used; never its value
	ClientID     string         // OAuth client, when there is one
	ExpiresAt    time.Time      // zero: the credential does not expire
	Claims       map[string]any // read-only (see ClaimString)
}

// HasScope reports whether the principal was granted scope.
func (p *Principal) HasScope(scope string) bool {
	return p != nil && slices.Contains(p.Scopes, scope)
}

// MissingScopes returns the scopes in need that the principal lacks, in order.
func (p *Principal) MissingScopes(need []string) []string {
	var missing []string
	for _, s := range need {
		if !p.HasScope(s) {
			missing = append(missing, s)
		}
	}
	return missing
}

// HasRole reports whether the principal holds role. Roles are compared
// exactly (case-sensitive): "Auditor" is not "auditor".
func (p *Principal) HasRole(role string) bool {
	return p != nil && slices.Contains(p.Roles, role)
}

// MissingRoles returns the roles in need that the principal lacks, in order.
func (p *Principal) MissingRoles(need []string) []string {
	var missing []string
	for _, r := range need {
		if !p.HasRole(r) {
			missing = append(missing, r)
		}
	}
	return missing
}

// ClaimString returns the claim name when it is a non-empty string, such as
// an organisation id for a tool that scopes its data by organisation:
//
//	org, ok := p.ClaimString("organization_id")
//	if !ok {
//		return mcpserver.Errorf("this tool needs an organization_id claim")
//	}
//	rows := store.ListInvoices(ctx, org) // only this organisation's rows
//
// ok is false for a nil principal, a missing claim, a claim of another type
// (a number, a list, an object) and an empty string, so a tool that scopes
// data by the claim fails closed instead of querying with "". Claims come
// from the credential: every claim of an external issuer's token; for
// mcpgate's own access tokens "jti" and the custom claims copied into the
// token (--access-token-claims); for a browser session and its MCP key the
// custom claims of the login (bring-your-own-login, or an upstream
// provider's roles mapping and kept claims); none for other API keys.
// Claims maps may be shared between requests: read them, never change them.
func (p *Principal) ClaimString(name string) (string, bool) {
	if p == nil {
		return "", false
	}
	s, ok := p.Claims[name].(string)
	if !ok || s == "" {
		return "", false
	}
	return s, true
}

type ctxKey struct{}

// With returns a context carrying p.
func With(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// From returns the principal in ctx, or nil.
func From(ctx context.Context) *Principal {
	p, _ := ctx.Value(ctxKey{}).(*Principal)
	return p
}
