package demo_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/mcpserver"
	"github.com/mcpgate/mcpgate/internal/mcpserver/mcptest"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

const metadataURL = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"

type env struct {
	st    store.Store
	srv   *httptest.Server
	audit *mcptest.Recorder
	ids   map[string]string // name -> user id
}

// newEnv starts the demo tools on a fresh SQLite store: alice, bob and
// charlie with the seeded ledger, plus dave (no ledger) and a disabled
// user. Tokens "alice", "bob", "dave" have both scopes, "charlie" only
// payments:read; charlie has the auditor role, as in serve --demo.
func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	st := storetest.SQLite(t)
	e := &env{st: st, audit: &mcptest.Recorder{}, ids: map[string]string{}}
	for _, name := range []string{"alice", "bob", "charlie", "dave", "zed"} {
		id := store.NewID("usr")
		u := store.User{ID: id, Email: name + "@example.com", DisplayName: name, Disabled: name == "zed"}
		if err := st.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		e.ids[name] = id
	}
	if err := demo.SeedLedger(ctx, st, e.ids["alice"], e.ids["bob"], e.ids["charlie"]); err != nil {
		t.Fatal(err)
	}
	both := []string{demo.ScopeRead, demo.ScopeWrite}
	users := map[string]*principal.Principal{}
	for name, scopes := range map[string][]string{"alice": both, "bob": both, "dave": both, "charlie": {demo.ScopeRead}} {
		users[name] = &principal.Principal{UserID: e.ids[name], Email: name + "@example.com", Scopes: scopes, CredentialID: "key_" + name}
	}
	users["charlie"].Roles = []string{demo.RoleAuditor}
	reg := mcpserver.NewRegistry()
	demo.Register(reg, st)
	h := mcpserver.New(mcpserver.Options{
		Registry: reg, Audit: e.audit, Logger: slog.New(slog.DiscardHandler),
		ResourceURL: "https://mcp.example.com/mcp", ResourceMetadataURL: metadataURL,
	})
	e.srv = httptest.NewServer(mcptest.Auth(users, h))
	t.Cleanup(func() { e.srv.Close(); h.Close() })
	return e
}

func call(t testing.TB, cs *mcp.ClientSession, name string, args any) *mcp.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("CallTool(%s, %v): %v", name, args, err)
	}
	return res
}

