package oauth

// This file serves the authorization server metadata: RFC 8414 at
// /.well-known/oauth-authorization-server and OpenID Connect Discovery 1.0
// at /.well-known/openid-configuration (one document serves both; the MCP
// authorization spec asks clients to try both, and OIDC discovery MUST
// carry code_challenge_methods_supported for MCP clients to proceed).

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/mcpgate/mcpgate/internal/httpx"
)

// Client authentication methods at the token endpoint (RFC 7591 §2,
// OAuth Token Endpoint Authentication Methods registry).
const (
	AuthMethodNone              = "none"
	AuthMethodClientSecretBasic = "client_secret_basic"
	AuthMethodClientSecretPost  = "client_secret_post"
	AuthMethodPrivateKeyJWT     = "private_key_jwt"
)

// Grant types mcpgate's token endpoint serves.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
)

// ServerMetadata is the authorization server metadata document of RFC 8414
// §2, with the OpenID Provider Metadata fields of OIDC Discovery 1.0 §3 and
// the extensions MCP clients look for.
type ServerMetadata struct {
	// RFC 8414 §2: "issuer REQUIRED. The authorization server's issuer
	// identifier, which is a URL that uses the "https" scheme and has no
	// query or fragment components." §3.3: the "issuer" value returned
	// MUST be identical to the issuer identifier into which the well-known
	// URI string was inserted.
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	JWKSURI               string `json:"jwks_uri,omitempty"`
	RegistrationEndpoint  string `json:"registration_endpoint,omitempty"`
	RevocationEndpoint    string `json:"revocation_endpoint,omitempty"`
	IntrospectionEndpoint string `json:"introspection_endpoint,omitempty"`
	UserinfoEndpoint      string `json:"userinfo_endpoint,omitempty"`
	ServiceDocumentation  string `json:"service_documentation,omitempty"`

	ScopesSupported                           []string `json:"scopes_supported,omitempty"`
	ResponseTypesSupported                    []string `json:"response_types_supported"`
	ResponseModesSupported                    []string `json:"response_modes_supported,omitempty"`
	GrantTypesSupported                       []string `json:"grant_types_supported,omitempty"`
	TokenEndpointAuthMethodsSupported         []string `json:"token_endpoint_auth_methods_supported,omitempty"`
	RevocationEndpointAuthMethodsSupported    []string `json:"revocation_endpoint_auth_methods_supported,omitempty"`
	IntrospectionEndpointAuthMethodsSupported []string `json:"introspection_endpoint_auth_methods_supported,omitempty"`
	// RFC 7636 §4.3 / RFC 8414 §2; OAuth 2.1 §7.5.2: only S256.
	CodeChallengeMethodsSupported []string `json:"code_challenge_methods_supported"`

	// draft-ietf-oauth-client-id-metadata-document §6: "Authorization
	// servers that publish Authorization Server Metadata [RFC8414] MUST
	// include the following property".
	ClientIDMetadataDocumentSupported bool `json:"client_id_metadata_document_supported"`
	// RFC 9207 §3: every authorization response carries "iss".
	AuthorizationResponseIssParameterSupported bool `json:"authorization_response_iss_parameter_supported"`

	// OpenID Connect Discovery 1.0 §3.
	SubjectTypesSupported            []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
	ClaimsSupported                  []string `json:"claims_supported,omitempty"`
	// These default to true (request_uri) or are easy to misread when
	// absent: say plainly that request objects and the claims parameter are
	// not supported.
	RequestParameterSupported    bool `json:"request_parameter_supported"`
	RequestURIParameterSupported bool `json:"request_uri_parameter_supported"`
	ClaimsParameterSupported     bool `json:"claims_parameter_supported"`
}

// DefaultSigningAlgs is used when NewServerMetadata gets no algorithms.
var DefaultSigningAlgs = []string{"ES256"}

