package principal

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestClaimRoles(t *testing.T) {
	many := make([]any, 0, 150)
	for i := range 150 {
		many = append(many, "r"+strings.Repeat("x", i%5)+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	cases := []struct {
		name string
		v    any
		want []string
	}{
		{"array from JSON", []any{"auditor", "support"}, []string{"auditor", "support"}},
		{"array of strings", []string{"auditor"}, []string{"auditor"}},
		{"space-separated string", " auditor  support ", []string{"auditor", "support"}},
		{"admin is never taken from a claim", []any{"admin", "auditor", "Admin", "ADMIN"}, []string{"auditor"}},
		{"duplicates once", []any{"auditor", "auditor"}, []string{"auditor"}},
		{"absurd entries dropped", []any{strings.Repeat("r", 129), "ok", "bad\x00role", "two words", 7, "", "\xff"}, []string{"ok"}},
		{"longest role kept", []any{strings.Repeat("r", 128)}, []string{strings.Repeat("r", 128)}},
		{"not a list", float64(7), nil},
		{"an object", map[string]any{"roles": []any{"x"}}, nil},
		{"missing", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, ClaimRoles(tc.v)); d != "" {
				t.Errorf("ClaimRoles (-want +got):\n%s", d)
			}
		})
	}
	if got := ClaimRoles(many); len(got) != MaxClaimRoles {
		t.Errorf("%d roles kept of 150, want %d", len(got), MaxClaimRoles)
	}
}

func TestMergeRoles(t *testing.T) {
	stored := []string{"admin", "user"}
	got := MergeRoles(stored, []string{"auditor", "user", "admin", "auditor", "Admin"})
	if d := cmp.Diff([]string{"admin", "user", "auditor"}, got); d != "" {
		t.Errorf("MergeRoles (-want +got):\n%s", d)
	}
	if !slices.Equal(stored, []string{"admin", "user"}) {
		t.Errorf("the stored roles changed: %v", stored)
	}
	// A claim cannot make anyone an admin, even through a forged list.
	if got := MergeRoles([]string{"user"}, []string{"admin"}); slices.Contains(got, "admin") {
		t.Errorf("MergeRoles gave admin: %v", got)
	}
	// Nothing new: the stored slice itself (no allocation on the hot path).
	if got := MergeRoles(stored, []string{"user"}); &got[0] != &stored[0] {
		t.Error("MergeRoles copied although nothing was added")
	}
	if got := MergeRoles(nil, []string{"auditor"}); !slices.Equal(got, []string{"auditor"}) {
		t.Errorf("MergeRoles(nil, auditor) = %v", got)
	}
	if n := testing.AllocsPerRun(100, func() { MergeRoles(stored, nil) }); n != 0 {
		t.Errorf("MergeRoles without claim roles allocates %v times", n)
	}
}

func TestReservedClaim(t *testing.T) {
	for _, name := range []string{"iss", "SUB", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "scp", "gid", "typ",
		"azp", "auth_time", "acr", "amr", "cnf", "act", "may_act", "nonce", "sid"} {
		if !ReservedClaim(name) {
			t.Errorf("%s is not reserved", name)
		}
	}
	for _, name := range []string{"roles", "organization_id", "groups", "department", "email"} {
		if ReservedClaim(name) {
			t.Errorf("%s is reserved", name)
		}
	}
	if got := ReservedClaims(); !slices.IsSorted(got) || !slices.Contains(got, "may_act") {
		t.Errorf("ReservedClaims() = %v", got)
	}
}

func TestLookupClaim(t *testing.T) {
	m := map[string]any{
		"https://example.com/roles": []any{"a"},
		"realm_access":              map[string]any{"roles": []any{"b"}},
		"flat":                      "c",
	}
	for path, want := range map[string]any{
		"https://example.com/roles": []any{"a"},
		"realm_access.roles":        []any{"b"},
		"flat":                      "c",
		"flat.deeper":               nil,
		"missing":                   nil,
		"":                          nil,
	} {
		if d := cmp.Diff(want, LookupClaim(m, path)); d != "" {
			t.Errorf("LookupClaim(%q) (-want +got):\n%s", path, d)
		}
	}
}
