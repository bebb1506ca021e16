// Package server is mcpgate's composition root: it opens the store, builds
// every component, mounts the routes and runs the HTTP servers. It is the only
// package that knows all the others.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
)

// Core is what every subcommand needs: the migrated store, the audit writer,
// and the user and key services on top of them.
type Core struct {
	DB       *sqlstore.DB
	Audit    *audit.Writer
	Users    *identity.Service
	Keys     *apikeys.Service
	Sessions *session.Manager
	// ServerKey derives session keys and seals token signing keys; nil
	// when the core was opened with OpenExisting or OpenReadOnly.
	ServerKey []byte
}

// OpenMode says what opening the core may create or change.
type OpenMode int

const (
	// OpenCreate creates a missing SQLite file and server key and applies
	// pending migrations: serve, and the commands that add users or
	// clients to what may be a new database.
	OpenCreate OpenMode = iota
	// OpenExisting needs a database that already holds mcpgate's schema
	// (sqlstore.ErrNoDatabase, sqlstore.ErrNoSchema otherwise) and applies
	// pending migrations; it creates no server key, and Core.ServerKey is
	// nil. For commands that change what is already there.
	OpenExisting
	// OpenReadOnly changes nothing: the database must exist with every
	// migration applied (sqlstore.ErrSchemaBehind otherwise), no server
	// key is created, and Core.ServerKey is nil. For commands that only
	// read.
	OpenReadOnly
)

// OpenCore opens and migrates the configured database, creating it when
// missing, and builds the services. auditHook, when not nil, sees every
// audit event (metrics).
func OpenCore(ctx context.Context, cfg config.Config, log *slog.Logger, auditHook func(audit.Event)) (*Core, error) {
	return OpenCoreMode(ctx, cfg, log, auditHook, OpenCreate)
}

// OpenCoreMode is OpenCore with what it may create or change chosen by mode.
func OpenCoreMode(ctx context.Context, cfg config.Config, log *slog.Logger, auditHook func(audit.Event), mode OpenMode) (*Core, error) {
	db, serverKey, err := openStore(ctx, cfg, mode)
	if err != nil {
		return nil, err
	}
	aw := audit.NewWriter(db, audit.Options{Logger: log, OnEvent: auditHook})
	// apikeys reads 0 as "default" and a negative value as "off"; the flags
	// document 0 as "no cache".
	ttl, size := cfg.KeyCacheTTL, cfg.KeyCacheSize
	if ttl == 0 || size == 0 {
		ttl, size = -1, -1
	}
	keys := apikeys.New(db, aw, apikeys.Options{
		CacheTTL: ttl, CacheSize: size, Logger: log,
		ServerKey: serverKey, SessionKeyMaxLifetime: cfg.SessionKeyLifetime, SessionIdleTimeout: cfg.SessionIdleTimeout,
	})
	sessions := session.New(db, aw, session.Options{
		IdleTimeout: cfg.SessionIdleTimeout, Lifetime: cfg.SessionLifetime,
		Secure: strings.HasPrefix(cfg.BaseURL(), "https://"), Logger: log,
	})
	// A session's end revokes its MCP key in the store; this node also
	// forgets it from the key cache at once.
	sessions.OnKeysRevoked(keys.Evict)
	users := identity.New(db, aw)
	users.OnCredentialsChanged(keys.InvalidateUser)
	// A password change or a disable ends every browser session of the user
	// (and with them their session keys).
	users.OnCredentialsChangedContext(func(ctx context.Context, userID, reason string) {
		if reason == identity.ReasonUserEnabled {
			return
		}
		if err := sessions.RevokeAll(ctx, userID, reason); err != nil {
			log.Error("ending the sessions of a user failed", "user", userID, "reason", reason, "err", err)
		}
		// …and every OAuth grant (refresh tokens at once; access tokens
		// within the grant cache's 2 s on running servers). Here in the
		// core, so the CLI's disable and set-password do it too.
		gs, err := db.RevokeUserOAuthGrants(ctx, userID, time.Now(), reason)
		if err != nil {
			log.Error("revoking the OAuth grants of a user failed", "user", userID, "reason", reason, "err", err)
			return
		}
		if len(gs) > 0 {
			ids := make([]string, 0, len(gs))
			for _, g := range gs {
				ids = append(ids, g.ID)
			}
			aw.Record(ctx, audit.Event{Type: audit.TypeOAuthGrantRevoked, Outcome: store.OutcomeAllow, Reason: reason,
				UserID: userID, Details: map[string]any{"grants": len(gs), "grant_ids": ids}})
		}
	})
	return &Core{DB: db, Audit: aw, Users: users, Keys: keys, Sessions: sessions, ServerKey: serverKey}, nil
}

// openStore opens the database and loads the server key as mode allows.
func openStore(ctx context.Context, cfg config.Config, mode OpenMode) (*sqlstore.DB, []byte, error) {
	open := sqlstore.OpenExisting
	if mode == OpenCreate {
		open = sqlstore.Open
	}
	db, err := open(ctx, cfg.DatabaseURLOrDefault())
	if err != nil {
		return nil, nil, err
	}
	serverKey, err := prepareStore(ctx, db, cfg, mode)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, serverKey, nil
}

// prepareStore checks or migrates the schema as mode says, and loads (or
// creates) the server key for OpenCreate.
func prepareStore(ctx context.Context, db *sqlstore.DB, cfg config.Config, mode OpenMode) ([]byte, error) {
	switch mode {
	case OpenReadOnly:
		return nil, db.CheckSchema(ctx)
	case OpenExisting:
		// A schema that is merely behind is migrated below; one that is
		// not there at all means the wrong database.
		if err := db.CheckSchema(ctx); err != nil && !errors.Is(err, sqlstore.ErrSchemaBehind) {
			return nil, err
		}
	}
	if err := db.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("migrating database: %w", err)
	}
	if mode != OpenCreate {
		return nil, nil
	}
	return cfg.LoadServerKey()
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
