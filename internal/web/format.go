package web

import (
	"fmt"
	"html/template"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/authn"
	"github.com/mcpgate/mcpgate/internal/customauth"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

func templateFuncs(st *staticFiles) template.FuncMap {
	return template.FuncMap{
		"static":     st.URL,
		"ago":        func(t time.Time) string { return ago(t, time.Now()) },
		"until":      func(t time.Time) string { return until(t, time.Now()) },
		"date":       fullDate,
		"iso":        func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"device":     Device,
		"eventLabel": eventLabel,
		"reason":     reasonLabel,
		"details":    detailPairs,
		"join":       strings.Join,
		"has":        func(list []string, s string) bool { return slices.Contains(list, s) },
		"initial":    initial,
		"plural":     plural,
	}
}

// fullDate is an unambiguous absolute time: "2 Mar 2026, 14:05 UTC".
func fullDate(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2 Jan 2006, 15:04 UTC")
}

// ago says how long before now t was: "just now", "5 min ago", "3 h ago",
// "4 days ago", then the date.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + " min ago"
	case d < 24*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + " h ago"
	case d < 48*time.Hour:
		return "yesterday"
	case d < 30*24*time.Hour:
		return strconv.Itoa(int(d/(24*time.Hour))) + " days ago"
	}
	return t.UTC().Format("2 Jan 2006")
}

// until says how long after now t is: "in 29 days", "in 3 h"; "never"
// for a zero time and "expired" for a past one.
func until(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := t.Sub(now)
	switch {
	case d <= 0:
		return "expired"
	case d < time.Hour:
		return "in " + strconv.Itoa(max(1, int(d/time.Minute))) + " min"
	case d < 48*time.Hour:
		return "in " + strconv.Itoa(int(d/time.Hour)) + " h"
	case d < 400*24*time.Hour:
		return "in " + strconv.Itoa(int(d/(24*time.Hour))) + " days"
	}
	return t.UTC().Format("2 Jan 2006")
}

// initial is the letter of the avatar in the header.
func initial(u *store.User) string {
	s := u.DisplayName
	if s == "" {
		s = u.Email
	}
	for _, r := range s {
		return strings.ToUpper(string(r))
	}
	return "?"
}

// Device summarises a User-Agent header for people: "Chrome on macOS",
// "Firefox on Windows", "curl". The raw header is shown on hover.
func Device(ua string) string {
	ua = strings.TrimSpace(ua)
	if ua == "" {
		return "Unknown device"
	}
	browser := ""
	switch {
	case strings.Contains(ua, "Edg/") || strings.Contains(ua, "EdgA/") || strings.Contains(ua, "EdgiOS/"):
		browser = "Edge"
	case strings.Contains(ua, "OPR/"):
		browser = "Opera"
	case strings.Contains(ua, "HeadlessChrome/"):
		browser = "Headless Chrome"
	case strings.Contains(ua, "Firefox/") || strings.Contains(ua, "FxiOS/"):
		browser = "Firefox"
	case strings.Contains(ua, "Chrome/") || strings.Contains(ua, "CriOS/"):
		browser = "Chrome"
	case strings.Contains(ua, "Safari/") && strings.Contains(ua, "Version/"):
		browser = "Safari"
	}
	os := ""
	switch {
	case strings.Contains(ua, "iPhone"):
		os = "iPhone"
	case strings.Contains(ua, "iPad"):
		os = "iPad"
	case strings.Contains(ua, "Android"):
		os = "Android"
	case strings.Contains(ua, "Windows"):
		os = "Windows"
	case strings.Contains(ua, "CrOS"):
		os = "ChromeOS"
	case strings.Contains(ua, "Macintosh") || strings.Contains(ua, "Mac OS X"):
		os = "macOS"
	case strings.Contains(ua, "Linux"):
		os = "Linux"
	}
	switch {
	case browser != "" && os != "":
		return browser + " on " + os
	case browser != "":
		return browser
	}
	// A program: its first product token, without the version ("curl",
	// "Go-http-client", "node").
	prod, _, _ := strings.Cut(ua, " ")
	prod, _, _ = strings.Cut(prod, "/")
	prod = truncate(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, prod), 40)
	if prod == "" || prod == "Mozilla" {
		if os != "" {
			return "Browser on " + os
		}
		return "Unknown device"
	}
	return prod
}

