package mcpserver_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/mcpserver"
	"github.com/mcpgate/mcpgate/internal/mcpserver/mcptest"
	"github.com/mcpgate/mcpgate/internal/principal"
)

// Callers of the role tests: scopes come from the credential, roles from
// the user.
var roleUsers = map[string]*principal.Principal{
	"auditor":   {UserID: "usr_aud", Roles: []string{"auditor"}, Scopes: []string{"t:read"}, CredentialID: "key_aud"},
	"bob":       {UserID: "usr_bob", Roles: []string{"admin"}, Scopes: []string{"t:read"}, CredentialID: "key_bob"},
	"noscope":   {UserID: "usr_ns", Roles: []string{"auditor"}, CredentialID: "key_ns"},
	"both":      {UserID: "usr_both", Roles: []string{"auditor", "ops"}, Scopes: []string{"t:read"}, CredentialID: "key_both"},
	"caseshift": {UserID: "usr_case", Roles: []string{"Auditor"}, Scopes: []string{"t:read"}, CredentialID: "key_case"},
	"nobody":    {UserID: "usr_nobody", CredentialID: "key_nobody"},
}

type roleEnv struct {
	srv   *httptest.Server
	audit *mcptest.Recorder
	ran   atomic.Int64 // how often a role-protected tool ran
}

func newRoleEnv(t testing.TB) *roleEnv {
	t.Helper()
	e := &roleEnv{audit: &mcptest.Recorder{}}
	reg := mcpserver.NewRegistry()
	// An existing AddTool call keeps working next to AddToolWith.
	mcpserver.AddTool(reg, &mcp.Tool{Name: "open"}, []string{"t:read"},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, map[string]string, error) {
			return nil, map[string]string{"user": principal.From(ctx).UserID}, nil
		})
	mcpserver.AddToolWith(reg, &mcp.Tool{Name: "audit_report"}, mcpserver.Require{Scopes: []string{"t:read"}, Roles: []string{"auditor"}},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, map[string]string, error) {
			e.ran.Add(1)
			return nil, map[string]string{"report_for": principal.From(ctx).UserID}, nil
		})
	mcpserver.AddToolWith(reg, &mcp.Tool{Name: "two_roles"}, mcpserver.Require{Roles: []string{"auditor", "ops"}},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, map[string]string, error) {
			e.ran.Add(1)
			return nil, map[string]string{"ok": "yes"}, nil
		})
	h := mcpserver.New(mcpserver.Options{
		Registry: reg, Audit: e.audit, Logger: testLogger(t),
		ResourceURL: resourceURL, ResourceMetadataURL: metadataURL,
	})
	e.srv = httptest.NewServer(mcptest.Auth(roleUsers, h))
	t.Cleanup(func() { e.srv.Close(); h.Close() })
	return e
}

func TestRegistryRoles(t *testing.T) {
	reg := mcpserver.NewRegistry()
	h := func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return nil, nil, nil
	}
	mcpserver.AddToolWith(reg, &mcp.Tool{Name: "a"}, mcpserver.Require{Scopes: []string{"x:read"}, Roles: []string{"auditor", "ops", "auditor"}}, h)
	mcpserver.AddTool(reg, &mcp.Tool{Name: "b"}, []string{"x:write"}, h)
	if got, ok := reg.Requirements("a"); !ok || !cmp.Equal(got, mcpserver.Require{Scopes: []string{"x:read"}, Roles: []string{"auditor", "ops"}}) {
		t.Errorf("Requirements(a) = %+v, %v", got, ok)
	}
	if got, ok := reg.Roles("b"); !ok || len(got) != 0 {
		t.Errorf("Roles(b) = %v, %v", got, ok)
	}
	if _, ok := reg.Roles("nope"); ok {
		t.Error("Roles(nope) found")
	}
	// Roles never leak into the advertised scopes.
	if diff := cmp.Diff([]string{"x:read", "x:write"}, reg.AllScopes()); diff != "" {
		t.Errorf("AllScopes (-want +got):\n%s", diff)
	}
	// Callers get copies.
	got, _ := reg.Requirements("a")
	got.Roles[0] = "nobody"
	if again, _ := reg.Roles("a"); again[0] != "auditor" {
		t.Error("Requirements returned the registry's own slice")
	}
	for _, bad := range []string{"", "two words", "quote\"", "tab\t", "nul\x00"} {
		mustPanic(t, "bad role "+bad, func() {
			mcpserver.AddToolWith(reg, &mcp.Tool{Name: "c"}, mcpserver.Require{Roles: []string{bad}}, h)
		})
	}
	mustPanic(t, "duplicate", func() { mcpserver.AddToolWith(reg, &mcp.Tool{Name: "a"}, mcpserver.Require{}, h) })
}

