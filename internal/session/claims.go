package session

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// Limits on the custom claims a login source may keep with a session
// (bring-your-own-login posts them; an upstream identity provider's kept
// claims and roles mapping produce them). They bound what every later
// request, and every access token copying them, carries.
const (
	MaxClaims     = 32      // custom claims per session
	MaxClaimBytes = 1 << 10 // JSON encoding of one claim's value
	MaxClaimName  = 64      // bytes of a claim name
)

// ClaimValue checks one custom claim value and returns it in the form the
// session keeps: a string, a number (json.Number, or a finite float64 as
// encoding/json decodes one), a boolean, or an array of strings ([]any as
// decoded, or []string), whose JSON form is at most MaxClaimBytes. Text
// must be valid UTF-8 without NUL.
func ClaimValue(v any) (any, error) {
	switch v := v.(type) {
	case json.Number, bool:
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, errors.New("must be a finite number")
		}
	case string:
		if !claimText(v) {
			return nil, errors.New("must be valid text")
		}
	case []string:
		return stringArray(v)
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, errors.New("arrays may hold strings only")
			}
			out = append(out, s)
		}
		return stringArray(out)
	default:
		return nil, errors.New("must be a string, number, boolean or array of strings")
	}
	if b, _ := json.Marshal(v); len(b) > MaxClaimBytes {
		return nil, fmt.Errorf("is longer than %d bytes", MaxClaimBytes)
	}
	return v, nil
}

func stringArray(list []string) (any, error) {
	for _, s := range list {
		if !claimText(s) {
			return nil, errors.New("arrays may hold strings only")
		}
	}
	if b, _ := json.Marshal(list); len(b) > MaxClaimBytes {
		return nil, fmt.Errorf("is longer than %d bytes", MaxClaimBytes)
	}
	return list, nil
}

// ClaimName checks a custom claim's name: 1 to MaxClaimName bytes of
// valid UTF-8 without NUL.
func ClaimName(name string) error {
	if name == "" || len(name) > MaxClaimName || !claimText(name) {
		return fmt.Errorf("claim names must be 1 to %d bytes of text", MaxClaimName)
	}
	return nil
}

func claimText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }
