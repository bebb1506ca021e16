package conformance

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

func balanceOf(t *testing.T, s store.Store, userID string) int64 {
	t.Helper()
	b, err := s.LedgerBalance(t.Context(), userID)
	if err != nil {
		t.Fatalf("LedgerBalance: %v", err)
	}
	return b
}

func ledgerOf(t *testing.T, s store.Store, userID string) []store.LedgerTransaction {
	t.Helper()
	l, err := s.ListLedgerTransactions(t.Context(), userID, 0)
	if err != nil {
		t.Fatalf("ListLedgerTransactions: %v", err)
	}
	return l
}

// seed gives userID amount from bank with an explicit transaction id.
func seed(t *testing.T, s store.Store, id int64, bank, userID string, amount int64, when time.Time) store.LedgerTransaction {
	t.Helper()
	tx := store.LedgerTransaction{ID: id, FromUserID: bank, ToUserID: userID, Amount: amount, CreatedAt: when}
	if err := s.InsertLedgerTransaction(t.Context(), tx); err != nil {
		t.Fatalf("InsertLedgerTransaction: %v", err)
	}
	tx.CreatedAt = ms(tx.CreatedAt)
	return tx
}

func testLedgerSeedListBalance(t *testing.T, s store.Store) {
	ctx := t.Context()
	bank := mustUser(t, s, "bank@example.com")
	a := mustUser(t, s, "a@example.com")
	b := mustUser(t, s, "b@example.com")

	t1 := seed(t, s, 100, bank.ID, a.ID, 500, at(0))
	t2 := seed(t, s, 101, bank.ID, b.ID, 300, at(0))
	t3 := store.LedgerTransaction{ID: 102, FromUserID: a.ID, ToUserID: b.ID, Amount: 120, CreatedAt: at(time.Minute), IdempotencyKey: "seed-1"}
	if err := s.InsertLedgerTransaction(ctx, t3); err != nil {
		t.Fatalf("InsertLedgerTransaction: %v", err)
	}
	t3.CreatedAt = ms(t3.CreatedAt)
	// Same created_at as t3: the higher id is newer.
	t4 := seed(t, s, 103, b.ID, a.ID, 20, at(time.Minute))
	// ID 0: the store assigns one, above every explicit id.
	if err := s.InsertLedgerTransaction(ctx, store.LedgerTransaction{FromUserID: bank.ID, ToUserID: a.ID, Amount: 1, CreatedAt: at(2 * time.Minute)}); err != nil {
		t.Fatalf("InsertLedgerTransaction(ID 0): %v", err)
	}

	for _, tc := range []struct {
		user string
		want int64
	}{{a.ID, 500 - 120 + 20 + 1}, {b.ID, 300 + 120 - 20}, {bank.ID, -801}, {store.NewID("usr"), 0}} {
		if got := balanceOf(t, s, tc.user); got != tc.want {
			t.Errorf("LedgerBalance(%s) = %d, want %d", tc.user, got, tc.want)
		}
	}

	gotA := ledgerOf(t, s, a.ID)
	if len(gotA) != 4 {
		t.Fatalf("ListLedgerTransactions(a) = %d, want 4", len(gotA))
	}
	auto := gotA[0]
	if auto.ID <= 103 || auto.Amount != 1 {
		t.Errorf("auto-assigned transaction = %+v, want an id above 103", auto)
	}
	if d := diff([]store.LedgerTransaction{auto, t4, t3, t1}, gotA); d != "" {
		t.Errorf("ListLedgerTransactions(a), newest first (-want +got):\n%s", d)
	}
	if d := diff([]store.LedgerTransaction{t4, t3, t2}, ledgerOf(t, s, b.ID)); d != "" {
		t.Errorf("ListLedgerTransactions(b) (-want +got):\n%s", d)
	}
	limited, err := s.ListLedgerTransactions(ctx, a.ID, 2)
	if err != nil {
		t.Fatalf("ListLedgerTransactions(limit 2): %v", err)
	}
	if d := diff([]store.LedgerTransaction{auto, t4}, limited); d != "" {
		t.Errorf("ListLedgerTransactions(a, 2) (-want +got):\n%s", d)
	}
	if got := ledgerOf(t, s, store.NewID("usr")); len(got) != 0 {
		t.Errorf("ListLedgerTransactions(unknown) = %v, want none", got)
	}

	// A transfer after seeding gets a fresh id too.
	tx, _, err := s.ApplyTransfer(ctx, store.Transfer{FromUserID: a.ID, ToUserID: b.ID, Amount: 1, At: at(3 * time.Minute)})
	if err != nil {
		t.Fatalf("ApplyTransfer: %v", err)
	}
	if tx.ID <= auto.ID {
		t.Errorf("ApplyTransfer id %d not above %d", tx.ID, auto.ID)
	}
}

