package sqlstore_test

import (
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

// BenchmarkLookupAPIKey measures the uncached verification path: one
// lookup by hash joined with the owner, among 1000 keys.
func BenchmarkLookupAPIKey(b *testing.B) {
	for _, backend := range []struct {
		name string
		open func(testing.TB) *sqlstore.DB
	}{{"sqlite", storetest.SQLite}, {"postgres", storetest.Postgres}} {
		b.Run(backend.name, func(b *testing.B) {
			db := backend.open(b)
			hashes := seedKeys(b, db, 1000)
			b.Run("serial", func(b *testing.B) {
				i := 0
				for b.Loop() {
					if _, _, err := db.LookupAPIKey(b.Context(), hashes[i%len(hashes)]); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
			b.Run("parallel", func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						if _, _, err := db.LookupAPIKey(b.Context(), hashes[i%len(hashes)]); err != nil {
							b.Error(err)
							return
						}
						i++
					}
				})
			})
		})
	}
}

func seedKeys(b *testing.B, db *sqlstore.DB, n int) [][]byte {
	b.Helper()
	ctx := b.Context()
	now := time.Now()
	u := store.User{ID: store.NewID("usr"), Email: "bench@example.com", Roles: []string{"user"}, CreatedAt: now, UpdatedAt: now}
	if err := db.CreateUser(ctx, u); err != nil {
		b.Fatal(err)
	}
	hashes := make([][]byte, n)
	for i := range hashes {
		h := sha256.Sum256(fmt.Appendf(nil, "key-%d", i))
		hashes[i] = h[:]
		k := store.APIKey{ID: store.NewID("key"), UserID: u.ID, Name: fmt.Sprint(i), Prefix: "mcpg_x", Hash: h[:],
			Kind: store.KeyKindManual, Scopes: []string{"mcp:tools"}, CreatedAt: now}
		if err := db.CreateAPIKey(ctx, k); err != nil {
			b.Fatal(err)
		}
	}
	return hashes
}