func text(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func decode[T any](t testing.TB, res *mcp.CallToolResult) T {
	t.Helper()
	if res.IsError {
		t.Fatalf("tool error: %s", text(res))
	}
	var v T
	b, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return v
}

func balance(t testing.TB, cs *mcp.ClientSession) int64 {
	t.Helper()
	return decode[demo.BalanceOut](t, call(t, cs, "getAccountBalance", nil)).Balance
}

var protocols = []string{"", "2025-06-18"}

func protoName(v string) string {
	if v == "" {
		return "latest"
	}
	return v
}

func TestSeedLedger(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	// Seeding again is a no-op.
	if err := demo.SeedLedger(ctx, e.st, e.ids["alice"], e.ids["bob"], e.ids["charlie"]); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int64{"alice": 180, "bob": -200, "charlie": 20} {
		got, err := e.st.LedgerBalance(ctx, e.ids[name])
		if err != nil || got != want {
			t.Errorf("%s: balance %d, %v; want %d", name, got, err, want)
		}
	}
	if err := demo.SeedLedger(ctx, e.st, "a", "a", "b"); err == nil {
		t.Error("SeedLedger accepted the same user twice")
	}
}

func TestEachUserSeesOnlyTheirData(t *testing.T) {
	for _, pv := range protocols {
		t.Run(protoName(pv), func(t *testing.T) {
			e := newEnv(t)
			alice := mcptest.Connect(t, e.srv.URL, "alice", pv)
			bob := mcptest.Connect(t, e.srv.URL, "bob", pv)
			dave := mcptest.Connect(t, e.srv.URL, "dave", pv)

			wantAlice := []demo.Transaction{
				{ID: 7, Date: "2024-03-21", Direction: "received", Counterparty: "charlie@example.com", Amount: 80},
				{ID: 6, Date: "2024-03-20", Direction: "sent", Counterparty: "bob@example.com", Amount: 150},
				{ID: 5, Date: "2024-03-19", Direction: "received", Counterparty: "bob@example.com", Amount: 200},
				{ID: 2, Date: "2024-03-16", Direction: "sent", Counterparty: "charlie@example.com", Amount: 50},
				{ID: 1, Date: "2024-03-15", Direction: "received", Counterparty: "bob@example.com", Amount: 100},
			}
			wantBob := []demo.Transaction{
				{ID: 6, Date: "2024-03-20", Direction: "received", Counterparty: "alice@example.com", Amount: 150},
				{ID: 5, Date: "2024-03-19", Direction: "sent", Counterparty: "alice@example.com", Amount: 200},
				{ID: 4, Date: "2024-03-18", Direction: "received", Counterparty: "charlie@example.com", Amount: 25},
				{ID: 3, Date: "2024-03-17", Direction: "sent", Counterparty: "charlie@example.com", Amount: 75},
				{ID: 1, Date: "2024-03-15", Direction: "sent", Counterparty: "alice@example.com", Amount: 100},
			}
			for _, tc := range []struct {
				name string
				cs   *mcp.ClientSession
				want []demo.Transaction
				bal  demo.BalanceOut
			}{
				{"alice", alice, wantAlice, demo.BalanceOut{Email: "alice@example.com", Balance: 180}},
				{"bob", bob, wantBob, demo.BalanceOut{Email: "bob@example.com", Balance: -200}},
				{"dave", dave, []demo.Transaction{}, demo.BalanceOut{Email: "dave@example.com", Balance: 0}},
			} {
				all := decode[demo.TransactionsOut](t, call(t, tc.cs, "getAllTransactions", nil))
				if diff := cmp.Diff(demo.TransactionsOut{Transactions: tc.want}, all); diff != "" {
					t.Errorf("%s: getAllTransactions (-want +got):\n%s", tc.name, diff)
				}
				latest := decode[demo.TransactionsOut](t, call(t, tc.cs, "getLatestTransactions", nil))
				if diff := cmp.Diff(tc.want[:min(3, len(tc.want))], latest.Transactions); diff != "" {
					t.Errorf("%s: getLatestTransactions default (-want +got):\n%s", tc.name, diff)
				}
				one := decode[demo.TransactionsOut](t, call(t, tc.cs, "getLatestTransactions", map[string]any{"limit": 1}))
				if diff := cmp.Diff(tc.want[:min(1, len(tc.want))], one.Transactions); diff != "" {
					t.Errorf("%s: getLatestTransactions limit 1 (-want +got):\n%s", tc.name, diff)
				}
				bal := decode[demo.BalanceOut](t, call(t, tc.cs, "getAccountBalance", nil))
				if bal != tc.bal {
					t.Errorf("%s: balance %+v, want %+v", tc.name, bal, tc.bal)
				}
			}
		})
	}
}

func TestLatestTransactionsLimit(t *testing.T) {
	e := newEnv(t)
	cs := mcptest.Connect(t, e.srv.URL, "alice", "")
	if got := decode[demo.TransactionsOut](t, call(t, cs, "getLatestTransactions", map[string]any{"limit": 100})); len(got.Transactions) != 5 {
		t.Errorf("limit 100: %d transactions", len(got.Transactions))
	}
	for _, limit := range []any{0, 101, -1, 2.5, "3"} {
		res := call(t, cs, "getLatestTransactions", map[string]any{"limit": limit})
		if !res.IsError || !strings.Contains(text(res), "limit") {
			t.Errorf("limit %v: isError=%v %q", limit, res.IsError, text(res))
		}
	}
}

func TestToolsListedByScope(t *testing.T) {
	e := newEnv(t)
	for token, want := range map[string][]string{
		"alice":   {"getAccountBalance", "getAllTransactions", "getLatestTransactions", "transfer"},
		"charlie": {"getAccountBalance", "getAllTransactions", "getAnyAccountBalance", "getLatestTransactions"},
	} {
		cs := mcptest.Connect(t, e.srv.URL, token, "")
		res, err := cs.ListTools(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, tool := range res.Tools {
			got = append(got, tool.Name)
			switch tool.Name {
			case "transfer":
				a := tool.Annotations
				if a == nil || a.ReadOnlyHint || !a.IdempotentHint {
					t.Errorf("transfer annotations = %+v", a)
				}
				schema, _ := json.Marshal(tool.InputSchema)
				if !strings.Contains(string(schema), `"amount":{"description":"whole currency units, 1 to 1000000","type":"number"}`) {
					t.Errorf("amount is not declared as a number: %s", schema)
				}
			default:
				if a := tool.Annotations; a == nil || !a.ReadOnlyHint {
					t.Errorf("%s annotations = %+v", tool.Name, a)
				}
			}
		}
		slices.Sort(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s sees (-want +got):\n%s", token, diff)
		}
	}
}

func TestTransferWithoutWriteScope(t *testing.T) {
	e := newEnv(t)
	args := map[string]any{"to": "alice@example.com", "amount": 5, "idempotency_key": "k1"}

	// With the go-sdk client: the call fails, the session lives on.
	cs := mcptest.Connect(t, e.srv.URL, "charlie", "")
	if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "transfer", Arguments: args}); err == nil ||
		!strings.Contains(err.Error(), "insufficient_scope") {
		t.Fatalf("charlie's transfer: err = %v", err)
	}
	if got := balance(t, cs); got != 20 {
		t.Errorf("charlie's balance after a refused transfer: %d", got)
	}

	// On the wire: 403 and the step-up challenge.
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": map[string]any{
		"name": "transfer", "arguments": args,
		"_meta": map[string]any{"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": map[string]any{}},
	}})
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL, strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer charlie")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/call")
	req.Header.Set("Mcp-Name", "transfer")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	want := `Bearer error="insufficient_scope", error_description="tool transfer requires scope payments:write", scope="payments:write", resource_metadata="` + metadataURL + `"`
	if got := resp.Header.Get("WWW-Authenticate"); got != want {
		t.Errorf("WWW-Authenticate = %s\nwant %s", got, want)
	}

	denied := e.audit.OfType(audit.TypeToolDenied)
	if len(denied) != 2 {
		t.Fatalf("tool.denied events: %+v", denied)
	}
	for _, d := range denied {
		if d.Tool != "transfer" || d.UserID != e.ids["charlie"] || d.Reason != audit.ReasonMissingScopes ||
			!cmp.Equal(d.Details["missing"], []string{demo.ScopeWrite}) {
			t.Errorf("tool.denied = %+v", d)
		}
	}
	ledger, _ := e.st.ListLedgerTransactions(context.Background(), e.ids["charlie"], 0)
	if len(ledger) != 4 {
		t.Errorf("charlie's ledger changed: %d transactions", len(ledger))
	}
}

