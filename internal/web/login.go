package web

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/identity"
)

// defaultReturn is where a login goes when it has no acceptable return_to.
const defaultReturn = "/account"

// SafeReturnTo returns raw when it is a path on this site, and "/account"
// otherwise. Accepted: an absolute path ("/…") that is not
// protocol-relative ("//host", or "/\host", which browsers read the same
// way), without a scheme or host, without control characters or
// backslashes, of at most 2048 bytes, and not the login or logout page
// itself (no loops).
func SafeReturnTo(raw string) string {
	if raw == "" || len(raw) > 2048 || raw[0] != '/' {
		return defaultReturn
	}
	if len(raw) > 1 && (raw[1] == '/' || raw[1] == '\\') {
		return defaultReturn
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return defaultReturn
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return defaultReturn
	}
	// A path that decodes to "//host" would be protocol-relative again
	// once someone normalises it.
	if strings.HasPrefix(u.Path, "//") {
		return defaultReturn
	}
	switch u.Path {
	case "/login", "/logout":
		return defaultReturn
	}
	return raw
}

type loginData struct {
	Email     string
	ReturnTo  string
	Providers []loginButton
	// With --custom-login-only: Local is the password form for accounts
	// that have a password (/login?local=1, the way in for local
	// administrators); PasswordURL, when set, replaces the form with a
	// link to it (on the page a sign-out lands on).
	Local       bool
	PasswordURL string
}

// localParam asks the login page for its password form when
// --custom-login-only sends everyone else to the custom login:
// /login?local=1.
const localParam = "local"

type loginButton struct {
	DisplayName string
	URL         string // /login/upstream/{name}?return_to=…
}

// providers returns the "Continue with …" buttons, coming back to returnTo.
func (h *Handler) providers(returnTo string) []loginButton {
	out := make([]loginButton, 0, len(h.opts.LoginProviders))
	for _, p := range h.opts.LoginProviders {
		out = append(out, loginButton{DisplayName: p.DisplayName,
			URL: "/login/upstream/" + url.PathEscape(p.Name) + "?return_to=" + url.QueryEscape(returnTo)})
	}
	if c := h.opts.CustomLogin; c != nil {
		out = append(out, loginButton{DisplayName: c.DisplayName, URL: customLoginURL(returnTo)})
	}
	return out
}

// loginForm shows the login page, or sends a logged-in visitor on.
func (h *Handler) loginForm(w http.ResponseWriter, r *http.Request) {
	returnTo := SafeReturnTo(r.URL.Query().Get("return_to"))
	if _, err := h.opts.Sessions.Current(r); err == nil {
		http.Redirect(w, r, returnTo, http.StatusSeeOther)
		return
	}
	d := loginData{ReturnTo: returnTo, Providers: h.providers(returnTo)}
	if h.customOnly() {
		q := r.URL.Query()
		_, notice := notices[q.Get("done")]
		switch {
		case q.Get(localParam) != "":
			d.Local = true
		case notice:
			// Signed out: stay here rather than bounce into the custom
			// login (which may sign the user straight back in).
			d.PasswordURL = "/login?" + localParam + "=1&return_to=" + url.QueryEscape(returnTo)
		case httpx.CrossSite(r):
			// Another site sent the browser here: /login/custom would
			// send it back (it starts sign-ins for same-origin
			// navigations only), so the page with its button is shown.
		default:
			http.Redirect(w, r, customLoginURL(returnTo), http.StatusSeeOther)
			return
		}
	}
	v := view{Title: "Sign in", Data: d}
	v.setNotice(r)
	h.render(w, r, http.StatusOK, "login", v)
}

// customOnly: --custom-login-only, everyone but local accounts signs in
// through the custom login.
func (h *Handler) customOnly() bool { return h.opts.CustomLogin != nil && h.opts.CustomLogin.Only }

// login checks the credentials and starts a fresh session. Wrong email and
// wrong password get the same answer (identity.Login makes them cost the
// same too).
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	if !h.parseForm(w, r, nil) {
		return
	}
	f := r.PostForm
	email, password := strings.TrimSpace(f.Get("email")), f.Get("password")
	returnTo := SafeReturnTo(f.Get("return_to"))
	data := loginData{Email: truncate(email, 254), ReturnTo: returnTo, Providers: h.providers(returnTo), Local: h.customOnly()}
	fail := func(status int, msg string) {
		h.render(w, r, status, "login", view{Title: "Sign in", Error: msg, Data: data})
	}
	if email == "" || password == "" {
		fail(http.StatusUnprocessableEntity, "Enter your email address and your password.")
		return
	}
	u, err := h.opts.Users.Login(r.Context(), email, password, clientIP(r))
	if err != nil {
		if rl, ok := errors.AsType[*identity.RateLimitedError](err); ok {
			secs := identity.RetryAfterSeconds(rl.RetryAfter)
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			fail(http.StatusTooManyRequests, "Too many attempts. Try again in "+strconv.Itoa(secs)+" s.")
			return
		}
		if errors.Is(err, identity.ErrInvalidCredentials) {
			fail(http.StatusUnprocessableEntity, "Incorrect email or password.")
			return
		}
		h.unavailable(w, r, nil, err)
		return
	}
	if _, err := h.opts.Sessions.Start(r.Context(), w, r, u); err != nil {
		h.unavailable(w, r, nil, err)
		return
	}
	http.Redirect(w, r, returnTo, http.StatusSeeOther)
}

// logout ends the session (idempotent) and goes to the login page.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	if err := h.opts.Sessions.End(r.Context(), w, r); err != nil {
		h.unavailable(w, r, nil, err)
		return
	}
	http.Redirect(w, r, "/login?done=signed_out", http.StatusSeeOther)
}

func customLoginURL(returnTo string) string {
	return "/login/custom?return_to=" + url.QueryEscape(returnTo)
}
