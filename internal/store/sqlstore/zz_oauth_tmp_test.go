package sqlstore_test

import (
	"testing"

	"github.com/mcpgate/mcpgate/internal/store/conformance"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

func TestTmpOAuthSQLite(t *testing.T) {
	conformance.RunOAuth(t, func(t *testing.T) conformance.OAuthTestStore { return storetest.SQLite(t) })
}

func TestTmpOAuthPostgres(t *testing.T) {
	conformance.RunOAuth(t, func(t *testing.T) conformance.OAuthTestStore { return storetest.Postgres(t) })
}
