package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/mcpgate/mcpgate/internal/httpx"
)

// Stable error codes. Clients branch on these; the message is for people
// and may change. docs/api.md and openapi.json list them.
const (
	codeInvalidRequest     = "invalid_request"         // 400: body or query not understood
	codeInvalidArguments   = "invalid_arguments"       // 400: tool arguments refused (facade)
	codeInvalidCredentials = "invalid_credentials"     // 401: login failed
	codeUnauthorized       = "unauthorized"            // 401: no usable session or key
	codeForbidden          = "forbidden"               // 403: cross-origin, not allowed for this caller
	codeInsufficientScope  = "insufficient_scope"      // 403: the credential lacks a scope
	codeNotFound           = "not_found"               // 404: no such thing (or not yours)
	codeUnknownTool        = "unknown_tool"            // 404: no such tool for this caller
	codeMethodNotAllowed   = "method_not_allowed"      // 405
	codeTooLarge           = "request_too_large"       // 413
	codeUnsupportedMedia   = "unsupported_media_type"  // 415: body is not application/json
	codeRateLimited        = "rate_limited"            // 429
	codeToolError          = "tool_error"              // 200 with isError: the tool ran and failed
	codeServerError        = "server_error"            // 500: a bug (logged)
	codeUpstreamError      = "upstream_error"          // 502: the MCP endpoint failed
	codeUnavailable        = "temporarily_unavailable" // 503: storage unreachable; retry
)

// apiError is the body of every error answer.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"error"`
	Message string `json:"message"`
	// Field names the request field at fault, when there is one.
	Field string `json:"field,omitempty"`
	// RequiredScopes: with insufficient_scope, every scope the call needs.
	RequiredScopes []string `json:"required_scopes,omitempty"`
	// RetryAfter: with rate_limited, seconds to wait (also in Retry-After).
	RetryAfter int `json:"retry_after,omitempty"`
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func badField(field, format string, args ...any) *apiError {
	e := errorf(http.StatusBadRequest, codeInvalidRequest, format, args...)
	e.Field = field
	return e
}

// writeError answers with e. Error answers are never cached.
func writeError(w http.ResponseWriter, e *apiError) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	httpx.WriteJSON(w, e.Status, e)
}

// writeJSON answers a success. API answers carry account data or secrets:
// never cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, status, v)
}

// Body limits. The facade's bound matches the MCP endpoint's default.
const (
	maxBody     = 64 << 10 // account and login bodies
	maxToolBody = 1 << 20  // /api/mcp/tools/call
)

// decodeJSON reads the request body into v: application/json, at most max
// bytes, exactly one JSON value, no unknown fields. The error says which
// rule was broken, in words a client developer can act on.
func decodeJSON(r *http.Request, max int64, v any) *apiError {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || mt != "application/json" {
		return errorf(http.StatusUnsupportedMediaType, codeUnsupportedMedia, "send the body as JSON with Content-Type: application/json")
	}
	if r.ContentLength > max {
		return errorf(http.StatusRequestEntityTooLarge, codeTooLarge, "request body exceeds %d bytes", max)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errorf(http.StatusRequestEntityTooLarge, codeTooLarge, "request body exceeds %d bytes", mbe.Limit)
		}
		return errorf(http.StatusBadRequest, codeInvalidRequest, "the request body could not be read")
	}
	if int64(len(body)) > max {
		return errorf(http.StatusRequestEntityTooLarge, codeTooLarge, "request body exceeds %d bytes", max)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return errorf(http.StatusBadRequest, codeInvalidRequest, "the request body is empty; send a JSON object")
	}
	if t := firstToken(body); t != '{' {
		return errorf(http.StatusBadRequest, codeInvalidRequest, "the request body must be a JSON object")
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errorf(http.StatusBadRequest, codeInvalidRequest, "the request body must hold exactly one JSON object")
	}
	return nil
}

func firstToken(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c
	}
	return 0
}

// jsonError turns a decoding error into a readable 400.
func jsonError(err error) *apiError {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn), errors.Is(err, io.ErrUnexpectedEOF):
		return errorf(http.StatusBadRequest, codeInvalidRequest, "the request body is not valid JSON")
	case errors.As(err, &typ):
		if typ.Field == "" {
			return errorf(http.StatusBadRequest, codeInvalidRequest, "the request body must be a JSON object")
		}
		return badField(typ.Field, "field %q must be %s", typ.Field, jsonKind(typ.Type.Kind().String()))
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name, _ = strconv.Unquote(name)
		if len(name) > 64 {
			name = name[:64] + "…"
		}
		return badField(name, "unknown field %q", name)
	}
	return errorf(http.StatusBadRequest, codeInvalidRequest, "the request body is not valid JSON")
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	case "int", "int64", "int32", "uint", "uint64", "float64":
		return "a number"
	case "bool":
		return "true or false"
	case "map", "struct", "ptr":
		return "an object"
	}
	return "of another type"
}
