// Package sqlstore implements store.Store once, over database/sql, for both
// SQLite (modernc.org/sqlite, no cgo) and PostgreSQL (pgx stdlib driver).
//
// The SQL is written once: "$1" placeholders work on both drivers, times are
// integer unix milliseconds (NULL for the zero time), lists are
// space-separated tokens and audit details are JSON text. The few places
// where the dialects must differ (row locks, sequence upkeep) branch on
// DB.Dialect. Schema changes are goose migrations embedded per dialect in
// migrations/sqlite and migrations/postgres.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"
	_ "modernc.org/sqlite"             // driver "sqlite"

	"github.com/mcpgate/mcpgate/internal/store"
)

// Dialect names returned by DB.Dialect.
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
)

// DB is a store.Store backed by SQLite or PostgreSQL.
type DB struct {
	db      *sql.DB
	dialect string
}

var _ store.Store = (*DB)(nil)

// sqlitePragmas are applied to every new SQLite connection (modernc runs
// each _pragma DSN parameter as "PRAGMA <value>"; busy_timeout goes first).
// A value the caller set in the URL wins, except foreign_keys (and
// _txlock, always "immediate"), which the store's correctness depends on.
var sqlitePragmas = []struct{ name, value string }{
	{"busy_timeout", "5000"},  // wait for a writer instead of failing with SQLITE_BUSY
	{"journal_mode", "WAL"},   // readers never block the writer
	{"foreign_keys", "1"},     // ON DELETE CASCADE and references are enforced
	{"synchronous", "NORMAL"}, // durable in WAL mode except on power loss
}

// ErrNoDatabase is returned by OpenExisting when the SQLite file is not
// there.
var ErrNoDatabase = errors.New("no database")

// Open connects to databaseURL and checks that the database answers. It does
// not migrate: call Migrate.
//
//   - postgres://… or postgresql://… selects PostgreSQL (pgx; any pgx URL
//     parameter such as sslmode or search_path is honoured).
//   - sqlite:PATH, file:PATH or a plain file path selects SQLite. The file is
//     created when missing; its directory must exist. In the URL forms
//     '?' starts driver parameters (e.g. sqlite:app.db?_pragma=cache_size(-20000));
//     a plain path is taken literally. In-memory databases are refused.
//
// SQLite connections run in WAL mode with busy_timeout=5000, foreign keys on,
// synchronous=NORMAL and BEGIN IMMEDIATE for read-write transactions, so a
// read-then-write transaction takes the write lock up front and never fails
// with a lock upgrade deadlock.
//
// Errors name the database with any password redacted.
func Open(ctx context.Context, databaseURL string) (*DB, error) {
	return open(ctx, databaseURL, false)
}

// OpenExisting is Open for a database that must already exist: a missing
// SQLite file is not created but reported as ErrNoDatabase ("no database
// at /abs/path"), so a command run in the wrong directory cannot mistake a
// brand-new empty database for the real one. (A PostgreSQL database is
// never created by Open; whether it holds mcpgate's schema is
// CheckSchema's question.)
func OpenExisting(ctx context.Context, databaseURL string) (*DB, error) {
	return open(ctx, databaseURL, true)
}

func open(ctx context.Context, databaseURL string, mustExist bool) (*DB, error) {
	dialect, dsn, err := parseURL(databaseURL, mustExist)
	if errors.Is(err, ErrNoDatabase) {
		return nil, err // already names the file
	}
	if err != nil {
		return nil, fmt.Errorf("cannot open database %s: %w", RedactURL(databaseURL), err)
	}
	driver := "sqlite"
	if dialect == DialectPostgres {
		driver = "pgx"
	}
	sqlDB, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, openError(databaseURL, err)
	}
	configurePool(sqlDB, dialect)
	if err := sqlDB.PingContext(ctx); err != nil {
		sqlDB.Close()
		return nil, openError(databaseURL, err)
	}
	return &DB{db: sqlDB, dialect: dialect}, nil
}

