package principal

import (
	"slices"
	"testing"
)

func TestRoles(t *testing.T) {
	p := &Principal{Roles: []string{"admin", "auditor"}}
	if !p.HasRole("auditor") || p.HasRole("Auditor") || p.HasRole("") {
		t.Error("HasRole: roles compare exactly")
	}
	if got := p.MissingRoles([]string{"auditor", "ops", "admin", "billing"}); !slices.Equal(got, []string{"ops", "billing"}) {
		t.Errorf("MissingRoles = %v", got)
	}
	if got := p.MissingRoles(nil); got != nil {
		t.Errorf("MissingRoles(nil) = %v", got)
	}
	var none *Principal
	if none.HasRole("auditor") || !slices.Equal(none.MissingRoles([]string{"auditor"}), []string{"auditor"}) {
		t.Error("a nil principal holds no role")
	}
}

func TestClaimString(t *testing.T) {
	p := &Principal{Claims: map[string]any{
		"organization_id": "org_42",
		"empty":           "",
		"number":          float64(42),
		"list":            []any{"org_1"},
		"object":          map[string]any{"id": "org_1"},
	}}
	if got, ok := p.ClaimString("organization_id"); !ok || got != "org_42" {
		t.Errorf("ClaimString(organization_id) = %q, %v", got, ok)
	}
	for _, name := range []string{"empty", "number", "list", "object", "missing"} {
		if got, ok := p.ClaimString(name); ok || got != "" {
			t.Errorf("ClaimString(%s) = %q, %v; want nothing", name, got, ok)
		}
	}
	var none *Principal
	if _, ok := none.ClaimString("organization_id"); ok {
		t.Error("nil principal has a claim")
	}
	if _, ok := (&Principal{}).ClaimString("organization_id"); ok {
		t.Error("principal without claims has a claim")
	}
}
