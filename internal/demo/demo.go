// Package demo is the built-in "payments" MCP server mcpgate serves when no
// upstream is configured, after the classic FastMCP example: a small ledger
// where every tool answers with the caller's own data only, except
// getAnyAccountBalance, which needs the auditor role (RoleAuditor) as well
// as payments:read.
package demo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/mcpserver"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/store"
)

// Scopes of the demo tools.
const (
	ScopeRead  = "payments:read"
	ScopeWrite = "payments:write"
)

// RoleAuditor may read any user's balance (getAnyAccountBalance). It is a
// role of the user (a local role, or one an external issuer maps in), not a
// scope: no credential the user creates or authorizes can carry it without
// the user holding it.
const RoleAuditor = "auditor"

// Limits.
const (
	MaxTransfer        = 1_000_000 // largest amount one transfer may move
	MaxIdempotencyKey  = 128       // longest idempotency key, in characters
	MaxLatest          = 100       // most transactions getLatestTransactions returns
	DefaultLatest      = 3
	maxAllTransactions = 1000 // getAllTransactions returns at most this many (newest)
	maxEmail           = 320  // RFC 5321 bounds a path to 256; anything longer is no address
)

// Transaction is one ledger movement as the caller sees it.
type Transaction struct {
	ID           int64  `json:"id"`
	Date         string `json:"date" jsonschema:"day of the transaction, YYYY-MM-DD (UTC)"`
	Direction    string `json:"direction" jsonschema:"sent or received, from the caller's point of view"`
	Counterparty string `json:"counterparty" jsonschema:"email of the other party"`
	Amount       int64  `json:"amount" jsonschema:"whole currency units"`
}

// TransactionsOut is the result of the listing tools.
type TransactionsOut struct {
	Transactions []Transaction `json:"transactions"`
	// Truncated is true when getAllTransactions left older transactions out.
	Truncated bool `json:"truncated"`
}

// BalanceOut is the result of getAccountBalance and getAnyAccountBalance.
type BalanceOut struct {
	Email   string `json:"email"`
	Balance int64  `json:"balance" jsonschema:"received minus sent, whole currency units"`
	// Organization is the caller's organisation_id custom claim (a custom
	// login or an external issuer vouched for it), when there is one: the
	// pattern a tool uses to scope data by organisation.
	Organization string `json:"organization,omitempty" jsonschema:"the caller's organisation, from the organization_id claim"`
}

// AnyBalanceIn are the arguments of getAnyAccountBalance.
type AnyBalanceIn struct {
	Email string `json:"email"`
}

// LatestIn are the arguments of getLatestTransactions.
type LatestIn struct {
	Limit int `json:"limit"`
}

// TransferIn are the arguments of transfer. Amount is a JSON number, not an
// integer, in the schema: 12.5 must reach the handler and be refused with a
// clear message rather than a schema error.
type TransferIn struct {
	To             string  `json:"to"`
	Amount         float64 `json:"amount"`
	IdempotencyKey string  `json:"idempotency_key"`
}

// TransferOut is the result of transfer.
type TransferOut struct {
	Transaction Transaction `json:"transaction"`
	// Replayed is true when the idempotency key was used before with the
	// same recipient and amount: nothing moved this time.
	Replayed bool `json:"replayed"`
}

func boolPtr(b bool) *bool { return &b }