func configurePool(db *sql.DB, dialect string) {
	switch dialect {
	case DialectSQLite:
		// WAL allows many readers next to one writer; writers queue on the
		// busy timeout. Idle connections are kept: each new one re-runs the
		// pragmas and re-reads the schema.
		n := max(4, 2*runtime.GOMAXPROCS(0))
		db.SetMaxOpenConns(n)
		db.SetMaxIdleConns(n)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
	case DialectPostgres:
		// Stay well below the server's default max_connections (100) so
		// several nodes fit; recycle connections so failovers and
		// pg_hba/config changes are picked up.
		db.SetMaxOpenConns(20)
		db.SetMaxIdleConns(10)
		db.SetConnMaxLifetime(30 * time.Minute)
		db.SetConnMaxIdleTime(5 * time.Minute)
	}
}

// openError wraps a driver error from Open without letting the password
// reach the message. Drivers usually redact it themselves; should one not,
// the message is scrubbed and the original error is dropped from the chain.
func openError(databaseURL string, err error) error {
	msg := err.Error()
	if pw := urlPassword(databaseURL); pw != "" && strings.Contains(msg, pw) {
		return fmt.Errorf("cannot open database %s: %s", RedactURL(databaseURL), strings.ReplaceAll(msg, pw, "xxxxx"))
	}
	return fmt.Errorf("cannot open database %s: %w", RedactURL(databaseURL), err)
}

// parseURL picks the dialect and builds the driver DSN. With mustExist, a
// SQLite file that does not exist is ErrNoDatabase.
func parseURL(raw string, mustExist bool) (dialect, dsn string, err error) {
	if strings.TrimSpace(raw) == "" {
		return "", "", errors.New("empty database URL")
	}
	scheme, rest, hasScheme := strings.Cut(raw, ":")
	scheme = strings.ToLower(scheme)
	switch {
	case hasScheme && (scheme == "postgres" || scheme == "postgresql"):
		if !strings.HasPrefix(rest, "//") {
			return "", "", errors.New("postgres URL must look like postgres://user@host:port/dbname")
		}
		if _, err := url.Parse(raw); err != nil {
			// url.Parse errors quote the input; say what is wrong without it.
			return "", "", errors.New("malformed postgres URL (special characters in the password must be percent-encoded)")
		}
		return DialectPostgres, raw, nil
	case hasScheme && (scheme == "sqlite" || scheme == "file"):
		path, query, _ := strings.Cut(rest, "?")
		if strings.HasPrefix(path, "//") {
			path = path[2:] // empty authority: sqlite:///abs/path, file:///abs/path
		}
		dsn, err := sqliteDSN(path, query, mustExist)
		return DialectSQLite, dsn, err
	case strings.Contains(raw, "://"):
		return "", "", fmt.Errorf("unsupported database URL scheme %q (want postgres://, sqlite: or a file path)", scheme)
	default:
		// A plain path is taken literally ('?' included); use
		// sqlite:PATH?params to pass driver parameters.
		dsn, err := sqliteDSN(raw, "", mustExist)
		return DialectSQLite, dsn, err
	}
}

// sqliteDSN builds the modernc DSN "file:PATH?params" for a literal file
// path and the caller's URL parameters, adding the default pragmas and
// _txlock=immediate. With mustExist, a missing file is ErrNoDatabase, and
// SQLite is told not to create it either (mode=rw), so a file deleted after
// this check is not recreated by a later pooled connection.
func sqliteDSN(path, rawQuery string, mustExist bool) (string, error) {
	if path == "" {
		return "", errors.New("missing SQLite file path")
	}
	if path == ":memory:" || strings.HasPrefix(path, ":memory:") {
		// Every pooled connection would get its own empty database.
		return "", errors.New("in-memory SQLite is not supported; use a file path")
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return "", fmt.Errorf("bad SQLite URL parameters: %w", err)
	}
	// The store relies on these for correctness; refuse to weaken them.
	for _, k := range []string{"_txlock", "_foreign_keys", "_fk"} {
		if q.Has(k) {
			return "", fmt.Errorf("SQLite parameter %s cannot be overridden", k)
		}
	}
	set := map[string]bool{}
	for _, p := range q["_pragma"] {
		name, _, _ := strings.Cut(strings.TrimSpace(p), "(")
		name, _, _ = strings.Cut(name, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "foreign_keys" {
			return "", errors.New("SQLite pragma foreign_keys cannot be overridden")
		}
		set[name] = true
	}
	for _, p := range sqlitePragmas {
		if !set[p.name] {
			q.Add("_pragma", p.name+"("+p.value+")")
		}
	}
	q.Set("_txlock", "immediate")
	if mustExist {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			if abs, aerr := filepath.Abs(path); aerr == nil {
				path = abs
			}
			return "", fmt.Errorf("%w at %s", ErrNoDatabase, path)
		}
		if q.Get("mode") != "ro" {
			q.Set("mode", "rw") // SQLite URI parameter: open, never create
		}
	}
	// SQLite URI filenames decode %HH and end the path at '?' or '#'.
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	if strings.HasPrefix(esc, "//") {
		esc = "/" + strings.TrimLeft(esc, "/") // "//x" would be read as an authority
	}
	return "file:" + esc + "?" + q.Encode(), nil
}