// eventTypes are the audit event types people can filter by, with their
// labels, in the order the filter lists them (the authorization server's
// follow, apps.go), so that no event is shown by its raw type alone.
var eventTypes = []struct{ Type, Label string }{
	{audit.TypeLoginSucceeded, "Signed in"},
	{upstream.TypeLogin, "Signed in through a provider"},
	{customauth.TypeCompleted, "Signed in through the custom login"},
	{audit.TypeLoginFailed, "Sign-in failed"},
	{customauth.TypeCreated, "Custom login started"},
	{customauth.TypeRefused, "Custom login refused"},
	{audit.TypeLogout, "Signed out"},
	{audit.TypeSessionCreated, "Session started"},
	{audit.TypeSessionRevoked, "Session ended"},
	{audit.TypeSessionExpired, "Session expired"},
	{audit.TypeKeyCreated, "API key created"},
	{audit.TypeKeyRevoked, "API key revoked"},
	{audit.TypeUserPassword, "Password changed"},
	{audit.TypeUserCreated, "User created"},
	{identity.TypeUserProvisioned, "Account created from an external identity"},
	{identity.TypeIdentityLinked, "External identity linked"},
	{audit.TypeUserDisabled, "User disabled"},
	{audit.TypeUserEnabled, "User enabled"},
	{audit.TypeUserRoles, "Roles changed"},
	{audit.TypeToolCalled, "Tool called"},
	{audit.TypeToolDenied, "Tool call refused"},
	{audit.TypeAuthRejected, "Credential refused"},
	{authn.TypeExternalAccepted, "External token accepted"},
	{audit.TypeSessionRefused, "MCP session refused"},
}

func knownEventType(t string) bool {
	for _, e := range eventTypes {
		if e.Type == t {
			return true
		}
	}
	return false
}

func eventLabel(t string) string {
	for _, e := range eventTypes {
		if e.Type == t {
			return e.Label
		}
	}
	return t
}

var reasonLabels = map[string]string{
	audit.ReasonMissing:         "no credential",
	audit.ReasonMalformed:       "malformed credential",
	audit.ReasonUnknown:         "unknown credential",
	audit.ReasonRevoked:         "revoked credential",
	audit.ReasonExpired:         "expired credential",
	audit.ReasonDisabledUser:    "user disabled",
	audit.ReasonOrigin:          "origin not allowed",
	audit.ReasonQueryCredential: "credential in URL",
	audit.ReasonAmbiguous:       "several credentials",
	audit.ReasonMissingScopes:   "missing scopes",
	audit.ReasonMissingRoles:    "missing roles",
	audit.ReasonSessionOwner:    "session of another user",
	audit.ReasonUnknownUser:     "unknown email",
	audit.ReasonBadPassword:     "wrong password",
	audit.ReasonRateLimited:     "too many attempts",
	audit.ReasonInvalidInput:    "invalid input",
	audit.ReasonCSRF:            "cross-site request",
	audit.ReasonInvalidSession:  "invalid session",
}

// sessionReasons explain why a session (and its key) ended.
var sessionReasons = map[string]string{
	"revoked":             "signed out from the sessions page",
	"revoked_others":      "signed out from another session",
	"replaced_by_login":   "replaced by a new sign-in",
	"password_changed":    "password changed",
	"password_reset":      "password reset by an administrator",
	"user_disabled":       "user disabled",
	"credentials_changed": "credentials changed",
	"idle":                "idle timeout",
	"lifetime":            "lifetime reached",
}

// reasonLabel says in words why an event had its outcome.
func reasonLabel(eventType, r string) string {
	if strings.HasPrefix(eventType, "session.") || eventType == audit.TypeLogout {
		if l, ok := sessionReasons[r]; ok {
			return l
		}
	}
	if l, ok := reasonLabels[r]; ok {
		return l
	}
	return strings.ReplaceAll(r, "_", " ")
}

// detail is one key/value of an audit event's details, ready to show.
type detail struct{ Key, Value string }

// detailPairs flattens an event's details into sorted, bounded strings.
// The actor is left out when it is the event's own user (the usual case);
// names maps user ids to emails where the page knows them.
func detailPairs(e store.AuditEvent, names map[string]string) []detail {
	var out []detail
	keys := make([]string, 0, len(e.Details))
	for k := range e.Details {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := e.Details[k]
		if k == "actor" {
			s, _ := v.(string)
			if s == e.UserID {
				continue
			}
			if email, ok := names[s]; ok {
				v = email
			}
		}
		if k == "email" && names != nil {
			continue // shown in the user column
		}
		out = append(out, detail{Key: strings.ReplaceAll(k, "_", " "), Value: truncate(formatValue(v), 160)})
		if len(out) == 12 {
			break
		}
	}
	return out
}

func formatValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "—"
	case string:
		if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
			return fullDate(t)
		}
		return x
	case []any:
		parts := make([]string, 0, len(x))
		for _, p := range x {
			parts = append(parts, formatValue(p))
		}
		if len(parts) == 0 {
			return "none"
		}
		return strings.Join(parts, ", ")
	case []string:
		if len(x) == 0 {
			return "none"
		}
		return strings.Join(x, ", ")
	case bool:
		if x {
			return "yes"
		}
		return "no"
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case map[string]any:
		return fmt.Sprintf("%d fields", len(x))
	}
	return fmt.Sprint(v)
}
