package conformance

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mcpgate/mcpgate/internal/store"
)

// testHostileAuditText: the audit log must record attacker-chosen text
// (tool names from JSON-RPC, User-Agent headers) even when it holds NUL
// bytes or invalid UTF-8, which some databases refuse. The stored form is
// valid UTF-8 without NUL and keeps the readable parts.
func testHostileAuditText(t *testing.T, s store.Store) {
	e := store.AuditEvent{
		Time: at(0), Type: "tool.call", Outcome: store.OutcomeDeny, Reason: "unknown\x00tool",
		UserID: "usr_1", Tool: "evil\x00tool", UserAgent: "bad\xff\xfeagent", Resource: "r\xc3",
		Details: map[string]any{"arg": "x\x00y", "bytes\xff": "\xff"},
	}
	appendAudit(t, s, e)
	got := listAudit(t, s, store.AuditFilter{})
	if len(got) != 1 {
		t.Fatalf("ListAudit = %d events, want 1", len(got))
	}
	g := got[0]
	for _, f := range []struct{ name, value, keep1, keep2 string }{
		{"Reason", g.Reason, "unknown", "tool"},
		{"Tool", g.Tool, "evil", "tool"},
		{"UserAgent", g.UserAgent, "bad", "agent"},
		{"Resource", g.Resource, "r", ""},
	} {
		if !utf8.ValidString(f.value) || strings.ContainsRune(f.value, 0) {
			t.Errorf("%s stored as %q: want valid UTF-8 without NUL", f.name, f.value)
		}
		if !strings.HasPrefix(f.value, f.keep1) || !strings.HasSuffix(f.value, f.keep2) {
			t.Errorf("%s stored as %q: lost the readable text", f.name, f.value)
		}
	}
	// The hostile value is still findable through the filter.
	if got := listAudit(t, s, store.AuditFilter{Type: "tool.call", UserID: "usr_1"}); len(got) != 1 {
		t.Errorf("filtered ListAudit = %d events, want 1", len(got))
	}
}

// testHostileIdentifiers: ids and emails an attacker puts in a URL are
// simply not found, whatever bytes they hold; writes of such text fail
// cleanly and store nothing.
func testHostileIdentifiers(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "alice@example.com")
	for _, id := range []string{"usr_\x00", "usr_\xff", u.ID + "\x00", "' OR '1'='1"} {
		if _, err := s.GetUser(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetUser(%q) err = %v, want ErrNotFound", id, err)
		}
		if _, err := s.GetUserByEmail(ctx, id+"@example.com"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetUserByEmail(%q) err = %v, want ErrNotFound", id, err)
		}
		if _, err := s.UpdateUser(ctx, id, func(u store.User) (store.User, error) { return u, nil }); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("UpdateUser(%q) err = %v, want ErrNotFound", id, err)
		}
		if _, err := s.GetAPIKey(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetAPIKey(%q) err = %v, want ErrNotFound", id, err)
		}
		if _, err := s.RevokeAPIKey(ctx, id, at(0)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RevokeAPIKey(%q) err = %v, want ErrNotFound", id, err)
		}
		if keys, err := s.ListAPIKeys(ctx, id); err != nil || len(keys) != 0 {
			t.Errorf("ListAPIKeys(%q) = %v, %v; want none", id, keys, err)
		}
		if err := s.TouchAPIKeys(ctx, map[string]time.Time{id: at(0)}); err != nil {
			t.Errorf("TouchAPIKeys(%q) err = %v, want nil (unknown ids are ignored)", id, err)
		}
		if b, err := s.LedgerBalance(ctx, id); err != nil || b != 0 {
			t.Errorf("LedgerBalance(%q) = %d, %v; want 0", id, b, err)
		}
		if txs, err := s.ListLedgerTransactions(ctx, id, 0); err != nil || len(txs) != 0 {
			t.Errorf("ListLedgerTransactions(%q) = %v, %v; want none", id, txs, err)
		}
	}

	bad := store.User{ID: store.NewID("usr"), Email: "bob@example.com", DisplayName: "Bob\x00", CreatedAt: at(0), UpdatedAt: at(0)}
	if err := s.CreateUser(ctx, bad); err == nil {
		t.Error("CreateUser with a NUL byte in the display name succeeded")
	}
	if _, err := s.GetUser(ctx, bad.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused user was stored: %v", err)
	}
	seed(t, s, 1, u.ID, u.ID, 1, at(0)) // a self-transfer: balance stays 0
	bob := mustUser(t, s, "bob@example.com")
	seed(t, s, 2, bob.ID, u.ID, 10, at(0))
	if _, _, err := s.ApplyTransfer(ctx, store.Transfer{FromUserID: u.ID, ToUserID: bob.ID, Amount: 1, IdempotencyKey: "k\xff", At: at(0)}); err == nil {
		t.Error("ApplyTransfer with an invalid idempotency key succeeded")
	}
	if got := len(ledgerOf(t, s, u.ID)); got != 2 {
		t.Errorf("ledger has %d transactions, want 2", got)
	}
}
