package authn

// Access-token (JWT) authentication: the bearer tokens mcpgate's
// authorization server issues (RFC 9068), accepted by Middleware next to
// API keys. A bearer value that does not start with "mcpg_" and has the
// shape of a JWS compact serialization is verified here.
//
// The checks, in order (RFC 9068 §4, RFC 6750 §3.1, and the MCP
// authorization spec's "Token Handling": servers "MUST validate that
// access tokens were issued specifically for them as the intended
// audience"):
//
//  1. verify.Verifier: size and shape, alg (only public-key algorithms the
//     verifier allows: never "none", never HMAC — no algorithm
//     confusion), typ at+jwt, the key by kid, the signature, iss byte for
//     byte, aud containing this resource (a token minted for another
//     resource is refused: no token passthrough), exp/nbf/iat;
//  2. the grant ("gid") is live: not revoked by the user, by a replay or by
//     a client's revocation (GrantActive, cached ≤ 2 s), so a revoked
//     grant's tokens stop within seconds on every node;
//  3. the user exists and is not disabled (through the user cache).
//
// The principal carries the token's custom claims (those mcpgate copied
// from the user's sign-in, --access-token-claims) in Claims next to
// "jti", and the roles of its "roles" claim next to the user's own
// (principal.MergeRoles: never "admin"). A token's claims never change,
// so they are decoded once per token and kept (tokenClaimsCache) until it
// expires: the verifier's cache hit stays allocation-light.
//
// Every refusal is 401 invalid_token for the client and an auth.rejected
// audit event with the precise reason: malformed, bad_algorithm,
// wrong_type, unknown_kid, bad_signature, wrong_issuer, wrong_audience,
// expired, not_yet_valid, grant_revoked, unknown, disabled_user. A key
// source that cannot be read is 503, not the token's fault. A valid token
// without any scope of the resource (a sign-in's: OpenID scopes only) is
// 403 insufficient_scope on the resource, reason no_resource_scope
// (checkResourceScope).

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/verify"
)

// MethodOAuth is the principal Method of a caller authenticated by an
// OAuth access token.
const MethodOAuth = "oauth"

// AccessTokens enable JWT access tokens on Middleware (Options.AccessTokens).
type AccessTokens struct {
	// Verifier checks tokens for this resource: issuer = mcpgate's issuer,
	// audience = the resource URL, keys = the issuer's key set. Required.
	Verifier *verify.Verifier
	// GrantActive reports whether a token's grant is live
	// (oauth.Server.GrantActive). Required: tokens without a grant id are
	// refused.
	GrantActive func(ctx context.Context, grantID string) (bool, error)
}

// maxJWTBytes bounds what is tried as a JWT at all.
const maxJWTBytes = 8 << 10

// looksLikeJWT reports whether a bearer value has the shape of a JWS
// compact serialization (three base64url segments).
func looksLikeJWT(tok string) bool {
	if len(tok) > maxJWTBytes || strings.Count(tok, ".") != 2 {
		return false
	}
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// authenticateJWT verifies an access token and builds the principal:
// Method "oauth", ClientID, Scopes, CredentialID = the grant id, and the
// user (UserID = sub); a client-credentials token (sub = client_id) has
// no user.
func (a *Authenticator) authenticateJWT(r *http.Request, tok string) (*principal.Principal, *refusal, error) {
	at := a.opts.AccessTokens
	ctx := r.Context()
	invalid := func(reason string, details map[string]any) *refusal {
		ref := &refusal{status: http.StatusUnauthorized, reason: reason, method: MethodOAuth, details: details}
		ref.challenge.Error, ref.challenge.Description = "invalid_token", "the access token is invalid"
		return ref
	}
	c, err := at.Verifier.VerifyCompact(ctx, tok)
	if err != nil {
		if errors.Is(err, verify.ErrKeysUnavailable) {
			return nil, nil, err
		}
		// verify's messages never contain the token; attacker-chosen
		// values in them are quoted and clipped.
		return nil, invalid(audit.TokenRefusalReason(err), map[string]any{"problem": truncate(err.Error(), 300)}), nil
	}
	if c.GrantID == "" || at.GrantActive == nil {
		return nil, invalid(audit.ReasonMalformed, map[string]any{"problem": "access token has no grant id", "client_id": truncate(c.ClientID, 300)}), nil
	}
	active, err := at.GrantActive(ctx, c.GrantID)
	if err != nil {
		return nil, nil, err
	}
	isClient := c.Subject == c.ClientID // RFC 9068 §2.2: client_credentials tokens name the client
	if !active {
		ref := invalid(audit.ReasonGrantRevoked, map[string]any{"client_id": truncate(c.ClientID, 300)})
		ref.keyID = c.GrantID
		if !isClient {
			ref.userID = c.Subject
		}
		return nil, ref, nil
	}
	tc, err := a.tokenClaims.get(c)
	if err != nil {
		// The verifier accepted the token, so its payload decodes; if it
		// does not, refuse rather than act without its claims.
		return nil, invalid(audit.ReasonMalformed, map[string]any{"problem": truncate(err.Error(), 300), "client_id": truncate(c.ClientID, 300)}), nil
	}
	p := &principal.Principal{
		Scopes: c.Scopes(), Method: MethodOAuth, CredentialID: c.GrantID, ClientID: c.ClientID,
		ExpiresAt: c.ExpiresAt, Claims: tc.claims,
	}
	if isClient {
		return p, nil, nil
	}
	u, err := a.users.get(ctx, c.Subject, a.opts.Users)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			ref := invalid(audit.ReasonUnknown, map[string]any{"problem": "the token's user no longer exists", "client_id": truncate(c.ClientID, 300)})
			ref.keyID = c.GrantID
			return nil, ref, nil
		}
		return nil, nil, err
	}
	if u.Disabled {
		ref := invalid(audit.ReasonDisabledUser, map[string]any{"client_id": truncate(c.ClientID, 300)})
		ref.keyID, ref.userID = c.GrantID, u.ID
		return nil, ref, nil
	}
	p.UserID, p.Email, p.Name, p.Roles = u.ID, u.Email, u.DisplayName, principal.MergeRoles(u.Roles, tc.roles)
	return p, nil, nil
}

