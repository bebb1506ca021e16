package sqlstore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/conformance"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

func TestConformanceSQLite(t *testing.T) {
	conformance.Run(t, func(t *testing.T) store.Store { return storetest.SQLite(t) })
}

func TestConformancePostgres(t *testing.T) {
	storetest.Postgres(t) // skip (or fail on CI) once, not per subtest
	conformance.Run(t, func(t *testing.T) store.Store { return storetest.Postgres(t) })
}

func TestOpenSQLiteURLForms(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, url, file string
	}{
		{"plain path", filepath.Join(dir, "plain.db"), "plain.db"},
		{"sqlite scheme", "sqlite:" + filepath.Join(dir, "scheme.db"), "scheme.db"},
		{"sqlite triple slash", "sqlite://" + filepath.Join(dir, "slashes.db"), "slashes.db"},
		{"file scheme", "file:" + filepath.Join(dir, "file.db"), "file.db"},
		{"plain path is literal", filepath.Join(dir, "we ird#1?%20.db"), "we ird#1?%20.db"},
		{"sqlite path with odd characters", "sqlite:" + filepath.Join(dir, "a b#%41.db") + "?_pragma=cache_size(-4000)", "a b#%41.db"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db, err := sqlstore.Open(t.Context(), tc.url)
			if err != nil {
				t.Fatalf("Open(%q): %v", tc.url, err)
			}
			defer db.Close()
			if db.Dialect() != sqlstore.DialectSQLite {
				t.Errorf("Dialect = %q, want sqlite", db.Dialect())
			}
			if err := db.Migrate(t.Context()); err != nil {
				t.Fatalf("Migrate: %v", err)
			}
			if _, err := os.Stat(filepath.Join(dir, tc.file)); err != nil {
				t.Errorf("database file not where the URL says: %v", err)
			}
		})
	}
}

func TestOpenSQLitePragmas(t *testing.T) {
	db := storetest.SQLite(t)
	conn, err := db.SQL().Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for pragma, want := range map[string]string{
		"journal_mode": "wal",
		"busy_timeout": "5000",
		"foreign_keys": "1",
		"synchronous":  "1", // NORMAL
	} {
		var got string
		if err := conn.QueryRowContext(t.Context(), "PRAGMA "+pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", pragma, err)
		}
		if !strings.EqualFold(got, want) {
			t.Errorf("PRAGMA %s = %q, want %q", pragma, got, want)
		}
	}

	// A pragma given in the URL overrides the default.
	db2, err := sqlstore.Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "x.db")+"?_pragma=busy_timeout(1234)")
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	var got int
	if err := db2.SQL().QueryRowContext(t.Context(), "PRAGMA busy_timeout").Scan(&got); err != nil || got != 1234 {
		t.Errorf("busy_timeout = %d, %v; want 1234 from the URL", got, err)
	}
}