func testLedgerInsertConflict(t *testing.T, s store.Store) {
	ctx := t.Context()
	bank := mustUser(t, s, "bank@example.com")
	a := mustUser(t, s, "a@example.com")
	t1 := seed(t, s, 7, bank.ID, a.ID, 50, at(0))
	dup := store.LedgerTransaction{ID: 7, FromUserID: bank.ID, ToUserID: a.ID, Amount: 999, CreatedAt: at(0)}
	if err := s.InsertLedgerTransaction(ctx, dup); !errors.Is(err, store.ErrConflict) {
		t.Errorf("InsertLedgerTransaction(duplicate id) err = %v, want ErrConflict", err)
	}
	k1 := store.LedgerTransaction{ID: 8, FromUserID: bank.ID, ToUserID: a.ID, Amount: 5, CreatedAt: at(0), IdempotencyKey: "k"}
	if err := s.InsertLedgerTransaction(ctx, k1); err != nil {
		t.Fatalf("InsertLedgerTransaction: %v", err)
	}
	k2 := store.LedgerTransaction{ID: 9, FromUserID: bank.ID, ToUserID: a.ID, Amount: 5, CreatedAt: at(0), IdempotencyKey: "k"}
	if err := s.InsertLedgerTransaction(ctx, k2); !errors.Is(err, store.ErrConflict) {
		t.Errorf("InsertLedgerTransaction(duplicate idempotency key) err = %v, want ErrConflict", err)
	}
	bad := store.LedgerTransaction{ID: 10, FromUserID: bank.ID, ToUserID: a.ID, Amount: 0, CreatedAt: at(0)}
	if err := s.InsertLedgerTransaction(ctx, bad); err == nil {
		t.Error("InsertLedgerTransaction(amount 0) succeeded")
	}
	if got := balanceOf(t, s, a.ID); got != t1.Amount+k1.Amount {
		t.Errorf("balance = %d, want %d", got, t1.Amount+k1.Amount)
	}
}

func testApplyTransfer(t *testing.T, s store.Store) {
	ctx := t.Context()
	bank := mustUser(t, s, "bank@example.com")
	a := mustUser(t, s, "a@example.com")
	b := mustUser(t, s, "b@example.com")
	seed(t, s, 1, bank.ID, a.ID, 100, at(0))

	tx, replayed, err := s.ApplyTransfer(ctx, store.Transfer{FromUserID: a.ID, ToUserID: b.ID, Amount: 60, IdempotencyKey: "pay-1", At: at(time.Minute)})
	if err != nil || replayed {
		t.Fatalf("ApplyTransfer = %+v, %v, %v; want a new transaction", tx, replayed, err)
	}
	want := store.LedgerTransaction{ID: tx.ID, FromUserID: a.ID, ToUserID: b.ID, Amount: 60, CreatedAt: ms(at(time.Minute)), IdempotencyKey: "pay-1"}
	if d := diff(want, tx); d != "" {
		t.Errorf("ApplyTransfer result (-want +got):\n%s", d)
	}
	if got := ledgerOf(t, s, b.ID); len(got) != 1 || diff(want, got[0]) != "" {
		t.Errorf("recipient's ledger = %+v, want [%+v]", got, want)
	}
	if got := balanceOf(t, s, a.ID); got != 40 {
		t.Errorf("sender balance = %d, want 40", got)
	}
	if got := balanceOf(t, s, b.ID); got != 60 {
		t.Errorf("recipient balance = %d, want 60", got)
	}
	// Spending the exact balance is allowed; no idempotency key is fine.
	if _, _, err := s.ApplyTransfer(ctx, store.Transfer{FromUserID: a.ID, ToUserID: b.ID, Amount: 40, At: at(2 * time.Minute)}); err != nil {
		t.Fatalf("ApplyTransfer(whole balance): %v", err)
	}
	if got := balanceOf(t, s, a.ID); got != 0 {
		t.Errorf("sender balance = %d, want 0", got)
	}
}

