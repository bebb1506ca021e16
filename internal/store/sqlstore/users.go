package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/mcpgate/mcpgate/internal/store"
)

const userColumns = `id, email, display_name, roles, password_hash, disabled, created_at, updated_at`

func scanUser(r rowScanner) (store.User, error) {
	var (
		u                store.User
		roles            string
		created, updated sql.NullInt64
	)
	if err := r.Scan(&u.ID, &u.Email, &u.DisplayName, &roles, &u.PasswordHash, &u.Disabled, &created, &updated); err != nil {
		return store.User{}, err
	}
	u.Roles = splitTokens(roles)
	u.CreatedAt = fromMillis(created)
	u.UpdatedAt = fromMillis(updated)
	return u, nil
}

// normalizeUser prepares u for writing: the email is stored lower-case (the
// unique index is on lower(email)), times at millisecond precision, and
// missing timestamps become now.
func normalizeUser(u store.User) (store.User, string, error) {
	if u.ID == "" {
		return u, "", errors.New("store: user id is empty")
	}
	if err := checkText("user", "id", u.ID, "email", u.Email, "display name", u.DisplayName, "password hash", u.PasswordHash); err != nil {
		return u, "", err
	}
	for _, r := range u.Roles {
		if err := checkText("user", "role", r); err != nil {
			return u, "", err
		}
	}
	u.Email = strings.ToLower(u.Email)
	roles, err := joinTokens("role", u.Roles)
	if err != nil {
		return u, "", err
	}
	u.CreatedAt, u.UpdatedAt = truncMS(u.CreatedAt), truncMS(u.UpdatedAt)
	if u.CreatedAt.IsZero() {
		u.CreatedAt = nowMS()
	}
	if u.UpdatedAt.IsZero() {
		u.UpdatedAt = u.CreatedAt
	}
	return u, roles, nil
}

// CreateUser inserts u. ErrConflict when the id or (case-insensitively)
// the email is taken.
func (d *DB) CreateUser(ctx context.Context, u store.User) error {
	u, roles, err := normalizeUser(u)
	if err != nil {
		return err
	}
	_, err = d.db.ExecContext(ctx,
		`INSERT INTO users (`+userColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		u.ID, u.Email, u.DisplayName, roles, u.PasswordHash, u.Disabled, millis(u.CreatedAt), millis(u.UpdatedAt))
	if err != nil {
		return fmt.Errorf("create user %q: %w", u.ID, mapErr(err))
	}
	return nil
}

// GetUser returns the user with id, or ErrNotFound.
func (d *DB) GetUser(ctx context.Context, id string) (store.User, error) {
	if !validText(id) {
		return store.User{}, fmt.Errorf("get user: %w", store.ErrNotFound)
	}
	u, err := scanUser(d.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	if err != nil {
		return store.User{}, fmt.Errorf("get user %q: %w", id, mapErr(err))
	}
	return u, nil
}

// GetUserByEmail returns the user whose email matches case-insensitively,
// or ErrNotFound.
func (d *DB) GetUserByEmail(ctx context.Context, email string) (store.User, error) {
	if !validText(email) || !isASCII(email) {
		// Stored emails are ASCII (identity.NormalizeEmail); a look-up
		// with other letters must not reach lower(), which folds some of
		// them to ASCII (U+212A KELVIN SIGN to "k").
		return store.User{}, fmt.Errorf("get user by email: %w", store.ErrNotFound)
	}
	u, err := scanUser(d.db.QueryRowContext(ctx,
		`SELECT `+userColumns+` FROM users WHERE lower(email) = lower($1)`, strings.ToLower(email)))
	if err != nil {
		return store.User{}, fmt.Errorf("get user by email: %w", mapErr(err))
	}
	return u, nil
}

// ListUsers returns every user ordered by email.
func (d *DB) ListUsers(ctx context.Context) ([]store.User, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT `+userColumns+` FROM users ORDER BY email, id`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []store.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	// Byte order, whatever the database's collation.
	slices.SortFunc(out, func(a, b store.User) int {
		return cmp.Or(strings.Compare(a.Email, b.Email), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// UpdateUser reads the user inside a transaction (row-locked on
// PostgreSQL), applies updater and writes the result back, keeping ID and
// CreatedAt. An updater error aborts and is returned unwrapped.
func (d *DB) UpdateUser(ctx context.Context, id string, updater func(store.User) (store.User, error)) (store.User, error) {
	if !validText(id) {
		return store.User{}, fmt.Errorf("update user: %w", store.ErrNotFound)
	}
	var updated store.User
	var updaterErr error
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := scanUser(tx.QueryRowContext(ctx,
			`SELECT `+userColumns+` FROM users WHERE id = $1`+d.lockClause("FOR UPDATE"), id))
		if err != nil {
			return fmt.Errorf("update user %q: %w", id, mapErr(err))
		}
		next, err := updater(cur)
		if err != nil {
			updaterErr = err
			return err
		}
		next.ID, next.CreatedAt = cur.ID, cur.CreatedAt
		next, roles, err := normalizeUser(next)
		if err != nil {
			return fmt.Errorf("update user %q: %w", id, err)
		}
		_, err = tx.ExecContext(ctx,
			`UPDATE users SET email = $2, display_name = $3, roles = $4, password_hash = $5, disabled = $6, updated_at = $7
			WHERE id = $1`,
			id, next.Email, next.DisplayName, roles, next.PasswordHash, next.Disabled, millis(next.UpdatedAt))
		if err != nil {
			return fmt.Errorf("update user %q: %w", id, mapErr(err))
		}
		updated = next
		return nil
	})
	if updaterErr != nil {
		return store.User{}, updaterErr // as is, per the store contract
	}
	if err != nil {
		return store.User{}, err
	}
	return updated, nil
}
