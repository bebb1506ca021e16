package mcpserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/store"
)

// CodeInsufficientScope is the JSON-RPC error code of a tools/call refused
// for missing scopes or roles (an implementation-defined server error,
// JSON-RPC 2.0 §5.1; the SDK's own codes are -32002 and -32020…-32042).
// data.error tells the two apart: "insufficient_scope" (data.missing,
// data.required: scopes) or "missing_roles" (data.missing_roles,
// data.required_roles).
const CodeInsufficientScope = -32003

// CodeForbidden is CodeInsufficientScope under the name used for refusals
// by role: the same code, with data.error "missing_roles".
const CodeForbidden = CodeInsufficientScope

// errMissingRoles is data.error (and the JSON error of a non-JSON-RPC
// refusal body) of a tools/call refused for missing roles.
const errMissingRoles = "missing_roles"

// Policy inspects the JSON-RPC messages of an MCP request before any server
// sees them and refuses tool calls the caller has no scopes or roles for. It
// is the HTTP-level half of per-tool authorization, shared by the built-in
// endpoint and the gateway's upstream servers.
type Policy struct {
	// ToolScopes returns the scopes a tool needs and whether the tool is
	// known. Calls to unknown tools pass: the server answers them.
	ToolScopes func(tool string) (scopes []string, known bool)
	// ToolRoles returns the roles a tool needs (principal.Roles); nil means
	// no tool needs a role.
	ToolRoles func(tool string) (roles []string, known bool)
	// ResourceMetadataURL goes into the challenge (RFC 9728 §5.1).
	ResourceMetadataURL string
	// ResourceURL is the protected resource, recorded in audit events.
	ResourceURL string
	Audit       audit.Recorder
}

// Decision is what Decide found in one request body.
type Decision struct {
	// Parsed is false when the body is not, strictly, one JSON-RPC message
	// or a non-empty batch of them. Such a body must not be forwarded: a
	// server's more lenient parser (the SDK's decoder ignores trailing data,
	// for one) could find a tools/call in it that the policy never saw.
	// Answer it with WriteParseError.
	Parsed  bool
	Batch   bool
	Methods []string   // method of every request/notification, in order
	Calls   []ToolCall // every tools/call, in order
	// Invalid, when set, says why a well-formed body is still refused
	// (a batch over MaxBatch, a tools/call without a string name). It must
	// not be forwarded either.
	Invalid string
}

// ToolCall is one tools/call found in a request.
type ToolCall struct {
	ID       json.RawMessage // JSON-RPC id; nil for a (malformed) notification
	Name     string
	Known    bool
	Required []string // scopes the tool needs
	Missing  []string // of those, the ones the caller lacks

	RequiredRoles []string // roles the tool needs
	MissingRoles  []string // of those, the ones the caller lacks
}

// Refused reports whether the caller lacks a scope or a role for the call.
func (c ToolCall) Refused() bool { return len(c.Missing) > 0 || len(c.MissingRoles) > 0 }

// Allowed reports whether the body parsed and no call in it lacks scopes or
// roles.
func (d Decision) Allowed() bool {
	if !d.Parsed || d.Invalid != "" {
		return false
	}
	for _, c := range d.Calls {
		if c.Refused() {
			return false
		}
	}
	return true
}

// Has reports whether the request holds a message with the given method.
func (d Decision) Has(method string) bool { return slices.Contains(d.Methods, method) }

// wireMessage is the part of a JSON-RPC message the policy reads. Messages
// are decoded into maps, not structs, on purpose: encoding/json matches
// struct fields case-insensitively, the SDK's decoder does not, and a
// differential would let {"name":"transfer","NAME":"getBalance"} be checked
// as one tool and run as another. A map matches keys exactly; duplicate keys
// never reach it (httpx.CheckJSON refuses them first).
type wireMessage = map[string]json.RawMessage

