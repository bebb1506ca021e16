// Package httpx holds the small HTTP helpers every handler shares: JSON and
// OAuth error writers, RFC 6750 challenges, request metadata (client IP, user
// agent) in the context, security headers, body limits and the request log.
package httpx

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
)

// WriteJSON writes v as a JSON response with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v)
}

// OAuthError is the error body of RFC 6749 §5.2, also used by RFC 6750 and
// RFC 7591 responses.
type OAuthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// WriteOAuthError writes an RFC 6749 §5.2 error body. Responses that carry
// authentication outcomes must not be cached (RFC 6749 §5.1).
func WriteOAuthError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Cache-Control", "no-store")
	WriteJSON(w, status, OAuthError{Error: code, Description: description})
}

// Challenge is a Bearer WWW-Authenticate challenge (RFC 6750 §3, with the
// resource_metadata parameter of RFC 9728 §5.1).
type Challenge struct {
	Error            string // "", "invalid_token", "insufficient_scope", "invalid_request"
	Description      string
	Scope            string // space-separated
	ResourceMetadata string // URL of the protected-resource metadata
}

// String renders the challenge. Parameter values are quoted-strings
// (RFC 9110 §5.6.4): backslash and double quote are escaped, and control
// characters, which a quoted-string cannot hold, are dropped.
func (c Challenge) String() string {
	var b strings.Builder
	b.WriteString("Bearer")
	sep := " "
	add := func(name, value string) {
		if value == "" {
			return
		}
		b.WriteString(sep)
		b.WriteString(name)
		b.WriteString(`="`)
		b.WriteString(quote(value))
		b.WriteString(`"`)
		sep = ", "
	}
	add("error", c.Error)
	add("error_description", c.Description)
	add("scope", c.Scope)
	add("resource_metadata", c.ResourceMetadata)
	return b.String()
}

func quote(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			// not representable in a quoted-string
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// WriteChallenge answers with status, the challenge in WWW-Authenticate and,
// when the challenge has an error code, the same error as a JSON body so
// clients that read bodies get a readable reason too.
func WriteChallenge(w http.ResponseWriter, status int, c Challenge) {
	w.Header().Set("WWW-Authenticate", c.String())
	w.Header().Set("Cache-Control", "no-store")
	if c.Error == "" {
		WriteJSON(w, status, OAuthError{Error: "unauthorized", Description: orDefault(c.Description, "authentication required")})
		return
	}
	WriteJSON(w, status, OAuthError{Error: c.Error, Description: c.Description})
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// RequestInfo is what the audit log and the request log need to know about
// the request that caused an event.
type RequestInfo struct {
	ClientIP  string
	UserAgent string
	RequestID string
}

type infoKey struct{}

// WithInfo returns ctx carrying info.
func WithInfo(ctx context.Context, info RequestInfo) context.Context {
	return context.WithValue(ctx, infoKey{}, info)
}

// InfoFrom returns the request info in ctx (zero when there is none, e.g. for
// events raised by the CLI).
func InfoFrom(ctx context.Context) RequestInfo {
	info, _ := ctx.Value(infoKey{}).(RequestInfo)
	return info
}

// ClientIP is the peer address of the connection. Forwarded headers are not
// read: a client could write any address into them (ClientIPBehind reads
// them from proxies the operator trusts).
func ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// maxUserAgent bounds what we keep of a User-Agent header.
const maxUserAgent = 256

// UserAgent returns the (truncated) User-Agent header.
func UserAgent(r *http.Request) string {
	ua := r.Header.Get("User-Agent")
	if len(ua) > maxUserAgent {
		ua = ua[:maxUserAgent]
	}
	return strings.ToValidUTF8(ua, "")
}