// RedactURL returns databaseURL with any password (userinfo or a
// "password" query parameter) replaced by "xxxxx", for logs and errors.
// File paths and sqlite: URLs carry no credentials and come back as they are.
func RedactURL(databaseURL string) string {
	scheme, _, _ := strings.Cut(databaseURL, ":")
	scheme = strings.ToLower(scheme)
	isPostgres := scheme == "postgres" || scheme == "postgresql"
	if !isPostgres && !strings.Contains(databaseURL, "://") {
		return databaseURL
	}
	u, err := url.Parse(databaseURL)
	switch {
	case err != nil:
		return redactUnparsable(databaseURL)
	case u.Opaque != "":
		// "postgres:whatever" – no structure to keep safely.
		return scheme + ":(redacted)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	q := u.Query()
	changed := false
	for k := range q {
		if strings.EqualFold(k, "password") {
			q[k] = []string{"xxxxx"}
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// redactUnparsable handles strings url.Parse rejects (e.g. an unescaped
// '%' in a password): the userinfo up to the last '@' loses its password,
// and the query, which may hold one too, is dropped.
func redactUnparsable(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return "(unparsable database URL)"
	}
	rest, _, hadQuery := strings.Cut(rest, "?")
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		user, _, _ := strings.Cut(rest[:at], ":")
		rest = user + ":xxxxx" + rest[at:]
	}
	if hadQuery {
		rest += "?(redacted)"
	}
	return scheme + "://" + rest
}

// urlPassword extracts the password from a database URL, best effort.
func urlPassword(databaseURL string) string {
	if u, err := url.Parse(databaseURL); err == nil {
		if u.User != nil {
			if pw, ok := u.User.Password(); ok {
				return pw
			}
		}
		if pw := u.Query().Get("password"); pw != "" {
			return pw
		}
		return ""
	}
	i := strings.Index(databaseURL, "://")
	if i < 0 {
		return ""
	}
	rest := databaseURL[i+3:]
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return ""
	}
	_, pw, _ := strings.Cut(rest[:at], ":")
	return pw
}

// Dialect returns "sqlite" or "postgres".
func (d *DB) Dialect() string { return d.dialect }

// SQL returns the underlying pool (benchmarks, diagnostics). Callers must
// not close it; use DB.Close.
func (d *DB) SQL() *sql.DB { return d.db }

// Ping checks that the database answers.
func (d *DB) Ping(ctx context.Context) error {
	if err := d.db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	return nil
}

// Close closes the connection pool.
func (d *DB) Close() error { return d.db.Close() }

// inTx runs fn in a read-write transaction and commits when fn returns nil.
// On SQLite the transaction starts with BEGIN IMMEDIATE (see Open).
func (d *DB) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", mapErr(err))
	}
	return nil
}

// lockClause returns the row-lock suffix for a SELECT inside a transaction:
// PostgreSQL needs it; SQLite's BEGIN IMMEDIATE already serialises writers
// and has no row locks.
func (d *DB) lockClause(mode string) string {
	if d.dialect == DialectPostgres {
		return " " + mode
	}
	return ""
}
