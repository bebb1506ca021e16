// Package oauth holds mcpgate's OAuth protocol endpoints. This file serves
// the protected-resource metadata of RFC 9728.
package oauth

import (
	"net/http"

	"github.com/mcpgate/mcpgate/internal/httpx"
)

// ProtectedResourceMetadata is the document of RFC 9728 §2.
type ProtectedResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers,omitempty"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceName           string   `json:"resource_name,omitempty"`
	ResourceDocumentation  string   `json:"resource_documentation,omitempty"`
}

// ProtectedResourceHandler serves md. RFC 9728 §3.3: the "resource" value
// MUST be identical to the resource identifier the client used, so it is
// the configured MCP URL byte for byte. The document is public and read by
// browser-based clients, hence CORS for any origin (it holds no secrets and
// no credentials are accepted).
func ProtectedResourceHandler(md ProtectedResourceMetadata) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		switch r.Method {
		case http.MethodOptions:
			w.Header().Set("Access-Control-Allow-Methods", "GET, OPTIONS")
			w.Header().Set("Access-Control-Allow-Headers", "Mcp-Protocol-Version")
			w.Header().Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusNoContent)
		case http.MethodGet, http.MethodHead:
			w.Header().Set("Cache-Control", "public, max-age=300")
			httpx.WriteJSON(w, http.StatusOK, md)
		default:
			w.Header().Set("Allow", "GET, HEAD, OPTIONS")
			httpx.WriteOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "use GET")
		}
	})
}