func TestOpenErrors(t *testing.T) {
	const secret = "s3cr3t-Pa55"
	tests := []struct {
		name, url, want string
	}{
		{"empty", "", "empty database URL"},
		{"unknown scheme", "mysql://root:" + secret + "@localhost/db", "unsupported database URL scheme"},
		{"in-memory sqlite", ":memory:", "in-memory SQLite is not supported"},
		{"sqlite without path", "sqlite:", "missing SQLite file path"},
		{"sqlite missing directory", filepath.Join(t.TempDir(), "no", "such", "dir", "x.db"), "cannot open database"},
		{"sqlite txlock override", "sqlite:" + filepath.Join(t.TempDir(), "x.db") + "?_txlock=deferred", "cannot be overridden"},
		{"sqlite foreign keys off", "sqlite:" + filepath.Join(t.TempDir(), "x.db") + "?_pragma=foreign_keys(0)", "cannot be overridden"},
		{"postgres unreachable", "postgres://app:" + secret + "@127.0.0.1:1/db?sslmode=disable&connect_timeout=2", "postgres://app:xxxxx@127.0.0.1:1/db"},
		{"postgres password in query", "postgresql://app@127.0.0.1:1/db?password=" + secret + "&connect_timeout=2", "password=xxxxx"},
		{"postgres malformed", "postgres://app:" + secret + "%zz@127.0.0.1:1/db", "malformed postgres URL"},
		{"postgres without host part", "postgres:" + secret, "postgres URL must look like"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			db, err := sqlstore.Open(ctx, tc.url)
			if err == nil {
				db.Close()
				t.Fatalf("Open(%q) succeeded", tc.url)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "cannot open database") {
				t.Errorf("error %q does not start with \"cannot open database\"", msg)
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not mention %q", msg, tc.want)
			}
			if strings.Contains(msg, secret) {
				t.Errorf("error leaks the password: %q", msg)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://u:pw@h:5432/db?sslmode=disable", "postgres://u:xxxxx@h:5432/db?sslmode=disable"},
		{"postgres://u@h/db", "postgres://u@h/db"},
		{"postgres://h/db?password=pw&sslmode=require", "postgres://h/db?password=xxxxx&sslmode=require"},
		{"postgres://u:p@ss%zz@h/db", "postgres://u:xxxxx@h/db"},
		{"postgres://u:p%zz@h/db?password=p%zz", "postgres://u:xxxxx@h/db?(redacted)"},
		{"postgres:opaque-secret", "postgres:(redacted)"},
		{"mysql://u:pw@h/db", "mysql://u:xxxxx@h/db"},
		{"postgres://u:p/w@h/db", "postgres://u:xxxxx@h/db"},
		{"/var/lib/mcpgate/mcpgate.db", "/var/lib/mcpgate/mcpgate.db"},
		{"sqlite:./mcpgate.db", "sqlite:./mcpgate.db"},
	}
	for _, tc := range tests {
		if got := sqlstore.RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMigrationStatus(t *testing.T) {
	t.Run("pending", func(t *testing.T) {
		db, err := sqlstore.Open(t.Context(), filepath.Join(t.TempDir(), "fresh.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		st, err := db.MigrationStatus(t.Context())
		if err != nil {
			t.Fatalf("MigrationStatus: %v", err)
		}
		if len(st) == 0 {
			t.Fatal("no migrations known")
		}
		for _, m := range st {
			if m.Applied || !m.AppliedAt.IsZero() {
				t.Errorf("fresh database reports %+v as applied", m)
			}
		}
		// Only read: goose's version table was not created.
		var tables int
		if err := db.SQL().QueryRowContext(t.Context(), `SELECT count(*) FROM sqlite_master WHERE type = 'table'`).Scan(&tables); err != nil || tables != 0 {
			t.Errorf("MigrationStatus on a fresh database left %d tables (%v), want 0", tables, err)
		}
	})
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		// storetest has migrated; migrating again is a no-op.
		if err := db.Migrate(t.Context()); err != nil {
			t.Fatalf("second Migrate: %v", err)
		}
		st, err := db.MigrationStatus(t.Context())
		if err != nil {
			t.Fatalf("MigrationStatus: %v", err)
		}
		if len(st) == 0 || st[0].Version != 1 || st[0].Name != "initial" {
			t.Fatalf("MigrationStatus = %+v, want version 1 \"initial\" first", st)
		}
		for i, m := range st {
			if !m.Applied {
				t.Errorf("migration %d %s not applied", m.Version, m.Name)
			}
			if since := time.Since(m.AppliedAt); since < -time.Minute || since > time.Hour {
				t.Errorf("migration %d applied at %v, want about now", m.Version, m.AppliedAt)
			}
			if i > 0 && m.Version <= st[i-1].Version {
				t.Errorf("migrations not in version order: %+v", st)
			}
		}
	})
}

func TestDialectSpecifics(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := t.Context()
		want := map[string]string{"sqlite": sqlstore.DialectSQLite, "postgres": sqlstore.DialectPostgres}[lastElem(t.Name())]
		if db.Dialect() != want {
			t.Errorf("Dialect = %q, want %q", db.Dialect(), want)
		}
		// Deleting a user removes their keys (ON DELETE CASCADE; on SQLite
		// this needs foreign_keys=ON on every connection).
		u := store.User{ID: store.NewID("usr"), Email: "x@example.com", CreatedAt: time.Now(), UpdatedAt: time.Now()}
		if err := db.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		k := store.APIKey{ID: store.NewID("key"), UserID: u.ID, Hash: make([]byte, 32), Kind: store.KeyKindManual, CreatedAt: time.Now()}
		if err := db.CreateAPIKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SQL().ExecContext(ctx, `DELETE FROM users WHERE id = $1`, u.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := db.GetAPIKey(ctx, k.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("key survived its user: %v", err)
		}
		// A key for an unknown user is ErrNotFound, and the plaintext
		// (wrong length) is refused before it reaches the database.
		k.ID = store.NewID("key")
		if err := db.CreateAPIKey(ctx, k); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("CreateAPIKey(unknown user) = %v, want ErrNotFound", err)
		}
		k.Hash = []byte("mcpg_plaintext_key")
		if err := db.CreateAPIKey(ctx, k); err == nil || errors.Is(err, store.ErrConflict) {
			t.Errorf("CreateAPIKey(non-digest hash) = %v, want a validation error", err)
		}
	})
}

func lastElem(name string) string { return name[strings.LastIndex(name, "/")+1:] }

func TestOpenExisting(t *testing.T) {
	dir := t.TempDir()
	for _, u := range []string{filepath.Join(dir, "missing.db"), "sqlite:" + filepath.Join(dir, "missing.db") + "?_pragma=cache_size(-4000)"} {
		db, err := sqlstore.OpenExisting(t.Context(), u)
		if err == nil {
			db.Close()
			t.Fatalf("OpenExisting(%q) opened a database that does not exist", u)
		}
		if !errors.Is(err, sqlstore.ErrNoDatabase) || err.Error() != "no database at "+filepath.Join(dir, "missing.db") {
			t.Errorf("OpenExisting(%q) = %v, want ErrNoDatabase naming the file", u, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("OpenExisting created %v", entries)
	}

	// An existing file opens, and writes work.
	path := filepath.Join(dir, "there.db")
	db, err := sqlstore.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = sqlstore.OpenExisting(t.Context(), path)
	if err != nil {
		t.Fatalf("OpenExisting on an existing file: %v", err)
	}
	defer db.Close()
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate after OpenExisting: %v", err)
	}
}

func TestCheckSchema(t *testing.T) {
	db, err := sqlstore.Open(t.Context(), filepath.Join(t.TempDir(), "fresh.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.CheckSchema(t.Context()); !errors.Is(err, sqlstore.ErrNoSchema) {
		t.Errorf("CheckSchema on a fresh database = %v, want ErrNoSchema", err)
	}
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		if err := db.CheckSchema(t.Context()); err != nil {
			t.Errorf("CheckSchema on a migrated database = %v, want nil", err)
		}
		// Forget the newest migration: the schema is behind by one.
		if _, err := db.SQL().ExecContext(t.Context(), `DELETE FROM goose_db_version WHERE version_id = (SELECT max(version_id) FROM goose_db_version)`); err != nil {
			t.Fatal(err)
		}
		err := db.CheckSchema(t.Context())
		if !errors.Is(err, sqlstore.ErrSchemaBehind) || !strings.Contains(err.Error(), "1 of ") {
			t.Errorf("CheckSchema with one migration pending = %v, want ErrSchemaBehind, 1 pending", err)
		}
	})
}
