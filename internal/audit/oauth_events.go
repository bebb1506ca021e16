package audit

import (
	"errors"

	"github.com/mcpgate/mcpgate/verify"
)

// Event types and reasons of the OAuth authorization server
// (internal/oauth) and of access-token authentication (internal/authn).
// The client registry's own events (client.registered, client.fetched,
// client.auth_failed, …) are declared in internal/oauth.
//
// Every refusal carries a precise reason, so an operator can answer "why
// was this client refused?" from the log alone. Details never hold a
// secret: codes and tokens are named by their grant id ("credential_id"),
// never by value or hash.
const (
	// Authorization endpoint and consent.
	TypeOAuthAuthorizeRequested = "oauth.authorize_requested" // a valid authorization request was received
	TypeOAuthAuthorizeRefused   = "oauth.authorize_refused"   // the request was refused (reason says why)
	TypeOAuthConsentGranted     = "oauth.consent_granted"     // the user allowed the client (new scopes, or a first consent)
	TypeOAuthConsentDenied      = "oauth.consent_denied"      // the user pressed Deny
	TypeOAuthConsentRevoked     = "oauth.consent_revoked"     // the user revoked a connected app
	TypeOAuthCodeIssued         = "oauth.code_issued"

	// Token endpoint.
	TypeOAuthCodeRedeemed    = "oauth.code_redeemed"
	TypeOAuthCodeReplayed    = "oauth.code_replayed" // a used code came back: its grant is revoked
	TypeOAuthTokenIssued     = "oauth.token_issued"  // details.grant_type
	TypeOAuthTokenRefreshed  = "oauth.token_refreshed"
	TypeOAuthRefreshReplayed = "oauth.refresh_replayed" // a rotated refresh token came back: its family is revoked
	TypeOAuthTokenRefused    = "oauth.token_refused"    // reason says why
	TypeOAuthTokenRevoked    = "oauth.token_revoked"    // RFC 7009 revocation
	TypeOAuthGrantRevoked    = "oauth.grant_revoked"    // a grant ended for another cause (password change, disable)
	TypeOAuthIntrospection   = "oauth.introspection"    // RFC 7662; outcome deny when the caller was refused
	TypeOAuthUserinfoRefused = "oauth.userinfo_refused"
)

// Reasons of OAuth refusals.
const (
	// Authorization endpoint (before the redirect URI is trusted: answered
	// with an HTML page, never a redirect).
	ReasonUnknownClient         = "unknown_client"
	ReasonInvalidClientMetadata = "invalid_client_metadata"
	ReasonMissingRedirectURI    = "missing_redirect_uri"
	ReasonRedirectMismatch      = "redirect_mismatch"
	// Authorization endpoint (redirected back to the client).
	ReasonUnsupportedResponseType = "unsupported_response_type"
	ReasonPKCEMissing             = "pkce_missing"
	ReasonPKCEMethod              = "pkce_method"    // plain or unknown method
	ReasonPKCEChallenge           = "pkce_malformed" // a challenge that is not 43 base64url characters
	ReasonInvalidScope            = "invalid_scope"
	ReasonInvalidTarget           = "invalid_target" // RFC 8707: a resource mcpgate does not serve
	ReasonUnauthorizedClient      = "unauthorized_client"
	ReasonInvalidRequest          = "invalid_request"
	ReasonRequestExpired          = "request_expired" // the pending request outlived its 10 minutes
	ReasonLoginRequired           = "login_required"  // prompt=none without a session
	ReasonConsentRequired         = "consent_required"
	ReasonUserDenied              = "user_denied"

	// Token endpoint.
	ReasonUnsupportedGrantType = "unsupported_grant_type"
	ReasonUnknownCode          = "unknown_code"
	ReasonCodeExpired          = "code_expired"
	ReasonCodeReplayed         = "code_replayed"
	ReasonPKCEFailed           = "pkce_failed" // code_verifier does not match the challenge
	ReasonClientMismatch       = "client_mismatch"
	ReasonResourceMismatch     = "resource_mismatch"
	ReasonUnknownRefreshToken  = "unknown_refresh_token"
	ReasonRefreshExpired       = "refresh_expired"
	ReasonRefreshReplayed      = "refresh_replayed"
	ReasonGrantExpired         = "grant_expired"
	// The custom claims copied into the access token (--access-token-claims)
	// would make it larger than verifiers accept: no token, grant revoked.
	ReasonTokenTooLarge = "token_too_large"

	// Access tokens (authn, userinfo, introspection). ReasonMalformed,
	// ReasonExpired and ReasonDisabledUser are shared.
	ReasonBadSignature  = "bad_signature"
	ReasonBadAlgorithm  = "bad_algorithm" // alg none, HMAC, or an alg that does not fit the key
	ReasonUnknownKID    = "unknown_kid"
	ReasonWrongAudience = "wrong_audience" // minted for another resource: no token passthrough
	ReasonWrongIssuer   = "wrong_issuer"
	ReasonWrongType     = "wrong_type" // not typ at+jwt (an ID token, say)
	ReasonNotYetValid   = "not_yet_valid"
	ReasonGrantRevoked  = "grant_revoked"
	ReasonInsufficient  = "insufficient_scope" // userinfo without openid
	// ReasonNoResourceScope: an access token without any scope of the MCP
	// resource (granted OpenID scopes only: a sign-in) presented at /mcp.
	ReasonNoResourceScope = "no_resource_scope"
)

// TokenRefusalReason maps a verify error to the audit reason of a refused
// access token, so /mcp (authn) and /userinfo record the same reasons.
func TokenRefusalReason(err error) string {
	switch {
	case errors.Is(err, verify.ErrSignature):
		return ReasonBadSignature
	case errors.Is(err, verify.ErrAlgorithm):
		return ReasonBadAlgorithm
	case errors.Is(err, verify.ErrUnknownKey):
		return ReasonUnknownKID
	case errors.Is(err, verify.ErrExpired):
		return ReasonExpired
	case errors.Is(err, verify.ErrNotYetValid):
		return ReasonNotYetValid
	case errors.Is(err, verify.ErrIssuer):
		return ReasonWrongIssuer
	case errors.Is(err, verify.ErrAudience):
		return ReasonWrongAudience
	case errors.Is(err, verify.ErrType):
		return ReasonWrongType
	}
	return ReasonMalformed
}
