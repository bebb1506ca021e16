package oauth

// Custom claims in access tokens (--access-token-claims).
//
// A browser session may keep custom claims its sign-in vouched for
// (bring-your-own-login's posted claims; an upstream provider's roles
// mapping and kept claims). When the user approves an authorization — on
// the consent page, or at /authorize when consent given before covers it
// — the claims ServerOptions.AccessTokenClaims names are taken from that
// session and stored on the grant (store.OAuthGrant.Claims), with the
// session's id (SessionID). The code exchange and every refresh copy them
// into the access token (tokens.AccessClaims.Extra; RFC 9068 §2.2.3.1
// names "roles" among the authorization claims an access token may
// carry) while that session lives.
//
// Claims live as long as the sign-in that approved the client. A claim is
// the login source's word about the user at sign-in (an organisation, an
// "auditor" role); mcpgate cannot ask the source again, so the word holds
// only while the sign-in does. The sign-in ends when someone ends it or at
// its absolute lifetime (--session-lifetime), not when the browser merely
// goes unused: the idle timeout (--session-idle-timeout) bounds an
// unattended browser cookie, and a user whose MCP clients work for days
// without opening mcpgate in a browser has not ended anything. Once the
// session has ended — signed out, revoked by the user or an admin, ended
// by a password change or the user being disabled, replaced by a new
// sign-in, past its lifetime, or deleted — the next token of the grant is
// minted without custom claims (tools that need one fail closed), the
// grant's claims are dropped for good, and the token's audit event says
// so once (details.claims_dropped = "session_ended"). The grant itself
// lives on: the client keeps the user's scopes, without the claims.
//
// A new sign-in does not hand its claims to older grants: a grant belongs
// to the sign-in its user approved from, and the consent page showed that
// sign-in's claims. Another sign-in may carry other claims (another
// organisation, fewer roles), and a user may be signed in several times
// at once; giving one of them to a client the user approved elsewhere
// would send claims the user never saw go to it. Claims come back through
// a new authorization from a live sign-in (reconnecting the application;
// consent given before makes that one redirect).
//
// Access tokens minted before the session ended keep their claims until
// they expire (at most the access-token lifetime, --access-token-ttl).
// Checking the session costs one read by primary key, only for grants
// that still hold claims. A name the setting no longer lists is dropped
// at the next refresh. Protocol claims (principal.ReservedClaim) are
// never copied.
//
// Size: a session's claims are bounded at sign-in (at most 32, each at
// most 1 KiB), but a token must stay within what its verifiers accept
// (tokens.MaxAccessTokenBytes, 8 KiB). A token that would be larger is not
// minted: the token request fails with invalid_grant (reason
// token_too_large) and the grant is revoked, since it could never yield a
// token; the operator copies fewer or smaller claims.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// ClaimsDroppedSessionEnded is the audit detail claims_dropped of the
// token event that first went without a grant's claims because the
// sign-in they came from had ended.
const ClaimsDroppedSessionEnded = "session_ended"

// grantTokenClaims are the custom claims of a grant's next access token.
type grantTokenClaims struct {
	extra map[string]any // tokens.AccessClaims.Extra; nil for none
	names []string       // their names, sorted
	// ended: the grant holds claims the setting names, but the sign-in
	// they came from has ended: none are copied, and they are to be
	// dropped from the grant.
	ended bool
}

// tokenClaims returns the custom claims of grant g for its next access
// token (tokens.AccessClaims.Extra): those the setting still names, while
// the sign-in they came from lives. A grant without claims costs nothing;
// one with claims costs one read of its session.
func (s *Server) tokenClaims(ctx context.Context, g store.OAuthGrant) (grantTokenClaims, error) {
	if g.Claims == "" || len(s.opts.AccessTokenClaims) == 0 {
		return grantTokenClaims{}, nil
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal([]byte(g.Claims), &all); err != nil {
		s.log.Warn("oauth: a grant's custom claims are unreadable; its tokens carry none", "grant_id", g.ID, "err", err)
		return grantTokenClaims{}, nil
	}
	picked := s.pickClaims(all)
	if len(picked) == 0 {
		return grantTokenClaims{}, nil
	}
	live, err := s.signInLive(ctx, g)
	if err != nil {
		return grantTokenClaims{}, err
	}
	if !live {
		return grantTokenClaims{ended: true}, nil
	}
	extra := make(map[string]any, len(picked))
	for k, v := range picked {
		extra[k] = v // json.RawMessage: copied into the token as it was vouched for
	}
	return grantTokenClaims{extra: extra, names: slices.Sorted(maps.Keys(picked))}, nil
}

// signInLive reports whether the sign-in (browser session) grant g was
// approved from is still live for g's user: within its absolute lifetime
// and not ended by anyone (sign-out, revocation, password change, user
// disabled: store.SessionEndRevoked). A session that only went idle — not
// yet ended, or ended with store.SessionEndIdle by the cleaner or by
// session.Manager.Current — still counts: the cookie is dead for the
// browser, but the sign-in was not ended. It never touches the session:
// a client's use must not keep a browser cookie alive past its idle
// timeout, which bounds an unattended browser. A grant without a session
// (stored before grants recorded one) or whose session was deleted has
// no live sign-in.
func (s *Server) signInLive(ctx context.Context, g store.OAuthGrant) (bool, error) {
	_, live, err := s.liveSignIn(ctx, g)
	return live, err
}

// liveSignIn is signInLive that also returns the live session.
func (s *Server) liveSignIn(ctx context.Context, g store.OAuthGrant) (store.Session, bool, error) {
	if g.SessionID == "" {
		return store.Session{}, false, nil
	}
	sess, err := s.st.GetSession(ctx, g.SessionID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.Session{}, false, nil
	case err != nil:
		return store.Session{}, false, fmt.Errorf("oauth: the session of grant %s: %w", g.ID, err)
	}
	ended := !sess.RevokedAt.IsZero() && sess.EndReason != store.SessionEndIdle
	if sess.UserID != g.UserID || ended || !s.now().Before(sess.ExpiresAt) {
		return store.Session{}, false, nil
	}
	return sess, true, nil
}

// dropEndedClaims removes the claims of grant g, whose sign-in has ended,
// from the grant, and returns the claims_dropped audit detail when this
// call removed them ("" otherwise: dropped before, so audited before). A
// failure only costs another session read at the next token: it is
// logged, not returned (the token was minted without the claims).
func (s *Server) dropEndedClaims(ctx context.Context, g store.OAuthGrant) string {
	dropped, err := s.st.DropOAuthGrantClaims(ctx, g.ID)
	if err != nil {
		s.log.ErrorContext(ctx, "oauth: cannot drop the claims of a grant whose sign-in ended; its tokens carry none", "grant_id", g.ID, "err", err)
		return ""
	}
	if !dropped {
		return ""
	}
	return ClaimsDroppedSessionEnded
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
