package demo_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/demo"
)

// TestTypeScriptClient drives the demo tools with the official TypeScript
// MCP SDK client (interop/ts). It is skipped when node or the client's
// node_modules are missing (run `npm ci` in interop/ts).
func TestTypeScriptClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	dir, _ := filepath.Abs(filepath.Join("..", "..", "interop", "ts"))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "sdk")); err != nil {
		t.Skip("interop/ts/node_modules missing (npm ci)")
	}
	e := newEnv(t)

	for _, tc := range []struct {
		token string
		tools []string
	}{
		{"alice", []string{"getAccountBalance", "getAllTransactions", "getLatestTransactions", "transfer"}},
		{"charlie", []string{"getAccountBalance", "getAllTransactions", "getLatestTransactions"}},
	} {
		t.Run(tc.token, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "client.mjs"), e.srv.URL, "Authorization", tc.token)
			cmd.Dir = dir
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("node client: %v\n%s", err, out)
			}
			var got struct {
				ProtocolVersion string               `json:"protocolVersion"`
				SessionID       string               `json:"sessionId"`
				Tools           []string             `json:"tools"`
				Balance         demo.BalanceOut      `json:"balance"`
				BalanceIsError  bool                 `json:"balanceIsError"`
				Latest          demo.TransactionsOut `json:"latest"`
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("client output %s: %v", out, err)
			}
			t.Logf("TypeScript client negotiated %q, session %v", got.ProtocolVersion, got.SessionID != "")
			if diff := cmp.Diff(tc.tools, got.Tools); diff != "" {
				t.Errorf("tools (-want +got):\n%s", diff)
			}
			want := map[string]int64{"alice": 180, "charlie": 20}[tc.token]
			if got.BalanceIsError || got.Balance.Balance != want || got.Balance.Email != tc.token+"@example.com" {
				t.Errorf("balance = %+v (isError %v), want %d", got.Balance, got.BalanceIsError, want)
			}
			if len(got.Latest.Transactions) != 2 {
				t.Errorf("latest = %+v, want 2 transactions", got.Latest)
			}
		})
	}
	if n := len(e.audit.OfType(audit.TypeSessionRefused)); n != 0 {
		t.Errorf("%d session refusals", n)
	}
}
