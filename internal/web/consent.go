package web

// The OAuth consent page: GET and POST /oauth/consent?request=<id>.
//
// The authorization endpoint (internal/oauth) keeps a validated request
// server-side and sends the browser here, through the login page when
// nobody is signed in. The page names the client (with "unverified" for a
// dynamically registered one and the document's host for a Client ID
// Metadata Document client), where the browser goes next, the MCP server
// (resource) and each new scope in plain words, with Allow and Deny.
// Scopes the user allowed before are listed as such and not asked again;
// when nothing is new, the request is approved without a question —
// except for a public client returning to a loopback address or a
// private-use scheme (OAuth.ConfirmEachTime, RFC 8252 §8.6): any local
// program could have started that request, so the page is shown with
// everything marked as already allowed, and one click continues.
//
// Protection: the page is served through the same wrapper as every page
// (secure): cross-origin POSTs are refused by
// net/http.CrossOriginProtection before the handler runs (consent CSRF),
// and X-Frame-Options DENY plus CSP frame-ancestors 'none' keep it out of
// frames (clickjacking). The decision needs the user's own session; the
// request id alone decides nothing.

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"

	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/store"
)

// OAuth is what the consent and connected-apps pages need from the
// authorization server (*oauth.Server).
type OAuth interface {
	PendingFor(ctx context.Context, id string, u store.User) (oauth.PendingView, error)
	// Approve: sess is the session the user approves from; the grant
	// keeps the claims of that sign-in the operator copies into access
	// tokens, for as long as the session lives.
	Approve(ctx context.Context, id string, u store.User, sess store.Session) (string, error)
	Deny(ctx context.Context, id string, u store.User) (string, error)
	// SharedClaims: the custom claims of the session (store.Session.Claims)
	// an approval copies into the application's access tokens.
	SharedClaims(sessionClaims string) []oauth.SharedClaim
	// ConfirmEachTime: the user must confirm an authorization of the
	// client at redirectURI even when consent given before covers it.
	ConfirmEachTime(ctx context.Context, clientID, redirectURI string) (bool, error)
	// BrowserBound: the request comes from the browser that started the
	// pending authorization (a leaked request id is useless elsewhere).
	BrowserBound(r *http.Request, id string) bool
	ListGrants(ctx context.Context, userID string) ([]oauth.GrantView, error)
	RevokeGrant(ctx context.Context, userID, grantID string) error
}

// oauthPages serves the pages that need the authorization server.
type oauthPages struct {
	h *Handler
	o OAuth
}

// OAuthRoutes mounts the consent page (/oauth/consent) and the connected
// apps pages (/account/apps…) on mux, backed by o.
func (h *Handler) OAuthRoutes(mux *http.ServeMux, o OAuth) {
	p := &oauthPages{h: h, o: o}
	h.oauth = o
	h.route(mux, "/oauth/consent", methods{get: h.user(p.consentForm), post: h.user(p.consentDecide)})
	h.route(mux, "/account/apps", methods{get: h.user(p.appList)})
	h.route(mux, "/account/apps/{id}/revoke", methods{get: h.user(p.appRevokeConfirm), post: h.user(p.appRevoke)})
}

// ErrorPage renders a readable error in the site's layout (with the
// signed-in user's header when there is one). The authorization endpoint
// uses it (oauth.ServerOptions.ErrorPage) for requests it must not
// redirect.
func (h *Handler) ErrorPage(w http.ResponseWriter, r *http.Request, status int, title, message string) {
	var c *caller
	if cur, err := h.opts.Sessions.Current(r); err == nil {
		c = &caller{cur: cur, user: cur.User, admin: slices.Contains(cur.User.Roles, RoleAdmin)}
	}
	hd := w.Header()
	hd.Set("Content-Security-Policy", ContentSecurityPolicy)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cache-Control", "no-store")
	h.errorPage(w, r, c, status, title, message)
}

