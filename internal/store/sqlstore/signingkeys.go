package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

const signingKeyColumns = `id, generation, algorithm, public_jwk, private_key, created_at, activates_at, retires_at`

func scanSigningKey(r rowScanner) (store.SigningKey, error) {
	var (
		k   store.SigningKey
		jwk string
		t   [3]sql.NullInt64
	)
	if err := r.Scan(&k.ID, &k.Generation, &k.Algorithm, &jwk, &k.PrivateKey, &t[0], &t[1], &t[2]); err != nil {
		return store.SigningKey{}, err
	}
	k.PublicJWK = []byte(jwk)
	k.CreatedAt, k.ActivatesAt, k.RetiresAt = fromMillis(t[0]), fromMillis(t[1]), fromMillis(t[2])
	return k, nil
}

// CreateSigningKey inserts k as the next generation and retires the
// previous one at k.ActivatesAt, in one transaction. Two nodes rotating at
// once race for the same generation: the unique index lets one win and the
// other gets ErrConflict (on PostgreSQL the loser blocks on the winner's
// row lock or index entry until it commits, then fails).
func (d *DB) CreateSigningKey(ctx context.Context, k store.SigningKey) error {
	switch {
	case k.ID == "":
		return errors.New("store: signing key id is empty")
	case k.Generation < 1:
		return fmt.Errorf("store: signing key generation must be at least 1, got %d", k.Generation)
	case k.Algorithm == "":
		return errors.New("store: signing key algorithm is empty")
	case len(k.PrivateKey) == 0:
		return errors.New("store: signing key has no (sealed) private key")
	case !json.Valid(k.PublicJWK):
		return errors.New("store: signing key public JWK is not valid JSON")
	case k.ActivatesAt.IsZero():
		return errors.New("store: signing key has no activation time")
	case !k.RetiresAt.IsZero():
		return errors.New("store: a new signing key cannot be retired already")
	}
	if err := checkText("signing key", "id", k.ID, "algorithm", k.Algorithm, "public JWK", string(k.PublicJWK)); err != nil {
		return err
	}
	created := truncMS(k.CreatedAt)
	if created.IsZero() {
		created = nowMS()
	}
	activates := k.ActivatesAt.UnixMilli()
	return d.inTx(ctx, func(tx *sql.Tx) error {
		var newest int64
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(generation), 0) FROM signing_keys`).Scan(&newest); err != nil {
			return fmt.Errorf("create signing key: %w", err)
		}
		if k.Generation != newest+1 {
			return fmt.Errorf("create signing key generation %d (newest is %d): %w", k.Generation, newest, store.ErrConflict)
		}
		if k.Generation > 1 {
			if _, err := tx.ExecContext(ctx,
				`UPDATE signing_keys SET retires_at = $1 WHERE generation = $2 AND retires_at IS NULL`,
				activates, k.Generation-1); err != nil {
				return fmt.Errorf("create signing key: retire generation %d: %w", k.Generation-1, mapErr(err))
			}
		}
		_, err := tx.ExecContext(ctx,
			`INSERT INTO signing_keys (`+signingKeyColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)`,
			k.ID, k.Generation, k.Algorithm, string(k.PublicJWK), k.PrivateKey, millis(created), activates)
		if err != nil {
			return fmt.Errorf("create signing key generation %d: %w", k.Generation, mapErr(err))
		}
		return nil
	})
}

// ListSigningKeys returns every key, newest generation first.
func (d *DB) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT `+signingKeyColumns+` FROM signing_keys ORDER BY generation DESC`)
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	defer rows.Close()
	var out []store.SigningKey
	for rows.Next() {
		k, err := scanSigningKey(rows)
		if err != nil {
			return nil, fmt.Errorf("list signing keys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	return out, nil
}

// DeleteSigningKeysRetiredBefore deletes keys retired before cutoff. The
// newest generation has no retirement time and is never matched.
func (d *DB) DeleteSigningKeysRetiredBefore(ctx context.Context, cutoff time.Time) (int, error) {
	if cutoff.IsZero() {
		return 0, nil
	}
	res, err := d.db.ExecContext(ctx,
		`DELETE FROM signing_keys WHERE retires_at IS NOT NULL AND retires_at < $1`, cutoff.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("delete retired signing keys: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete retired signing keys: %w", err)
	}
	return int(n), nil
}
