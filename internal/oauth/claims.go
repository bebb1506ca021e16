package oauth

// Custom claims in access tokens (--access-token-claims).
//
// A browser session may keep custom claims its sign-in vouched for
// (bring-your-own-login's posted claims; an upstream provider's roles
// mapping and kept claims). When the user approves an authorization — on
// the consent page, or at /authorize when consent given before covers it
// — the claims ServerOptions.AccessTokenClaims names are taken from that
// session and stored on the grant (store.OAuthGrant.Claims). The code
// exchange and every refresh copy them into the access token
// (tokens.AccessClaims.Extra; RFC 9068 §2.2.3.1 names "roles" among the
// authorization claims an access token may carry), so a grant keeps the
// claims of the sign-in it came from: a new sign-in with other claims
// reaches tokens through a new authorization. A name the setting no
// longer lists is dropped at the next refresh. Protocol claims
// (principal.ReservedClaim) are never copied.
//
// Size: a session's claims are bounded at sign-in (at most 32, each at
// most 1 KiB), but a token must stay within what its verifiers accept
// (tokens.MaxAccessTokenBytes, 8 KiB). A token that would be larger is not
// minted: the token request fails with invalid_grant (reason
// token_too_large) and the grant is revoked, since it could never yield a
// token; the operator copies fewer or smaller claims.

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strings"

	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/store"
)

// grantClaims selects, from the custom claims of the approving user's
// browser session (a JSON object, "" for none), those AccessTokenClaims
// names, as the grant keeps them (a JSON object, "" for none), and their
// names (sorted, for the audit log).
func (s *Server) grantClaims(sessionClaims string) (string, []string) {
	if len(s.opts.AccessTokenClaims) == 0 || sessionClaims == "" {
		return "", nil
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal([]byte(sessionClaims), &all); err != nil {
		// Written by mcpgate itself; unreadable means damaged: copy
		// nothing (a token without a claim grants less).
		s.log.Warn("oauth: the session's custom claims are unreadable; none are copied into the grant", "err", err)
		return "", nil
	}
	picked := s.pickClaims(all)
	if len(picked) == 0 {
		return "", nil
	}
	b, err := json.Marshal(picked)
	if err != nil {
		return "", nil
	}
	return string(b), slices.Sorted(maps.Keys(picked))
}

// tokenClaims returns the custom claims of grant g for its next access
// token (tokens.AccessClaims.Extra) — those the setting still names — and
// their names (sorted). A grant without claims costs nothing.
func (s *Server) tokenClaims(g store.OAuthGrant) (map[string]any, []string) {
	if g.Claims == "" || len(s.opts.AccessTokenClaims) == 0 {
		return nil, nil
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal([]byte(g.Claims), &all); err != nil {
		s.log.Warn("oauth: a grant's custom claims are unreadable; its tokens carry none", "grant_id", g.ID, "err", err)
		return nil, nil
	}
	picked := s.pickClaims(all)
	if len(picked) == 0 {
		return nil, nil
	}
	extra := make(map[string]any, len(picked))
	for k, v := range picked {
		extra[k] = v // json.RawMessage: copied into the token as it was vouched for
	}
	return extra, slices.Sorted(maps.Keys(picked))
}

// pickClaims keeps the claims AccessTokenClaims names (never a reserved
// protocol claim).
func (s *Server) pickClaims(all map[string]json.RawMessage) map[string]json.RawMessage {
	var picked map[string]json.RawMessage
	for _, name := range s.opts.AccessTokenClaims {
		v, ok := all[name]
		if !ok || principal.ReservedClaim(name) {
			continue
		}
		if picked == nil {
			picked = map[string]json.RawMessage{}
		}
		picked[name] = v
	}
	return picked
}

// SharedClaim is a custom claim as the consent page shows it: the
// application's access tokens will carry it.
type SharedClaim struct {
	Name  string
	Value string // for reading: a string as is, a list of strings joined with ", ", anything else as JSON; clipped
}

// maxSharedClaimText bounds a value on the consent page (the token carries
// it whole).
const maxSharedClaimText = 200

// SharedClaims lists, for the consent page, the custom claims of the
// user's sign-in (sessionClaims, the session's JSON object) that an
// approval would copy into the application's access tokens, sorted by
// name. RFC 6749 §10.2 and MCP's security guidance ask that the user be
// told what a client receives; claims are part of that.
func (s *Server) SharedClaims(sessionClaims string) []SharedClaim {
	raw, _ := s.grantClaims(sessionClaims)
	if raw == "" {
		return nil
	}
	var picked map[string]json.RawMessage
	if json.Unmarshal([]byte(raw), &picked) != nil {
		return nil
	}
	out := make([]SharedClaim, 0, len(picked))
	for _, name := range slices.Sorted(maps.Keys(picked)) {
		out = append(out, SharedClaim{Name: name, Value: claimText(picked[name])})
	}
	return out
}

// claimText renders a claim value for people.
func claimText(v json.RawMessage) string {
	var text string
	var str string
	var list []string
	switch {
	case json.Unmarshal(v, &str) == nil:
		text = str
	case json.Unmarshal(v, &list) == nil:
		text = strings.Join(list, ", ")
	default:
		var buf bytes.Buffer
		if json.Compact(&buf, v) == nil {
			text = buf.String()
		} else {
			text = string(v)
		}
	}
	if len(text) > maxSharedClaimText {
		text = strings.ToValidUTF8(text[:maxSharedClaimText], "") + "…"
	}
	return text
}