func TestTransfer(t *testing.T) {
	e := newEnv(t)
	alice := mcptest.Connect(t, e.srv.URL, "alice", "")
	today := time.Now().UTC().Format(time.DateOnly)

	const amountMsg = "amount must be a whole number from 1 to 1000000"
	const keyMsg = "idempotency_key must be 1 to 128 printable ASCII characters"
	type args = map[string]any
	tr := func(to string, amount any, key string) args {
		return args{"to": to, "amount": amount, "idempotency_key": key}
	}
	for _, tc := range []struct {
		name    string
		args    args
		wantErr string // exact isError text; "" = success
		want    demo.TransferOut
		balance int64 // alice's balance afterwards
	}{
		{"zero", tr("bob@example.com", 0, "k0"), amountMsg, demo.TransferOut{}, 180},
		{"negative", tr("bob@example.com", -5, "k0"), amountMsg, demo.TransferOut{}, 180},
		{"fraction", tr("bob@example.com", 12.5, "k0"), amountMsg, demo.TransferOut{}, 180},
		{"too large", tr("bob@example.com", 1e12, "k0"), amountMsg, demo.TransferOut{}, 180},
		{"just too large", tr("bob@example.com", 1_000_001, "k0"), amountMsg, demo.TransferOut{}, 180},
		{"unknown recipient", tr("nobody@example.com", 5, "k0"), `unknown recipient "nobody@example.com"`, demo.TransferOut{}, 180},
		{"disabled recipient", tr("zed@example.com", 5, "k0"), `unknown recipient "zed@example.com"`, demo.TransferOut{}, 180},
		{"empty recipient", tr("  ", 5, "k0"), "to must be the recipient's email address", demo.TransferOut{}, 180},
		{"self", tr("  ALICE@example.com ", 5, "k0"), "you cannot transfer money to yourself", demo.TransferOut{}, 180},
		{"insufficient", tr("bob@example.com", 181, "k0"), "insufficient funds: your balance is 180", demo.TransferOut{}, 180},
		{"empty key", tr("bob@example.com", 5, ""), keyMsg, demo.TransferOut{}, 180},
		{"long key", tr("bob@example.com", 5, strings.Repeat("k", 129)), keyMsg, demo.TransferOut{}, 180},
		{"control char in key", tr("bob@example.com", 5, "k\n1"), keyMsg, demo.TransferOut{}, 180},
		{"non-ASCII key", tr("bob@example.com", 5, "clé"), keyMsg, demo.TransferOut{}, 180},
		{"missing key", args{"to": "bob@example.com", "amount": 5}, `validating "arguments": validating root: required: missing properties: ["idempotency_key"]`, demo.TransferOut{}, 180},
		{"ok", tr(" Bob@Example.com ", 30, "k1"), "",
			demo.TransferOut{Transaction: demo.Transaction{ID: 8, Date: today, Direction: "sent", Counterparty: "bob@example.com", Amount: 30}}, 150},
		{"replay", tr("bob@example.com", 30.0, "k1"), "",
			demo.TransferOut{Transaction: demo.Transaction{ID: 8, Date: today, Direction: "sent", Counterparty: "bob@example.com", Amount: 30}, Replayed: true}, 150},
		{"key reused for another amount", tr("bob@example.com", 31, "k1"),
			"idempotency_key was already used for a different transfer; use a new key for a new transfer", demo.TransferOut{}, 150},
		{"key reused for another recipient", tr("charlie@example.com", 30, "k1"),
			"idempotency_key was already used for a different transfer; use a new key for a new transfer", demo.TransferOut{}, 150},
		{"max key length, whole balance", tr("charlie@example.com", 150, strings.Repeat("x", 128)), "",
			demo.TransferOut{Transaction: demo.Transaction{ID: 9, Date: today, Direction: "sent", Counterparty: "charlie@example.com", Amount: 150}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := call(t, alice, "transfer", tc.args)
			if tc.wantErr != "" {
				if !res.IsError || text(res) != tc.wantErr {
					t.Errorf("isError=%v text=%q, want %q", res.IsError, text(res), tc.wantErr)
				}
			} else if got := decode[demo.TransferOut](t, res); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if got := balance(t, alice); got != tc.balance {
				t.Errorf("alice's balance = %d, want %d", got, tc.balance)
			}
		})
	}

	// bob sees the transfer from his side.
	bob := mcptest.Connect(t, e.srv.URL, "bob", "")
	latest := decode[demo.TransactionsOut](t, call(t, bob, "getLatestTransactions", map[string]any{"limit": 1}))
	want := []demo.Transaction{{ID: 8, Date: today, Direction: "received", Counterparty: "alice@example.com", Amount: 30}}
	if diff := cmp.Diff(want, latest.Transactions); diff != "" {
		t.Errorf("bob's latest (-want +got):\n%s", diff)
	}
	// Every refusal was an isError result, audited as an allowed call.
	for _, ev := range e.audit.OfType(audit.TypeToolCalled) {
		if ev.Tool == "transfer" && ev.Outcome != "allow" {
			t.Errorf("transfer audit = %+v", ev)
		}
	}
}

