package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/store"
)

// Apps is what the connected-apps endpoints need from the OAuth
// authorization server (*oauth.Server): the JSON twin of the "Connected
// apps" account page.
type Apps interface {
	// ListGrants returns the user's connected apps, most recently used
	// first.
	ListGrants(ctx context.Context, userID string) ([]oauth.GrantView, error)
	// RevokeGrant disconnects one of the user's apps (id from ListGrants);
	// store.ErrNotFound when the user has no such app.
	RevokeGrant(ctx context.Context, userID, grantID string) error
}

// appJSON is a connected app: a client the user authorized at an MCP
// server, with what it may do there.
type appJSON struct {
	ID             string      `json:"id"`
	ClientID       string      `json:"client_id"`
	ClientName     string      `json:"client_name"`
	ClientKind     string      `json:"client_kind"` // static, dcr or cimd
	ClientVerified bool        `json:"client_verified"`
	ClientHost     string      `json:"client_host"`
	Resource       string      `json:"resource"`
	ResourceName   string      `json:"resource_name"`
	Scopes         []scopeJSON `json:"scopes"`
	FirstUsedAt    time.Time   `json:"first_used_at"`
	LastUsedAt     *time.Time  `json:"last_used_at"`
}

type scopeJSON struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// appIDPrefix is the prefix of connected-app ids (consent ids).
const appIDPrefix = "ocn"

// listApps serves GET /api/apps: the caller's connected apps, most
// recently used first.
func (a *API) listApps(w http.ResponseWriter, r *http.Request) {
	p := principal.From(r.Context())
	apps, err := a.opts.Apps.ListGrants(r.Context(), p.UserID)
	if err != nil {
		writeError(w, a.unavailable(err))
		return
	}
	out := make([]appJSON, 0, len(apps))
	for _, g := range apps {
		scopes := make([]scopeJSON, 0, len(g.Scopes))
		for _, s := range g.Scopes {
			scopes = append(scopes, scopeJSON{Name: s.Name, Description: s.Description})
		}
		out = append(out, appJSON{
			ID: g.ID, ClientID: g.ClientID, ClientName: g.ClientName, ClientKind: g.ClientKind,
			ClientVerified: g.ClientVerified, ClientHost: g.ClientHost, Resource: g.Resource, ResourceName: g.ResourceName,
			Scopes: scopes, FirstUsedAt: g.FirstUsed.UTC(), LastUsedAt: optTime(g.LastUsed),
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"apps": out})
}

// revokeApp serves DELETE /api/apps/{id}: disconnects one of the caller's
// apps — its refresh tokens stop working at once, its access tokens within
// seconds, and its next authorization asks the user again. Another user's
// app, an unknown id, or an app already disconnected is 404 and changes
// nothing.
func (a *API) revokeApp(w http.ResponseWriter, r *http.Request) {
	p := principal.From(r.Context())
	id := r.PathValue("id")
	if !validID(id, appIDPrefix) {
		writeError(w, errorf(http.StatusNotFound, codeNotFound, "you have no connected app with this id"))
		return
	}
	err := a.opts.Apps.RevokeGrant(r.Context(), p.UserID, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, errorf(http.StatusNotFound, codeNotFound, "you have no connected app with this id"))
		return
	case err != nil:
		writeError(w, a.unavailable(err))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}