func TestToolsListHidesToolsWithoutTheRole(t *testing.T) {
	for _, pv := range protocols {
		t.Run(protoName(pv.request), func(t *testing.T) {
			e := newRoleEnv(t)
			for user, want := range map[string][]string{
				"auditor":   {"audit_report", "open"},
				"bob":       {"open"},
				"noscope":   {}, // the role alone is not enough: audit_report needs t:read too
				"both":      {"audit_report", "open", "two_roles"},
				"caseshift": {"open"}, // roles compare exactly
				"nobody":    {},
			} {
				cs := mcptest.Connect(t, e.srv.URL, user, pv.request)
				res, err := cs.ListTools(context.Background(), nil)
				if err != nil {
					t.Fatalf("%s: ListTools: %v", user, err)
				}
				got := []string{}
				for _, tool := range res.Tools {
					got = append(got, tool.Name)
				}
				slices.Sort(got)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("%s sees (-want +got):\n%s", user, diff)
				}
			}
		})
	}
}

func TestMissingRoleRefusedBeforeTheToolRuns(t *testing.T) {
	for _, pv := range protocols {
		t.Run(protoName(pv.request), func(t *testing.T) {
			e := newRoleEnv(t)
			cs := mcptest.Connect(t, e.srv.URL, "bob", pv.request)
			_, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "audit_report"})
			if err == nil || !strings.Contains(err.Error(), "missing_roles: tool audit_report requires role auditor") {
				t.Fatalf("CallTool(audit_report) as bob: err = %v, want missing_roles", err)
			}
			if n := e.ran.Load(); n != 0 {
				t.Errorf("the tool ran %d times", n)
			}
			denied := e.audit.OfType(audit.TypeToolDenied)
			if len(denied) != 1 {
				t.Fatalf("tool.denied events = %+v, want 1", denied)
			}
			d := denied[0]
			want := audit.Event{
				Type: audit.TypeToolDenied, Outcome: "deny", Reason: audit.ReasonMissingRoles, Tool: "audit_report",
				UserID: "usr_bob", CredentialID: "key_bob", Resource: resourceURL, ClientIP: "127.0.0.1", UserAgent: d.UserAgent,
				Details: map[string]any{"missing_roles": []string{"auditor"}, "required_roles": []string{"auditor"}},
			}
			if diff := cmp.Diff(want, d); diff != "" {
				t.Errorf("tool.denied (-want +got):\n%s", diff)
			}
			// The refusal is per call: the session keeps working.
			if got := decode[map[string]string](t, callTool(t, cs, "open", nil)); got["user"] != "usr_bob" {
				t.Errorf("open after refusal = %v", got)
			}
			// The auditor gets through.
			as := mcptest.Connect(t, e.srv.URL, "auditor", pv.request)
			if got := decode[map[string]string](t, callTool(t, as, "audit_report", nil)); got["report_for"] != "usr_aud" {
				t.Errorf("audit_report as auditor = %v", got)
			}
		})
	}
}

