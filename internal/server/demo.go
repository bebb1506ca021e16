package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/store"
)

// demoUsers are created by --demo. alice is an admin so the account and admin
// pages have someone to show them to.
var demoUsers = []struct {
	email, name string
	roles       []string
}{
	{"alice@example.com", "Alice", []string{"admin"}},
	{"bob@example.com", "Bob", nil},
	{"charlie@example.com", "Charlie", []string{demo.RoleAuditor}},
}

// bootstrapDemo makes sure the demo users and ledger exist. A user created now
// gets a generated password and an API key with both demo scopes, printed
// once to out; users that already exist are reused and nothing secret is
// printed again (the database holds only hashes).
func bootstrapDemo(ctx context.Context, c *Core, out io.Writer) error {
	ids := make([]string, len(demoUsers))
	type secret struct{ email, password, key string }
	var created []secret
	for i, du := range demoUsers {
		u, err := c.Users.Get(ctx, du.email)
		if err == nil {
			ids[i] = u.ID
			continue
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		pw := identity.GeneratePassword()
		u, err = c.Users.Create(ctx, identity.NewUser{Email: du.email, Name: du.name, Password: pw, Roles: du.roles})
		if err != nil {
			return fmt.Errorf("creating demo user %s: %w", du.email, err)
		}
		key, _, err := c.Keys.Issue(ctx, apikeys.IssueRequest{UserID: u.ID, Name: "demo key", Scopes: []string{demo.ScopeRead, demo.ScopeWrite}})
		if err != nil {
			return fmt.Errorf("creating demo key for %s: %w", du.email, err)
		}
		ids[i] = u.ID
		created = append(created, secret{u.Email, pw, key})
	}
	if err := demo.SeedLedger(ctx, c.DB, ids[0], ids[1], ids[2]); err != nil {
		return fmt.Errorf("seeding demo ledger: %w", err)
	}
	if len(created) == 0 {
		fmt.Fprintln(out, "Demo users alice@example.com (admin), bob@example.com and charlie@example.com (auditor) exist already: their sign-in secrets and keys were shown only on the first start.")
		fmt.Fprintln(out, "Lost them? See `mcpgate user --help` and `mcpgate key create --help`.")
		return nil
	}
	fmt.Fprintln(out, "Demo users created. These secrets are shown ONCE; the database keeps only hashes.")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  USER\tPASSWORD\tAPI KEY (scopes payments:read payments:write)")
	for _, s := range created {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.email, s.password, s.key)
	}
	return tw.Flush()
}
