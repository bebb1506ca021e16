package apikeys

import (
	"testing"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

// The behaviour tests that use forEachBackend also run on the real SQL
// store: SQLite always, PostgreSQL when storetest.PostgresEnv is set.
func init() {
	backends = append(backends,
		backend{name: "sqlite", open: func(t testing.TB) store.Store { return storetest.SQLite(t) }},
		backend{name: "postgres", open: func(t testing.TB) store.Store { return storetest.Postgres(t) }},
	)
}
