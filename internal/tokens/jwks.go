package tokens

import (
	"net/http"
	"strconv"
)

// JWKSHandler serves the public signing keys as a JWK Set (RFC 7517 §5):
// the keys that sign now, the next key (published ahead of use) and
// retired keys whose tokens may still be valid. Never private material.
//
// The answer may be cached by anyone for JWKSMaxAge (less than the time a
// new key is published before it signs) and read from any origin (CORS
// "*": the set is public, and browser-based clients and verifiers fetch
// it). ETag / If-None-Match are supported.
func (i *Issuer) JWKSHandler() http.Handler {
	maxAge := "public, max-age=" + strconv.Itoa(int(JWKSMaxAge.Seconds()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		switch r.Method {
		case http.MethodGet, http.MethodHead:
		case http.MethodOptions:
			h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
			h.Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusNoContent)
			return
		default:
			h.Set("Allow", "GET, HEAD, OPTIONS")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		v := i.view.Load()
		h.Set("Cache-Control", maxAge)
		h.Set("ETag", v.etag)
		h.Set("Content-Type", "application/json")
		h.Set("X-Content-Type-Options", "nosniff")
		if match := r.Header.Get("If-None-Match"); match != "" && match == v.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Length", strconv.Itoa(len(v.jwks)))
		if r.Method == http.MethodHead {
			return
		}
		w.Write(v.jwks)
	})
}
