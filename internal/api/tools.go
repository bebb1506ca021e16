package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/mcpserver"
)

// The tools facade: GET /api/mcp/tools and POST /api/mcp/tools/call let a
// web application call MCP tools as its user with plain JSON. Behind them
// is a real MCP client (go-sdk, Streamable HTTP, the stateless 2026-07-28
// protocol) talking to mcpgate's own /mcp handler chain in-process (see
// inProcess), authenticated with the caller's credential: the API key or
// bearer token the caller sent, or, for a browser session, the session's
// MCP key (apikeys.Service.SessionKey). Every authentication rule, policy,
// scope check and audit event of /mcp applies unchanged.

// maxToolName bounds a tool name (in characters).
const maxToolName = 128

// facadeTimeout bounds one facade request end to end.
const facadeTimeout = 60 * time.Second

type toolJSON struct {
	Name        string               `json:"name"`
	Title       string               `json:"title,omitempty"`
	Description string               `json:"description,omitempty"`
	InputSchema any                  `json:"inputSchema"`
	Annotations *mcp.ToolAnnotations `json:"annotations,omitempty"`
}

type callRequest struct {
	Name      *string         `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

type callResponse struct {
	Content           []mcp.Content `json:"content"`
	StructuredContent any           `json:"structuredContent,omitempty"`
	IsError           bool          `json:"isError"`
	// Error is "tool_error" when IsError: the tool ran and reported a
	// failure, described in Content. It lets clients check one field for
	// every kind of failure.
	Error string `json:"error,omitempty"`
}

// listTools serves GET /api/mcp/tools.
func (a *API) listTools(w http.ResponseWriter, r *http.Request, cred http.Header) {
	ctx, cancel := context.WithTimeout(r.Context(), facadeTimeout)
	defer cancel()
	cs, t, err := a.dial(ctx, r, cred)
	if err != nil {
		writeError(w, a.mcpFailure(r, t, err, ""))
		return
	}
	defer cs.Close()
	tools := []toolJSON{}
	for tool, err := range cs.Tools(ctx, nil) {
		if err != nil {
			writeError(w, a.mcpFailure(r, t, err, ""))
			return
		}
		tools = append(tools, toolJSON{Name: tool.Name, Title: tool.Title, Description: tool.Description,
			InputSchema: tool.InputSchema, Annotations: tool.Annotations})
	}
	writeJSON(w, http.StatusOK, map[string]any{"tools": tools})
}

// callTool serves POST /api/mcp/tools/call.
func (a *API) callTool(w http.ResponseWriter, r *http.Request, cred http.Header) {
	var req callRequest
	if e := decodeJSON(r, maxToolBody, &req); e != nil {
		writeError(w, e)
		return
	}
	name, args, e := validateCall(req)
	if e != nil {
		writeError(w, e)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), facadeTimeout)
	defer cancel()
	cs, t, err := a.dial(ctx, r, cred)
	if err != nil {
		writeError(w, a.mcpFailure(r, t, err, name))
		return
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		writeError(w, a.mcpFailure(r, t, err, name))
		return
	}
	if res.IsError && isArgumentError(res) {
		writeError(w, errorf(http.StatusBadRequest, codeInvalidArguments, "%s", textOf(res)))
		return
	}
	out := callResponse{Content: res.Content, StructuredContent: res.StructuredContent, IsError: res.IsError}
	if out.Content == nil {
		out.Content = []mcp.Content{}
	}
	if res.IsError {
		out.Error = codeToolError
	}
	writeJSON(w, http.StatusOK, out)
}

// validateCall checks the call's shape before anything is sent.
func validateCall(req callRequest) (string, json.RawMessage, *apiError) {
	if req.Name == nil {
		return "", nil, badField("name", "name is required: the tool to call")
	}
	name := *req.Name
	switch {
	case name == "":
		return "", nil, badField("name", "name must not be empty")
	case !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxToolName:
		return "", nil, badField("name", "name must be at most %d characters of valid text", maxToolName)
	}
	for _, c := range name {
		if c < 0x20 || c == 0x7f {
			return "", nil, badField("name", "name must not contain control characters")
		}
	}
	args := req.Arguments
	switch t := firstToken(args); {
	case len(args) == 0, string(args) == "null":
		args = json.RawMessage("{}")
	case t != '{':
		e := errorf(http.StatusBadRequest, codeInvalidArguments, "arguments must be a JSON object")
		e.Field = "arguments"
		return "", nil, e
	}
	return name, args, nil
}

// dial connects the facade's MCP client to the in-process endpoint.
func (a *API) dial(ctx context.Context, r *http.Request, cred http.Header) (*mcp.ClientSession, *inProcess, error) {
	info := httpx.InfoFrom(r.Context())
	if info.ClientIP == "" {
		info.ClientIP = httpx.ClientIP(r)
	}
	if info.UserAgent == "" {
		info.UserAgent = httpx.UserAgent(r)
	}
	t := &inProcess{handler: a.opts.MCPHandler, logger: a.log, credential: cred, info: info, origin: r.Header.Get("Origin")}
	client := mcp.NewClient(&mcp.Implementation{Name: "mcpgate-api", Version: "1"}, &mcp.ClientOptions{
		Capabilities: &mcp.ClientCapabilities{},
		Logger:       a.sdkLog,
	})
	transport := &mcp.StreamableClientTransport{
		Endpoint:             a.opts.MCPURL,
		HTTPClient:           &http.Client{Transport: t},
		MaxRetries:           -1,
		DisableStandaloneSSE: true,
	}
	cs, err := client.Connect(ctx, transport, &mcp.ClientSessionOptions{ProtocolVersion: statelessProtocol})
	if err != nil {
		return nil, t, err
	}
	return cs, t, nil
}

// mcpFailure turns a failed MCP exchange into the facade's answer: a
// JSON-RPC error the caller caused (unknown tool, bad arguments, missing
// scopes), else the HTTP refusal of the endpoint (authn's 401, 403, …),
// else upstream_error.
func (a *API) mcpFailure(r *http.Request, t *inProcess, err error, tool string) *apiError {
	var werr *jsonrpc.Error
	if errors.As(err, &werr) {
		if e := rpcError(werr.Code, werr.Message, werr.Data, tool); e != nil {
			return e
		}
	}
	if ref := t.refused(); ref != nil {
		if e := refusalError(ref, tool); e != nil {
			return e
		}
		a.log.Warn("api: the MCP endpoint refused a facade request", "tool", tool, "status", ref.status)
		return errorf(http.StatusBadGateway, codeUpstreamError, "the MCP endpoint answered %d", ref.status)
	}
	if r.Context().Err() != nil {
		return errorf(http.StatusBadGateway, codeUpstreamError, "the request was cancelled")
	}
	a.log.Warn("api: MCP request through the facade failed", "tool", tool, "err", err)
	return errorf(http.StatusBadGateway, codeUpstreamError, "the MCP endpoint did not answer the request")
}

// rpcError maps the JSON-RPC errors a caller can cause; nil for others.
func rpcError(code int64, msg string, data json.RawMessage, tool string) *apiError {
	switch {
	case code == jsonrpc.CodeInvalidParams && strings.HasPrefix(msg, "unknown tool"):
		return errorf(http.StatusNotFound, codeUnknownTool, "there is no tool %q for you", clip(tool))
	case code == jsonrpc.CodeInvalidParams:
		return errorf(http.StatusBadRequest, codeInvalidArguments, "%s", clip(msg))
	case code == mcpserver.CodeInsufficientScope && missingRoles(data):
		// A role cannot be gained by re-authorizing: plain forbidden.
		return errorf(http.StatusForbidden, codeForbidden, "%s", clip(msg))
	case code == mcpserver.CodeInsufficientScope:
		e := errorf(http.StatusForbidden, codeInsufficientScope, "%s", clip(msg))
		e.RequiredScopes = requiredFromData(data)
		return e
	}
	return nil
}

// refusalError maps an error answer of the MCP endpoint; nil when it is
// none the caller caused.
func refusalError(ref *refusal, tool string) *apiError {
	var body struct {
		Error       json.RawMessage `json:"error"` // a string (RFC 6750) or a JSON-RPC error object
		Description string          `json:"error_description"`
	}
	_ = json.Unmarshal(ref.body, &body)
	var rpc struct {
		Code    int64           `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	}
	if json.Unmarshal(body.Error, &rpc) == nil && rpc.Code != 0 {
		if e := rpcError(rpc.Code, rpc.Message, rpc.Data, tool); e != nil {
			return e
		}
	}
	var code string
	_ = json.Unmarshal(body.Error, &code)
	msg := clip(body.Description)
	switch {
	case ref.status == http.StatusUnauthorized:
		return errorf(http.StatusUnauthorized, codeUnauthorized, "%s", orDefault(msg, "the credential is missing, invalid, expired or revoked"))
	case ref.status == http.StatusForbidden && (code == "insufficient_scope" || strings.Contains(ref.challenge, "insufficient_scope")):
		e := errorf(http.StatusForbidden, codeInsufficientScope, "%s", orDefault(msg, "the credential lacks a scope this call needs"))
		e.RequiredScopes = challengeScopes(ref.challenge)
		return e
	case ref.status == http.StatusForbidden:
		return errorf(http.StatusForbidden, codeForbidden, "%s", orDefault(msg, "the MCP endpoint refused the request"))
	case ref.status == http.StatusBadRequest && (code == "invalid_request" || code == "invalid_token"):
		// authn's answer to a credential sent wrongly (two credentials,
		// one in the query).
		return errorf(http.StatusBadRequest, codeInvalidRequest, "%s", orDefault(msg, "the credential was sent wrongly"))
	case ref.status == http.StatusRequestEntityTooLarge:
		return errorf(http.StatusRequestEntityTooLarge, codeTooLarge, "%s", orDefault(msg, "the request is too large"))
	case ref.status == http.StatusServiceUnavailable || ref.status == http.StatusTooManyRequests:
		e := errorf(http.StatusServiceUnavailable, codeUnavailable, "%s", orDefault(msg, "the MCP endpoint is unavailable; try again shortly"))
		e.RetryAfter = 5
		return e
	}
	return nil
}

// missingRoles reports whether an mcpserver -32003 error is a role refusal.
func missingRoles(data json.RawMessage) bool {
	var d struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(data, &d)
	return d.Error == "missing_roles"
}

// requiredFromData reads "required" from the data of mcpserver's
// insufficient_scope JSON-RPC error.
func requiredFromData(data json.RawMessage) []string {
	var d struct {
		Required []string `json:"required"`
	}
	_ = json.Unmarshal(data, &d)
	return d.Required
}

// challengeScopes reads the scope parameter of a Bearer challenge.
func challengeScopes(challenge string) []string {
	_, rest, ok := strings.Cut(challenge, `scope="`)
	if !ok {
		return nil
	}
	v, _, _ := strings.Cut(rest, `"`)
	return strings.Fields(v)
}

// isArgumentError reports whether a tool error is the SDK refusing the
// arguments against the tool's input schema (before the tool ran).
func isArgumentError(res *mcp.CallToolResult) bool {
	return strings.HasPrefix(textOf(res), `validating "arguments"`)
}

func textOf(res *mcp.CallToolResult) string {
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			return clip(tc.Text)
		}
	}
	return ""
}

func clip(s string) string {
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return strings.ToValidUTF8(s, "")
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
