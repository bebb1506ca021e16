package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

var _ store.LoginFlowStore = (*DB)(nil)

const loginFlowColumns = `id, kind, provider, state_hash, request_hash, sealed, return_to, source, posted_user,
	created_at, expires_at, user_at, used_at, callback_hash`

func scanLoginFlow(r rowScanner) (store.LoginFlow, error) {
	var (
		f store.LoginFlow
		t [4]sql.NullInt64
	)
	if err := r.Scan(&f.ID, &f.Kind, &f.Provider, &f.StateHash, &f.RequestHash, &f.Sealed, &f.ReturnTo, &f.Source, &f.User,
		&t[0], &t[1], &t[2], &t[3], &f.CallbackHash); err != nil {
		return store.LoginFlow{}, err
	}
	if len(f.RequestHash) == 0 {
		f.RequestHash = nil
	}
	if len(f.Sealed) == 0 {
		f.Sealed = nil
	}
	if len(f.CallbackHash) == 0 {
		f.CallbackHash = nil
	}
	f.CreatedAt, f.ExpiresAt, f.UserAt, f.UsedAt = fromMillis(t[0]), fromMillis(t[1]), fromMillis(t[2]), fromMillis(t[3])
	return f, nil
}

// checkLoginFlow refuses a flow the store could not keep as given.
func checkLoginFlow(f store.LoginFlow) error {
	switch {
	case f.ID == "":
		return errors.New("store: login flow has no id")
	case f.Kind != store.LoginFlowUpstream && f.Kind != store.LoginFlowCustom:
		return fmt.Errorf("store: unknown login flow kind %q", f.Kind)
	case f.Kind == store.LoginFlowUpstream && (f.Provider == "" || f.RequestHash != nil):
		return errors.New("store: an upstream login flow needs a provider and has no login request")
	case f.Kind == store.LoginFlowCustom && (f.Provider != "" || len(f.RequestHash) != sha256.Size):
		return errors.New("store: a custom login flow needs a login request hash and has no provider")
	case len(f.StateHash) != sha256.Size:
		return fmt.Errorf("store: login flow state hash must be a %d-byte SHA-256 digest", sha256.Size)
	case len(f.Sealed) > store.MaxLoginFlowSealedBytes:
		return fmt.Errorf("store: sealed login flow secrets are larger than %d bytes", store.MaxLoginFlowSealedBytes)
	case f.User != "" || !f.UserAt.IsZero() || !f.UsedAt.IsZero() || f.CallbackHash != nil:
		return errors.New("store: a new login flow has no user and is unused")
	case f.ExpiresAt.IsZero():
		return errors.New("store: login flow has no expiry")
	}
	return checkText("login flow", "id", f.ID, "provider", f.Provider, "return_to", f.ReturnTo, "source", f.Source)
}