func TestConcurrentTransfersNeverOverdraw(t *testing.T) {
	e := newEnv(t)
	alice := mcptest.Connect(t, e.srv.URL, "alice", "")
	const n = 20 // 20 × 50 against a balance of 180: exactly 3 can succeed
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		ok, poor int
		other    []string
	)
	for i := range n {
		wg.Go(func() {
			res, err := alice.CallTool(context.Background(), &mcp.CallToolParams{Name: "transfer",
				Arguments: map[string]any{"to": "bob@example.com", "amount": 50, "idempotency_key": fmt.Sprintf("c-%d", i)}})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				other = append(other, err.Error())
			case !res.IsError:
				ok++
			case strings.HasPrefix(text(res), "insufficient funds"):
				poor++
			default:
				other = append(other, text(res))
			}
		})
	}
	// The same transfer retried concurrently moves money once.
	var replays sync.WaitGroup
	ids := make(chan int64, 10)
	for range 10 {
		replays.Go(func() {
			res, err := alice.CallTool(context.Background(), &mcp.CallToolParams{Name: "transfer",
				Arguments: map[string]any{"to": "charlie@example.com", "amount": 10, "idempotency_key": "same"}})
			if err != nil || res.IsError {
				t.Errorf("replayed transfer: %v %v", err, res)
				return
			}
			ids <- decode[demo.TransferOut](t, res).Transaction.ID
		})
	}
	wg.Wait()
	replays.Wait()
	close(ids)
	distinct := map[int64]bool{}
	for id := range ids {
		distinct[id] = true
	}
	if len(distinct) != 1 {
		t.Errorf("one idempotency key made transactions %v", distinct)
	}
	if len(other) > 0 {
		t.Errorf("unexpected results: %q", other)
	}
	final := balance(t, alice)
	// 180 - 10 (the replayed transfer) leaves room for 3 × 50.
	if ok != 3 || poor != n-3 || final != 20 {
		t.Errorf("succeeded %d, insufficient %d, final balance %d; want 3, %d, 20", ok, poor, final, n-3)
	}
}

