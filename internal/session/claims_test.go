package session

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestClaimValue(t *testing.T) {
	ok := []struct {
		in, want any
	}{
		{"org_1", "org_1"},
		{json.Number("42"), json.Number("42")},
		{float64(42), float64(42)}, // an ID token's number, as encoding/json decodes it
		{true, true},
		{[]any{"a", "b"}, []string{"a", "b"}},
		{[]string{"a"}, []string{"a"}},
		{strings.Repeat("x", MaxClaimBytes-2), strings.Repeat("x", MaxClaimBytes-2)}, // 1 KiB with its quotes
	}
	for _, tc := range ok {
		got, err := ClaimValue(tc.in)
		if err != nil || !cmp.Equal(got, tc.want) {
			t.Errorf("ClaimValue(%v) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	bad := map[string]any{
		"too long":        strings.Repeat("x", MaxClaimBytes-1),
		"long array":      []any{strings.Repeat("x", 600), strings.Repeat("y", 600)},
		"object":          map[string]any{"a": "b"},
		"mixed array":     []any{"a", 1.0},
		"nested array":    []any{[]any{"a"}},
		"NUL":             "a\x00b",
		"invalid UTF-8":   "\xff",
		"NUL in an array": []string{"a\x00"},
		"NaN":             math.NaN(),
		"null":            nil,
	}
	for name, v := range bad {
		if got, err := ClaimValue(v); err == nil {
			t.Errorf("%s: ClaimValue accepted %v", name, got)
		}
	}
	for _, name := range []string{"", strings.Repeat("n", MaxClaimName+1), "a\x00"} {
		if ClaimName(name) == nil {
			t.Errorf("ClaimName(%q) accepted", name)
		}
	}
	if err := ClaimName("organization_id"); err != nil {
		t.Errorf("ClaimName(organization_id): %v", err)
	}
}
