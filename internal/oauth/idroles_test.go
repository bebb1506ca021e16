package oauth_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
)

// TestIDTokenRoles: with --id-token-roles, the ID token and /userinfo of
// a grant with openid carry "roles": the user's stored roles and the
// approving sign-in's claim roles, never "admin" from either; once that
// sign-in has ended, a refresh's ID token carries the stored roles only.
// The roles claim needs openid, like the ID token itself.
func TestIDTokenRoles(t *testing.T) {
	eachStore(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := newStack(t, db, stackOptions{idTokenRoles: true})
		_, err := s.users.SetRoles(ctx, s.alice.ID, []string{"admin", "support"})
		must(t, err)
		clientID, secret := s.confidentialClient("Relying party")
		b := s.browser()
		sess := b.signInWithClaims(s.alice, map[string]any{"roles": []string{"auditor", "Admin", "support"}})

		code, verifier := s.codeFor(b, clientID, func(q url.Values) { q.Set("scope", "openid email") })
		tk := s.post("/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
			"redirect_uri": {"http://127.0.0.1:4711/callback"}}, clientID, secret)
		if tk.status != http.StatusOK || tk.str("id_token") == "" {
			t.Fatalf("exchange: %d %v", tk.status, tk.body)
		}
		want := []any{"support", "auditor"}
		if d := cmp.Diff(want, jwtPayload(t, tk.str("id_token"))["roles"]); d != "" {
			t.Errorf("ID token roles (-want +got):\n%s", d)
		}
		st, _, info := userinfo(t, s, "Bearer "+tk.str("access_token"))
		if d := cmp.Diff(want, info["roles"]); st != http.StatusOK || d != "" {
			t.Errorf("userinfo %d roles (-want +got):\n%s", st, d)
		}

		// The sign-in ends: its claim roles no longer count.
		must(t, s.sessions.Revoke(ctx, s.alice.ID, sess.ID))
		r := s.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tk.str("refresh_token")}}, clientID, secret)
		if r.status != http.StatusOK {
			t.Fatalf("refresh: %d %v", r.status, r.body)
		}
		if d := cmp.Diff([]any{"support"}, jwtPayload(t, r.str("id_token"))["roles"]); d != "" {
			t.Errorf("ID token roles after sign-out (-want +got):\n%s", d)
		}
		if _, _, info := userinfo(t, s, "Bearer "+r.str("access_token")); !cmp.Equal(info["roles"], []any{"support"}) {
			t.Errorf("userinfo roles after sign-out = %v", info["roles"])
		}

		// A user with no roles gets an empty list, not a missing claim.
		_, err = s.users.SetRoles(ctx, s.alice.ID, []string{"admin"})
		must(t, err)
		r = s.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.str("refresh_token")}}, clientID, secret)
		if roles, ok := jwtPayload(t, r.str("id_token"))["roles"]; r.status != http.StatusOK || !ok || !cmp.Equal(roles, []any{}) {
			t.Errorf("ID token roles of an admin with no other role: %d %v (present %v)", r.status, roles, ok)
		}
	})
}

// Without the setting, neither the ID token nor /userinfo names roles.
func TestIDTokenRolesOff(t *testing.T) {
	s := newStack(t, storeSQLite(t), stackOptions{})
	_, err := s.users.SetRoles(context.Background(), s.alice.ID, []string{"support"})
	must(t, err)
	id := s.publicClient("App")
	b := s.browser()
	b.signInWithClaims(s.alice, map[string]any{"roles": []string{"auditor"}})
	code, verifier := s.codeFor(b, id)
	tk := s.exchange(id, code, verifier)
	if tk.status != http.StatusOK || tk.str("id_token") == "" {
		t.Fatalf("exchange: %d %v", tk.status, tk.body)
	}
	if roles, ok := jwtPayload(t, tk.str("id_token"))["roles"]; ok {
		t.Errorf("ID token roles without --id-token-roles: %v", roles)
	}
	if _, _, info := userinfo(t, s, "Bearer "+tk.str("access_token")); info["sub"] == nil || info["roles"] != nil {
		t.Errorf("userinfo without --id-token-roles: %v", info)
	}
}
