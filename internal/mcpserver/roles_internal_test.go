package mcpserver

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/principal"
)

func TestDecideRoles(t *testing.T) {
	pol := &Policy{
		ToolScopes: func(name string) ([]string, bool) { return []string{"r"}, name != "x" },
		ToolRoles: func(name string) ([]string, bool) {
			if name == "audit" {
				return []string{"auditor"}, true
			}
			return nil, name != "x"
		},
	}
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"audit"}}`
	for _, tc := range []struct {
		name          string
		p             *principal.Principal
		allowed       bool
		missing       []string
		missingScopes []string
	}{
		{"role and scope", &principal.Principal{Roles: []string{"auditor"}, Scopes: []string{"r"}}, true, nil, nil},
		{"no role", &principal.Principal{Roles: []string{"admin"}, Scopes: []string{"r"}}, false, []string{"auditor"}, nil},
		{"role without scope", &principal.Principal{Roles: []string{"auditor"}}, false, nil, []string{"r"}},
		{"nil principal", nil, false, []string{"auditor"}, []string{"r"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := pol.Decide(tc.p, []byte(body))
			if d.Allowed() != tc.allowed || len(d.Calls) != 1 {
				t.Fatalf("Allowed = %v, calls %+v", d.Allowed(), d.Calls)
			}
			c := d.Calls[0]
			if !slices.Equal(c.RequiredRoles, []string{"auditor"}) || !slices.Equal(c.MissingRoles, tc.missing) || !slices.Equal(c.Missing, tc.missingScopes) {
				t.Errorf("call = %+v", c)
			}
		})
	}
	// No ToolRoles (a policy built before roles existed): scopes only.
	d := (&Policy{ToolScopes: pol.ToolScopes}).Decide(&principal.Principal{Scopes: []string{"r"}}, []byte(body))
	if !d.Allowed() {
		t.Errorf("policy without ToolRoles refused: %+v", d.Calls)
	}
}

// As TestToolWrapperRechecksScopes: the SDK middleware checks roles again on
// the name as the SDK parsed it, should a request get past the policy.
func TestSDKLayerRechecksRoles(t *testing.T) {
	ran := false
	reg := NewRegistry()
	AddToolWith(reg, &mcp.Tool{Name: "audit"}, Require{Scopes: []string{"t:read"}, Roles: []string{"auditor"}},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			ran = true
			return nil, nil, nil
		})
	rec := &recorder{}
	h := New(Options{Registry: reg, Audit: rec, ResourceURL: "https://r", Logger: slog.New(slog.DiscardHandler)})
	defer h.Close()

	bob := &principal.Principal{UserID: "usr_bob", Scopes: []string{"t:read"}, Roles: []string{"admin"}, CredentialID: "key_bob"}
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"audit","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/call")
	req.Header.Set("Mcp-Name", "audit")
	req.Header.Set("Authorization", "Bearer "+placeholderToken)
	req = req.WithContext(principal.With(req.Context(), bob))
	w := httptest.NewRecorder()
	h.stateless.ServeHTTP(w, req) // behind the bridge, without the policy

	if ran {
		t.Fatal("the tool ran without its role")
	}
	out := w.Body.String()
	if !strings.Contains(out, `"code":-32003`) || !strings.Contains(out, `missing roles: tool \"audit\" requires role auditor`) ||
		!strings.Contains(out, `"data":{"error":"missing_roles","missing_roles":["auditor"],"required_roles":["auditor"]}`) {
		t.Errorf("response = %s", out)
	}
	want := []audit.Event{{
		Type: audit.TypeToolDenied, Outcome: "deny", Reason: audit.ReasonMissingRoles, Tool: "audit",
		UserID: "usr_bob", CredentialID: "key_bob", Resource: "https://r",
		Details: map[string]any{"missing_roles": []string{"auditor"}, "required_roles": []string{"auditor"}, "layer": "sdk"},
	}}
	if diff := cmp.Diff(want, rec.events); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
}

// The third check, in the tool wrapper itself.
func TestToolWrapperRechecksRoles(t *testing.T) {
	ran := false
	h := wrapTool("audit", Require{Scopes: []string{"t:read"}, Roles: []string{"auditor"}}, &toolEnv{logger: slog.New(slog.DiscardHandler)},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, string, error) {
			ran = true
			return nil, principal.From(ctx).UserID, nil
		})
	call := func(p *principal.Principal) (*callState, string, error) {
		state := &callState{}
		ctx := context.WithValue(context.Background(), callStateKey{}, state)
		req := &mcp.CallToolRequest{Extra: &mcp.RequestExtra{TokenInfo: &auth.TokenInfo{Extra: map[string]any{extraPrincipal: p}}}}
		_, out, err := h(ctx, req, struct{}{})
		return state, out, err
	}

	state, _, err := call(&principal.Principal{UserID: "usr_bob", Scopes: []string{"t:read"}})
	var te *ToolError
	if !errors.As(err, &te) || te.Error() != `missing roles: tool "audit" requires role auditor` {
		t.Errorf("err = %v", err)
	}
	if ran || !slices.Equal(state.missingRoles, []string{"auditor"}) || state.missing != nil {
		t.Errorf("ran %v, state %+v", ran, state)
	}

	state, out, err := call(&principal.Principal{UserID: "usr_aud", Scopes: []string{"t:read"}, Roles: []string{"auditor"}})
	if err != nil || out != "usr_aud" || !ran || state.missingRoles != nil || state.missing != nil {
		t.Errorf("auditor: out %q, err %v, ran %v, state %+v", out, err, ran, state)
	}
}
