package server_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/apikeys"
)

// nodeClient finds node and the interop client's packages. Outside CI a
// missing piece skips the test with the command that fixes it; on CI
// (CI=true) it fails, so the interop check can never be skipped silently.
func nodeClient(t *testing.T) (node, script string) {
	t.Helper()
	dir, _ := filepath.Abs(filepath.Join("..", "..", "interop", "ts"))
	missing := func(msg string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("TypeScript interop test cannot run on CI: %s", msg)
		}
		t.Skip(msg)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed (apt-get install nodejs npm)")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "sdk")); err != nil {
		missing("the TypeScript MCP SDK is not installed: run `npm ci` in interop/ts")
	}
	return node, filepath.Join(dir, "client.mjs")
}

type tsResult struct {
	ProtocolVersion string         `json:"protocolVersion"`
	SessionID       string         `json:"sessionId"`
	Tools           []string       `json:"tools"`
	Balance         map[string]any `json:"balance"`
	BalanceIsError  bool           `json:"balanceIsError"`
	Error           string         `json:"error"`
}

func runTS(t *testing.T, node, script, url, header, cred string) (tsResult, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, url, header, cred)
	out, err := cmd.Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("node: %v", err)
	}
	var res tsResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("node printed %q: %v", out, err)
	}
	return res, code
}

// TestTypeScriptSDKClient drives the real server with the official
// TypeScript MCP SDK client (npm @modelcontextprotocol/sdk), authenticated
// with real API keys in both accepted headers.
func TestTypeScriptSDKClient(t *testing.T) {
	node, script := nodeClient(t)
	e := newEnv(t)
	all := []string{"getAccountBalance", "getAllTransactions", "getLatestTransactions", "transfer"}
	for _, tc := range []struct {
		email, header string
		balance       float64
	}{
		{"alice@example.com", "Authorization", 180},
		{"bob@example.com", "X-API-Key", -200},
	} {
		t.Run(tc.email, func(t *testing.T) {
			res, code := runTS(t, node, script, e.base+"/mcp", tc.header, e.keys[tc.email])
			if code != 0 {
				t.Fatalf("client failed (exit %d): %s", code, res.Error)
			}
			if diff := cmp.Diff(all, res.Tools); diff != "" {
				t.Errorf("tools (-want +got):\n%s", diff)
			}
			if res.BalanceIsError || res.Balance["balance"] != tc.balance || res.Balance["email"] != tc.email {
				t.Errorf("balance = %v (isError %v), want %v for %s", res.Balance, res.BalanceIsError, tc.balance, tc.email)
			}
			if res.SessionID == "" {
				t.Errorf("no MCP session: the TypeScript SDK speaks %s, a session-based revision", res.ProtocolVersion)
			}
		})
	}
	t.Run("refused key", func(t *testing.T) {
		res, code := runTS(t, node, script, e.base+"/mcp", "Authorization", apikeys.Generate())
		if code != 2 || res.Error == "" {
			t.Fatalf("an unknown key was not refused: exit %d, %+v", code, res)
		}
	})
}