// Decide parses body as a JSON-RPC message or batch and checks every
// tools/call against p's scopes and roles. A nil p lacks every scope and
// role. Parsing is strict (encoding/json, no trailing data): anything it
// rejects yields a Decision with Parsed false.
func (pol *Policy) Decide(p *principal.Principal, body []byte) Decision {
	var d Decision
	// Duplicate object keys are refused outright: decoders disagree on which
	// duplicate wins (and on whether null overrides), so a body with
	// {"name":"transfer","name":null} could be checked as one tool here and
	// run as another by the server behind us (a parser differential).
	if err := httpx.CheckJSON(body); err != nil {
		return d
	}
	var raws []json.RawMessage
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		if err := json.Unmarshal(body, &raws); err != nil || len(raws) == 0 {
			return d
		}
		d.Batch = true
		if len(raws) > MaxBatch {
			d.Parsed = true
			d.Invalid = fmt.Sprintf("batch of %d messages: at most %d are accepted in one request", len(raws), MaxBatch)
			return d
		}
	} else {
		raws = []json.RawMessage{body}
	}
	msgs := make([]wireMessage, 0, len(raws))
	for _, r := range raws {
		var m wireMessage
		if err := json.Unmarshal(r, &m); err != nil || m == nil {
			return Decision{}
		}
		msgs = append(msgs, m)
	}
	for _, m := range msgs {
		raw, ok := m["method"]
		if !ok {
			continue // a response to a server-to-client request
		}
		var method string
		if json.Unmarshal(raw, &method) != nil {
			return Decision{}
		}
		d.Methods = append(d.Methods, method)
		if method != "tools/call" {
			continue
		}
		name, ok := toolName(m["params"])
		if !ok {
			d.Parsed = true
			d.Invalid = "tools/call needs params.name: a non-empty string"
			return d
		}
		call := ToolCall{ID: m["id"], Name: name}
		if pol.ToolScopes != nil {
			call.Required, call.Known = pol.ToolScopes(call.Name)
		}
		call.Missing = p.MissingScopes(call.Required)
		if pol.ToolRoles != nil {
			call.RequiredRoles, _ = pol.ToolRoles(call.Name)
		}
		call.MissingRoles = p.MissingRoles(call.RequiredRoles)
		d.Calls = append(d.Calls, call)
	}
	d.Parsed = true
	return d
}

// MaxBatch bounds the messages of one JSON-RPC batch (protocol 2025-03-26):
// without a bound one request could run thousands of tools.
const MaxBatch = 20

// WriteParseError answers a body that is not JSON-RPC (JSON-RPC 2.0 §5.1:
// -32700 Parse error, with a null id since none could be read).
func WriteParseError(w http.ResponseWriter) {
	httpx.WriteJSON(w, http.StatusBadRequest, rpcErrorResponse{
		JSONRPC: "2.0",
		ID:      json.RawMessage("null"),
		Error:   rpcError{Code: -32700, Message: "parse error: the body is not a JSON-RPC message or batch"},
	})
}

// Enforce is the whole policy for one POST: it reads the body (at most max
// bytes, see ReadBody), decides, and answers a request that must not go on
// (413, 400 parse error, 403 insufficient_scope or missing_roles). With ok
// true, r.Body holds the body again and d describes it.
func (pol *Policy) Enforce(w http.ResponseWriter, r *http.Request, p *principal.Principal, max int64) (d Decision, ok bool) {
	body, ok := ReadBody(w, r, max)
	if !ok {
		return Decision{}, false
	}
	d = pol.Decide(p, body)
	switch {
	case !d.Parsed:
		WriteParseError(w)
		return d, false
	case d.Invalid != "":
		// JSON-RPC 2.0 §5.1: -32600 Invalid Request.
		httpx.WriteJSON(w, http.StatusBadRequest, rpcErrorResponse{JSONRPC: "2.0", ID: json.RawMessage("null"),
			Error: rpcError{Code: -32600, Message: "invalid request: " + d.Invalid}})
		return d, false
	case !d.Allowed():
		pol.Refuse(w, r, p, d)
		return d, false
	}
	return d, true
}

