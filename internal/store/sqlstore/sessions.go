package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

const sessionColumns = `id, user_id, hash, created_at, last_seen_at, expires_at, revoked_at, ip, user_agent, claims, end_reason`

// sessionColumnsS is sessionColumns qualified with the alias s.
const sessionColumnsS = `s.id, s.user_id, s.hash, s.created_at, s.last_seen_at, s.expires_at, s.revoked_at, s.ip, s.user_agent, s.claims, s.end_reason`

func sessionDest(s *store.Session, t *[4]sql.NullInt64) []any {
	return []any{&s.ID, &s.UserID, &s.Hash, &t[0], &t[1], &t[2], &t[3], &s.IP, &s.UserAgent, &s.Claims, &s.EndReason}
}

func finishSession(s *store.Session, t *[4]sql.NullInt64) {
	s.CreatedAt, s.LastSeenAt, s.ExpiresAt, s.RevokedAt = fromMillis(t[0]), fromMillis(t[1]), fromMillis(t[2]), fromMillis(t[3])
}

func scanSession(r rowScanner) (store.Session, error) {
	var (
		s store.Session
		t [4]sql.NullInt64
	)
	if err := r.Scan(sessionDest(&s, &t)...); err != nil {
		return store.Session{}, err
	}
	finishSession(&s, &t)
	return s, nil
}

func scanSessions(rows *sql.Rows) ([]store.Session, error) {
	defer rows.Close()
	var out []store.Session
	for rows.Next() {
		s, err := scanSession(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// CreateSession inserts s. ErrConflict when the id or hash is taken;
// ErrNotFound when the user does not exist. The IP and user agent are
// request data and are stored sanitised rather than refused.
func (d *DB) CreateSession(ctx context.Context, s store.Session) error {
	if s.ID == "" {
		return errors.New("store: session id is empty")
	}
	if len(s.Hash) != sha256.Size {
		return fmt.Errorf("store: session hash must be a %d-byte SHA-256 digest, got %d bytes", sha256.Size, len(s.Hash))
	}
	if s.ExpiresAt.IsZero() {
		return errors.New("store: session has no expiry")
	}
	switch {
	case s.RevokedAt.IsZero() && s.EndReason != "":
		return fmt.Errorf("store: session has end reason %q but no revocation time", s.EndReason)
	case s.EndReason != "" && !store.ValidSessionEnd(s.EndReason):
		return fmt.Errorf("store: unknown session end reason %q", s.EndReason)
	case !s.RevokedAt.IsZero() && s.EndReason == "":
		s.EndReason = store.SessionEndRevoked // ended without a word why: ended by someone
	}
	if err := checkText("session", "id", s.ID, "user id", s.UserID); err != nil {
		return err
	}
	created := truncMS(s.CreatedAt)
	if created.IsZero() {
		created = nowMS()
	}
	seen := truncMS(s.LastSeenAt)
	if seen.IsZero() {
		seen = created
	}
	_, err := d.db.ExecContext(ctx,
		`INSERT INTO sessions (`+sessionColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		s.ID, s.UserID, s.Hash, millis(created), millis(seen), millis(s.ExpiresAt), millis(s.RevokedAt),
		sanitizeText(s.IP), sanitizeText(s.UserAgent), s.Claims, s.EndReason)
	if err != nil {
		return fmt.Errorf("create session %q: %w", s.ID, mapErr(err))
	}
	return nil
}

// GetSession returns the session with id, or ErrNotFound.
func (d *DB) GetSession(ctx context.Context, id string) (store.Session, error) {
	if !validText(id) {
		return store.Session{}, fmt.Errorf("get session: %w", store.ErrNotFound)
	}
	s, err := scanSession(d.db.QueryRowContext(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE id = $1`, id))
	if err != nil {
		return store.Session{}, fmt.Errorf("get session %q: %w", id, mapErr(err))
	}
	return s, nil
}

// LookupSession finds a session by the hash of its cookie secret, with its
// user, in one query. Revoked and expired sessions are returned too.
func (d *DB) LookupSession(ctx context.Context, hash []byte) (store.Session, store.User, error) {
	var (
		s                store.Session
		t                [4]sql.NullInt64
		u                store.User
		roles            string
		created, updated sql.NullInt64
	)
	dest := append(sessionDest(&s, &t),
		&u.ID, &u.Email, &u.DisplayName, &roles, &u.PasswordHash, &u.Disabled, &created, &updated)
	err := d.db.QueryRowContext(ctx,
		`SELECT `+sessionColumnsS+`, u.id, u.email, u.display_name, u.roles, u.password_hash, u.disabled, u.created_at, u.updated_at
		FROM sessions s JOIN users u ON u.id = s.user_id
		WHERE s.hash = $1`, hash).Scan(dest...)
	if err != nil {
		// Never put the hash in the error: it identifies a credential.
		return store.Session{}, store.User{}, fmt.Errorf("lookup session: %w", mapErr(err))
	}
	finishSession(&s, &t)
	u.Roles = splitTokens(roles)
	u.CreatedAt, u.UpdatedAt = fromMillis(created), fromMillis(updated)
	return s, u, nil
}

// ListSessions returns the user's sessions that are not revoked, newest
// first (expired ones included).
func (d *DB) ListSessions(ctx context.Context, userID string) ([]store.Session, error) {
	if !validText(userID) {
		return nil, nil
	}
	rows, err := d.db.QueryContext(ctx,
		`SELECT `+sessionColumns+` FROM sessions WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC, id DESC`, userID)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	out, err := scanSessions(rows)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return out, nil
}

// TouchSession moves LastSeenAt forward to at; unknown ids are ignored.
func (d *DB) TouchSession(ctx context.Context, id string, at time.Time) error {
	if !validText(id) || at.IsZero() {
		return nil
	}
	_, err := d.db.ExecContext(ctx,
		`UPDATE sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2`, id, at.UnixMilli())
	if err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	return nil
}

// revokeSessionKeys revokes the session's keys that are not revoked yet
// and returns them.
func (d *DB) revokeSessionKeys(ctx context.Context, tx *sql.Tx, sessionID string, at int64) ([]store.APIKey, error) {
	rows, err := tx.QueryContext(ctx,
		`UPDATE api_keys SET revoked_at = $2 WHERE session_id = $1 AND revoked_at IS NULL RETURNING `+apiKeyColumns,
		sessionID, at)
	if err != nil {
		return nil, fmt.Errorf("revoke session keys: %w", err)
	}
	keys, err := scanAPIKeys(rows)
	if err != nil {
		return nil, fmt.Errorf("revoke session keys: %w", err)
	}
	slices.SortFunc(keys, func(a, b store.APIKey) int { return strings.Compare(a.ID, b.ID) })
	return keys, nil
}

// RevokeSession revokes a session and its keys in one transaction, with
// reason as its end reason. A session revoked earlier keeps its time and
// reason (Ended false), except that SessionEndRevoked replaces
// SessionEndIdle; keys still live under it are revoked all the same.
func (d *DB) RevokeSession(ctx context.Context, id string, at time.Time, reason string) (store.SessionRevocation, error) {
	if !store.ValidSessionEnd(reason) {
		return store.SessionRevocation{}, fmt.Errorf("revoke session: unknown end reason %q", reason)
	}
	if !validText(id) {
		return store.SessionRevocation{}, fmt.Errorf("revoke session: %w", store.ErrNotFound)
	}
	if at.IsZero() {
		at = time.Now()
	}
	atMS := at.UnixMilli()
	var out store.SessionRevocation
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		out = store.SessionRevocation{}
		s, err := scanSession(tx.QueryRowContext(ctx,
			`UPDATE sessions SET revoked_at = $2, end_reason = $3 WHERE id = $1 AND revoked_at IS NULL RETURNING `+sessionColumns,
			id, atMS, reason))
		switch {
		case err == nil:
			out.Ended = true
		case errors.Is(err, sql.ErrNoRows):
			// Unknown, or revoked already (by a concurrent logout, say).
			// Someone ending a sign-in that went idle still ends it for
			// the grants that keep its claims.
			if reason == store.SessionEndRevoked {
				if err := d.idleToRevoked(ctx, tx, `id = $1`, id); err != nil {
					return fmt.Errorf("revoke session %q: %w", id, err)
				}
			}
			s, err = scanSession(tx.QueryRowContext(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE id = $1`, id))
			if err != nil {
				return fmt.Errorf("revoke session %q: %w", id, mapErr(err))
			}
		default:
			return fmt.Errorf("revoke session %q: %w", id, err)
		}
		out.Session = s
		out.Keys, err = d.revokeSessionKeys(ctx, tx, id, atMS)
		return err
	})
	if err != nil {
		return store.SessionRevocation{}, err
	}
	return out, nil
}

