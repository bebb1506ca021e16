package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mcpgate/mcpgate/internal/store"
)

var _ store.IdentityStore = (*DB)(nil)

const identityColumns = `issuer, subject, user_id, email, email_verified, name, created_at, last_login_at`

func scanIdentity(r rowScanner) (store.UserIdentity, error) {
	var (
		id         store.UserIdentity
		created    sql.NullInt64
		lastLogin  sql.NullInt64
		isVerified bool
	)
	if err := r.Scan(&id.Issuer, &id.Subject, &id.UserID, &id.Email, &isVerified, &id.Name, &created, &lastLogin); err != nil {
		return store.UserIdentity{}, err
	}
	id.EmailVerified = isVerified
	id.CreatedAt, id.LastLoginAt = fromMillis(created), fromMillis(lastLogin)
	return id, nil
}

// normalizeIdentity checks id for writing and fills in CreatedAt.
func normalizeIdentity(id store.UserIdentity) (store.UserIdentity, error) {
	switch {
	case id.Issuer == "":
		return id, errors.New("store: identity issuer is empty")
	case id.Subject == "":
		return id, errors.New("store: identity subject is empty")
	case id.UserID == "":
		return id, errors.New("store: identity user id is empty")
	}
	if err := checkText("identity", "issuer", id.Issuer, "subject", id.Subject, "user id", id.UserID,
		"email", id.Email, "name", id.Name); err != nil {
		return id, err
	}
	id.CreatedAt, id.LastLoginAt = truncMS(id.CreatedAt), truncMS(id.LastLoginAt)
	if id.CreatedAt.IsZero() {
		id.CreatedAt = nowMS()
	}
	return id, nil
}

func insertIdentity(ctx context.Context, ex interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}, id store.UserIdentity) error {
	_, err := ex.ExecContext(ctx,
		`INSERT INTO user_identities (`+identityColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		id.Issuer, id.Subject, id.UserID, id.Email, id.EmailVerified, id.Name, millis(id.CreatedAt), millis(id.LastLoginAt))
	return mapErr(err)
}

// CreateUserWithIdentity inserts the user and its first identity in one
// transaction. Two nodes provisioning the same identity at once race on
// the unique email and on the (issuer, subject) key: one commits, the
// other gets ErrConflict and writes nothing.
func (d *DB) CreateUserWithIdentity(ctx context.Context, u store.User, id store.UserIdentity) error {
	if id.UserID != u.ID {
		return fmt.Errorf("store: identity user id %q is not the new user's id %q", id.UserID, u.ID)
	}
	u, roles, err := normalizeUser(u)
	if err != nil {
		return err
	}
	id, err = normalizeIdentity(id)
	if err != nil {
		return err
	}
	return d.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO users (`+userColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			u.ID, u.Email, u.DisplayName, roles, u.PasswordHash, u.Disabled, millis(u.CreatedAt), millis(u.UpdatedAt)); err != nil {
			return fmt.Errorf("create user %q: %w", u.ID, mapErr(err))
		}
		if err := insertIdentity(ctx, tx, id); err != nil {
			return fmt.Errorf("link identity of user %q: %w", u.ID, err)
		}
		return nil
	})
}

// LinkIdentity links an identity to an existing user.
func (d *DB) LinkIdentity(ctx context.Context, id store.UserIdentity) error {
	id, err := normalizeIdentity(id)
	if err != nil {
		return err
	}
	if err := insertIdentity(ctx, d.db, id); err != nil {
		return fmt.Errorf("link identity to user %q: %w", id.UserID, err)
	}
	return nil
}

// GetIdentity returns the link of (issuer, subject).
func (d *DB) GetIdentity(ctx context.Context, issuer, subject string) (store.UserIdentity, error) {
	if !validText(issuer) || !validText(subject) {
		return store.UserIdentity{}, fmt.Errorf("get identity: %w", store.ErrNotFound)
	}
	id, err := scanIdentity(d.db.QueryRowContext(ctx,
		`SELECT `+identityColumns+` FROM user_identities WHERE issuer = $1 AND subject = $2`, issuer, subject))
	if err != nil {
		return store.UserIdentity{}, fmt.Errorf("get identity: %w", mapErr(err))
	}
	return id, nil
}

// ListIdentities returns a user's identities, oldest first.
func (d *DB) ListIdentities(ctx context.Context, userID string) ([]store.UserIdentity, error) {
	if !validText(userID) {
		return nil, nil
	}
	return d.listIdentities(ctx, `WHERE user_id = $1 ORDER BY created_at, issuer, subject`, userID)
}

// ListAllIdentities returns every identity, by user and oldest first.
func (d *DB) ListAllIdentities(ctx context.Context) ([]store.UserIdentity, error) {
	return d.listIdentities(ctx, `ORDER BY user_id, created_at, issuer, subject`)
}

func (d *DB) listIdentities(ctx context.Context, where string, args ...any) ([]store.UserIdentity, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT `+identityColumns+` FROM user_identities `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("list identities: %w", err)
	}
	defer rows.Close()
	var out []store.UserIdentity
	for rows.Next() {
		id, err := scanIdentity(rows)
		if err != nil {
			return nil, fmt.Errorf("list identities: %w", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list identities: %w", err)
	}
	return out, nil
}

// TouchIdentity records a login through the identity. The last-login time
// only moves forward, so two nodes touching at once keep the later time.
func (d *DB) TouchIdentity(ctx context.Context, id store.UserIdentity) error {
	if err := checkText("identity", "issuer", id.Issuer, "subject", id.Subject, "email", id.Email, "name", id.Name); err != nil {
		return err
	}
	at := id.LastLoginAt
	if at.IsZero() {
		at = nowMS()
	}
	res, err := d.db.ExecContext(ctx,
		`UPDATE user_identities SET email = $3, email_verified = $4, name = $5,
		     last_login_at = CASE WHEN last_login_at IS NULL OR last_login_at < $6 THEN $6 ELSE last_login_at END
		 WHERE issuer = $1 AND subject = $2`,
		id.Issuer, id.Subject, id.Email, id.EmailVerified, id.Name, at.UnixMilli())
	if err != nil {
		return fmt.Errorf("touch identity: %w", mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("touch identity: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("touch identity: %w", store.ErrNotFound)
	}
	return nil
}
