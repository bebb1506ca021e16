// Package storetest gives any package's tests a fresh, migrated database:
// SQLite in a temporary directory, or PostgreSQL in a throw-away schema.
//
// PostgreSQL tests run when MCPGATE_TEST_POSTGRES_DSN is set, e.g.
//
//	MCPGATE_TEST_POSTGRES_DSN='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' go test ./...
//
// Without it they are skipped, except under CI=true, where a missing
// PostgreSQL is a failure rather than a silent skip.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
)

// PostgresEnv names the environment variable holding the PostgreSQL URL.
const PostgresEnv = "MCPGATE_TEST_POSTGRES_DSN"

const setupTimeout = 30 * time.Second

// SQLite returns a fresh migrated SQLite database in t.TempDir(), closed
// when the test ends.
func SQLite(t testing.TB) *sqlstore.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	db, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "mcpgate.db"))
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatalf("storetest: %v", err)
	}
	return db
}

// Postgres returns a migrated PostgreSQL database living in a fresh schema
// of the server named by MCPGATE_TEST_POSTGRES_DSN; the schema is dropped
// when the test ends. It skips the test when the variable is unset, unless
// CI=true, and fails it when the server cannot be reached.
func Postgres(t testing.TB) *sqlstore.DB {
	t.Helper()
	dsn := os.Getenv(PostgresEnv)
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("storetest: %s must be set when CI=true (PostgreSQL tests may not be skipped on CI)", PostgresEnv)
		}
		t.Skip(PostgresEnv + " not set")
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("storetest: %s is not a valid URL", PostgresEnv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()

	// The admin connection creates the schema and is closed again, so a
	// test holds no connection beyond its store's pool.
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("storetest: PostgreSQL at %s: %v", sqlstore.RedactURL(dsn), err)
	}
	defer admin.Close()
	if err := admin.PingContext(ctx); err != nil {
		t.Fatalf("storetest: cannot reach PostgreSQL at %s (%s is set, so this is a failure, not a skip): %v",
			sqlstore.RedactURL(dsn), PostgresEnv, err)
	}
	var b [8]byte
	rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		t.Fatalf("storetest: create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		admin, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Errorf("storetest: drop schema %s: %v", schema, err)
			return
		}
		defer admin.Close()
		if _, err := admin.ExecContext(ctx, `DROP SCHEMA IF EXISTS `+schema+` CASCADE`); err != nil {
			t.Errorf("storetest: drop schema %s: %v", schema, err)
		}
	})

	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	db, err := sqlstore.Open(ctx, u.String())
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	// Registered after the DROP, so it runs first (cleanups are LIFO).
	t.Cleanup(func() { db.Close() })
	// Many test packages share one server (max_connections defaults to
	// 100): keep each test's pool small.
	db.SQL().SetMaxOpenConns(8)
	db.SQL().SetMaxIdleConns(2)
	if err := db.Migrate(ctx); err != nil {
		t.Fatalf("storetest: %v", err)
	}
	return db
}

// Each runs fn once per backend, in subtests "sqlite" and "postgres" (the
// latter skipped as Postgres describes).
func Each(t *testing.T, fn func(t *testing.T, db *sqlstore.DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, SQLite(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, Postgres(t)) })
}
