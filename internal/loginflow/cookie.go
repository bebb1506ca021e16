package loginflow

import (
	"net/http"
	"strings"
	"time"
)

// BindingCookie is the cookie that carries a flow's browser binding
// (Binding) from the start to the callback (Bound).
type BindingCookie struct {
	Name   string
	Path   string
	Secure bool
}

// NewBindingCookie describes the binding cookie of a login handler whose
// public URL is baseURL. On https it is "__Host-"+name with Path=/ and
// Secure: browsers accept such a cookie only from this very origin
// (RFC 6265bis §4.1.3.2), so a sibling subdomain can neither plant a
// binding of its own — which would have the victim's browser finish the
// attacker's sign-in, a login CSRF (RFC 9700 §4.7) — nor shadow this one
// with a more specific Path. On plain http (loopback development, where
// browsers refuse Secure cookies outside localhost) it is name on path,
// as the session cookie falls back to its plain name.
func NewBindingCookie(name, path, baseURL string) BindingCookie {
	if strings.HasPrefix(baseURL, "https://") {
		return BindingCookie{Name: "__Host-" + name, Path: "/", Secure: true}
	}
	return BindingCookie{Name: name, Path: path}
}

// Set sends the cookie with value, for ttl. SameSite=Lax: it must ride
// along the top-level navigation back from the application or provider.
func (c BindingCookie) Set(w http.ResponseWriter, value string, ttl time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: c.Name, Value: value, Path: c.Path, MaxAge: int(ttl / time.Second),
		HttpOnly: true, Secure: c.Secure, SameSite: http.SameSiteLaxMode})
}

// Clear deletes the cookie.
func (c BindingCookie) Clear(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: c.Name, Value: "", Path: c.Path, MaxAge: -1,
		HttpOnly: true, Secure: c.Secure, SameSite: http.SameSiteLaxMode})
}
