package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/audit"
)

// Roles in decisions, on the real server: serve --demo gives charlie the
// auditor role, and only an auditor sees and calls getAnyAccountBalance.
func TestAuditorRole(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	charlie, err := e.connect(bearer(e.keys["charlie@example.com"]), "")
	if err != nil {
		t.Fatal(err)
	}
	defer charlie.Close()
	bob, err := e.connect(bearer(e.keys["bob@example.com"]), "2025-06-18")
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()

	// tools/list differs by role.
	names := func(cs *mcp.ClientSession) []string {
		t.Helper()
		res, err := cs.ListTools(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, tl := range res.Tools {
			out = append(out, tl.Name)
		}
		return out
	}
	user := []string{"getAccountBalance", "getAllTransactions", "getLatestTransactions", "transfer"}
	auditor := []string{"getAccountBalance", "getAllTransactions", "getAnyAccountBalance", "getLatestTransactions", "transfer"}
	if diff := cmp.Diff(auditor, names(charlie)); diff != "" {
		t.Errorf("charlie (auditor) sees (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(user, names(bob)); diff != "" {
		t.Errorf("bob sees (-want +got):\n%s", diff)
	}

	// charlie reads alice's balance.
	res, err := charlie.CallTool(ctx, &mcp.CallToolParams{Name: "getAnyAccountBalance", Arguments: map[string]any{"email": "alice@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.StructuredContent; res.IsError || !cmp.Equal(got, map[string]any{"email": "alice@example.com", "balance": 180.0}) {
		t.Errorf("charlie reads alice's balance: isError %v, %v", res.IsError, got)
	}

	// bob is refused: with the go-sdk client (the session survives)…
	_, err = bob.CallTool(ctx, &mcp.CallToolParams{Name: "getAnyAccountBalance", Arguments: map[string]any{"email": "alice@example.com"}})
	if err == nil || !strings.Contains(err.Error(), "missing_roles") {
		t.Fatalf("bob's call: err = %v", err)
	}
	if got := e.balance(bob); got != -200 {
		t.Errorf("bob's balance after the refusal = %v", got)
	}
	// …and on the wire: 403, no step-up challenge, the missing role named.
	req, _ := http.NewRequest("POST", e.base+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"getAnyAccountBalance","arguments":{"email":"alice@example.com"},`+
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`))
	req.Header = http.Header{"Authorization": {"Bearer " + e.keys["bob@example.com"]}, "Content-Type": {"application/json"},
		"Accept": {"application/json, text/event-stream"}, "Mcp-Protocol-Version": {"2026-07-28"},
		"Mcp-Method": {"tools/call"}, "Mcp-Name": {"getAnyAccountBalance"}}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("WWW-Authenticate") != "" {
		t.Fatalf("bob on the wire: %d, WWW-Authenticate %q: %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
	var rpc struct {
		ID    int `json:"id"`
		Error struct {
			Code int            `json:"code"`
			Data map[string]any `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &rpc); err != nil || rpc.ID != 5 || rpc.Error.Code != -32003 ||
		!cmp.Equal(rpc.Error.Data["missing_roles"], []any{"auditor"}) {
		t.Errorf("body = %s (%v)", body, err)
	}
	ev := e.lastAudit(audit.TypeToolDenied)
	if ev.Tool != "getAnyAccountBalance" || ev.Reason != audit.ReasonMissingRoles || ev.UserID != e.ids["bob@example.com"] {
		t.Errorf("tool.denied = %+v", ev)
	}
}

// Through the JSON facade a missing role is a plain 403 forbidden, not an
// insufficient_scope a client would try to fix by re-authorizing.
func TestFacadeMissingRole(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest("POST", e.base+"/api/mcp/tools/call", strings.NewReader(`{"name":"getAnyAccountBalance","arguments":{"email":"alice@example.com"}}`))
	req.Header.Set("Authorization", "Bearer "+e.keys["bob@example.com"])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 403 || out["error"] != "forbidden" {
		t.Errorf("bob calling the auditor tool through the facade: %d %v", resp.StatusCode, out)
	}
}
