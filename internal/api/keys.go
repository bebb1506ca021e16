package api

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/store"
)

// keyJSON is an API key as the API shows it: never its secret.
type keyJSON struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	Kind       string     `json:"kind"`
	Scopes     []string   `json:"scopes"`
	Status     string     `json:"status"` // active, expired or revoked
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	SessionID  string     `json:"session_id,omitempty"`
}

func keyOut(k store.APIKey, now time.Time) keyJSON {
	status := "active"
	switch {
	case !k.RevokedAt.IsZero():
		status = "revoked"
	case !k.Active(now):
		status = "expired"
	}
	scopes := k.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return keyJSON{
		ID: k.ID, Name: k.Name, Prefix: k.Prefix, Kind: k.Kind, Scopes: scopes, Status: status,
		CreatedAt: k.CreatedAt.UTC(), ExpiresAt: optTime(k.ExpiresAt), LastUsedAt: optTime(k.LastUsedAt),
		RevokedAt: optTime(k.RevokedAt), SessionID: k.SessionID,
	}
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// listKeys serves GET /api/api-keys: the caller's keys, newest first,
// revoked and expired ones included (session keys too, marked by kind).
func (a *API) listKeys(w http.ResponseWriter, r *http.Request) {
	p := principal.From(r.Context())
	keys, err := a.opts.Keys.List(r.Context(), p.UserID)
	if err != nil {
		writeError(w, a.unavailable(err))
		return
	}
	now := time.Now()
	out := make([]keyJSON, 0, len(keys))
	for _, k := range keys {
		out = append(out, keyOut(k, now))
	}
	writeJSON(w, http.StatusOK, map[string]any{"api_keys": out})
}

type createKeyRequest struct {
	Name          *string   `json:"name"`
	Scopes        *[]string `json:"scopes"`
	ExpiresInDays *int      `json:"expires_in_days"`
	ExpiresAt     *string   `json:"expires_at"`
}

// maxExpiresInDays bounds expires_in_days (ten years).
const maxExpiresInDays = 3650

// createKey serves POST /api/api-keys. The plaintext key is in this answer
// only.
func (a *API) createKey(w http.ResponseWriter, r *http.Request) {
	p := principal.From(r.Context())
	var req createKeyRequest
	if e := decodeJSON(r, maxBody, &req); e != nil {
		writeError(w, e)
		return
	}
	ir, e := a.issueRequest(p, req, time.Now())
	if e != nil {
		writeError(w, e)
		return
	}
	plaintext, key, err := a.opts.Keys.Issue(r.Context(), ir)
	var ve *apikeys.ValidationError
	switch {
	case errors.As(err, &ve):
		field := ve.Field
		if field == "user_id" {
			writeError(w, errorf(http.StatusForbidden, codeForbidden, "%s", ve.Message))
			return
		}
		writeError(w, badField(field, "%s", ve.Message))
		return
	case err != nil:
		writeError(w, a.unavailable(err))
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"api_key": plaintext, "key": keyOut(key, time.Now())})
}

// issueRequest validates a create request against what the caller may grant.
func (a *API) issueRequest(p *principal.Principal, req createKeyRequest, now time.Time) (apikeys.IssueRequest, *apiError) {
	ir := apikeys.IssueRequest{UserID: p.UserID, Kind: store.KeyKindManual}
	if req.Name == nil {
		return ir, badField("name", "name is required")
	}
	ir.Name = *req.Name
	if req.Scopes == nil || len(*req.Scopes) == 0 {
		return ir, badField("scopes", "scopes must list at least one scope; grantable: %s", strings.Join(a.opts.GrantableScopes, " "))
	}
	for _, s := range *req.Scopes {
		if !a.grantable[s] {
			shown := s
			if len(shown) > 64 {
				shown = shown[:64] + "…"
			}
			return ir, badField("scopes", "scope %q cannot be granted; grantable: %s", strings.ToValidUTF8(shown, "?"), strings.Join(a.opts.GrantableScopes, " "))
		}
	}
	// A key can mint keys with its own scopes at most: a key with only the
	// account scope cannot create one that moves money. A browser session
	// may grant every grantable scope.
	if p.Method != principal.MethodSession {
		if missing := p.MissingScopes(*req.Scopes); len(missing) > 0 {
			e := errorf(http.StatusForbidden, codeInsufficientScope, "a key can only create keys with scopes it holds itself; this key lacks %s", strings.Join(missing, " "))
			e.RequiredScopes = missing
			return ir, e
		}
	}
	ir.Scopes = slices.Clone(*req.Scopes)
	switch {
	case req.ExpiresInDays != nil && req.ExpiresAt != nil:
		return ir, badField("expires_at", "send expires_in_days or expires_at, not both")
	case req.ExpiresInDays != nil:
		d := *req.ExpiresInDays
		if d < 1 || d > maxExpiresInDays {
			return ir, badField("expires_in_days", "expires_in_days must be a whole number from 1 to %d", maxExpiresInDays)
		}
		ir.ExpiresAt = now.Add(time.Duration(d) * 24 * time.Hour)
	case req.ExpiresAt != nil:
		t, err := time.Parse(time.RFC3339, *req.ExpiresAt)
		if err != nil {
			return ir, badField("expires_at", "expires_at must be an RFC 3339 time such as 2027-01-31T00:00:00Z")
		}
		if !t.After(now) {
			return ir, badField("expires_at", "expires_at must be in the future")
		}
		if t.After(now.AddDate(0, 0, maxExpiresInDays)) {
			return ir, badField("expires_at", "expires_at must be within %d days", maxExpiresInDays)
		}
		ir.ExpiresAt = t
	}
	return ir, nil
}

// revokeKey serves DELETE /api/api-keys/{id}: the caller's own keys only;
// any other id, existing or not, is 404 and changes nothing. Revoking a
// revoked key answers it unchanged.
func (a *API) revokeKey(w http.ResponseWriter, r *http.Request) {
	p := principal.From(r.Context())
	id := r.PathValue("id")
	notFound := errorf(http.StatusNotFound, codeNotFound, "you have no API key with this id")
	if !validID(id, "key") {
		writeError(w, notFound)
		return
	}
	k, err := a.opts.Keys.Get(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, notFound)
		return
	case err != nil:
		writeError(w, a.unavailable(err))
		return
	case k.UserID != p.UserID:
		writeError(w, notFound)
		return
	}
	k, err = a.opts.Keys.Revoke(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, notFound)
		return
	case err != nil:
		writeError(w, a.unavailable(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"key": keyOut(k, time.Now())})
}

// validID reports whether id has the shape of an id made by store.NewID
// with this prefix. Anything else cannot exist and is not sent to the
// store (PostgreSQL refuses NUL bytes and invalid UTF-8 in text).
func validID(id, prefix string) bool {
	pfx, _, ok := store.ParseID(id)
	return ok && pfx == prefix
}