// Register adds the payment tools to r, backed by st.
func Register(r *mcpserver.Registry, st store.Store) {
	t := &tools{st: st, now: time.Now}
	read := []string{ScopeRead}
	readOnly := &mcp.ToolAnnotations{ReadOnlyHint: true, IdempotentHint: true, OpenWorldHint: boolPtr(false)}

	mcpserver.AddTool(r, &mcp.Tool{
		Name:        "getAllTransactions",
		Title:       "All transactions",
		Description: fmt.Sprintf("List the transactions you sent or received, newest first (at most %d), with the other party's email, direction, amount and date.", maxAllTransactions),
		Annotations: readOnly,
	}, read, t.getAllTransactions)

	mcpserver.AddTool(r, &mcp.Tool{
		Name:        "getLatestTransactions",
		Title:       "Latest transactions",
		Description: fmt.Sprintf("List your most recent transactions, newest first (limit 1-%d, default %d).", MaxLatest, DefaultLatest),
		Annotations: readOnly,
		InputSchema: map[string]any{
			"type": "object",
			"properties": map[string]any{
				"limit": map[string]any{
					"type": "integer", "minimum": 1, "maximum": MaxLatest, "default": DefaultLatest,
					"description": "how many transactions to return",
				},
			},
			"additionalProperties": false,
		},
	}, read, t.getLatestTransactions)

	mcpserver.AddTool(r, &mcp.Tool{
		Name:        "getAccountBalance",
		Title:       "Account balance",
		Description: "Your current balance: everything received minus everything sent.",
		Annotations: readOnly,
	}, read, t.getAccountBalance)

	// Roles in decisions: the scope says what the credential may do, the
	// role who the user is. Only an auditor with payments:read sees or calls
	// this tool.
	mcpserver.AddToolWith(r, &mcp.Tool{
		Name:        "getAnyAccountBalance",
		Title:       "Any account's balance (auditors)",
		Description: "Auditors only: the current balance of any user, identified by email (everything received minus everything sent).",
		Annotations: readOnly,
		InputSchema: map[string]any{
			"type": "object",
			"properties": map[string]any{
				"email": map[string]any{"type": "string", "description": "the account holder's email address"},
			},
			"required":             []string{"email"},
			"additionalProperties": false,
		},
	}, mcpserver.Require{Scopes: read, Roles: []string{RoleAuditor}}, t.getAnyAccountBalance)

	mcpserver.AddTool(r, &mcp.Tool{
		Name:  "transfer",
		Title: "Transfer money",
		Description: fmt.Sprintf("Send money to another user, identified by email. The amount is a whole number from 1 to %d. "+
			"Choose a new random idempotency_key for every new transfer and reuse it only to retry the same transfer: "+
			"a retry with the same key does not move money twice.", MaxTransfer),
		Annotations: &mcp.ToolAnnotations{IdempotentHint: true, OpenWorldHint: boolPtr(false)},
		InputSchema: map[string]any{
			"type": "object",
			"properties": map[string]any{
				"to": map[string]any{"type": "string", "description": "the recipient's email address"},
				"amount": map[string]any{
					"type":        "number",
					"description": fmt.Sprintf("whole currency units, 1 to %d", MaxTransfer),
				},
				"idempotency_key": map[string]any{
					"type":        "string",
					"description": fmt.Sprintf("1 to %d printable ASCII characters, unique per transfer (e.g. a UUID)", MaxIdempotencyKey),
				},
			},
			"required":             []string{"to", "amount", "idempotency_key"},
			"additionalProperties": false,
		},
	}, []string{ScopeWrite}, t.transfer)
}

type tools struct {
	st  store.Store
	now func() time.Time
}

// caller returns the authenticated user. The registry wrapper guarantees a
// principal; a missing user id is a wiring bug, not the caller's fault.
func caller(ctx context.Context) (*principal.Principal, error) {
	p := principal.From(ctx)
	if p == nil || p.UserID == "" {
		return nil, errors.New("demo: no user principal in context")
	}
	return p, nil
}

func (t *tools) getAllTransactions(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, TransactionsOut, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, TransactionsOut{}, err
	}
	txs, err := t.st.ListLedgerTransactions(ctx, p.UserID, maxAllTransactions+1)
	if err != nil {
		return nil, TransactionsOut{}, err
	}
	out := TransactionsOut{}
	if len(txs) > maxAllTransactions {
		txs, out.Truncated = txs[:maxAllTransactions], true
	}
	out.Transactions, err = t.view(ctx, p.UserID, txs)
	return nil, out, err
}