func testApplyTransferInsufficientFunds(t *testing.T, s store.Store) {
	ctx := t.Context()
	bank := mustUser(t, s, "bank@example.com")
	a := mustUser(t, s, "a@example.com")
	b := mustUser(t, s, "b@example.com")
	seed(t, s, 1, bank.ID, a.ID, 10, at(0))

	tr := store.Transfer{FromUserID: a.ID, ToUserID: b.ID, Amount: 11, IdempotencyKey: "k", At: at(time.Minute)}
	if _, _, err := s.ApplyTransfer(ctx, tr); !errors.Is(err, store.ErrInsufficientFunds) {
		t.Fatalf("ApplyTransfer(overdraw) err = %v, want ErrInsufficientFunds", err)
	}
	if got := ledgerOf(t, s, b.ID); len(got) != 0 {
		t.Errorf("failed transfer left rows: %+v", got)
	}
	if got := balanceOf(t, s, a.ID); got != 10 {
		t.Errorf("sender balance = %d, want 10", got)
	}
	// A user with no history at all has nothing to send.
	if _, _, err := s.ApplyTransfer(ctx, store.Transfer{FromUserID: b.ID, ToUserID: a.ID, Amount: 1, At: at(time.Minute)}); !errors.Is(err, store.ErrInsufficientFunds) {
		t.Errorf("ApplyTransfer(empty account) err = %v, want ErrInsufficientFunds", err)
	}
	// The refused attempt did not use up its idempotency key.
	seed(t, s, 2, bank.ID, a.ID, 1, at(0))
	tx, replayed, err := s.ApplyTransfer(ctx, tr)
	if err != nil || replayed || tx.Amount != 11 {
		t.Errorf("retry after funding = %+v, %v, %v; want a new transaction", tx, replayed, err)
	}
}

func testApplyTransferIdempotency(t *testing.T, s store.Store) {
	ctx := t.Context()
	bank := mustUser(t, s, "bank@example.com")
	a := mustUser(t, s, "a@example.com")
	b := mustUser(t, s, "b@example.com")
	c := mustUser(t, s, "c@example.com")
	seed(t, s, 1, bank.ID, a.ID, 100, at(0))
	seed(t, s, 2, bank.ID, c.ID, 100, at(0))

	tr := store.Transfer{FromUserID: a.ID, ToUserID: b.ID, Amount: 30, IdempotencyKey: "pay-1", At: at(time.Minute)}
	first, replayed, err := s.ApplyTransfer(ctx, tr)
	if err != nil || replayed {
		t.Fatalf("ApplyTransfer = %v, %v", replayed, err)
	}
	// Same key, same transfer (even later): the original comes back.
	again := tr
	again.At = at(time.Hour)
	got, replayed, err := s.ApplyTransfer(ctx, again)
	if err != nil || !replayed {
		t.Fatalf("replay = %v, %v; want replayed", replayed, err)
	}
	if d := diff(first, got); d != "" {
		t.Errorf("replay returned (-want +got):\n%s", d)
	}
	// Same key, different amount or recipient: conflict.
	for _, bad := range []store.Transfer{
		{FromUserID: a.ID, ToUserID: b.ID, Amount: 31, IdempotencyKey: "pay-1", At: at(time.Minute)},
		{FromUserID: a.ID, ToUserID: c.ID, Amount: 30, IdempotencyKey: "pay-1", At: at(time.Minute)},
	} {
		if _, _, err := s.ApplyTransfer(ctx, bad); !errors.Is(err, store.ErrConflict) {
			t.Errorf("ApplyTransfer(%+v) err = %v, want ErrConflict", bad, err)
		}
	}
	// Keys are per sender: c may use "pay-1" as well.
	if _, replayed, err := s.ApplyTransfer(ctx, store.Transfer{FromUserID: c.ID, ToUserID: b.ID, Amount: 30, IdempotencyKey: "pay-1", At: at(time.Minute)}); err != nil || replayed {
		t.Errorf("other sender, same key = %v, %v; want a new transaction", replayed, err)
	}
	if got := balanceOf(t, s, a.ID); got != 70 {
		t.Errorf("sender balance = %d, want 70 (one transfer)", got)
	}
	if got := len(ledgerOf(t, s, b.ID)); got != 2 {
		t.Errorf("recipient has %d transactions, want 2", got)
	}
}

