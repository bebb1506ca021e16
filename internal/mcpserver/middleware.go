package mcpserver

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/store"
)

// Keys of auth.TokenInfo.Extra through which the HTTP layer hands the
// request's identity to the SDK handlers (see bearerBridge).
const (
	extraPrincipal   = "principal"
	extraRequestInfo = "mcpgate.request_info"
)

// principalFromExtra returns the principal of the HTTP request that carried
// a JSON-RPC message, or nil.
func principalFromExtra(extra *mcp.RequestExtra) *principal.Principal {
	if extra == nil || extra.TokenInfo == nil {
		return nil
	}
	p, _ := extra.TokenInfo.Extra[extraPrincipal].(*principal.Principal)
	return p
}

func requestInfoFromExtra(extra *mcp.RequestExtra) httpx.RequestInfo {
	if extra == nil || extra.TokenInfo == nil {
		return httpx.RequestInfo{}
	}
	info, _ := extra.TokenInfo.Extra[extraRequestInfo].(httpx.RequestInfo)
	return info
}

// callState lets a tool wrapper tell the receiving middleware what it
// decided, so that one place records the audit event for every tools/call.
type callState struct {
	missing      []string // set when the wrapper refused the call for missing scopes
	missingRoles []string // set when the wrapper refused the call for missing roles
}

type callStateKey struct{}

func callStateFrom(ctx context.Context) *callState {
	s, _ := ctx.Value(callStateKey{}).(*callState)
	return s
}

// receivingMiddleware runs inside the SDK for every incoming JSON-RPC
// message. It rebinds the context to the identity of the HTTP request that
// carried the message (on stateful sessions the SDK derives handler contexts
// from the session's first request), filters tools/list by scope and role,
// and audits
// tools/call.
func (h *Handler) receivingMiddleware(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		extra := req.GetExtra()
		p := principalFromExtra(extra)
		ctx = principal.With(ctx, p) // nil hides any stale principal
		ctx = httpx.WithInfo(ctx, requestInfoFromExtra(extra))

		switch method {
		case "tools/list":
			res, err := next(ctx, method, req)
			if err != nil {
				return res, err
			}
			if list, ok := res.(*mcp.ListToolsResult); ok {
				list.Tools = h.visibleTools(p, list.Tools)
			}
			return res, nil
		case "tools/call":
			return h.auditedCall(ctx, p, method, req, next)
		}
		return next(ctx, method, req)
	}
}

// visibleTools keeps the tools p may call. The SDK builds a fresh slice for
// every tools/list, so filtering it does not touch the server's tool set.
func (h *Handler) visibleTools(p *principal.Principal, tools []*mcp.Tool) []*mcp.Tool {
	out := make([]*mcp.Tool, 0, len(tools)) // never JSON null
	for _, t := range tools {
		if h.registry.canCall(p, t.Name) {
			out = append(out, t)
		}
	}
	return out
}

// auditedCall runs a tools/call and records its outcome: tool.called (with
// is_error) when the tool was allowed, tool.denied when its own re-check or
// the wrapper's refused it for missing roles or scopes. Calls to unknown
// tools are answered by the SDK with a protocol error and not recorded: no
// tool ran and no decision was needed.
func (h *Handler) auditedCall(ctx context.Context, p *principal.Principal, method string, req mcp.Request, next mcp.MethodHandler) (mcp.Result, error) {
	params, _ := req.GetParams().(*mcp.CallToolParamsRaw)
	if params == nil {
		return next(ctx, method, req)
	}
	need, known := h.registry.Requirements(params.Name)
	if !known {
		return next(ctx, method, req)
	}
	e := audit.Event{
		Type:     audit.TypeToolCalled,
		Outcome:  store.OutcomeAllow,
		Tool:     params.Name,
		Resource: h.opts.ResourceURL,
	}
	if p != nil {
		e.UserID, e.CredentialID = p.UserID, p.CredentialID
	}
	// Second check, on the name as the SDK itself parsed it: the HTTP policy
	// parses the body with another decoder, and any difference between the
	// two (a parser differential) must fail closed here, before the SDK
	// validates arguments or runs anything. Roles first, as in the policy: a
	// caller without the role cannot fix it by getting a scope.
	if missing := p.MissingRoles(need.Roles); len(missing) > 0 {
		e.Type, e.Outcome, e.Reason = audit.TypeToolDenied, store.OutcomeDeny, audit.ReasonMissingRoles
		e.Details = map[string]any{"missing_roles": missing, "required_roles": need.Roles, "layer": "sdk"}
		h.audit.Record(ctx, e)
		data, _ := json.Marshal(rolesData(missing, need.Roles))
		return nil, &jsonrpc.Error{Code: CodeForbidden, Message: rolesMessage(params.Name, need.Roles), Data: data}
	}
	if missing := p.MissingScopes(need.Scopes); len(missing) > 0 {
		e.Type, e.Outcome, e.Reason = audit.TypeToolDenied, store.OutcomeDeny, audit.ReasonMissingScopes
		e.Details = map[string]any{"missing": missing, "required": need.Scopes, "layer": "sdk"}
		h.audit.Record(ctx, e)
		return nil, &jsonrpc.Error{Code: CodeInsufficientScope, Message: fmt.Sprintf("insufficient scope: tool %q requires scope %s", params.Name, strings.Join(need.Scopes, " "))}
	}
	state := &callState{}
	ctx = context.WithValue(ctx, callStateKey{}, state)
	res, err := next(ctx, method, req)
	switch {
	case state.missingRoles != nil:
		e.Type, e.Outcome, e.Reason = audit.TypeToolDenied, store.OutcomeDeny, audit.ReasonMissingRoles
		e.Details = map[string]any{"missing_roles": state.missingRoles, "required_roles": need.Roles, "layer": "tool"}
	case state.missing != nil:
		e.Type, e.Outcome, e.Reason = audit.TypeToolDenied, store.OutcomeDeny, audit.ReasonMissingScopes
		e.Details = map[string]any{"missing": state.missing, "required": need.Scopes, "layer": "tool"}
	default:
		isError := err != nil
		if r, ok := res.(*mcp.CallToolResult); ok && r != nil && r.IsError {
			isError = true
		}
		e.Details = map[string]any{"is_error": isError}
	}
	h.audit.Record(ctx, e)
	return res, err
}

// setCacheable marks tools/list results private: they are filtered per
// caller, so no intermediary may serve one caller's list to another
// (SEP-2549 cacheScope, analogous to Cache-Control: private).
func setCacheable(_ context.Context, req mcp.Request, c *mcp.Cacheable) {
	if _, ok := req.(*mcp.ListToolsRequest); ok {
		c.CacheScope = "private"
		c.TTLMs = 0
	}
}