func (t *tools) getLatestTransactions(ctx context.Context, _ *mcp.CallToolRequest, in LatestIn) (*mcp.CallToolResult, TransactionsOut, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, TransactionsOut{}, err
	}
	// The schema already bounds limit; this keeps the store safe if it ever
	// does not.
	if in.Limit < 1 || in.Limit > MaxLatest {
		return nil, TransactionsOut{}, mcpserver.Errorf("limit must be a whole number from 1 to %d", MaxLatest)
	}
	txs, err := t.st.ListLedgerTransactions(ctx, p.UserID, in.Limit)
	if err != nil {
		return nil, TransactionsOut{}, err
	}
	out := TransactionsOut{}
	out.Transactions, err = t.view(ctx, p.UserID, txs)
	return nil, out, err
}

func (t *tools) getAccountBalance(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, BalanceOut, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, BalanceOut{}, err
	}
	bal, err := t.st.LedgerBalance(ctx, p.UserID)
	if err != nil {
		return nil, BalanceOut{}, err
	}
	email := p.Email
	if email == "" {
		u, err := t.st.GetUser(ctx, p.UserID)
		if err != nil {
			return nil, BalanceOut{}, err
		}
		email = u.Email
	}
	org, _ := p.ClaimString("organization_id")
	return nil, BalanceOut{Email: email, Balance: bal, Organization: org}, nil
}

// getAnyAccountBalance answers any user's balance. The registry lets only
// callers with RoleAuditor reach it; the check below is one more line of
// defence should the tool ever be registered without the role.
func (t *tools) getAnyAccountBalance(ctx context.Context, _ *mcp.CallToolRequest, in AnyBalanceIn) (*mcp.CallToolResult, BalanceOut, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, BalanceOut{}, err
	}
	if !p.HasRole(RoleAuditor) {
		return nil, BalanceOut{}, errors.New("demo: getAnyAccountBalance reached without the auditor role")
	}
	email := strings.ToLower(strings.TrimSpace(in.Email))
	if email == "" {
		return nil, BalanceOut{}, mcpserver.Errorf("email must be the account holder's email address")
	}
	if len(email) > maxEmail {
		return nil, BalanceOut{}, mcpserver.Errorf("unknown user")
	}
	// Disabled users are answered too: an auditor reads closed accounts.
	u, err := t.st.GetUserByEmail(ctx, email)
	if errors.Is(err, store.ErrNotFound) {
		return nil, BalanceOut{}, mcpserver.Errorf("unknown user %q", email)
	}
	if err != nil {
		return nil, BalanceOut{}, err
	}
	bal, err := t.st.LedgerBalance(ctx, u.ID)
	if err != nil {
		return nil, BalanceOut{}, err
	}
	return nil, BalanceOut{Email: u.Email, Balance: bal}, nil
}

func (t *tools) transfer(ctx context.Context, _ *mcp.CallToolRequest, in TransferIn) (*mcp.CallToolResult, TransferOut, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, TransferOut{}, err
	}
	a := in.Amount
	if math.IsNaN(a) || a < 1 || a > MaxTransfer || a != math.Trunc(a) {
		return nil, TransferOut{}, mcpserver.Errorf("amount must be a whole number from 1 to %d", MaxTransfer)
	}
	amount := int64(a)
	if !validKey(in.IdempotencyKey) {
		return nil, TransferOut{}, mcpserver.Errorf("idempotency_key must be 1 to %d printable ASCII characters", MaxIdempotencyKey)
	}
	to := strings.ToLower(strings.TrimSpace(in.To))
	if to == "" {
		return nil, TransferOut{}, mcpserver.Errorf("to must be the recipient's email address")
	}
	if len(to) > maxEmail {
		return nil, TransferOut{}, mcpserver.Errorf("unknown recipient")
	}
	rcpt, err := t.st.GetUserByEmail(ctx, to)
	if errors.Is(err, store.ErrNotFound) || (err == nil && rcpt.Disabled) {
		return nil, TransferOut{}, mcpserver.Errorf("unknown recipient %q", to)
	}
	if err != nil {
		return nil, TransferOut{}, err
	}
	if rcpt.ID == p.UserID {
		return nil, TransferOut{}, mcpserver.Errorf("you cannot transfer money to yourself")
	}

	tx, replayed, err := t.st.ApplyTransfer(ctx, store.Transfer{
		FromUserID:     p.UserID,
		ToUserID:       rcpt.ID,
		Amount:         amount,
		IdempotencyKey: in.IdempotencyKey,
		At:             t.now(),
	})
	switch {
	case errors.Is(err, store.ErrInsufficientFunds):
		if bal, berr := t.st.LedgerBalance(ctx, p.UserID); berr == nil {
			return nil, TransferOut{}, mcpserver.Errorf("insufficient funds: your balance is %d", bal)
		}
		return nil, TransferOut{}, mcpserver.Errorf("insufficient funds")
	case errors.Is(err, store.ErrConflict):
		return nil, TransferOut{}, mcpserver.Errorf("idempotency_key was already used for a different transfer; use a new key for a new transfer")
	case err != nil:
		return nil, TransferOut{}, err
	}
	return nil, TransferOut{
		Transaction: viewOne(tx, p.UserID, rcpt.Email),
		Replayed:    replayed,
	}, nil
}