type consentData struct {
	Pending oauth.PendingView
	// ClientLabel is what the page calls the client: its name, or its
	// client_id when it gave none.
	ClientLabel string
	Signed      string // the signed-in user, as shown
	// Claims: details of the user's sign-in the application's access
	// tokens will carry (--access-token-claims).
	Claims []oauth.SharedClaim
	// SignInOnly: the request asks for identity scopes only, so the page
	// asks about signing in to the application, not about MCP access;
	// Host names this server in that question.
	SignInOnly bool
	Host       string
}

// signInOnly reports whether a request asks for nothing but the identity
// scopes (openid, profile, email, offline_access): an application using
// this server as its OpenID provider, such as another mcpgate whose users
// sign in here, rather than an MCP client asking for tools.
func signInOnly(v oauth.PendingView) bool {
	return len(v.Scopes) > 0 && !slices.ContainsFunc(v.Scopes, func(s oauth.ScopeView) bool {
		return !slices.Contains(oauth.IdentityScopes, s.Name)
	})
}

// learns says what a sign-in-only application learns through each scope,
// with the user's own values, so the page can list them.
func learns(scopes []oauth.ScopeView, u store.User, host string) []oauth.ScopeView {
	out := make([]oauth.ScopeView, 0, len(scopes))
	for _, sc := range scopes {
		d := sc.Description
		switch sc.Name {
		case oauth.ScopeOpenID:
			d = "Your account id on " + host
		case oauth.ScopeEmail:
			d = "Your email address, " + u.Email
		case oauth.ScopeProfile:
			d = "Your name (none is set)"
			if u.DisplayName != "" {
				d = "Your name, " + u.DisplayName
			}
		case oauth.ScopeOfflineAccess:
			d = "These details again later, without asking you"
		}
		out = append(out, oauth.ScopeView{Name: sc.Name, Description: d})
	}
	return out
}

// consentForm shows the consent page, or approves at once when the user
// allowed everything before.
func (p *oauthPages) consentForm(w http.ResponseWriter, r *http.Request, c *caller) {
	id := r.URL.Query().Get("request")
	if !p.o.BrowserBound(r, id) {
		p.foreignBrowser(w, r, c)
		return
	}
	v, err := p.o.PendingFor(r.Context(), id, c.user)
	if err != nil {
		p.pendingError(w, r, c, err)
		return
	}
	if !v.NeedsConsent {
		confirm, err := p.o.ConfirmEachTime(r.Context(), v.ClientID, v.RedirectURI)
		if err != nil {
			p.h.unavailable(w, r, c, err)
			return
		}
		v.NeedsConsent = confirm
	}
	if !v.NeedsConsent {
		loc, err := p.o.Approve(r.Context(), id, c.user, c.cur.Session)
		if err != nil {
			p.pendingError(w, r, c, err)
			return
		}
		p.continueTo(w, r, c, v, loc)
		return
	}
	p.setFormAction(w, v.RedirectURI)
	signed := c.user.Email
	h := p.h
	d := consentData{Pending: v, ClientLabel: clientLabel(v), Signed: signed, Claims: p.o.SharedClaims(c.cur.Session.Claims)}
	title := "Allow access"
	if signInOnly(v) {
		d.SignInOnly, d.Host, title = true, r.Host, "Sign in to "+d.ClientLabel
		if u, err := url.Parse(v.Resource.URL); err == nil && u.Host != "" {
			d.Host = u.Host
		}
		d.Pending.NewScopes, d.Pending.Granted = learns(v.NewScopes, c.user, d.Host), learns(v.Granted, c.user, d.Host)
	}
	h.page(w, r, c, http.StatusOK, "consent", "", title, d, "")
}

// foreignBrowser answers a consent request from a browser that did not
// start the authorization.
func (p *oauthPages) foreignBrowser(w http.ResponseWriter, r *http.Request, c *caller) {
	p.h.errorPage(w, r, c, http.StatusForbidden, "Start again from your application",
		"This authorization request was started in another browser, or it has expired. Go back to the application you were connecting and start the connection again.")
}

