package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

const apiKeyColumns = `id, user_id, name, prefix, hash, kind, scopes, created_at, expires_at, last_used_at, revoked_at, session_id`

// apiKeyColumnsK is apiKeyColumns qualified with the alias k.
const apiKeyColumnsK = `k.id, k.user_id, k.name, k.prefix, k.hash, k.kind, k.scopes, k.created_at, k.expires_at, k.last_used_at, k.revoked_at, k.session_id`

// apiKeyScan holds the columns of a key row that need converting.
type apiKeyScan struct {
	scopes    string
	t         [4]sql.NullInt64
	sessionID sql.NullString
}

func apiKeyDest(k *store.APIKey, x *apiKeyScan) []any {
	return []any{&k.ID, &k.UserID, &k.Name, &k.Prefix, &k.Hash, &k.Kind, &x.scopes, &x.t[0], &x.t[1], &x.t[2], &x.t[3], &x.sessionID}
}

func finishAPIKey(k *store.APIKey, x *apiKeyScan) {
	k.Scopes = splitTokens(x.scopes)
	k.CreatedAt, k.ExpiresAt, k.LastUsedAt, k.RevokedAt = fromMillis(x.t[0]), fromMillis(x.t[1]), fromMillis(x.t[2]), fromMillis(x.t[3])
	k.SessionID = x.sessionID.String
}

func scanAPIKey(r rowScanner) (store.APIKey, error) {
	var (
		k store.APIKey
		x apiKeyScan
	)
	if err := r.Scan(apiKeyDest(&k, &x)...); err != nil {
		return store.APIKey{}, err
	}
	finishAPIKey(&k, &x)
	return k, nil
}

// scanAPIKeys reads every row of rows.
func scanAPIKeys(rows *sql.Rows) ([]store.APIKey, error) {
	defer rows.Close()
	var out []store.APIKey
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// CreateAPIKey inserts k. ErrConflict when the id or hash is taken, or when
// k.SessionID names a session that already has a key; ErrNotFound when the
// owning user does not exist, or k.SessionID names a session that does not
// exist, is revoked or belongs to another user.
//
// A session key is inserted in a transaction that first locks its session
// row (FOR SHARE on PostgreSQL; SQLite serialises writers), so a concurrent
// RevokeSession either sees the new key and revokes it, or commits first
// and the insert is refused: a live key of a revoked session cannot exist.
func (d *DB) CreateAPIKey(ctx context.Context, k store.APIKey) error {
	if k.ID == "" {
		return errors.New("store: api key id is empty")
	}
	if len(k.Hash) != sha256.Size {
		// Catches a caller handing over the plaintext instead of its digest.
		return fmt.Errorf("store: api key hash must be a %d-byte SHA-256 digest, got %d bytes", sha256.Size, len(k.Hash))
	}
	if err := checkText("api key", "id", k.ID, "user id", k.UserID, "name", k.Name, "prefix", k.Prefix, "kind", k.Kind, "session id", k.SessionID); err != nil {
		return err
	}
	for _, sc := range k.Scopes {
		if err := checkText("api key", "scope", sc); err != nil {
			return err
		}
	}
	scopes, err := joinTokens("scope", k.Scopes)
	if err != nil {
		return err
	}
	kind := k.Kind
	if kind == "" {
		kind = store.KeyKindManual
	}
	created := truncMS(k.CreatedAt)
	if created.IsZero() {
		created = nowMS()
	}
	insert := func(ex execer) error {
		_, err := ex.ExecContext(ctx,
			`INSERT INTO api_keys (`+apiKeyColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
			k.ID, k.UserID, k.Name, k.Prefix, k.Hash, kind, scopes,
			millis(created), millis(k.ExpiresAt), millis(k.LastUsedAt), millis(k.RevokedAt), nullString(k.SessionID))
		if err != nil {
			return fmt.Errorf("create api key %q: %w", k.ID, mapErr(err))
		}
		return nil
	}
	if k.SessionID == "" {
		return insert(d.db)
	}
	return d.inTx(ctx, func(tx *sql.Tx) error {
		var (
			owner   string
			revoked sql.NullInt64
		)
		err := tx.QueryRowContext(ctx,
			`SELECT user_id, revoked_at FROM sessions WHERE id = $1`+d.lockClause("FOR SHARE"), k.SessionID).Scan(&owner, &revoked)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("create api key %q: session: %w", k.ID, store.ErrNotFound)
		case err != nil:
			return fmt.Errorf("create api key %q: %w", k.ID, err)
		case revoked.Valid:
			return fmt.Errorf("create api key %q: session is revoked: %w", k.ID, store.ErrNotFound)
		case owner != k.UserID:
			return fmt.Errorf("create api key %q: session belongs to another user: %w", k.ID, store.ErrNotFound)
		}
		return insert(tx)
	})
}

