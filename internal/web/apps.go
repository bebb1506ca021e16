package web

// The "Connected apps" account page: every client the user authorised
// (name, host, scopes, MCP server, first and last use) with Revoke, which
// goes through a confirmation page like every destructive action.

import (
	"errors"
	"net/http"
	"strings"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/store"
)

func init() {
	notices["app_revoked"] = "The app was disconnected. Its access ends now; it must ask you again to reconnect."
	// Labels of the authorization server's audit events on the activity
	// and audit pages.
	eventTypes = append(eventTypes, []struct{ Type, Label string }{
		{audit.TypeOAuthAuthorizeRequested, "App authorization requested"},
		{audit.TypeOAuthAuthorizeRefused, "App authorization refused"},
		{audit.TypeOAuthConsentGranted, "App allowed"},
		{audit.TypeOAuthConsentDenied, "App denied"},
		{audit.TypeOAuthConsentRevoked, "App disconnected"},
		{audit.TypeOAuthCodeIssued, "Authorization code issued"},
		{audit.TypeOAuthCodeRedeemed, "Authorization code redeemed"},
		{audit.TypeOAuthCodeReplayed, "Authorization code replayed"},
		{audit.TypeOAuthTokenIssued, "Access token issued"},
		{audit.TypeOAuthTokenRefreshed, "Access token refreshed"},
		{audit.TypeOAuthRefreshReplayed, "Refresh token replayed"},
		{audit.TypeOAuthTokenRefused, "Token request refused"},
		{audit.TypeOAuthTokenRevoked, "Token revoked"},
		{audit.TypeOAuthGrantRevoked, "App access revoked"},
		{audit.TypeOAuthIntrospection, "Token introspected"},
		{audit.TypeOAuthUserinfoRefused, "User info refused"},
	}...)
	for k, v := range map[string]string{
		audit.ReasonUnknownClient: "unknown application", audit.ReasonRedirectMismatch: "redirect address not registered",
		audit.ReasonPKCEMissing: "no PKCE", audit.ReasonPKCEMethod: "PKCE method not S256", audit.ReasonPKCEFailed: "PKCE check failed",
		audit.ReasonInvalidTarget: "unknown MCP server", audit.ReasonInvalidScope: "unknown scope",
		audit.ReasonCodeReplayed: "code used twice", audit.ReasonRefreshReplayed: "refresh token used twice",
		audit.ReasonCodeExpired: "code expired", audit.ReasonUserDenied: "denied by the user",
		audit.ReasonBadSignature: "bad signature", audit.ReasonWrongAudience: "token for another server",
		audit.ReasonWrongIssuer: "token from another issuer", audit.ReasonUnknownKID: "unknown signing key",
		audit.ReasonGrantRevoked: "access revoked", audit.ReasonBadAlgorithm: "signature algorithm refused",
	} {
		if _, ok := reasonLabels[k]; !ok {
			reasonLabels[k] = v
		}
	}
}

type appListData struct {
	Apps []oauth.GrantView
}

func (p *oauthPages) appList(w http.ResponseWriter, r *http.Request, c *caller) {
	apps, err := p.o.ListGrants(r.Context(), c.user.ID)
	if err != nil {
		p.h.unavailable(w, r, c, err)
		return
	}
	p.h.page(w, r, c, http.StatusOK, "apps", "apps", "Connected apps", appListData{Apps: apps}, "")
}

// ownApp finds one of the caller's connected apps.
func (p *oauthPages) ownApp(w http.ResponseWriter, r *http.Request, c *caller) (oauth.GrantView, bool) {
	id := r.PathValue("id")
	apps, err := p.o.ListGrants(r.Context(), c.user.ID)
	if err != nil {
		p.h.unavailable(w, r, c, err)
		return oauth.GrantView{}, false
	}
	for _, a := range apps {
		if a.ID == id {
			return a, true
		}
	}
	p.h.errorPage(w, r, c, http.StatusNotFound, "App not found",
		"There is no connected app with this id in your account. It may have been disconnected already.")
	return oauth.GrantView{}, false
}

func (p *oauthPages) appRevokeConfirm(w http.ResponseWriter, r *http.Request, c *caller) {
	a, ok := p.ownApp(w, r, c)
	if !ok {
		return
	}
	name := a.ClientName
	if name == "" {
		name = a.ClientID
	}
	scopes := make([]string, 0, len(a.Scopes))
	for _, s := range a.Scopes {
		scopes = append(scopes, s.Name)
	}
	last := "never"
	if !a.LastUsed.IsZero() {
		last = fullDate(a.LastUsed)
	}
	p.h.page(w, r, c, http.StatusOK, "confirm", "apps", "Disconnect app", confirmData{
		Heading: "Disconnect " + name + "?",
		Message: "Its refresh tokens stop working at once and its access tokens within seconds. To connect again it must ask for your permission again.",
		Facts: []detail{{"Application", name}, {"Host", a.ClientHost}, {"Access", strings.Join(scopes, " ")},
			{"MCP server", a.Resource}, {"Authorized", fullDate(a.FirstUsed)}, {"Last used", last}},
		Action: "/account/apps/" + a.ID + "/revoke", Button: "Disconnect", Cancel: "/account/apps", Danger: true,
	}, "")
}

func (p *oauthPages) appRevoke(w http.ResponseWriter, r *http.Request, c *caller) {
	err := p.o.RevokeGrant(r.Context(), c.user.ID, r.PathValue("id"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		p.h.errorPage(w, r, c, http.StatusNotFound, "App not found",
			"There is no connected app with this id in your account. It may have been disconnected already.")
		return
	case err != nil:
		p.h.unavailable(w, r, c, err)
		return
	}
	http.Redirect(w, r, "/account/apps?done=app_revoked", http.StatusSeeOther)
}
