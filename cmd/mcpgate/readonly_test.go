package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pressly/goose/v3"

	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
)

// Commands that only read, or change what is already there. None may
// create a database or a server key.
var (
	readCommands = [][]string{
		{"user", "list"},
		{"key", "list"},
		{"client", "list", "--json"},
		{"audit", "list", "--since", "1m"},
	}
	changeCommands = [][]string{
		{"user", "disable", "bob@example.com"},
		{"user", "enable", "bob@example.com"},
		{"user", "set-password", "bob@example.com", "--password-stdin"},
		{"user", "set-roles", "bob@example.com", "--roles", "auditor"},
		{"key", "create", "--user", "bob@example.com", "--name", "laptop"},
		{"key", "revoke", "key_oituckuutr5lhd6y4mc5qzvfca"},
		{"client", "remove", "client_nipoepteunt6p3c7hs7ykkmq6i"},
	}
)

// TestWrongDirectoryCreatesNothing is the new operator who runs a command
// in a directory without the database: they are told so, with exit status
// 1, instead of reading an empty database made on the spot.
func TestWrongDirectoryCreatesNothing(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	want := `mcpgate: no database at ` + filepath.Join(dir, "mcpgate.db") +
		` (run "mcpgate serve" first, or pass --data-dir / --database-url)` + "\n"
	for _, args := range append(append([][]string{{"migrate", "status"}}, readCommands...), changeCommands...) {
		r := runBinary(t, dir, "a long passphrase here\n", args...)
		if r.code != 1 || r.stdout != "" || r.stderr != want {
			t.Errorf("mcpgate %s in an empty directory: exit %d, stdout %q, stderr %q; want exit 1, no stdout, stderr %q",
				shortArgs(args), r.code, r.stdout, r.stderr, want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("commands that only read or change left files behind: %v", entries)
	}

	// A command that adds creates the database and the server key, as
	// documented; the readers then work on it.
	if r := runBinary(t, dir, "", "user", "add", "bob@example.com"); r.code != 0 {
		t.Fatalf("user add: exit %d, stderr %q", r.code, r.stderr)
	}
	for _, f := range []string{"mcpgate.db", "server.key"} {
		if !fileExists(filepath.Join(dir, f)) {
			t.Errorf("user add in an empty directory did not create %s", f)
		}
	}
	if r := runBinary(t, dir, "", "user", "list"); r.code != 0 || !strings.Contains(r.stdout, "bob@example.com") {
		t.Errorf("user list after user add: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// With the database there, readers and changers still leave the
	// server key alone: they do not use it.
	if err := os.Remove(filepath.Join(dir, "server.key")); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"user", "list"}, {"user", "set-roles", "bob@example.com", "--roles", "auditor"}, {"user", "disable", "bob@example.com"}} {
		if r := runBinary(t, dir, "", args...); r.code != 0 {
			t.Errorf("mcpgate %s: exit %d, stderr %q", shortArgs(args), r.code, r.stderr)
		}
	}
	if fileExists(filepath.Join(dir, "server.key")) {
		t.Error("a command that only reads or changes created server.key")
	}
}

// TestEmptyPostgresSchemaStaysEmpty: on PostgreSQL, a reader or changer
// pointed at a schema without mcpgate's tables says so and creates none
// (not even goose's version table); migrate status lists every migration as
// pending.
func TestEmptyPostgresSchemaStaysEmpty(t *testing.T) {
	c := newEmptyPostgres(t)
	for _, args := range append(readCommands, changeCommands...) {
		c.fail("a long passphrase here\n", args, "no mcpgate schema", `run "mcpgate migrate up"`, "search_path=")
	}
	st := c.migrations()
	for name, applied := range st {
		if applied != "pending" {
			t.Errorf("empty schema: migration %s is %q, want pending", name, applied)
		}
	}
	if n := c.tables(); n != 0 {
		t.Errorf("the empty schema has %d tables after reads, want 0", n)
	}
	if fileExists(filepath.Join(c.dataDir, "server.key")) {
		t.Error("a reader created server.key in the data directory")
	}
	// A command that adds migrates the schema.
	c.addUser("bob@example.com")
	if u := c.users(); len(u) != 1 {
		t.Errorf("after user add, user list shows %d users, want 1", len(u))
	}
}

// TestSchemaBehind: after an upgrade whose migrations are not applied yet,
// readers refuse to guess and name the fix, commands that change apply the
// migrations, like serve and migrate up.
func TestSchemaBehind(t *testing.T) {
	eachBackend(t, func(t *testing.T, c cli) {
		c.addUser("bob@example.com")
		newest := c.rollBackNewestMigration()
		total := len(c.migrations())
		for _, args := range readCommands {
			c.fail("", args, "schema is older than this mcpgate: 1 of "+strconv.Itoa(total)+" migrations pending", `run "mcpgate migrate up"`)
		}
		if st := c.migrations(); st[newest] != "pending" {
			t.Fatalf("after refused reads, migration %s is %q, want still pending", newest, st[newest])
		}
		c.ok("", "user", "disable", "bob@example.com")
		if st := c.migrations(); st[newest] == "pending" {
			t.Errorf("user disable did not apply the pending migration %s", newest)
		}
		if u := c.users(); len(u) != 1 || !u[0].Disabled {
			t.Errorf("user list after the upgrade = %+v, want bob, disabled", u)
		}
	})
}

// rollBackNewestMigration undoes the newest migration (its goose Down
// section), as if the binary were newer than the schema, and returns its
// `migrate status` key ("10_login_flows").
func (c cli) rollBackNewestMigration() string {
	c.t.Helper()
	dialect, dbURL := sqlstore.DialectSQLite, filepath.Join(c.dataDir, "mcpgate.db")
	if c.dbURL != "" {
		dialect, dbURL = sqlstore.DialectPostgres, c.dbURL
	}
	db, err := sqlstore.Open(c.t.Context(), dbURL)
	if err != nil {
		c.t.Fatal(err)
	}
	defer db.Close()
	gd := goose.DialectSQLite3
	if dialect == sqlstore.DialectPostgres {
		gd = goose.DialectPostgres
	}
	p, err := goose.NewProvider(gd, db.SQL(), os.DirFS(filepath.Join("..", "..", "internal", "store", "sqlstore", "migrations", dialect)))
	if err != nil {
		c.t.Fatal(err)
	}
	res, err := p.Down(context.Background())
	if err != nil {
		c.t.Fatalf("goose down: %v", err)
	}
	name := strings.TrimSuffix(filepath.Base(res.Source.Path), ".sql")
	return strings.TrimLeft(name, "0")
}

// tables counts the tables in the cli's PostgreSQL schema.
func (c cli) tables() int {
	c.t.Helper()
	db, err := sqlstore.Open(c.t.Context(), c.dbURL)
	if err != nil {
		c.t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.SQL().QueryRowContext(c.t.Context(), `SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()`).Scan(&n); err != nil {
		c.t.Fatal(err)
	}
	return n
}
