package audit_test

import (
	"context"
	"sync"
	"testing"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

func TestWriterStampsBatchesAndDrainsOnClose(t *testing.T) {
	db := storetest.SQLite(t)
	var hooked int
	w := audit.NewWriter(db, audit.Options{BatchSize: 7, OnEvent: func(audit.Event) { hooked++ }})
	ctx := httpx.WithInfo(context.Background(), httpx.RequestInfo{ClientIP: "203.0.113.9", UserAgent: "curl/8"})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				w.Record(ctx, audit.Event{Type: audit.TypeAuthRejected, Outcome: store.OutcomeDeny, Reason: audit.ReasonUnknown})
			}
		}()
	}
	wg.Wait()
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	evs, err := db.ListAudit(context.Background(), store.AuditFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 100 || hooked != 100 {
		t.Fatalf("stored %d events, hook saw %d; want 100 each", len(evs), hooked)
	}
	if e := evs[0]; e.ClientIP != "203.0.113.9" || e.UserAgent != "curl/8" || e.Time.IsZero() {
		t.Errorf("event not stamped from the request: %+v", e)
	}
	// Events recorded just before Close are written, not dropped.
	for i := 0; i < 10; i++ {
		w.Record(context.Background(), audit.Event{Type: audit.TypeKeyCreated, Outcome: store.OutcomeAllow})
	}
	w.Close()
	w.Close() // idempotent
	// After Close, Record still writes (synchronously) rather than losing the event.
	w.Record(context.Background(), audit.Event{Type: audit.TypeKeyRevoked, Outcome: store.OutcomeAllow})
	evs, _ = db.ListAudit(context.Background(), store.AuditFilter{Limit: 1000})
	if len(evs) != 111 {
		t.Fatalf("after Close: %d events, want 111", len(evs))
	}
}