// NewServerMetadata describes mcpgate's authorization server at issuer
// (the configured public base URL, used byte for byte; endpoints hang off
// it without a doubled slash). scopes is scopes_supported; signingAlgs the
// JWS algorithms of ID tokens (DefaultSigningAlgs when empty).
func NewServerMetadata(issuer string, scopes []string, signingAlgs []string) ServerMetadata {
	base := strings.TrimRight(issuer, "/")
	if len(signingAlgs) == 0 {
		signingAlgs = DefaultSigningAlgs
	}
	return ServerMetadata{
		Issuer:                issuer,
		AuthorizationEndpoint: base + "/authorize",
		TokenEndpoint:         base + "/token",
		JWKSURI:               base + "/jwks",
		RegistrationEndpoint:  base + "/register",
		RevocationEndpoint:    base + "/revoke",
		IntrospectionEndpoint: base + "/introspect",
		UserinfoEndpoint:      base + "/userinfo",

		ScopesSupported: append([]string(nil), scopes...),
		// OAuth 2.1 removes the implicit grant: "code" only.
		ResponseTypesSupported: []string{"code"},
		ResponseModesSupported: []string{"query"},
		GrantTypesSupported:    []string{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials},
		// RFC 6749 §2.3.1 (Basic and body secrets) and "none" for public
		// clients (RFC 7591 §2).
		TokenEndpointAuthMethodsSupported: []string{AuthMethodNone, AuthMethodClientSecretBasic, AuthMethodClientSecretPost},
		// RFC 7009 §2.1: public clients revoke with their client_id.
		RevocationEndpointAuthMethodsSupported: []string{AuthMethodNone, AuthMethodClientSecretBasic, AuthMethodClientSecretPost},
		// RFC 7662 §2.1: the introspection endpoint requires authorization.
		IntrospectionEndpointAuthMethodsSupported: []string{AuthMethodClientSecretBasic, AuthMethodClientSecretPost},
		CodeChallengeMethodsSupported:             []string{"S256"},

		ClientIDMetadataDocumentSupported:          true,
		AuthorizationResponseIssParameterSupported: true,

		SubjectTypesSupported:            []string{"public"},
		IDTokenSigningAlgValuesSupported: append([]string(nil), signingAlgs...),
		ClaimsSupported:                  []string{"iss", "sub", "aud", "exp", "iat", "nonce", "name", "email"},
	}
}

// MetadataHandler serves md for GET and HEAD. The document is public and
// read by browser-based clients, so any origin may read it (it holds no
// secret and no credential is accepted), and it may be cached for five
// minutes. The JSON is encoded once.
func MetadataHandler(md ServerMetadata) http.Handler {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(true)
	if err := enc.Encode(md); err != nil {
		panic("oauth: encoding server metadata: " + err.Error()) // plain strings and bools cannot fail
	}
	body := buf.Bytes()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		switch r.Method {
		case http.MethodOptions:
			h.Set("Access-Control-Allow-Methods", "GET, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Mcp-Protocol-Version")
			h.Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusNoContent)
		case http.MethodGet, http.MethodHead:
			h.Set("Content-Type", "application/json")
			h.Set("Cache-Control", "public, max-age=300")
			w.WriteHeader(http.StatusOK)
			if r.Method == http.MethodGet {
				w.Write(body)
			}
		default:
			h.Set("Allow", "GET, HEAD, OPTIONS")
			httpx.WriteOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "use GET")
		}
	})
}

// MetadataPaths returns the request paths at which the metadata of issuer
// must be served:
//
//   - RFC 8414 §3.1: "/.well-known/oauth-authorization-server" inserted
//     between the host and the issuer's path component;
//   - OIDC Discovery §4: "/.well-known/openid-configuration" appended to
//     the issuer;
//   - and, for an issuer with a path, the RFC 8414-style insertion of
//     "/.well-known/openid-configuration", which MCP clients also try.
func MetadataPaths(issuer string) []string {
	path := ""
	if u, err := url.Parse(issuer); err == nil {
		path = strings.TrimRight(u.EscapedPath(), "/")
	}
	if path == "" {
		return []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"}
	}
	return []string{
		"/.well-known/oauth-authorization-server" + path,
		path + "/.well-known/openid-configuration",
		"/.well-known/openid-configuration" + path,
	}
}
