package sqlstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrationsFS embed.FS

// MigrationStatus describes one schema migration.
type MigrationStatus struct {
	Version   int64
	Name      string // file name without the version and extension, e.g. "initial"
	Applied   bool
	AppliedAt time.Time // zero when pending
}

// Schema states reported by CheckSchema.
var (
	// ErrNoSchema: the database holds no mcpgate tables (it was never
	// migrated, or the URL names another database or schema).
	ErrNoSchema = errors.New("no mcpgate schema")
	// ErrSchemaBehind: some migrations of this build are not applied yet.
	ErrSchemaBehind = errors.New("schema is older than this mcpgate")
)

// gooseDialect is goose's name for the dialect.
func (d *DB) gooseDialect() goose.Dialect {
	if d.dialect == DialectPostgres {
		return goose.DialectPostgres
	}
	return goose.DialectSQLite3
}

// newProvider builds a goose provider for the dialect's embedded
// migrations. Building one does not touch the database.
func (d *DB) newProvider(opts ...goose.ProviderOption) (*goose.Provider, error) {
	sub, err := fs.Sub(migrationsFS, "migrations/"+d.dialect)
	if err != nil {
		return nil, err
	}
	return goose.NewProvider(d.gooseDialect(), d.db, sub, opts...)
}

// provider builds the goose provider that migrates: on PostgreSQL it takes
// a lock first.
func (d *DB) provider(ctx context.Context) (*goose.Provider, error) {
	if d.dialect != DialectPostgres {
		return d.newProvider()
	}
	// Nodes starting together must not migrate the same schema at once:
	// take a session advisory lock. Its id is derived from the schema so
	// independent schemas in one database (tests, tenants) do not wait on
	// each other.
	schema, err := d.currentSchema(ctx)
	if err != nil {
		return nil, err
	}
	if schema == "" {
		return nil, fmt.Errorf("no schema on search_path exists")
	}
	h := fnv.New64a()
	h.Write([]byte("mcpgate-migrate:" + schema))
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(int64(h.Sum64()>>1)),
		lock.WithLockTimeout(1, 300), // poll every second, up to 5 minutes
	)
	if err != nil {
		return nil, err
	}
	return d.newProvider(goose.WithSessionLocker(locker))
}

// currentSchema is PostgreSQL's current_schema(): the first schema on the
// search_path that exists, or "" when none does.
func (d *DB) currentSchema(ctx context.Context) (string, error) {
	var schema *string
	if err := d.db.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return "", err
	}
	if schema == nil {
		return "", nil
	}
	return *schema, nil
}

// Migrate applies every pending migration.
func (d *DB) Migrate(ctx context.Context) error {
	p, err := d.provider(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s database: %w", d.dialect, err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate %s database: %w", d.dialect, err)
	}
	return nil
}

// MigrationStatus lists every known migration, oldest first, with whether
// and when it was applied. It only reads: goose's own Status would create
// its version table on a database never migrated, and wait for the lock of
// a node that is migrating.
func (d *DB) MigrationStatus(ctx context.Context) ([]MigrationStatus, error) {
	st, err := d.migrationStatus(ctx)
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	return st, nil
}

func (d *DB) migrationStatus(ctx context.Context) ([]MigrationStatus, error) {
	p, err := d.newProvider()
	if err != nil {
		return nil, err
	}
	versions, exists, err := d.versionTable(ctx)
	if err != nil {
		return nil, err
	}
	var out []MigrationStatus
	for _, src := range p.ListSources() {
		m := MigrationStatus{Version: src.Version, Name: migrationName(src.Path)}
		if exists {
			// goose's Status counts a migration as applied when it has
			// a row; goose down deletes the row.
			r, err := versions.GetMigration(ctx, d.db, src.Version)
			switch {
			case errors.Is(err, database.ErrVersionNotFound):
			case err != nil:
				return nil, err
			default:
				m.Applied, m.AppliedAt = true, r.Timestamp.UTC()
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// versionTable returns goose's version table and whether it exists, by
// reading the catalog.
func (d *DB) versionTable(ctx context.Context) (database.Store, bool, error) {
	st, err := database.NewStore(database.Dialect(d.gooseDialect()), goose.DefaultTablename)
	if err != nil {
		return nil, false, err
	}
	q := `SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = $1)`
	if d.dialect == DialectPostgres {
		// current_schema() is NULL when no schema of the search_path
		// exists: then there is no table either.
		q = `SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = $1)`
	}
	var exists bool
	if err := d.db.QueryRowContext(ctx, q, st.Tablename()).Scan(&exists); err != nil {
		return nil, false, err
	}
	return st, exists, nil
}

// CheckSchema tells, without changing anything, whether every migration of
// this build is applied: nil, ErrNoSchema (none is) or ErrSchemaBehind (some
// are pending; the error says how many). Commands that only read use it
// instead of Migrate.
func (d *DB) CheckSchema(ctx context.Context) error {
	st, err := d.MigrationStatus(ctx)
	if err != nil {
		return err
	}
	pending := 0
	for _, m := range st {
		if !m.Applied {
			pending++
		}
	}
	switch {
	case pending == 0:
		return nil
	case pending < len(st):
		return fmt.Errorf("%w: %d of %d migrations pending", ErrSchemaBehind, pending, len(st))
	}
	if d.dialect == DialectPostgres {
		if schema, err := d.currentSchema(ctx); err == nil && schema == "" {
			return fmt.Errorf("%w: no schema on its search_path exists", ErrNoSchema)
		}
	}
	return ErrNoSchema
}

// migrationName turns "00001_initial.sql" into "initial".
func migrationName(p string) string {
	base := strings.TrimSuffix(path.Base(p), path.Ext(p))
	if _, name, ok := strings.Cut(base, "_"); ok {
		return name
	}
	return base
}
