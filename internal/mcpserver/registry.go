package mcpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/principal"
)

// Registry is the set of tools an MCP endpoint serves, each with what a
// caller needs to see and call it (see Require). Register every tool before
// passing the registry to New; the zero value is ready to use.
type Registry struct {
	mu        sync.RWMutex
	tools     map[string]*registeredTool
	order     []string // registration order, for installation
	installed bool
}

type registeredTool struct {
	need    Require
	install func(s *mcp.Server, env *toolEnv)
}

// Require is what a caller needs to see and call a tool: every scope in
// Scopes granted to the credential (API key or access token) AND every role
// in Roles held by the principal (principal.Roles: a local user's roles,
// plus the roles an external issuer's token maps in). Both lists are
// all-of; empty means no requirement.
//
// The two fail differently on purpose. A missing scope is answered with the
// OAuth step-up challenge (403 insufficient_scope): the client can
// re-authorize and get it. A missing role is answered with a plain 403 and
// the JSON-RPC error CodeForbidden with data.missing_roles: no
// re-authorization grants a role, only an administrator or the identity
// provider does.
type Require struct {
	Scopes []string
	Roles  []string
}

// toolEnv is what tool wrappers need from the Handler that installs them.
type toolEnv struct {
	logger *slog.Logger
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

// AddTool registers a typed tool that needs every scope in scopes. It is
// AddToolWith(r, t, Require{Scopes: scopes}, h).
func AddTool[In, Out any](r *Registry, t *mcp.Tool, scopes []string, h mcp.ToolHandlerFor[In, Out]) {
	addTool(r, "mcpserver.AddTool", t, Require{Scopes: scopes}, h)
}

// AddToolWith registers a typed tool that needs everything in need: its
// scopes and its roles. The handler runs only for a caller that holds them;
// it finds the caller with principal.From(ctx).
//
// A caller without them does not see the tool in tools/list, and a
// tools/call is refused before the tool runs: by the HTTP policy, again by
// the SDK middleware, and a third time by the wrapper around h, which also:
//   - puts the request's principal into ctx. The SDK hands tool handlers a
//     context derived from the one the MCP session was created with, so
//     without this, tool code on a stateful session would see the principal
//     of the session's first request (stale scopes, a since-revoked key);
//   - turns errors that are not *ToolError (or *jsonrpc.Error) into a generic
//     "internal error" result and logs them, so driver messages never reach
//     the caller, and recovers a panicking handler instead of crashing the
//     process (SDK handlers run outside any net/http recovery).
//
// AddToolWith panics on a nil tool, an empty or duplicate name, an empty
// scope or role (or one with spaces, quotes or control characters), or when
// the registry is already in use by a Handler: all are programming errors
// found at startup.
func AddToolWith[In, Out any](r *Registry, t *mcp.Tool, need Require, h mcp.ToolHandlerFor[In, Out]) {
	addTool(r, "mcpserver.AddToolWith", t, need, h)
}

func addTool[In, Out any](r *Registry, fn string, t *mcp.Tool, req Require, h mcp.ToolHandlerFor[In, Out]) {
	if t == nil || t.Name == "" {
		panic(fn + ": tool without a name")
	}
	if h == nil {
		panic(fmt.Sprintf("%s %q: nil handler", fn, t.Name))
	}
	need := Require{
		Scopes: checkNames(fn, t.Name, "scope", req.Scopes),
		Roles:  checkNames(fn, t.Name, "role", req.Roles),
	}
	name := t.Name
	tool := *t // the caller's value stays untouched
	install := func(s *mcp.Server, env *toolEnv) {
		mcp.AddTool(s, &tool, wrapTool(name, need, env, h))
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.installed {
		panic(fmt.Sprintf("%s %q: registry already used by a Handler; register tools before calling New", fn, name))
	}
	if r.tools == nil {
		r.tools = make(map[string]*registeredTool)
	}
	if _, dup := r.tools[name]; dup {
		panic(fmt.Sprintf("%s: duplicate tool %q", fn, name))
	}
	r.tools[name] = &registeredTool{need: need, install: install}
	r.order = append(r.order, name)
}

// checkNames validates and de-duplicates scope or role names. They go into
// challenges and messages joined by spaces, so none may contain one.
func checkNames(fn, tool, kind string, names []string) []string {
	var out []string
	for _, n := range names {
		if n == "" || strings.ContainsAny(n, " \t\r\n\"\\") || strings.ContainsFunc(n, unicode.IsControl) {
			panic(fmt.Sprintf("%s %q: invalid %s %q", fn, tool, kind, n))
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// Scopes returns the scopes tool needs, and false for an unknown tool.
func (r *Registry) Scopes(tool string) ([]string, bool) {
	need, ok := r.Requirements(tool)
	return need.Scopes, ok
}

// Roles returns the roles tool needs, and false for an unknown tool.
func (r *Registry) Roles(tool string) ([]string, bool) {
	need, ok := r.Requirements(tool)
	return need.Roles, ok
}

// Requirements returns what a caller needs to call tool (copies), and false
// for an unknown tool.
func (r *Registry) Requirements(tool string) (Require, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	rt, ok := r.tools[tool]
	if !ok {
		return Require{}, false
	}
	return Require{Scopes: slices.Clone(rt.need.Scopes), Roles: slices.Clone(rt.need.Roles)}, true
}

// AllScopes returns every scope any tool needs, sorted and unique (for the
// protected-resource metadata's scopes_supported).
func (r *Registry) AllScopes() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var all []string
	for _, rt := range r.tools {
		all = append(all, rt.need.Scopes...)
	}
	sort.Strings(all)
	return slices.Compact(all)
}

// canCall reports whether p holds every scope and role tool needs; unknown
// tools are never callable (fail closed).
func (r *Registry) canCall(p *principal.Principal, tool string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	rt, ok := r.tools[tool]
	return ok && p != nil && len(p.MissingScopes(rt.need.Scopes)) == 0 && len(p.MissingRoles(rt.need.Roles)) == 0
}

// installAll adds every tool to s and freezes the registry.
func (r *Registry) installAll(s *mcp.Server, env *toolEnv) {
	r.mu.Lock()
	r.installed = true
	order := slices.Clone(r.order)
	r.mu.Unlock()
	for _, name := range order {
		r.mu.RLock()
		rt := r.tools[name]
		r.mu.RUnlock()
		rt.install(s, env)
	}
}

// ToolError is a tool failure whose message is meant for the caller: the SDK
// returns it as an isError result with the message as text content. Any
// other error a tool returns is logged and answered as "internal error".
type ToolError struct {
	msg string
}

func (e *ToolError) Error() string { return e.msg }

// Errorf returns a *ToolError. Messages must not contain secrets or other
// users' data: they go to the caller (and to the model behind it).
func Errorf(format string, args ...any) error {
	return &ToolError{msg: fmt.Sprintf(format, args...)}
}

// errInternal is what a caller sees when a tool fails for a reason that is
// not theirs to know.
var errInternal = &ToolError{msg: "internal error: the request could not be completed"}

func wrapTool[In, Out any](name string, need Require, env *toolEnv, h mcp.ToolHandlerFor[In, Out]) mcp.ToolHandlerFor[In, Out] {
	return func(ctx context.Context, req *mcp.CallToolRequest, in In) (res *mcp.CallToolResult, out Out, err error) {
		var zero Out
		state := callStateFrom(ctx)
		p := principalFromExtra(req.GetExtra())
		if p == nil {
			// Unreachable when the Handler is wired correctly: it refuses
			// requests without a principal before the SDK sees them.
			env.logger.Error("mcp tool called without a principal", "tool", name)
			return nil, zero, &ToolError{msg: "unauthenticated"}
		}
		if missing := p.MissingRoles(need.Roles); len(missing) > 0 {
			if state != nil {
				state.missingRoles = missing
			}
			return nil, zero, &ToolError{msg: rolesMessage(name, need.Roles)}
		}
		if missing := p.MissingScopes(need.Scopes); len(missing) > 0 {
			if state != nil {
				state.missing = missing
			}
			return nil, zero, &ToolError{msg: fmt.Sprintf("insufficient scope: tool %q requires scope %s", name, strings.Join(need.Scopes, " "))}
		}
		ctx = principal.With(ctx, p)

		defer func() {
			if v := recover(); v != nil {
				env.logger.Error("mcp tool panicked", "tool", name, "user", p.UserID, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				res, out, err = nil, zero, errInternal
			}
		}()
		res, out, err = h(ctx, req, in)
		if err != nil {
			var te *ToolError
			var we *jsonrpc.Error
			switch {
			case errors.As(err, &te):
				err = te
			case errors.As(err, &we):
				// A deliberate protocol error: the SDK sends it as is (it
				// recognises only the unwrapped type).
				err = we
			default:
				env.logger.Error("mcp tool failed", "tool", name, "user", p.UserID, "err", err)
				err = errInternal
			}
			return nil, zero, err
		}
		return res, out, nil
	}
}
