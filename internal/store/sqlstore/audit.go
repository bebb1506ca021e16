package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/mcpgate/mcpgate/internal/store"
)

// Audit list limits (store.AuditFilter.Limit).
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 1000
)

const auditColumns = `time, type, outcome, reason, user_id, credential_id, client_ip, user_agent, resource, tool, details`

// AppendAudit inserts events in one transaction with one prepared
// statement. The database assigns IDs (AuditEvent.ID is ignored); a zero
// Time is recorded as now. Details are stored as JSON. NUL bytes and
// invalid UTF-8 in text fields are stored as U+FFFD rather than failing the
// batch: the log must record hostile input, not be defeated by it.
func (d *DB) AppendAudit(ctx context.Context, events []store.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	// Encode everything before touching the database, so a bad event fails
	// the batch without holding the write lock.
	details := make([]any, len(events))
	for i, e := range events {
		if e.Details == nil {
			continue
		}
		b, err := json.Marshal(e.Details)
		if err != nil {
			return fmt.Errorf("append audit: event %d (%s): details: %w", i, e.Type, err)
		}
		details[i] = string(b)
	}
	now := nowMS()
	return d.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx,
			`INSERT INTO audit_events (`+auditColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`)
		if err != nil {
			return fmt.Errorf("append audit: %w", err)
		}
		defer stmt.Close()
		for i, e := range events {
			t := e.Time
			if t.IsZero() {
				t = now
			}
			if _, err := stmt.ExecContext(ctx, t.UnixMilli(),
				sanitizeText(e.Type), sanitizeText(e.Outcome), sanitizeText(e.Reason), sanitizeText(e.UserID),
				sanitizeText(e.CredentialID), sanitizeText(e.ClientIP), sanitizeText(e.UserAgent),
				sanitizeText(e.Resource), sanitizeText(e.Tool), details[i]); err != nil {
				return fmt.Errorf("append audit: %w", err)
			}
		}
		return nil
	})
}

// ListAudit returns events matching f, newest (highest ID) first. Since is
// inclusive, Until exclusive.
func (d *DB) ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditEvent, error) {
	var (
		where []string
		args  []any
	)
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if !f.Since.IsZero() {
		add("time >= ?", f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		add("time < ?", f.Until.UnixMilli())
	}
	if f.Type != "" {
		add("type = ?", sanitizeText(f.Type))
	}
	if f.UserID != "" {
		add("user_id = ?", sanitizeText(f.UserID))
	}
	if f.Outcome != "" {
		add("outcome = ?", sanitizeText(f.Outcome))
	}
	if f.BeforeID > 0 {
		add("id < ?", f.BeforeID)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultAuditLimit
	}
	limit = min(limit, MaxAuditLimit)

	q := `SELECT id, ` + auditColumns + ` FROM audit_events`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	q += ` ORDER BY id DESC LIMIT $` + strconv.Itoa(len(args))

	rows, err := d.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	defer rows.Close()
	var out []store.AuditEvent
	for rows.Next() {
		var (
			e       store.AuditEvent
			t       sql.NullInt64
			details sql.NullString
		)
		if err := rows.Scan(&e.ID, &t, &e.Type, &e.Outcome, &e.Reason, &e.UserID, &e.CredentialID,
			&e.ClientIP, &e.UserAgent, &e.Resource, &e.Tool, &details); err != nil {
			return nil, fmt.Errorf("list audit: %w", err)
		}
		e.Time = fromMillis(t)
		if details.Valid {
			if err := json.Unmarshal([]byte(details.String), &e.Details); err != nil {
				return nil, fmt.Errorf("list audit: event %d: details: %w", e.ID, err)
			}
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return out, nil
}
