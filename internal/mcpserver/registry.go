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

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/principal"
)

// Registry is the set of tools an MCP endpoint serves, each with the scopes
// a caller needs to see and call it. Register every tool before passing the
// registry to New; the zero value is ready to use.
type Registry struct {
	mu        sync.RWMutex
	tools     map[string]*registeredTool
	order     []string // registration order, for installation
	installed bool
}

type registeredTool struct {
	scopes  []string
	install func(s *mcp.Server, env *toolEnv)
}

// toolEnv is what tool wrappers need from the Handler that installs them.
type toolEnv struct {
	logger *slog.Logger
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

// AddTool registers a typed tool that needs every scope in scopes. The
// handler runs only for a caller that holds them; it finds the caller with
// principal.From(ctx).
//
// The wrapper around h:
//   - puts the request's principal into ctx. The SDK hands tool handlers a
//     context derived from the one the MCP session was created with, so
//     without this, tool code on a stateful session would see the principal
//     of the session's first request (stale scopes, a since-revoked key);
//   - re-checks the scopes (defence in depth: the HTTP layer refuses such
//     calls before they reach the SDK) and answers an isError result if any
//     is missing;
//   - turns errors that are not *ToolError (or *jsonrpc.Error) into a generic
//     "internal error" result and logs them, so driver messages never reach
//     the caller, and recovers a panicking handler instead of crashing the
//     process (SDK handlers run outside any net/http recovery).
//
// AddTool panics on a nil tool, an empty or duplicate name, an empty scope,
// or when the registry is already in use by a Handler: all are programming
// errors found at startup.
func AddTool[In, Out any](r *Registry, t *mcp.Tool, scopes []string, h mcp.ToolHandlerFor[In, Out]) {
	if t == nil || t.Name == "" {
		panic("mcpserver.AddTool: tool without a name")
	}
	if h == nil {
		panic(fmt.Sprintf("mcpserver.AddTool %q: nil handler", t.Name))
	}
	var need []string
	for _, s := range scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			panic(fmt.Sprintf("mcpserver.AddTool %q: invalid scope %q", t.Name, s))
		}
		if !slices.Contains(need, s) {
			need = append(need, s)
		}
	}
	name := t.Name
	tool := *t // the caller's value stays untouched
	install := func(s *mcp.Server, env *toolEnv) {
		mcp.AddTool(s, &tool, wrapTool(name, need, env, h))
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.installed {
		panic(fmt.Sprintf("mcpserver.AddTool %q: registry already used by a Handler; register tools before calling New", name))
	}
	if r.tools == nil {
		r.tools = make(map[string]*registeredTool)
	}
	if _, dup := r.tools[name]; dup {
		panic(fmt.Sprintf("mcpserver.AddTool: duplicate tool %q", name))
	}
	r.tools[name] = &registeredTool{scopes: need, install: install}
	r.order = append(r.order, name)
}

// Scopes returns the scopes tool needs, and false for an unknown tool.
func (r *Registry) Scopes(tool string) ([]string, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	rt, ok := r.tools[tool]
	if !ok {
		return nil, false
	}
	return slices.Clone(rt.scopes), true
}

// AllScopes returns every scope any tool needs, sorted and unique (for the
// protected-resource metadata's scopes_supported).
func (r *Registry) AllScopes() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var all []string
	for _, rt := range r.tools {
		all = append(all, rt.scopes...)
	}
	sort.Strings(all)
	return slices.Compact(all)
}

// canCall reports whether p holds every scope tool needs; unknown tools are
// never callable (fail closed).
func (r *Registry) canCall(p *principal.Principal, tool string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	rt, ok := r.tools[tool]
	return ok && p != nil && len(p.MissingScopes(rt.scopes)) == 0
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

func wrapTool[In, Out any](name string, need []string, env *toolEnv, h mcp.ToolHandlerFor[In, Out]) mcp.ToolHandlerFor[In, Out] {
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
		if missing := p.MissingScopes(need); len(missing) > 0 {
			if state != nil {
				state.missing = missing
			}
			return nil, zero, &ToolError{msg: fmt.Sprintf("insufficient scope: tool %q requires scope %s", name, strings.Join(need, " "))}
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