// RevokeUserSessions revokes every unrevoked session of userID except
// exceptID, with their keys, in one transaction. Rows are locked in id
// order so concurrent callers cannot deadlock on PostgreSQL.
func (d *DB) RevokeUserSessions(ctx context.Context, userID, exceptID string, at time.Time) ([]store.SessionRevocation, error) {
	if !validText(userID) || !validText(exceptID) {
		return nil, nil
	}
	if at.IsZero() {
		at = time.Now()
	}
	atMS := at.UnixMilli()
	var out []store.SessionRevocation
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		out = nil
		rows, err := tx.QueryContext(ctx,
			`SELECT id FROM sessions WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL ORDER BY id`+d.lockClause("FOR UPDATE"),
			userID, exceptID)
		if err != nil {
			return fmt.Errorf("revoke user sessions: %w", err)
		}
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return fmt.Errorf("revoke user sessions: %w", err)
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("revoke user sessions: %w", err)
		}
		revs, err := d.endSessions(ctx, tx, ids, atMS, func(string) string { return store.SessionEndRevoked })
		if err != nil {
			return err
		}
		out = revs
		// Sessions that ended idle were not locked above (they are
		// revoked); marking them is one statement on rows nobody else
		// revokes (RevokeSession only touches idle ones the same way).
		return d.idleToRevoked(ctx, tx, `user_id = $1 AND id <> $2`, userID, exceptID)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// idleToRevoked marks the sessions matching where (over args) that ended