// CreateLoginFlow stores a flow within limits. On PostgreSQL the counts
// and the insert run under a transaction-scoped advisory lock, as SQLite's
// BEGIN IMMEDIATE runs them under its one writer lock: otherwise, under
// READ COMMITTED, starts on several nodes at once would each count the
// same rows and each take the last free place.
func (d *DB) CreateLoginFlow(ctx context.Context, f store.LoginFlow, limits store.LoginFlowLimits) error {
	if err := checkLoginFlow(f); err != nil {
		return err
	}
	created := truncMS(f.CreatedAt)
	if created.IsZero() {
		created = nowMS()
	}
	var request, sealed any
	if f.RequestHash != nil {
		request = f.RequestHash
	}
	if f.Sealed != nil {
		sealed = f.Sealed
	}
	return d.inTx(ctx, func(tx *sql.Tx) error {
		if err := d.lockLoginFlowCounts(ctx, tx, limits); err != nil {
			return fmt.Errorf("create login flow: %w", err)
		}
		if err := checkLoginFlowLimits(ctx, tx, f.Source, created.UnixMilli(), limits); err != nil {
			return fmt.Errorf("create login flow: %w", err)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO login_flows (`+loginFlowColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '', $9, $10, NULL, NULL, NULL)`,
			f.ID, f.Kind, f.Provider, f.StateHash, request, sealed, f.ReturnTo, f.Source, created.UnixMilli(), f.ExpiresAt.UnixMilli())
		if err != nil {
			return fmt.Errorf("create login flow: %w", mapErr(err))
		}
		return nil
	})
}

// lockLoginFlowCounts serialises bounded creates on PostgreSQL until the
// transaction ends (pg_advisory_xact_lock: no row or table lock, so
// callbacks and the cleaner are not held up). The lock id is derived from
// the schema, as the migration lock's is, so that independent schemas in
// one database do not wait on each other.
func (d *DB) lockLoginFlowCounts(ctx context.Context, tx *sql.Tx, limits store.LoginFlowLimits) error {
	if d.dialect != DialectPostgres || (limits.Total <= 0 && limits.PerSource <= 0) {
		return nil
	}
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(
		('x' || substr(md5('mcpgate login flow limits:' || current_schema()), 1, 16))::bit(64)::bigint)`)
	return err
}

// checkLoginFlowLimits counts, as far as each bound only (the index range
// scans stop there), the pending flows of source and the pending flows of
// all: the same rows for both bounds, so finishing one's own flows frees
// room in both (review #5, N1).
func checkLoginFlowLimits(ctx context.Context, tx *sql.Tx, source string, nowMS int64, limits store.LoginFlowLimits) error {
	if limits.PerSource > 0 && source != "" {
		var n int
		err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM login_flows
			WHERE source = $1 AND expires_at > $2 AND used_at IS NULL LIMIT $3) AS pending`,
			source, nowMS, limits.PerSource).Scan(&n)
		if err != nil {
			return err
		}
		if n >= limits.PerSource {
			return fmt.Errorf("%w (%d sign-ins in progress)", store.ErrSourceFull, n)
		}
	}
	if limits.Total > 0 {
		var n int
		err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM login_flows WHERE expires_at > $1 AND used_at IS NULL LIMIT $2) AS pending`,
			nowMS, limits.Total).Scan(&n)
		if err != nil {
			return err
		}
		if n >= limits.Total {
			return fmt.Errorf("%w (%d sign-ins in progress)", store.ErrFull, n)
		}
	}
	return nil
}

// GetLoginFlow returns the flow of kind with this state hash.
func (d *DB) GetLoginFlow(ctx context.Context, kind string, stateHash []byte) (store.LoginFlow, error) {
	if len(stateHash) != sha256.Size || !validText(kind) {
		return store.LoginFlow{}, fmt.Errorf("get login flow: %w", store.ErrNotFound)
	}
	f, err := scanLoginFlow(d.db.QueryRowContext(ctx, `SELECT `+loginFlowColumns+` FROM login_flows
		WHERE state_hash = $1 AND kind = $2`, stateHash, kind))
	if err != nil {
		return store.LoginFlow{}, fmt.Errorf("get login flow: %w", mapErr(err))
	}
	return f, nil
}

// SetLoginFlowUser attaches the posted user and the hash of its callback
// code to a live, unused custom flow, once. The condition is in the UPDATE
// itself, so of concurrent callers on any number of nodes exactly one
// changes the row.
func (d *DB) SetLoginFlowUser(ctx context.Context, requestHash []byte, user string, callbackHash []byte, at time.Time) (store.LoginFlow, error) {
	switch {
	case len(callbackHash) != sha256.Size:
		return store.LoginFlow{}, fmt.Errorf("store: the callback hash of a login flow must be a %d-byte SHA-256 digest", sha256.Size)
	case user == "":
		return store.LoginFlow{}, errors.New("store: the posted user of a login flow is empty")
	case len(user) > store.MaxLoginFlowUserBytes:
		return store.LoginFlow{}, fmt.Errorf("store: the posted user of a login flow is larger than %d bytes", store.MaxLoginFlowUserBytes)
	}
	if err := checkText("login flow", "posted user", user); err != nil {
		return store.LoginFlow{}, err
	}
	if len(requestHash) != sha256.Size {
		return store.LoginFlow{}, fmt.Errorf("set login flow user: %w", store.ErrNotFound)
	}
	atMS := at.UnixMilli()
	f, err := scanLoginFlow(d.db.QueryRowContext(ctx, `UPDATE login_flows SET posted_user = $2, user_at = $3, callback_hash = $5
		WHERE request_hash = $1 AND kind = $4 AND user_at IS NULL AND used_at IS NULL AND expires_at > $3
		RETURNING `+loginFlowColumns, requestHash, user, atMS, store.LoginFlowCustom, callbackHash))
	if err == nil {
		return f, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return store.LoginFlow{}, fmt.Errorf("set login flow user: %w", err)
	}
	f, err = scanLoginFlow(d.db.QueryRowContext(ctx, `SELECT `+loginFlowColumns+` FROM login_flows
		WHERE request_hash = $1 AND kind = $2`, requestHash, store.LoginFlowCustom))
	if err != nil {
		return store.LoginFlow{}, fmt.Errorf("set login flow user: %w", mapErr(err))
	}
	return f, fmt.Errorf("set login flow user: %w", whyUnusable(f, atMS))
}

// UseLoginFlow consumes a live, unused flow, once (a conditional UPDATE,
// as in SetLoginFlowUser).
func (d *DB) UseLoginFlow(ctx context.Context, kind string, stateHash []byte, at time.Time) (store.LoginFlow, error) {
	if len(stateHash) != sha256.Size || !validText(kind) {
		return store.LoginFlow{}, fmt.Errorf("use login flow: %w", store.ErrNotFound)
	}
	atMS := at.UnixMilli()
	f, err := scanLoginFlow(d.db.QueryRowContext(ctx, `UPDATE login_flows SET used_at = $3
		WHERE state_hash = $1 AND kind = $2 AND used_at IS NULL AND expires_at > $3
		RETURNING `+loginFlowColumns, stateHash, kind, atMS))
	if err == nil {
		return f, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return store.LoginFlow{}, fmt.Errorf("use login flow: %w", err)
	}
	f, err = d.GetLoginFlow(ctx, kind, stateHash)
	if err != nil {
		return store.LoginFlow{}, fmt.Errorf("use login flow: %w", err)
	}
	return f, fmt.Errorf("use login flow: %w", whyUnusable(f, atMS))
}

// whyUnusable says why a conditional update left f alone: expired (first,
// as the handlers have always reported it), else already used or given a
// user.
func whyUnusable(f store.LoginFlow, atMS int64) error {
	if f.ExpiresAt.UnixMilli() <= atMS {
		return store.ErrExpired
	}
	return store.ErrReplayed
}

// DeleteExpiredLoginFlows deletes up to limit expired flows. On
// PostgreSQL rows another node is deleting are skipped.
func (d *DB) DeleteExpiredLoginFlows(ctx context.Context, now time.Time, limit int) (int, error) {
	if limit <= 0 || now.IsZero() {
		return 0, nil
	}
	res, err := d.db.ExecContext(ctx, `DELETE FROM login_flows WHERE id IN (
			SELECT id FROM login_flows WHERE expires_at < $1
			ORDER BY expires_at LIMIT $2`+d.lockClause("FOR UPDATE SKIP LOCKED")+`)`,
		now.UnixMilli(), limit)
	if err != nil {
		return 0, fmt.Errorf("delete expired login flows: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete expired login flows: %w", err)
	}
	return int(n), nil
}
