// Package server is mcpgate's composition root: it opens the store, builds
// every component, mounts the routes and runs the HTTP servers. It is the only
// package that knows all the others.
package server

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
)

// Core is what every subcommand needs: the migrated store, the audit writer,
// and the user and key services on top of them.
type Core struct {
	DB    *sqlstore.DB
	Audit *audit.Writer
	Users *identity.Service
	Keys  *apikeys.Service
}

// OpenCore opens and migrates the configured database and builds the
// services. auditHook, when not nil, sees every audit event (metrics).
func OpenCore(ctx context.Context, cfg config.Config, log *slog.Logger, auditHook func(audit.Event)) (*Core, error) {
	db, err := sqlstore.Open(ctx, cfg.DatabaseURLOrDefault())
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrating database: %w", err)
	}
	aw := audit.NewWriter(db, audit.Options{Logger: log, OnEvent: auditHook})
	// apikeys reads 0 as "default" and a negative value as "off"; the flags
	// document 0 as "no cache".
	ttl, size := cfg.KeyCacheTTL, cfg.KeyCacheSize
	if ttl == 0 || size == 0 {
		ttl, size = -1, -1
	}
	keys := apikeys.New(db, aw, apikeys.Options{CacheTTL: ttl, CacheSize: size, Logger: log})
	users := identity.New(db, aw)
	users.OnCredentialsChanged(keys.InvalidateUser)
	return &Core{DB: db, Audit: aw, Users: users, Keys: keys}, nil
}

// Close flushes last-used times and audit events, then closes the store.
func (c *Core) Close(ctx context.Context) error {
	kerr := c.Keys.Close(ctx)
	c.Audit.Close()
	derr := c.DB.Close()
	if kerr != nil {
		return kerr
	}
	return derr
}
