package sqlstore_test

import (
	"testing"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/conformance"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

func TestTmpClientsSQLite(t *testing.T) {
	conformance.RunClients(t, func(t *testing.T) store.ClientStore { return storetest.SQLite(t) })
}

func TestTmpClientsPostgres(t *testing.T) {
	conformance.RunClients(t, func(t *testing.T) store.ClientStore { return storetest.Postgres(t) })
}
