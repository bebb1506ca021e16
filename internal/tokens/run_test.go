package tokens

import (
	"context"
	"testing"
	"time"
)

// TestRun: the background loop rotates once the schedule says so and
// stops with its context.
func TestRun(t *testing.T) {
	st := sqliteStore(t)
	clk := &clock{now: t0}
	i := newIssuer(t, st, clk, func(o *Options) { o.RefreshEvery = 5 * time.Millisecond })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { i.Run(ctx); close(done) }()

	clk.Add(DefaultRotateEvery)
	deadline := time.After(10 * time.Second)
	for len(jwksKids(t, i)) < 2 {
		select {
		case <-deadline:
			t.Fatal("Run did not rotate the key")
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if n := len(storedKeys(t, st)); n != 2 {
		t.Errorf("%d keys stored, want 2", n)
	}
}
