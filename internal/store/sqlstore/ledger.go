package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

const ledgerColumns = `id, from_user_id, to_user_id, amount, created_at, idempotency_key`

func scanLedger(r rowScanner) (store.LedgerTransaction, error) {
	var (
		t       store.LedgerTransaction
		created sql.NullInt64
		key     sql.NullString
	)
	if err := r.Scan(&t.ID, &t.FromUserID, &t.ToUserID, &t.Amount, &created, &key); err != nil {
		return store.LedgerTransaction{}, err
	}
	t.CreatedAt = fromMillis(created)
	t.IdempotencyKey = key.String
	return t, nil
}

// InsertLedgerTransaction inserts t as is (seeding). ID 0 lets the database
// assign one. ErrConflict on a duplicate ID or idempotency key;
// ErrNotFound when a user does not exist.
func (d *DB) InsertLedgerTransaction(ctx context.Context, t store.LedgerTransaction) error {
	if err := checkText("ledger transaction", "from user id", t.FromUserID, "to user id", t.ToUserID, "idempotency key", t.IdempotencyKey); err != nil {
		return err
	}
	created := t.CreatedAt
	if created.IsZero() {
		created = nowMS()
	}
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		if t.ID == 0 {
			_, err := tx.ExecContext(ctx,
				`INSERT INTO ledger_transactions (from_user_id, to_user_id, amount, created_at, idempotency_key)
				VALUES ($1, $2, $3, $4, $5)`,
				t.FromUserID, t.ToUserID, t.Amount, created.UnixMilli(), nullString(t.IdempotencyKey))
			return mapErr(err)
		}
		if d.dialect == DialectPostgres {
			// setval races with concurrent nextval calls: block other
			// inserts (which take ROW EXCLUSIVE) until we commit. This lock
			// mode also conflicts with itself, serialising seeders.
			if _, err := tx.ExecContext(ctx, `LOCK TABLE ledger_transactions IN SHARE ROW EXCLUSIVE MODE`); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO ledger_transactions (`+ledgerColumns+`) VALUES ($1, $2, $3, $4, $5, $6)`,
			t.ID, t.FromUserID, t.ToUserID, t.Amount, created.UnixMilli(), nullString(t.IdempotencyKey)); err != nil {
			return mapErr(err)
		}
		if d.dialect == DialectPostgres {
			// Keep the identity sequence ahead of explicit ids (SQLite's
			// AUTOINCREMENT does this by itself). Never move it backwards.
			if _, err := tx.ExecContext(ctx,
				`SELECT setval(s, $1) FROM (SELECT pg_get_serial_sequence('ledger_transactions', 'id')::regclass AS s) q
				WHERE $1 > COALESCE(pg_sequence_last_value(s), 0)`, t.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("insert ledger transaction: %w", err)
	}
	return nil
}

// ListLedgerTransactions returns transactions sent or received by userID,
// newest first (by CreatedAt, then ID). limit <= 0 returns all.
func (d *DB) ListLedgerTransactions(ctx context.Context, userID string, limit int) ([]store.LedgerTransaction, error) {
	if !validText(userID) {
		return nil, nil // no such user
	}
	q := `SELECT ` + ledgerColumns + ` FROM ledger_transactions
		WHERE from_user_id = $1 OR to_user_id = $1
		ORDER BY created_at DESC, id DESC`
	args := []any{userID}
	if limit > 0 {
		q += ` LIMIT $2`
		args = append(args, limit)
	}
	rows, err := d.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list ledger transactions: %w", err)
	}
	defer rows.Close()
	var out []store.LedgerTransaction
	for rows.Next() {
		t, err := scanLedger(rows)
		if err != nil {
			return nil, fmt.Errorf("list ledger transactions: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list ledger transactions: %w", err)
	}
	return out, nil
}

// balanceQuery computes received - sent for $1 (0 for an unknown user).
const balanceQuery = `SELECT
	CAST(COALESCE(SUM(CASE WHEN to_user_id = $1 THEN amount ELSE 0 END), 0) AS BIGINT) -
	CAST(COALESCE(SUM(CASE WHEN from_user_id = $1 THEN amount ELSE 0 END), 0) AS BIGINT)
	FROM ledger_transactions WHERE from_user_id = $1 OR to_user_id = $1`

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func balance(ctx context.Context, q querier, userID string) (int64, error) {
	var b int64
	if err := q.QueryRowContext(ctx, balanceQuery, userID).Scan(&b); err != nil {
		return 0, err
	}
	return b, nil
}

// LedgerBalance returns received - sent for userID (0 for unknown users).
func (d *DB) LedgerBalance(ctx context.Context, userID string) (int64, error) {
	if !validText(userID) {
		return 0, nil // no such user
	}
	b, err := balance(ctx, d.db, userID)
	if err != nil {
		return 0, fmt.Errorf("ledger balance: %w", err)
	}
	return b, nil
}

// ApplyTransfer moves t.Amount from t.FromUserID to t.ToUserID in one
// transaction: replay or conflict on a used idempotency key, then the
// funds check, then the insert. Nothing is written unless all succeed.
//
// Concurrent transfers of one sender are serialised: on PostgreSQL by a
// row lock on the sender's users row, on SQLite by BEGIN IMMEDIATE. The
// lock is FOR NO KEY UPDATE, not FOR UPDATE, because the foreign-key checks
// of concurrent inserts take FOR KEY SHARE on the users they reference; with
// FOR UPDATE, A→B and B→A running at once could deadlock.
func (d *DB) ApplyTransfer(ctx context.Context, t store.Transfer) (store.LedgerTransaction, bool, error) {
	if t.Amount <= 0 {
		return store.LedgerTransaction{}, false, fmt.Errorf("apply transfer: amount must be positive, got %d", t.Amount)
	}
	if err := checkText("transfer", "from user id", t.FromUserID, "to user id", t.ToUserID, "idempotency key", t.IdempotencyKey); err != nil {
		return store.LedgerTransaction{}, false, err
	}
	at := t.At
	if at.IsZero() {
		at = time.Now()
	}
	var (
		out      store.LedgerTransaction
		replayed bool
	)
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		var id string
		err := tx.QueryRowContext(ctx, `SELECT id FROM users WHERE id = $1`+d.lockClause("FOR NO KEY UPDATE"), t.FromUserID).Scan(&id)
		if err != nil {
			return fmt.Errorf("sender %q: %w", t.FromUserID, mapErr(err))
		}
		if t.IdempotencyKey != "" {
			prev, err := scanLedger(tx.QueryRowContext(ctx,
				`SELECT `+ledgerColumns+` FROM ledger_transactions WHERE from_user_id = $1 AND idempotency_key = $2`,
				t.FromUserID, t.IdempotencyKey))
			switch {
			case err == nil:
				if prev.ToUserID != t.ToUserID || prev.Amount != t.Amount {
					return fmt.Errorf("idempotency key already used for a different transfer: %w", store.ErrConflict)
				}
				out, replayed = prev, true
				return nil
			case !errors.Is(err, sql.ErrNoRows):
				return err
			}
		}
		if err := tx.QueryRowContext(ctx, `SELECT id FROM users WHERE id = $1`, t.ToUserID).Scan(&id); err != nil {
			return fmt.Errorf("recipient %q: %w", t.ToUserID, mapErr(err))
		}
		bal, err := balance(ctx, tx, t.FromUserID)
		if err != nil {
			return err
		}
		if bal < t.Amount {
			return store.ErrInsufficientFunds
		}
		out = store.LedgerTransaction{
			FromUserID:     t.FromUserID,
			ToUserID:       t.ToUserID,
			Amount:         t.Amount,
			CreatedAt:      truncMS(at),
			IdempotencyKey: t.IdempotencyKey,
		}
		err = tx.QueryRowContext(ctx,
			`INSERT INTO ledger_transactions (from_user_id, to_user_id, amount, created_at, idempotency_key)
			VALUES ($1, $2, $3, $4, $5) RETURNING id`,
			t.FromUserID, t.ToUserID, t.Amount, at.UnixMilli(), nullString(t.IdempotencyKey)).Scan(&out.ID)
		return mapErr(err)
	})
	if err != nil {
		return store.LedgerTransaction{}, false, fmt.Errorf("apply transfer: %w", err)
	}
	return out, replayed, nil
}
