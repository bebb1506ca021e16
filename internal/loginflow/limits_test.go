package loginflow

import (
	"errors"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

// TestCreateNeedsSourceAndBoundsIt: a flow without the client it was
// started from is refused (it would escape the per-client bound), and one
// client's unfinished flows are bounded while another's are not.
func TestCreateNeedsSourceAndBoundsIt(t *testing.T) {
	db := storetest.SQLite(t)
	fl, err := New(Options{Store: db, ServerKey: key, MaxPendingPerSource: 2})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	f := upstreamFlow(Token(), now)
	f.Source = ""
	if _, err := fl.Create(t.Context(), f, nil); err == nil || errors.Is(err, store.ErrFull) {
		t.Fatalf("a flow without a source: %v, want refused", err)
	}
	for range 2 {
		if _, err := fl.Create(t.Context(), upstreamFlow(Token(), now), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fl.Create(t.Context(), upstreamFlow(Token(), now), nil); !errors.Is(err, store.ErrSourceFull) {
		t.Fatalf("a third unfinished flow of one client: %v, want ErrSourceFull", err)
	}
	other := upstreamFlow(Token(), now)
	other.Source = "2001:db8::/64"
	if _, err := fl.Create(t.Context(), other, nil); err != nil {
		t.Fatalf("another client: %v", err)
	}
}