// toolName reads params.name, which must be a non-empty string.
func toolName(params json.RawMessage) (string, bool) {
	var m wireMessage
	if json.Unmarshal(params, &m) != nil {
		return "", false
	}
	var name string
	if json.Unmarshal(m["name"], &name) != nil || name == "" {
		return "", false
	}
	return name, true
}

// Refuse answers a parsed request whose Decision is not Allowed, before any
// tool runs, with 403 and one tool.denied audit event per refused call
// (reason missing_roles when the call lacks a role, missing_scopes
// otherwise).
//
// When a refused call lacks a role, refuseRoles answers (no challenge): a
// role cannot be obtained by re-authorizing, so an insufficient_scope
// challenge would only send an OAuth client into a step-up loop. Otherwise
// the answer is an RFC 6750 §3.1 insufficient_scope challenge.
//
// RFC 6750 §3.1: "insufficient_scope: The request requires higher
// privileges than provided by the access token. The resource server SHOULD
// respond with the HTTP 403 (Forbidden) status code and MAY include the
// "scope" attribute with the scope necessary to access the protected
// resource." The scope attribute lists every scope the request needs, not
// only the missing ones, so a client stepping up asks for a token that can
// make the whole call (MCP authorization, "Scope challenge handling").
//
// A batch (protocol 2025-03-26) is refused as a whole when any call in it
// is refused: running the allowed part would leave the caller with a
// half-executed batch and a response that cannot carry both an HTTP 403 and
// the other results.
//
// The body is a JSON-RPC error response when the request is one call with an
// id: MCP clients then fail just that call and keep their session (the Go
// SDK closes a session on a non-JSON-RPC error body). Otherwise it is the
// RFC 6750 JSON error body.
func (pol *Policy) Refuse(w http.ResponseWriter, r *http.Request, p *principal.Principal, d Decision) {
	var required []string
	var refused []ToolCall
	roleRefused := -1 // index in refused of the first call that lacks a role
	for _, c := range d.Calls {
		for _, s := range c.Required {
			if !slices.Contains(required, s) {
				required = append(required, s)
			}
		}
		if c.Refused() {
			refused = append(refused, c)
			if len(c.MissingRoles) > 0 && roleRefused < 0 {
				roleRefused = len(refused) - 1
			}
		}
	}
	for _, c := range refused {
		e := audit.Event{
			Type:     audit.TypeToolDenied,
			Outcome:  store.OutcomeDeny,
			Reason:   audit.ReasonMissingScopes,
			Tool:     c.Name,
			Resource: pol.ResourceURL,
			Details:  map[string]any{"missing": c.Missing, "required": c.Required},
		}
		if len(c.MissingRoles) > 0 {
			e.Reason = audit.ReasonMissingRoles
			e.Details = map[string]any{"missing_roles": c.MissingRoles, "required_roles": c.RequiredRoles}
			if len(c.Missing) > 0 {
				e.Details["missing"], e.Details["required"] = c.Missing, c.Required
			}
		}
		if p != nil {
			e.UserID, e.CredentialID = p.UserID, p.CredentialID
		}
		if d.Batch {
			e.Details["batch"] = true
		}
		if pol.Audit != nil {
			pol.Audit.Record(r.Context(), e)
		}
	}

	if len(refused) == 0 {
		WriteParseError(w) // misuse: nothing to refuse; fail closed anyway
		return
	}
	if roleRefused >= 0 {
		refuseRoles(w, d, refused[roleRefused])
		return
	}
	first := refused[0]
	description := fmt.Sprintf("tool %s requires scope %s", first.Name, strings.Join(first.Required, " "))
	if len(refused) > 1 {
		description = fmt.Sprintf("%d tool calls in this batch lack scopes; the batch requires scope %s", len(refused), strings.Join(required, " "))
	}
	challenge := httpx.Challenge{
		Error:            "insufficient_scope",
		Description:      description,
		Scope:            strings.Join(required, " "),
		ResourceMetadata: pol.ResourceMetadataURL,
	}
	if d.Batch || len(d.Calls) != 1 || !validID(first.ID) {
		httpx.WriteChallenge(w, http.StatusForbidden, challenge)
		return
	}
	w.Header().Set("WWW-Authenticate", challenge.String())
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, http.StatusForbidden, rpcErrorResponse{
		JSONRPC: "2.0",
		ID:      first.ID,
		Error: rpcError{
			Code:    CodeInsufficientScope,
			Message: "insufficient_scope: " + description,
			Data: map[string]any{
				"error":    "insufficient_scope",
				"required": first.Required,
				"missing":  first.Missing,
			},
		},
	})
}