// checkResourceScope refuses, on the resource (Middleware; not Account,
// which asks for its own scope), an mcpgate access token that carries no
// scope of the resource: one whose authorization granted only OpenID
// scopes (openid, email, profile, offline_access), because an application
// used mcpgate to sign its user in. Its audience is still the MCP
// endpoint (RFC 8707: the authorization request named it, or it is the
// default resource), but the user approved a sign-in, not MCP access; a
// tool that needs no scope must not become callable with it. RFC 6750
// §3.1: insufficient_scope, "The request requires higher privileges than
// provided by the access token", 403 with the scopes the resource needs
// (the client may authorize again for them). A resource without scopes
// has nothing to tell MCP access from a sign-in by: it checks nothing.
func (a *Authenticator) checkResourceScope(p *principal.Principal) *refusal {
	if p.Method != MethodOAuth || len(a.opts.Scopes) == 0 ||
		slices.ContainsFunc(p.Scopes, func(sc string) bool { return slices.Contains(a.opts.Scopes, sc) }) {
		return nil
	}
	scopes := p.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return &refusal{status: http.StatusForbidden, reason: audit.ReasonNoResourceScope, method: MethodOAuth,
		challenge: httpx.Challenge{Error: "insufficient_scope",
			Description: "this access token was granted for signing in only; authorize again with a scope of this MCP server",
			Scope:       strings.Join(a.opts.Scopes, " ")},
		keyID: p.CredentialID, userID: p.UserID,
		details: map[string]any{"client_id": truncate(p.ClientID, 300), "scopes": scopes, "required_any": a.opts.Scopes}}
}

// tokenClaimsCache keeps, per verified access token (by jti: 128 random
// bits mcpgate chose and signed), the principal's claims and claim roles
// until the token expires. The maps are shared by the requests of one
// token: principals treat Claims as read-only.
type tokenClaimsCache struct {
	mu      sync.RWMutex
	entries map[string]tokenClaims
}

type tokenClaims struct {
	claims map[string]any // "jti" and the custom claims
	roles  []string       // principal.ClaimRoles of the "roles" claim
	until  time.Time      // the token's expiry
}

func (c *tokenClaimsCache) get(t verify.Compact) (tokenClaims, error) {
	c.mu.RLock()
	e, ok := c.entries[t.JTI]
	c.mu.RUnlock()
	if ok && time.Now().Before(e.until) {
		return e, nil
	}
	full, err := t.Claims()
	if err != nil {
		return tokenClaims{}, err
	}
	e = tokenClaims{claims: map[string]any{"jti": t.JTI}, until: t.ExpiresAt}
	for k, v := range full.Raw {
		// Protocol claims are the verifier's business; everything else in
		// an mcpgate token is a custom claim of the user's sign-in.
		if !principal.ReservedClaim(k) {
			e.claims[k] = v
		}
	}
	e.roles = principal.ClaimRoles(e.claims[principal.RolesClaim])
	c.mu.Lock()
	if c.entries == nil || len(c.entries) >= userCacheMax {
		c.entries = map[string]tokenClaims{}
	}
	c.entries[t.JTI] = e
	c.mu.Unlock()
	return e, nil
}
