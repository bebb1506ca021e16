package authn

// Tokens of trusted external issuers (internal/federation): a Bearer JWT
// whose iss is not mcpgate's own, or an opaque token an introspection
// issuer takes. federation verifies it and provisions the local user; this
// file turns the result into the principal and the refusals into
// challenges and audit events.
//
// A JWT naming an issuer that is not configured is refused with
// unknown_issuer, never passed through. An issuer that cannot be reached
// (JWKS, discovery or introspection down or garbled) is 503
// temporarily_unavailable with reason issuer_unavailable: not the token's
// fault. mcpgate's own tokens and API keys never come here.

import (
	"errors"
	"net/http"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/federation"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/store"
)

// TypeExternalAccepted is audited when an external token is accepted and
// its account looked up (at most once per account and federation link
// cache period, not per request).
const TypeExternalAccepted = "auth.external_accepted"

// takesExternal reports whether a bearer token goes to the external
// issuers, and whether it is a JWT.
func (a *Authenticator) takesExternal(token string) (jwt, ok bool) {
	if a.opts.External == nil {
		return false, false
	}
	if looksLikeJWT(token) {
		iss := federation.PeekIssuer(token)
		if a.opts.AccessTokens != nil && (iss == "" || iss == a.opts.AccessTokens.Verifier.Issuer()) {
			return true, false // mcpgate's own (or undecodable): the access-token path decides
		}
		return true, true
	}
	return false, a.opts.External.TakesOpaque(token)
}

// authenticateExternal verifies an external token and builds the
// principal: the provisioned user, Method external_jwt (or
// external_introspection), Roles = the user's local roles plus the mapped
// ones (never "admin" from the token), Scopes from the mapping, Claims =
// the token's claims.
func (a *Authenticator) authenticateExternal(r *http.Request, tok string, jwt bool) (*principal.Principal, *refusal, error) {
	ctx := r.Context()
	method := federation.MethodExternalJWT
	if !jwt {
		method = federation.MethodExternalIntrospection
	}
	invalid := func(reason string, details map[string]any) *refusal {
		ref := &refusal{status: http.StatusUnauthorized, reason: reason, method: method, details: details}
		ref.challenge.Error, ref.challenge.Description = "invalid_token", "the access token is invalid"
		return ref
	}
	id, err := a.opts.External.Authenticate(ctx, tok, jwt)
	var fr *federation.RefusalError
	if errors.As(err, &fr) {
		details := map[string]any{"problem": truncate(fr.Detail, 300)}
		if fr.Issuer != "" {
			details["issuer"] = fr.Issuer
		}
		if fr.Unavailable() {
			return nil, &refusal{status: http.StatusServiceUnavailable, reason: fr.Reason, method: method,
				description: "the token's issuer cannot be reached to check it; try again shortly", details: details}, nil
		}
		return nil, invalid(fr.Reason, details), nil
	}
	if err != nil {
		return nil, nil, err
	}
	method = id.Method
	details := map[string]any{"issuer": id.Issuer, "subject": truncate(id.Subject, 255)}
	u, err := a.users.get(ctx, id.UserID, a.opts.Users)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			a.opts.External.Forget(id.Issuer, id.Subject)
			details["problem"] = "the provisioned user no longer exists; the next request provisions it again"
			return nil, invalid(audit.ReasonUnknown, details), nil
		}
		return nil, nil, err
	}
	if u.Disabled {
		ref := invalid(audit.ReasonDisabledUser, details)
		ref.userID = u.ID
		return nil, ref, nil
	}
	// The mapped roles join the user's own for this request (never
	// "admin": principal.MergeRoles; federation drops it when mapping).
	roles := principal.MergeRoles(u.Roles, id.Roles)
	if id.Provisioned {
		details["method"] = id.Method
		if id.ClientID != "" {
			details["client_id"] = id.ClientID
		}
		details["scopes"] = id.Scopes
		a.opts.Audit.Record(ctx, audit.Event{
			Type: TypeExternalAccepted, Outcome: store.OutcomeAllow, UserID: u.ID, CredentialID: id.TokenID,
			Resource: a.opts.Resource, Details: details,
		})
	}
	return &principal.Principal{
		UserID: u.ID, Email: u.Email, Name: u.DisplayName, Roles: roles, Scopes: id.Scopes,
		Method: id.Method, CredentialID: id.TokenID, ClientID: id.ClientID, ExpiresAt: id.ExpiresAt, Claims: id.Claims,
	}, nil, nil
}
