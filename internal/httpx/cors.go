package httpx

import (
	"net/http"
	"strings"
)

// CORS lets browser-based MCP clients on allowed origins call an endpoint
// (Fetch standard, CORS protocol). Preflights from allowed origins are
// answered here, before authentication, because browsers never send
// credentials on a preflight; every other request goes on to next, which
// still checks the Origin itself (authn refuses and audits foreign ones).
// Responses to allowed origins expose the headers an MCP client must read:
// the session id and the authentication challenge.
func CORS(allowed func(origin string) bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Add("Vary", "Origin")
		ok := allowed(origin)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			if !ok {
				WriteJSON(w, http.StatusForbidden, OAuthError{Error: "forbidden", Description: "requests from this origin are not allowed"})
				return
			}
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
			h.Set("Access-Control-Allow-Headers", strings.Join([]string{"Authorization", "X-API-Key", "Content-Type", "Accept",
				"Mcp-Session-Id", "Mcp-Protocol-Version", "Mcp-Method", "Mcp-Name", "Last-Event-ID"}, ", "))
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if ok {
			w.Header().Set("Access-Control-Allow-Origin", origin)
			// Credentials: a web app on an allowed origin may use its
			// session cookie (the JSON API); /mcp ignores cookies anyway.
			w.Header().Set("Access-Control-Allow-Credentials", "true")
			w.Header().Set("Access-Control-Expose-Headers", "Mcp-Session-Id, WWW-Authenticate, Mcp-Protocol-Version, Retry-After")
		}
		next.ServeHTTP(w, r)
	})
}