// execer is *sql.DB or *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// GetAPIKey returns the key with id, or ErrNotFound.
func (d *DB) GetAPIKey(ctx context.Context, id string) (store.APIKey, error) {
	if !validText(id) {
		return store.APIKey{}, fmt.Errorf("get api key: %w", store.ErrNotFound)
	}
	k, err := scanAPIKey(d.db.QueryRowContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE id = $1`, id))
	if err != nil {
		return store.APIKey{}, fmt.Errorf("get api key %q: %w", id, mapErr(err))
	}
	return k, nil
}

// LookupAPIKey finds a key by hash together with its owner in one query.
// It returns revoked and expired keys too: the caller decides (APIKey.Active,
// User.Disabled).
func (d *DB) LookupAPIKey(ctx context.Context, hash []byte) (store.APIKey, store.User, error) {
	var (
		k                store.APIKey
		x                apiKeyScan
		u                store.User
		roles            string
		created, updated sql.NullInt64
	)
	dest := append(apiKeyDest(&k, &x),
		&u.ID, &u.Email, &u.DisplayName, &roles, &u.PasswordHash, &u.Disabled, &created, &updated)
	err := d.db.QueryRowContext(ctx,
		`SELECT `+apiKeyColumnsK+`, u.id, u.email, u.display_name, u.roles, u.password_hash, u.disabled, u.created_at, u.updated_at
		FROM api_keys k JOIN users u ON u.id = k.user_id
		WHERE k.hash = $1`, hash).Scan(dest...)
	if err != nil {
		// Never put the hash in the error: it identifies a credential.
		return store.APIKey{}, store.User{}, fmt.Errorf("lookup api key: %w", mapErr(err))
	}
	finishAPIKey(&k, &x)
	u.Roles = splitTokens(roles)
	u.CreatedAt, u.UpdatedAt = fromMillis(created), fromMillis(updated)
	return k, u, nil
}

// ListAPIKeys returns the keys of userID ("" = every user), newest first.
func (d *DB) ListAPIKeys(ctx context.Context, userID string) ([]store.APIKey, error) {
	if !validText(userID) {
		return nil, nil // no such user
	}
	q := `SELECT ` + apiKeyColumns + ` FROM api_keys`
	var args []any
	if userID != "" {
		q += ` WHERE user_id = $1`
		args = append(args, userID)
	}
	q += ` ORDER BY created_at DESC, id DESC`
	rows, err := d.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	out, err := scanAPIKeys(rows)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return out, nil
}

// RevokeAPIKey sets RevokedAt to at unless the key was revoked earlier, and
// returns the key. A zero at means now.
func (d *DB) RevokeAPIKey(ctx context.Context, id string, at time.Time) (store.APIKey, error) {
	if !validText(id) {
		return store.APIKey{}, fmt.Errorf("revoke api key: %w", store.ErrNotFound)
	}
	if at.IsZero() {
		at = time.Now()
	}
	k, err := scanAPIKey(d.db.QueryRowContext(ctx,
		`UPDATE api_keys
		SET revoked_at = CASE WHEN revoked_at IS NULL OR revoked_at > $2 THEN $2 ELSE revoked_at END
		WHERE id = $1
		RETURNING `+apiKeyColumns, id, at.UnixMilli()))
	if err != nil {
		return store.APIKey{}, fmt.Errorf("revoke api key %q: %w", id, mapErr(err))
	}
	return k, nil
}

// TouchAPIKeys records last-used times in one transaction. Unknown ids and
// zero times are ignored; a stored time never moves backwards. Rows are
// updated in id order so concurrent batches cannot deadlock on PostgreSQL.
func (d *DB) TouchAPIKeys(ctx context.Context, lastUsed map[string]time.Time) error {
	ids := make([]string, 0, len(lastUsed))
	for id, t := range lastUsed {
		if !t.IsZero() && validText(id) { // anything else cannot name a key
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	return d.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx,
			`UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)`)
		if err != nil {
			return fmt.Errorf("touch api keys: %w", err)
		}
		defer stmt.Close()
		for _, id := range ids {
			if _, err := stmt.ExecContext(ctx, lastUsed[id].UnixMilli(), id); err != nil {
				return fmt.Errorf("touch api keys: %w", err)
			}
		}
		return nil
	})
}

// DeleteAPIKeysBefore deletes up to limit keys that expired or were revoked
// before cutoff and returns how many it deleted. Keys bound to a session
// are left to DeleteSessionsBefore. Several nodes may run it at once: on
// PostgreSQL rows another node is deleting are skipped, on SQLite writers
// are serialised.
func (d *DB) DeleteAPIKeysBefore(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	if limit <= 0 || cutoff.IsZero() {
		return 0, nil
	}
	res, err := d.db.ExecContext(ctx,
		`DELETE FROM api_keys WHERE id IN (
			SELECT id FROM api_keys
			WHERE session_id IS NULL AND (expires_at < $1 OR revoked_at < $1)
			ORDER BY id LIMIT $2`+d.lockClause("FOR UPDATE SKIP LOCKED")+`)`,
		cutoff.UnixMilli(), limit)
	if err != nil {
		return 0, fmt.Errorf("delete expired api keys: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete expired api keys: %w", err)
	}
	return int(n), nil
}
