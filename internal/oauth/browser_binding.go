package oauth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"

	"github.com/mcpgate/mcpgate/internal/serverkey"
)

// Pending authorization requests are bound to the browser that started
// them. /authorize sets a cookie whose value is an HMAC of the request id
// under a key derived from the server key; the consent page proceeds only
// when the browser presents it. Without the binding a leaked request id
// (it travels in URLs) would let another signed-in user approve the request:
// the code would reach the first user's client, bound to the second user's
// account — the account-injection pattern RFC 9700 §4.4 (mix-up and
// session swapping, "CSRF protection" of the authorization response) warns
// about.

const bindingInfo = "mcpgate authorization request binding v1"

var (
	bindingProcessKey  []byte
	bindingProcessOnce sync.Once
)

// bindingMAC is the cookie value binding request id to this browser.
func (s *Server) bindingMAC(id string) string {
	key := s.opts.ServerKey
	if len(key) < 32 {
		bindingProcessOnce.Do(func() {
			bindingProcessKey = make([]byte, 32)
			rand.Read(bindingProcessKey)
		})
		key = bindingProcessKey
	}
	k, err := serverkey.Derive(key, bindingInfo)
	if err != nil {
		return ""
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte(id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// bindingCookieName gives each pending request its own cookie, so two
// authorizations running at once in one browser do not overwrite each
// other. On https the __Host- prefix pins it to this origin.
func (s *Server) bindingCookieName(id string) string {
	sum := sha256.Sum256([]byte(id))
	name := "mcpgate_areq_" + hex.EncodeToString(sum[:6])
	if strings.HasPrefix(s.opts.Issuer, "https://") {
		name = "__Host-" + name
	}
	return name
}

// bindBrowser sets the binding cookie of request id.
func (s *Server) bindBrowser(w http.ResponseWriter, id string) {
	http.SetCookie(w, &http.Cookie{
		Name:     s.bindingCookieName(id),
		Value:    s.bindingMAC(id),
		Path:     "/",
		MaxAge:   int(s.opts.RequestTTL.Seconds()),
		HttpOnly: true,
		Secure:   strings.HasPrefix(s.opts.Issuer, "https://"),
		// Lax: the cookie must ride along the top-level navigations from
		// /authorize through the login (and an upstream provider) to the
		// consent page; the consent POST is same-site.
		SameSite: http.SameSiteLaxMode,
	})
}

// BrowserBound reports whether the request r comes from the browser that
// started pending request id (the consent page checks it before showing or
// deciding anything).
func (s *Server) BrowserBound(r *http.Request, id string) bool {
	c, err := r.Cookie(s.bindingCookieName(id))
	if err != nil || c.Value == "" {
		return false
	}
	want := s.bindingMAC(id)
	return want != "" && hmac.Equal([]byte(c.Value), []byte(want))
}
