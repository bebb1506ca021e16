package sqlstore_test

import (
	"testing"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/conformance"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

func TestTmpSigningKeys(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		conformance.RunSigningKeys(t, func(t *testing.T) store.SigningKeyStore { return storetest.SQLite(t) })
	})
	t.Run("postgres", func(t *testing.T) {
		conformance.RunSigningKeys(t, func(t *testing.T) store.SigningKeyStore { return storetest.Postgres(t) })
	})
}