// validKey: 1..MaxIdempotencyKey printable ASCII characters (space included).
func validKey(k string) bool {
	if len(k) == 0 || len(k) > MaxIdempotencyKey {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// view renders txs from userID's point of view, looking each counterparty
// up once.
func (t *tools) view(ctx context.Context, userID string, txs []store.LedgerTransaction) ([]Transaction, error) {
	emails := make(map[string]string)
	out := make([]Transaction, 0, len(txs)) // never JSON null
	for _, tx := range txs {
		other := tx.ToUserID
		if tx.ToUserID == userID && tx.FromUserID != userID {
			other = tx.FromUserID
		}
		email, ok := emails[other]
		if !ok {
			u, err := t.st.GetUser(ctx, other)
			switch {
			case err == nil:
				email = u.Email
			case errors.Is(err, store.ErrNotFound):
				email = "(unknown user)"
			default:
				return nil, err
			}
			emails[other] = email
		}
		out = append(out, viewOne(tx, userID, email))
	}
	return out, nil
}

func viewOne(tx store.LedgerTransaction, userID, counterparty string) Transaction {
	dir := "sent"
	if tx.ToUserID == userID && tx.FromUserID != userID {
		dir = "received"
	}
	return Transaction{
		ID:           tx.ID,
		Date:         tx.CreatedAt.UTC().Format(time.DateOnly),
		Direction:    dir,
		Counterparty: counterparty,
		Amount:       tx.Amount,
	}
}

// SeedLedger inserts the classic example transactions between alice, bob
// and charlie (user ids) unless they are present. Ids are fixed, so running
// it again changes nothing. Balances afterwards (received minus sent; the
// demo ledger has no opening balances): alice 180, bob -200, charlie 20.
func SeedLedger(ctx context.Context, st store.Store, alice, bob, charlie string) error {
	if alice == "" || bob == "" || charlie == "" || alice == bob || bob == charlie || alice == charlie {
		return errors.New("demo: SeedLedger needs three distinct user ids")
	}
	day := func(d int) time.Time { return time.Date(2024, time.March, d, 12, 0, 0, 0, time.UTC) }
	seed := []store.LedgerTransaction{
		{ID: 1, FromUserID: bob, ToUserID: alice, Amount: 100, CreatedAt: day(15)},
		{ID: 2, FromUserID: alice, ToUserID: charlie, Amount: 50, CreatedAt: day(16)},
		{ID: 3, FromUserID: bob, ToUserID: charlie, Amount: 75, CreatedAt: day(17)},
		{ID: 4, FromUserID: charlie, ToUserID: bob, Amount: 25, CreatedAt: day(18)},
		{ID: 5, FromUserID: bob, ToUserID: alice, Amount: 200, CreatedAt: day(19)},
		{ID: 6, FromUserID: alice, ToUserID: bob, Amount: 150, CreatedAt: day(20)},
		{ID: 7, FromUserID: charlie, ToUserID: alice, Amount: 80, CreatedAt: day(21)},
	}
	for _, tx := range seed {
		if err := st.InsertLedgerTransaction(ctx, tx); err != nil && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("demo: seeding transaction %d: %w", tx.ID, err)
		}
	}
	return nil
}
