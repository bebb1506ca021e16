package sqlstore

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
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

// provider builds a goose provider for the dialect's embedded migrations.
func (d *DB) provider(ctx context.Context) (*goose.Provider, error) {
	sub, err := fs.Sub(migrationsFS, "migrations/"+d.dialect)
	if err != nil {
		return nil, err
	}
	dialect := goose.DialectSQLite3
	var opts []goose.ProviderOption
	if d.dialect == DialectPostgres {
		dialect = goose.DialectPostgres
		// Nodes starting together must not migrate the same schema at
		// once: take a session advisory lock. Its id is derived from the
		// schema so independent schemas in one database (tests, tenants)
		// do not wait on each other.
		var schema *string
		if err := d.db.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
			return nil, err
		}
		if schema == nil {
			return nil, fmt.Errorf("no schema on search_path exists")
		}
		h := fnv.New64a()
		h.Write([]byte("mcpgate-migrate:" + *schema))
		locker, err := lock.NewPostgresSessionLocker(
			lock.WithLockID(int64(h.Sum64()>>1)),
			lock.WithLockTimeout(1, 300), // poll every second, up to 5 minutes
		)
		if err != nil {
			return nil, err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	return goose.NewProvider(dialect, d.db, sub, opts...)
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
// and when it was applied.
func (d *DB) MigrationStatus(ctx context.Context) ([]MigrationStatus, error) {
	p, err := d.provider(ctx)
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	out := make([]MigrationStatus, 0, len(st))
	for _, s := range st {
		m := MigrationStatus{
			Version: s.Source.Version,
			Name:    migrationName(s.Source.Path),
			Applied: s.State == goose.StateApplied,
		}
		if m.Applied && !s.AppliedAt.IsZero() {
			m.AppliedAt = s.AppliedAt.UTC()
		}
		out = append(out, m)
	}
	return out, nil
}

// migrationName turns "00001_initial.sql" into "initial".
func migrationName(p string) string {
	base := strings.TrimSuffix(path.Base(p), path.Ext(p))
	if _, name, ok := strings.Cut(base, "_"); ok {
		return name
	}
	return base
}
