package web

// Where accounts and sign-ins come from: the external identity sources
// (upstream providers, the custom login, trusted token issuers) as people
// know them, and what a sign-in through one of them brought along (roles
// and custom claims kept with the session).

import (
	"context"
	"encoding/json"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/store"
)

// IdentitySource is an external identity source as the pages name it.
type IdentitySource struct {
	// Issuer is the name its accounts are linked under
	// (store.UserIdentity.Issuer).
	Issuer string
	// Label is what people call it: the provider's display name, the
	// custom login's name, the trusted issuer's name.
	Label string
	// Kind is SourceUpstream, SourceCustom or SourceExternal.
	Kind string
}

// Kinds of identity sources.
const (
	SourceUpstream = "upstream" // an upstream sign-in provider (/login/upstream/{name})
	SourceCustom   = "custom"   // the operator's own login application (/login/custom)
	SourceExternal = "external" // a trusted issuer of tokens accepted on /mcp
)

var sourceKinds = map[string]string{
	SourceUpstream: "sign-in provider",
	SourceCustom:   "custom login",
	SourceExternal: "trusted token issuer",
}

// source returns how the pages name the source of issuer: the configured
// one, or, for a source no longer (or not exactly) configured, the host of
// its issuer URL.
func (h *Handler) source(issuer string) IdentitySource {
	for _, s := range h.opts.IdentitySources {
		if s.Issuer == issuer {
			return s
		}
	}
	// Custom-login links are stored under "custom:<scheme>://<host>".
	if u, err := url.Parse(strings.TrimPrefix(issuer, "custom:")); err == nil && u.Host != "" {
		return IdentitySource{Issuer: issuer, Label: u.Host}
	}
	return IdentitySource{Issuer: issuer, Label: truncate(issuer, 80)}
}

// sourceLabels names the distinct sources of ids, in order: "Instance B",
// "Instance B or GitHub".
func (h *Handler) sourceLabels(ids []store.UserIdentity) string {
	var labels []string
	for _, id := range ids {
		if l := h.source(id.Issuer).Label; !slices.Contains(labels, l) {
			labels = append(labels, l)
		}
	}
	return joinOr(labels)
}

// joinOr joins names for a sentence: "a", "a or b", "a, b or c".
func joinOr(names []string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// identityRow is a linked identity as the admin's user page shows it.
type identityRow struct {
	store.UserIdentity
	Label string
	Kind  string // "sign-in provider", …; "" for a source not configured
}

func (h *Handler) identityRows(ids []store.UserIdentity) []identityRow {
	out := make([]identityRow, 0, len(ids))
	for _, id := range ids {
		s := h.source(id.Issuer)
		out = append(out, identityRow{UserIdentity: id, Label: s.Label, Kind: sourceKinds[s.Kind]})
	}
	return out
}

// signIn is what the sign-in of the current session brought along: the
// roles and custom claims its source vouched for (store.Session.Claims).
// They count for tools only while this session, its MCP credential, or an
// OAuth grant made from it is used; an API key carries none of them.
type signIn struct {
	// Source names where the user signed in ("Example app"); "" when it
	// cannot be told.
	Source string
	Roles  []string // claim roles, as tools see them (never "admin")
	Claims []detail // the other claims, by name
	// OAuthCarries are the claim names an OAuth client's access tokens
	// would carry (the operator's --access-token-claims); none when the
	// operator copies none.
	OAuthCarries []string
}

// Names lists the roles claim (when it has roles) and the other claims'
// names, for sentences.
func (s *signIn) Names() []string {
	var out []string
	if len(s.Roles) > 0 {
		out = append(out, principal.RolesClaim)
	}
	for _, c := range s.Claims {
		out = append(out, c.Key)
	}
	return out
}

// maxClaimText bounds a claim value on a page.
const maxClaimText = 200

// parseSignIn reads a session's claims (a JSON object; "" for none). It
// returns nil when the sign-in brought nothing a tool would see.
func parseSignIn(raw string) *signIn {
	if raw == "" {
		return nil
	}
	var m map[string]any
	if json.Unmarshal([]byte(raw), &m) != nil {
		return nil
	}
	s := &signIn{Roles: principal.ClaimRoles(m[principal.RolesClaim])}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k == principal.RolesClaim {
			continue
		}
		s.Claims = append(s.Claims, detail{Key: k, Value: truncate(formatValue(m[k]), maxClaimText)})
	}
	if len(s.Roles) == 0 && len(s.Claims) == 0 {
		return nil
	}
	return s
}

// signInOf describes the sign-in of the caller's session; nil when it
// brought no roles or claims.
func (h *Handler) signInOf(ctx context.Context, c *caller) (*signIn, error) {
	s := parseSignIn(c.cur.Session.Claims)
	if s == nil {
		return nil, nil
	}
	ids, err := h.opts.Store.ListIdentities(ctx, c.user.ID)
	if err != nil {
		return nil, err
	}
	if id, ok := sessionIdentity(ids, c.cur.Session.CreatedAt); ok {
		s.Source = h.source(id.Issuer).Label
	}
	if h.oauth != nil {
		for _, sc := range h.oauth.SharedClaims(c.cur.Session.Claims) {
			s.OAuthCarries = append(s.OAuthCarries, sc.Name)
		}
	}
	return s, nil
}

// sessionIdentity finds the identity a session was started through. A
// session does not record its source, but a sign-in through an external
// identity stamps the identity's LastLoginAt just before the session is
// created: with one identity it is that one; with several, the one used
// in the moments before the session began, when exactly one was.
func sessionIdentity(ids []store.UserIdentity, created time.Time) (store.UserIdentity, bool) {
	if len(ids) == 1 {
		return ids[0], true
	}
	var found []store.UserIdentity
	for _, id := range ids {
		// Generous on both sides: the nodes of a cluster may disagree on
		// the time by a few seconds.
		if !id.LastLoginAt.Before(created.Add(-30*time.Second)) && !id.LastLoginAt.After(created.Add(5*time.Second)) {
			found = append(found, id)
		}
	}
	if len(found) == 1 {
		return found[0], true
	}
	return store.UserIdentity{}, false
}
