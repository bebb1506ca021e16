package apikeys

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mcpgate/mcpgate/internal/store"
)

// MaxNameLen is the longest key name, in characters (runes).
const MaxNameLen = 100

// validateIssue checks and normalises an IssueRequest.
func validateIssue(req IssueRequest, now time.Time) (name string, scopeList []string, expiresAt time.Time, kind string, err error) {
	if req.UserID == "" {
		return "", nil, time.Time{}, "", &ValidationError{Field: "user_id", Message: "required"}
	}
	if name, err = normalizeName(req.Name); err != nil {
		return "", nil, time.Time{}, "", err
	}
	if scopeList, err = normalizeScopes(req.Scopes); err != nil {
		return "", nil, time.Time{}, "", err
	}
	if expiresAt, err = normalizeExpiry(req.ExpiresAt, now); err != nil {
		return "", nil, time.Time{}, "", err
	}
	switch req.Kind {
	case "":
		kind = store.KeyKindManual
	case store.KeyKindManual:
		kind = req.Kind
	case store.KeyKindSession:
		// A session key is bound to a browser session and derived from it.
		return "", nil, time.Time{}, "", &ValidationError{Field: "kind", Message: "session keys are created for a browser session (SessionKey), not issued"}
	default:
		return "", nil, time.Time{}, "", &ValidationError{Field: "kind", Message: `must be "manual"`}
	}
	return name, scopeList, expiresAt, kind, nil
}

// normalizeName trims surrounding white space and rejects names that are
// empty, too long, not UTF-8, or hold characters that could disguise what a
// list of keys shows: control characters, line and paragraph separators
// and the bidirectional embedding, override and isolate controls (the
// "Trojan Source" characters).
func normalizeName(raw string) (string, error) {
	if !utf8.ValidString(raw) {
		return "", &ValidationError{Field: "name", Message: "must be valid UTF-8"}
	}
	name := strings.TrimSpace(raw)
	if name == "" {
		return "", &ValidationError{Field: "name", Message: "required"}
	}
	if utf8.RuneCountInString(name) > MaxNameLen {
		return "", &ValidationError{Field: "name", Message: fmt.Sprintf("at most %d characters", MaxNameLen)}
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' ||
			(r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069') {
			return "", &ValidationError{Field: "name", Message: "must not contain control characters"}
		}
	}
	return name, nil
}

// normalizeScopes validates each scope, then sorts and deduplicates them.
// It never returns nil, so an empty list reads the same everywhere.
func normalizeScopes(in []string) ([]string, error) {
	for i, s := range in {
		if !ValidScope(s) {
			// The value itself is not echoed: it may be long or contain
			// characters that are awkward to display.
			return nil, &ValidationError{Field: "scopes", Message: fmt.Sprintf(
				`scope %d is not a scope-token (1 to %d printable ASCII characters, without space, " or \)`, i+1, MaxScopeLen)}
		}
	}
	out := slices.Compact(slices.Sorted(slices.Values(in)))
	if len(out) > MaxScopes {
		return nil, &ValidationError{Field: "scopes", Message: fmt.Sprintf("at most %d distinct scopes", MaxScopes)}
	}
	if out == nil {
		out = []string{}
	}
	return slices.Clip(out), nil
}

// maxExpiry keeps expiry times representable as int64 unix milliseconds and
// in four-digit years everywhere they are shown.
var maxExpiry = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// normalizeExpiry truncates t to milliseconds (the store's precision) and
// requires it to be zero or in the future.
func normalizeExpiry(t, now time.Time) (time.Time, error) {
	if t.IsZero() {
		return time.Time{}, nil
	}
	if t.After(maxExpiry) {
		return time.Time{}, &ValidationError{Field: "expires_at", Message: "too far in the future"}
	}
	// Checked before and after truncation: before, so that times far in
	// the past never reach the int64 conversion.
	if !t.After(now) || !toMillis(t).After(now) {
		return time.Time{}, &ValidationError{Field: "expires_at", Message: "must be in the future"}
	}
	return toMillis(t), nil
}