// consentDecide records Allow or Deny and sends the browser to the client.
func (p *oauthPages) consentDecide(w http.ResponseWriter, r *http.Request, c *caller) {
	h := p.h
	if !h.parseForm(w, r, c) {
		return
	}
	id := r.PostForm.Get("request")
	if !p.o.BrowserBound(r, id) {
		p.foreignBrowser(w, r, c)
		return
	}
	var (
		loc string
		err error
	)
	switch r.PostForm.Get("decision") {
	case "allow":
		loc, err = p.o.Approve(r.Context(), id, c.user, c.cur.Session)
	case "deny":
		loc, err = p.o.Deny(r.Context(), id, c.user)
	default:
		h.errorPage(w, r, c, http.StatusBadRequest, "Unreadable form",
			"mcpgate could not tell whether you allowed or denied the request. Go back, reload the page and try again.")
		return
	}
	if err != nil {
		p.pendingError(w, r, c, err)
		return
	}
	http.Redirect(w, r, loc, oauth.RedirectStatus)
}

func (p *oauthPages) pendingError(w http.ResponseWriter, r *http.Request, c *caller, err error) {
	h := p.h
	switch {
	case errors.Is(err, oauth.ErrRequestExpired):
		h.errorPage(w, r, c, http.StatusGone, "Request expired",
			"This authorization request has expired. Go back to the application and connect again.")
	case errors.Is(err, oauth.ErrRequestNotFound):
		h.errorPage(w, r, c, http.StatusNotFound, "Request no longer valid",
			"This authorization request does not exist or was already answered. Go back to the application and connect again if it still needs access.")
	default:
		h.unavailable(w, r, c, err)
	}
}

type continueData struct {
	Location    string
	ClientLabel string
	Host        string
}

// continueTo sends the browser to the client after an approval that
// needed no question. A plain redirect would be refused by the browser
// when the chain started with the login form: CSP form-action applies to
// the redirects that follow a form submission, and the login page allows
// only this origin. A small page with a refresh (and a link) is not a
// form's redirect.
func (p *oauthPages) continueTo(w http.ResponseWriter, r *http.Request, c *caller, v oauth.PendingView, loc string) {
	w.Header().Set("Refresh", "0; url="+loc)
	p.h.page(w, r, c, http.StatusOK, "consent_continue", "", "Returning to the application",
		continueData{Location: loc, ClientLabel: clientLabel(v), Host: v.RedirectHost}, "")
}

// cspSource matches an origin or scheme we may put into a CSP source
// list: scheme://host[:port] or scheme:.
var cspSource = regexp.MustCompile(`^[a-z][a-z0-9+.-]*:(//[A-Za-z0-9.-]+(:[0-9]{1,5})?|//\[[0-9A-Fa-f:]+\](:[0-9]{1,5})?)?$`)

// setFormAction widens the page's form-action to the client's redirect
// target: browsers apply form-action to the redirect that follows the
// Allow or Deny post (CSP Level 3 §6.4.2), and that redirect leaves this
// origin.
func (p *oauthPages) setFormAction(w http.ResponseWriter, redirectURI string) {
	src := ""
	if u, err := url.Parse(redirectURI); err == nil {
		switch u.Scheme {
		case "http", "https":
			src = u.Scheme + "://" + u.Host
		default:
			src = u.Scheme + ":"
		}
	}
	if src == "" || !cspSource.MatchString(src) {
		return
	}
	w.Header().Set("Content-Security-Policy",
		"default-src 'self'; frame-ancestors 'none'; form-action 'self' "+src+"; base-uri 'none'")
}

func clientLabel(v oauth.PendingView) string {
	if v.ClientName != "" {
		return v.ClientName
	}
	return v.ClientID
}
