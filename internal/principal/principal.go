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
	Roles        []string
	Scopes       []string
	Method       string    // how the caller authenticated (MethodAPIKey, …)
	CredentialID string    // id of the key or token used; never its value
	ClientID     string    // OAuth client, when there is one
	ExpiresAt    time.Time // zero: the credential does not expire
	Claims       map[string]any
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