// BenchmarkToolCall measures one tools/call (getAccountBalance on SQLite)
// through the whole endpoint, in process, against the bare SDK handler
// serving the same tool. The difference is mcpgate's cost: body read and
// policy, session and credential handling, bearer bridge, wrapper, audit.
func BenchmarkToolCall(b *testing.B) {
	e := newEnv(b)
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"getAccountBalance","arguments":{},` +
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	newReq := func(token string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+token)
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Accept", "application/json, text/event-stream")
		r.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		r.Header.Set("Mcp-Method", "tools/call")
		r.Header.Set("Mcp-Name", "getAccountBalance")
		return r
	}
	check := func(b *testing.B, w *httptest.ResponseRecorder) {
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"balance":180`) {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}

	b.Run("mcpgate", func(b *testing.B) {
		h := e.srv.Config.Handler // mcptest.Auth → mcpserver.Handler
		b.ReportAllocs()
		for b.Loop() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, newReq("alice"))
			check(b, w)
		}
	})

	b.Run("sdk-only", func(b *testing.B) {
		// The same tool on a bare go-sdk server: no policy, no audit, no
		// bridge; the user is fixed in the handler.
		srv := mcp.NewServer(&mcp.Implementation{Name: "bare", Version: "1"}, nil)
		alice := &principal.Principal{UserID: e.ids["alice"], Email: "alice@example.com"}
		mcp.AddTool(srv, &mcp.Tool{Name: "getAccountBalance"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, demo.BalanceOut, error) {
			bal, err := e.st.LedgerBalance(ctx, alice.UserID)
			return nil, demo.BalanceOut{Email: alice.Email, Balance: bal}, err
		})
		h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{Stateless: true})
		b.ReportAllocs()
		for b.Loop() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, newReq("alice"))
			check(b, w)
		}
	})
}
