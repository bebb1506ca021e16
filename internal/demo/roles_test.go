package demo_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/mcpserver/mcptest"
)

func anyBalance(t testing.TB, cs *mcp.ClientSession, email string) *mcp.CallToolResult {
	t.Helper()
	return call(t, cs, "getAnyAccountBalance", map[string]any{"email": email})
}

func TestAuditorReadsAnyBalance(t *testing.T) {
	for _, pv := range protocols {
		t.Run(protoName(pv), func(t *testing.T) {
			e := newEnv(t)
			cs := mcptest.Connect(t, e.srv.URL, "charlie", pv)
			for email, want := range map[string]demo.BalanceOut{
				"alice@example.com":     {Email: "alice@example.com", Balance: 180},
				"bob@example.com":       {Email: "bob@example.com", Balance: -200},
				"charlie@example.com":   {Email: "charlie@example.com", Balance: 20},
				"dave@example.com":      {Email: "dave@example.com", Balance: 0},
				"  Alice@EXAMPLE.com\t": {Email: "alice@example.com", Balance: 180}, // normalised like transfer's recipient
				"zed@example.com":       {Email: "zed@example.com", Balance: 0},     // disabled accounts are audited too
			} {
				if got := decode[demo.BalanceOut](t, anyBalance(t, cs, email)); got != want {
					t.Errorf("%q: %+v, want %+v", email, got, want)
				}
			}
			for email, msg := range map[string]string{
				"nobody@example.com":                `unknown user "nobody@example.com"`,
				"":                                  "email must be the account holder's email address",
				"   ":                               "email must be the account holder's email address",
				strings.Repeat("a", 400) + "@x.com": "unknown user",
			} {
				res := anyBalance(t, cs, email)
				if !res.IsError || text(res) != msg {
					t.Errorf("%.20q: isError=%v %q, want %q", email, res.IsError, text(res), msg)
				}
			}
			// The auditor's own tools still answer with the auditor's data.
			if got := balance(t, cs); got != 20 {
				t.Errorf("charlie's own balance = %d", got)
			}
			calls := e.audit.OfType(audit.TypeToolCalled)
			if len(calls) != 11 || calls[0].Tool != "getAnyAccountBalance" || calls[0].UserID != e.ids["charlie"] {
				t.Errorf("tool.called events: %d, first %+v", len(calls), calls[0])
			}
		})
	}
}

func TestOnlyAuditorsReadOtherBalances(t *testing.T) {
	e := newEnv(t)
	args := map[string]any{"email": "bob@example.com"}

	// alice has both scopes but not the role: the tool is hidden…
	cs := mcptest.Connect(t, e.srv.URL, "alice", "")
	list, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range list.Tools {
		if tool.Name == "getAnyAccountBalance" {
			t.Error("alice sees getAnyAccountBalance")
		}
	}
	// …and a call is refused before it runs, without ending the session.
	if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "getAnyAccountBalance", Arguments: args}); err == nil ||
		!strings.Contains(err.Error(), "missing_roles: tool getAnyAccountBalance requires role auditor") {
		t.Fatalf("alice's call: err = %v", err)
	}
	if got := balance(t, cs); got != 180 {
		t.Errorf("alice's balance after the refusal = %d", got)
	}

	// On the wire: 403, no step-up challenge, a JSON-RPC error naming the role.
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": map[string]any{
		"name": "getAnyAccountBalance", "arguments": args,
		"_meta": map[string]any{"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": map[string]any{}},
	}})
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL, strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer bob")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/call")
	req.Header.Set("Mcp-Name", "getAnyAccountBalance")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("WWW-Authenticate") != "" {
		t.Fatalf("status %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	var rpc struct {
		Error struct {
			Code int `json:"code"`
			Data struct {
				MissingRoles []string `json:"missing_roles"`
			} `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &rpc); err != nil || rpc.Error.Code != -32003 || len(rpc.Error.Data.MissingRoles) != 1 || rpc.Error.Data.MissingRoles[0] != demo.RoleAuditor {
		t.Errorf("body = %s (%v)", raw, err)
	}

	denied := e.audit.OfType(audit.TypeToolDenied)
	if len(denied) != 2 {
		t.Fatalf("tool.denied events: %+v", denied)
	}
	for i, name := range []string{"alice", "bob"} {
		if d := denied[i]; d.Tool != "getAnyAccountBalance" || d.UserID != e.ids[name] || d.Reason != audit.ReasonMissingRoles {
			t.Errorf("tool.denied = %+v", d)
		}
	}
	for _, c := range e.audit.OfType(audit.TypeToolCalled) {
		if c.Tool == "getAnyAccountBalance" {
			t.Errorf("the tool ran: %+v", c)
		}
	}
}