// idle as revoked: someone ended the sign-in after the cookie went idle,
// which ends the custom claims grants keep from it.
func (d *DB) idleToRevoked(ctx context.Context, tx *sql.Tx, where string, args ...any) error {
	_, err := tx.ExecContext(ctx, `UPDATE sessions SET end_reason = '`+store.SessionEndRevoked+`'
		WHERE `+where+` AND end_reason = '`+store.SessionEndIdle+`'`, args...)
	if err != nil {
		return fmt.Errorf("mark idle sessions revoked: %w", err)
	}
	return nil
}

// endSessions revokes the (locked) sessions ids that are still unrevoked,
// with their keys and the end reason reasonFor gives each, and reports
// what it changed, in id order.
func (d *DB) endSessions(ctx context.Context, tx *sql.Tx, ids []string, atMS int64, reasonFor func(id string) string) ([]store.SessionRevocation, error) {
	var out []store.SessionRevocation
	for _, id := range ids {
		s, err := scanSession(tx.QueryRowContext(ctx,
			`UPDATE sessions SET revoked_at = $2, end_reason = $3 WHERE id = $1 AND revoked_at IS NULL RETURNING `+sessionColumns,
			id, atMS, reasonFor(id)))
		if errors.Is(err, sql.ErrNoRows) {
			continue // ended meanwhile by someone else
		}
		if err != nil {
			return nil, fmt.Errorf("revoke session: %w", err)
		}
		keys, err := d.revokeSessionKeys(ctx, tx, id, atMS)
		if err != nil {
			return nil, err
		}
		out = append(out, store.SessionRevocation{Session: s, Ended: true, Keys: keys})
	}
	return out, nil
}

// ExpireSessions revokes up to limit dead sessions (past their expiry, or
// idle) with their keys. On PostgreSQL rows another node is working on are
// skipped; on SQLite writers are serialised.
func (d *DB) ExpireSessions(ctx context.Context, now time.Time, idle time.Duration, limit int) ([]store.SessionRevocation, error) {
	if limit <= 0 || now.IsZero() {
		return nil, nil
	}
	var idleCutoff any // NULL: "last_seen_at <= NULL" is never true
	if idle > 0 {
		idleCutoff = now.Add(-idle).UnixMilli()
	}
	nowMS := now.UnixMilli()
	var out []store.SessionRevocation
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		out = nil
		rows, err := tx.QueryContext(ctx,
			`SELECT id, expires_at FROM sessions
			WHERE revoked_at IS NULL AND (expires_at <= $1 OR last_seen_at <= $2)
			ORDER BY id LIMIT $3`+d.lockClause("FOR UPDATE SKIP LOCKED"),
			nowMS, idleCutoff, limit)
		if err != nil {
			return fmt.Errorf("expire sessions: %w", err)
		}
		var ids []string
		reasons := map[string]string{}
		for rows.Next() {
			var (
				id      string
				expires int64
			)
			if err := rows.Scan(&id, &expires); err != nil {
				rows.Close()
				return fmt.Errorf("expire sessions: %w", err)
			}
			ids = append(ids, id)
			reasons[id] = store.SessionEndIdle
			if expires <= nowMS {
				reasons[id] = store.SessionEndLifetime
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("expire sessions: %w", err)
		}
		out, err = d.endSessions(ctx, tx, ids, nowMS, func(id string) string { return reasons[id] })
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteSessionsBefore deletes up to limit sessions that expired, or were
// revoked for another reason than idleness, before cutoff; their keys go
// with them (ON DELETE CASCADE). A session that ended idle is kept until
// its lifetime ends: grants keep its custom claims until then.
func (d *DB) DeleteSessionsBefore(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	if limit <= 0 || cutoff.IsZero() {
		return 0, nil
	}
	res, err := d.db.ExecContext(ctx,
		`DELETE FROM sessions WHERE id IN (
			SELECT id FROM sessions
			WHERE expires_at < $1 OR (revoked_at < $1 AND end_reason <> '`+store.SessionEndIdle+`')
			ORDER BY id LIMIT $2`+d.lockClause("FOR UPDATE SKIP LOCKED")+`)`,
		cutoff.UnixMilli(), limit)
	if err != nil {
		return 0, fmt.Errorf("delete old sessions: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete old sessions: %w", err)
	}
	return int(n), nil
}

// ListSessionKeys returns the keys bound to a session, newest first.
func (d *DB) ListSessionKeys(ctx context.Context, sessionID string) ([]store.APIKey, error) {
	if !validText(sessionID) || sessionID == "" {
		return nil, nil
	}
	rows, err := d.db.QueryContext(ctx,
		`SELECT `+apiKeyColumns+` FROM api_keys WHERE session_id = $1 ORDER BY created_at DESC, id DESC`, sessionID)
	if err != nil {
		return nil, fmt.Errorf("list session keys: %w", err)
	}
	out, err := scanAPIKeys(rows)
	if err != nil {
		return nil, fmt.Errorf("list session keys: %w", err)
	}
	return out, nil
}
