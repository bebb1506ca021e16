package apikeys

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

// Run with
//
//	go test -run x -bench . -benchmem ./internal/apikeys/
//
// Targets: VerifyCached ≤ 0.5 µs/op with 0 allocs/op; VerifyUncached
// within 2× of BareLookup (the store's LookupAPIKey alone, same run).

// benchSetup issues n keys on a fresh SQLite database and returns them with
// a Service using the real clock.
func benchSetup(b *testing.B, n int, opts Options) (*Service, store.Store, []string) {
	b.Helper()
	db := storetest.SQLite(b)
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := New(db, &recorder{}, opts)
	ctx := context.Background()
	u := store.User{ID: store.NewID("usr"), Email: "bench@example.com"}
	if err := db.CreateUser(ctx, u); err != nil {
		b.Fatal(err)
	}
	keys := make([]string, n)
	for i := range keys {
		p, _, err := svc.Issue(ctx, IssueRequest{UserID: u.ID, Name: fmt.Sprint("bench ", i), Scopes: []string{"payments:read", "tools:call"}})
		if err != nil {
			b.Fatal(err)
		}
		keys[i] = p
	}
	return svc, db, keys
}

func BenchmarkVerifyCached(b *testing.B) {
	for _, n := range []int{1, 10_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			svc, _, keys := benchSetup(b, n, Options{})
			ctx := context.Background()
			for _, k := range keys { // warm the cache
				if _, err := svc.Verify(ctx, k); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := svc.Verify(ctx, keys[i]); err != nil {
					b.Fatal(err)
				}
				if i++; i == len(keys) {
					i = 0
				}
			}
		})
	}
}

func BenchmarkVerifyCachedParallel(b *testing.B) {
	svc, _, keys := benchSetup(b, 64, Options{})
	ctx := context.Background()
	for _, k := range keys {
		if _, err := svc.Verify(ctx, k); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := svc.Verify(ctx, keys[i%len(keys)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

func BenchmarkVerifyUncached(b *testing.B) {
	svc, _, keys := benchSetup(b, 1000, Options{CacheTTL: -1})
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := svc.Verify(ctx, keys[i%len(keys)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkBareLookup is the floor for VerifyUncached: the store's lookup
// alone, on the same kind of database.
func BenchmarkBareLookup(b *testing.B) {
	_, db, keys := benchSetup(b, 1000, Options{})
	hashes := make([][32]byte, len(keys))
	for i, k := range keys {
		hashes[i] = Hash(k)
	}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, _, err := db.LookupAPIKey(ctx, hashes[i%len(hashes)][:]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkVerifyUnknown is what a flood of well-formed but unknown keys
// costs (each one reads the database; nothing is cached).
func BenchmarkVerifyUnknown(b *testing.B) {
	svc, _, _ := benchSetup(b, 1000, Options{})
	unknown := make([]string, 1000)
	for i := range unknown {
		unknown[i] = Generate()
	}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := svc.Verify(ctx, unknown[i%len(unknown)]); err != ErrUnknown {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkParse(b *testing.B) {
	k := Generate()
	b.ReportAllocs()
	for b.Loop() {
		if err := Parse(k); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGenerate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = Generate()
	}
}
