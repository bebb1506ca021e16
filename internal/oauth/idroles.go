package oauth

// Roles in ID tokens and /userinfo (--id-token-roles).
//
// mcpgate can be another mcpgate's (or any relying party's) OpenID
// provider; the relying party may map a roles claim of the ID token into
// its own sign-in (upstream-login.md, roles_claim). With IDTokenRoles on,
// every ID token and /userinfo answer of a grant with the openid scope
// carries "roles": a JSON array (possibly empty) of the user's stored
// mcpgate roles merged with the roles claim of the sign-in that approved
// the grant (principal.ClaimRoles, MergeRoles), the roles that count for
// the user's tool decisions here. OIDC Core §2: "ID Tokens MAY contain
// other Claims"; §5.1.2 (Additional Claims) lets a provider define claims
// beyond the standard ones, and §5.3.2 lets /userinfo return them.
//
// "admin" is never included, from either source. A relying party that
// maps roles would otherwise learn which users administer this server,
// or be handed "admin" as a role of its own: a provider's administrators
// are not the relying party's, and a chain of mcpgates must not turn one
// instance's administrator into a privileged user elsewhere (mcpgate
// itself never takes admin from a claim, principal.ClaimRoles).
//
// The sign-in's claim roles follow the rule of custom claims (claims.go):
// they count while that sign-in lives; afterwards only the stored roles
// are sent. Off by default: roles describe the user to every relying
// party the user signs in to.

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/store"
)

// idTokenRoles returns the "roles" of u for grant g's ID tokens and
// /userinfo answers: u's stored roles and the approving sign-in's claim
// roles, never admin; an empty (non-nil) list when there are none.
func (s *Server) idTokenRoles(ctx context.Context, u store.User, g store.OAuthGrant) ([]string, error) {
	stored := slices.DeleteFunc(slices.Clone(u.Roles), func(r string) bool { return strings.EqualFold(r, principal.RoleAdmin) })
	var claimRoles []string
	sess, live, err := s.liveSignIn(ctx, g)
	if err != nil {
		return nil, err
	}
	if live && sess.Claims != "" {
		var claims map[string]any
		if err := json.Unmarshal([]byte(sess.Claims), &claims); err != nil {
			// Written by mcpgate itself; unreadable means damaged: send
			// the stored roles only (fewer roles, never more).
			s.log.WarnContext(ctx, "oauth: the sign-in's claims are unreadable; the ID token carries the stored roles only", "grant_id", g.ID, "err", err)
		} else {
			claimRoles = principal.ClaimRoles(claims[principal.RolesClaim])
		}
	}
	out := principal.MergeRoles(stored, claimRoles)
	if out == nil {
		out = []string{}
	}
	return out, nil
}

// grantRoles is idTokenRoles for /userinfo, which knows the grant by id
// only. A grant gone since GrantActive said it was live has no sign-in.
func (s *Server) grantRoles(ctx context.Context, u store.User, grantID string) ([]string, error) {
	g := store.OAuthGrant{UserID: u.ID}
	if grantID != "" {
		var err error
		g, err = s.st.GetOAuthGrant(ctx, grantID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if g.UserID != u.ID {
			g = store.OAuthGrant{UserID: u.ID}
		}
	}
	return s.idTokenRoles(ctx, u, g)
}
