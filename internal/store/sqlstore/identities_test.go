package sqlstore_test

import (
	"errors"
	"testing"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

// Deleting a user removes its identities (ON DELETE CASCADE), so the
// external account can be provisioned afresh.
func TestIdentityCascade(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := t.Context()
		u := store.User{ID: store.NewID("usr"), Email: "gone@example.com"}
		id := store.UserIdentity{Issuer: "https://idp.example.com", Subject: "s", UserID: u.ID}
		if err := db.CreateUserWithIdentity(ctx, u, id); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SQL().ExecContext(ctx, `DELETE FROM users WHERE id = $1`, u.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := db.GetIdentity(ctx, id.Issuer, id.Subject); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("identity survived its user: %v", err)
		}
	})
}