func TestMissingRoleAnswer(t *testing.T) {
	e := newRoleEnv(t)
	for _, tc := range []struct {
		name, user, tool, body string
		details                map[string]any
	}{
		{"one role", "bob", "audit_report",
			`{"jsonrpc":"2.0","id":7,"error":{"code":-32003,"message":"missing_roles: tool audit_report requires role auditor","data":{"error":"missing_roles","missing_roles":["auditor"],"required_roles":["auditor"]}}}`,
			map[string]any{"missing_roles": []string{"auditor"}, "required_roles": []string{"auditor"}}},
		{"two roles, one held", "auditor", "two_roles",
			`{"jsonrpc":"2.0","id":7,"error":{"code":-32003,"message":"missing_roles: tool two_roles requires roles auditor ops","data":{"error":"missing_roles","missing_roles":["ops"],"required_roles":["auditor","ops"]}}}`,
			map[string]any{"missing_roles": []string{"ops"}, "required_roles": []string{"auditor", "ops"}}},
		// Without the role, a scope challenge would send an OAuth client into
		// a step-up that cannot succeed: the role refusal wins, and the audit
		// event names both.
		{"role compared exactly", "caseshift", "audit_report",
			`{"jsonrpc":"2.0","id":7,"error":{"code":-32003,"message":"missing_roles: tool audit_report requires role auditor","data":{"error":"missing_roles","missing_roles":["auditor"],"required_roles":["auditor"]}}}`,
			map[string]any{"missing_roles": []string{"auditor"}, "required_roles": []string{"auditor"}}},
		{"role and scope missing", "nobody", "audit_report",
			`{"jsonrpc":"2.0","id":7,"error":{"code":-32003,"message":"missing_roles: tool audit_report requires role auditor","data":{"error":"missing_roles","missing_roles":["auditor"],"required_roles":["auditor"]}}}`,
			map[string]any{"missing_roles": []string{"auditor"}, "required_roles": []string{"auditor"}, "missing": []string{"t:read"}, "required": []string{"t:read"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.audit.Reset()
			body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"` + tc.tool + `","arguments":{},"_meta":` + meta2026 + `}}`
			resp, got := post(t, e.srv.URL, tc.user, newProtocolHeaders("tools/call", tc.tool), body)
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("status = %d, want 403: %s", resp.StatusCode, got)
			}
			if h := resp.Header.Get("WWW-Authenticate"); h != "" {
				t.Errorf("WWW-Authenticate = %q: a role is no reason to re-authorize", h)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q", cc)
			}
			if strings.TrimSpace(got) != tc.body {
				t.Errorf("body =\n  %s\nwant\n  %s", got, tc.body)
			}
			denied := e.audit.OfType(audit.TypeToolDenied)
			if len(denied) != 1 || denied[0].Reason != audit.ReasonMissingRoles || !cmp.Equal(denied[0].Details, tc.details) {
				t.Errorf("tool.denied = %+v", denied)
			}
		})
	}

	// A caller with the roles but not the scope gets the scope challenge.
	body := `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"audit_report","arguments":{},"_meta":` + meta2026 + `}}`
	resp, got := post(t, e.srv.URL, "noscope", newProtocolHeaders("tools/call", "audit_report"), body)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) ||
		!strings.Contains(got, `"error":"insufficient_scope"`) {
		t.Errorf("role held, scope missing: %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), got)
	}
	if n := e.ran.Load(); n != 0 {
		t.Errorf("a refused tool ran %d times", n)
	}
}

func TestBatchWithMissingRoleIsRefusedWhole(t *testing.T) {
	e := newRoleEnv(t)
	body := `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"open"}},
	          {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"audit_report"}}]`
	resp, got := post(t, e.srv.URL, "bob", http.Header{"Mcp-Protocol-Version": {"2025-03-26"}}, body)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status = %d, want 403: %s", resp.StatusCode, got)
	}
	if h := resp.Header.Get("WWW-Authenticate"); h != "" {
		t.Errorf("WWW-Authenticate = %q", h)
	}
	want := `{"error":"missing_roles","error_description":"tool audit_report requires role auditor","missing_roles":["auditor"]}`
	if strings.TrimSpace(got) != want {
		t.Errorf("body =\n  %s\nwant\n  %s", got, want)
	}
	denied := e.audit.OfType(audit.TypeToolDenied)
	if len(denied) != 1 || denied[0].Tool != "audit_report" || denied[0].Reason != audit.ReasonMissingRoles || denied[0].Details["batch"] != true {
		t.Errorf("tool.denied events = %+v", denied)
	}
	if len(e.audit.OfType(audit.TypeToolCalled)) != 0 || e.ran.Load() != 0 {
		t.Error("part of a refused batch ran")
	}
}