func testApplyTransferUnknownUsers(t *testing.T, s store.Store) {
	ctx := t.Context()
	bank := mustUser(t, s, "bank@example.com")
	a := mustUser(t, s, "a@example.com")
	seed(t, s, 1, bank.ID, a.ID, 100, at(0))
	ghost := store.NewID("usr")
	if _, _, err := s.ApplyTransfer(ctx, store.Transfer{FromUserID: a.ID, ToUserID: ghost, Amount: 1, At: at(0)}); err == nil {
		t.Error("ApplyTransfer to an unknown user succeeded")
	}
	if _, _, err := s.ApplyTransfer(ctx, store.Transfer{FromUserID: ghost, ToUserID: a.ID, Amount: 1, At: at(0)}); err == nil {
		t.Error("ApplyTransfer from an unknown user succeeded")
	}
	if got := ledgerOf(t, s, a.ID); len(got) != 1 {
		t.Errorf("failed transfers left rows: %+v", got)
	}
}

func testApplyTransferConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	bank := mustUser(t, s, "bank@example.com")
	a := mustUser(t, s, "a@example.com")
	b := mustUser(t, s, "b@example.com")
	const (
		amount   = 10
		covered  = 5
		attempts = 20
	)
	seed(t, s, 1, bank.ID, a.ID, amount*covered, at(0))

	var (
		wg                sync.WaitGroup
		ok, short, failed atomic.Int32
		negative          atomic.Bool
		done              = make(chan struct{})
	)
	// Watch the balance while transfers run: it must never go negative.
	watcher := make(chan struct{})
	go func() {
		defer close(watcher)
		for {
			select {
			case <-done:
				return
			default:
			}
			if bal, err := s.LedgerBalance(ctx, a.ID); err == nil && bal < 0 {
				negative.Store(true)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for i := range attempts {
		wg.Go(func() {
			_, _, err := s.ApplyTransfer(ctx, store.Transfer{
				FromUserID: a.ID, ToUserID: b.ID, Amount: amount,
				IdempotencyKey: fmt.Sprintf("k%d", i), At: at(time.Duration(i) * time.Second),
			})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, store.ErrInsufficientFunds):
				short.Add(1)
			default:
				failed.Add(1)
				t.Errorf("concurrent ApplyTransfer: %v", err)
			}
		})
	}
	wg.Wait()
	close(done)
	<-watcher

	if ok.Load() != covered || short.Load() != attempts-covered || failed.Load() != 0 {
		t.Errorf("%d concurrent transfers: %d succeeded, %d insufficient, %d failed; want %d, %d, 0",
			attempts, ok.Load(), short.Load(), failed.Load(), covered, attempts-covered)
	}
	if negative.Load() {
		t.Error("balance went negative during concurrent transfers")
	}
	if got := balanceOf(t, s, a.ID); got != 0 {
		t.Errorf("final sender balance = %d, want 0", got)
	}
	if got := balanceOf(t, s, b.ID); got != amount*covered {
		t.Errorf("final recipient balance = %d, want %d", got, amount*covered)
	}
}

func testApplyTransferConcurrentReplay(t *testing.T, s store.Store) {
	ctx := t.Context()
	bank := mustUser(t, s, "bank@example.com")
	a := mustUser(t, s, "a@example.com")
	b := mustUser(t, s, "b@example.com")
	seed(t, s, 1, bank.ID, a.ID, 1000, at(0))

	// A client retrying one transfer many times at once moves money once.
	const n = 10
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ids     = map[int64]int{}
		replays int
	)
	for range n {
		wg.Go(func() {
			tx, replayed, err := s.ApplyTransfer(ctx, store.Transfer{FromUserID: a.ID, ToUserID: b.ID, Amount: 25, IdempotencyKey: "same", At: at(time.Minute)})
			if err != nil {
				t.Errorf("concurrent retry: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ids[tx.ID]++
			if replayed {
				replays++
			}
		})
	}
	wg.Wait()
	if len(ids) != 1 || replays != n-1 {
		t.Errorf("%d concurrent retries gave transaction ids %v with %d replays; want one id and %d replays", n, ids, replays, n-1)
	}
	if got := balanceOf(t, s, b.ID); got != 25 {
		t.Errorf("recipient balance = %d, want 25", got)
	}
}