// refuseRoles answers a request refused because call lacks roles: 403
// without a WWW-Authenticate challenge. A single call with an id gets a
// JSON-RPC error (CodeForbidden, data.error "missing_roles"); anything else
// the JSON body {"error":"missing_roles","error_description":…,
// "missing_roles":[…]}.
func refuseRoles(w http.ResponseWriter, d Decision, call ToolCall) {
	w.Header().Set("Cache-Control", "no-store")
	description := rolesDescription(call.Name, call.RequiredRoles)
	if d.Batch || len(d.Calls) != 1 || !validID(call.ID) {
		httpx.WriteJSON(w, http.StatusForbidden, map[string]any{
			"error":             errMissingRoles,
			"error_description": description,
			"missing_roles":     call.MissingRoles,
		})
		return
	}
	httpx.WriteJSON(w, http.StatusForbidden, rpcErrorResponse{
		JSONRPC: "2.0",
		ID:      call.ID,
		Error: rpcError{
			Code:    CodeForbidden,
			Message: errMissingRoles + ": " + description,
			Data:    rolesData(call.MissingRoles, call.RequiredRoles),
		},
	})
}

// rolesDescription says which roles a tool needs, for the policy's
// refusals (like the scope challenge's "tool X requires scope …").
func rolesDescription(tool string, roles []string) string {
	return fmt.Sprintf("tool %s requires %s", tool, roleList(roles))
}

// rolesMessage is the message of the two later checks' role refusals (like
// their "insufficient scope: tool "X" requires scope …").
func rolesMessage(tool string, roles []string) string {
	return fmt.Sprintf("missing roles: tool %q requires %s", tool, roleList(roles))
}

func roleList(roles []string) string {
	if len(roles) == 1 {
		return "role " + roles[0]
	}
	return "roles " + strings.Join(roles, " ")
}

// rolesData is the data of a JSON-RPC role refusal. It has no "required"
// member: clients read that one as the scopes to step up to.
func rolesData(missing, required []string) map[string]any {
	return map[string]any{"error": errMissingRoles, "missing_roles": missing, "required_roles": required}
}

type rpcErrorResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   rpcError        `json:"error"`
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

// validID reports whether raw is a JSON-RPC id we can echo: a string or a
// number (JSON-RPC 2.0 §4).
func validID(raw json.RawMessage) bool {
	if len(raw) == 0 {
		return false
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return false
	}
	switch v.(type) {
	case string, float64:
		return true
	}
	return false
}

// ReadBody reads the whole request body, at most max bytes, and puts it
// back so the next handler can read it again. When the body is too large it
// answers 413, when it cannot be read 400, and returns ok=false.
func ReadBody(w http.ResponseWriter, r *http.Request, max int64) (body []byte, ok bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, true
	}
	if r.ContentLength > max {
		writeTooLarge(w, max)
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	_ = r.Body.Close()
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeTooLarge(w, min(max, mbe.Limit))
			return nil, false
		}
		httpx.WriteOAuthError(w, http.StatusBadRequest, "invalid_request", "the request body could not be read")
		return nil, false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return body, true
}

func writeTooLarge(w http.ResponseWriter, max int64) {
	httpx.WriteJSON(w, http.StatusRequestEntityTooLarge, httpx.OAuthError{
		Error:       "request_too_large",
		Description: fmt.Sprintf("request body exceeds %d bytes", max),
	})
}
