package sqlstore

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/mcpgate/mcpgate/internal/store"
)

// errUniqueViolation and errForeignKeyViolation classify driver errors.
var (
	errUniqueViolation     = errors.New("unique violation")
	errForeignKeyViolation = errors.New("foreign key violation")
)

// constraintKind reports which constraint a driver error violated, or nil.
func constraintKind(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return errUniqueViolation
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return errForeignKeyViolation
		}
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505": // unique_violation
			return errUniqueViolation
		case "23503": // foreign_key_violation
			return errForeignKeyViolation
		}
	}
	return nil
}

// mapErr turns driver errors into store sentinels where one applies:
// unique violations become store.ErrConflict, a missing row
// store.ErrNotFound and a dangling reference (e.g. a key for an unknown
// user) store.ErrNotFound. Other errors pass through unchanged.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return store.ErrNotFound
	}
	switch constraintKind(err) {
	case errUniqueViolation:
		return fmt.Errorf("%w (%v)", store.ErrConflict, err)
	case errForeignKeyViolation:
		return fmt.Errorf("%w: referenced row does not exist (%v)", store.ErrNotFound, err)
	}
	return err
}

// millis converts a time to a nullable unix-millisecond column value.
func millis(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// fromMillis converts a nullable unix-millisecond column value to a time
// (UTC; the zero time for NULL).
func fromMillis(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

// truncMS returns t at the precision the store keeps.
func truncMS(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return time.UnixMilli(t.UnixMilli()).UTC()
}

// nowMS is the current time at store precision.
func nowMS() time.Time { return truncMS(time.Now()) }

// joinTokens encodes a list of tokens (roles, RFC 6749 scope tokens) as
// one space-separated string. A token that is empty or contains white
// space could not be read back unchanged, so it is rejected.
func joinTokens(what string, tokens []string) (string, error) {
	for _, t := range tokens {
		if t == "" || strings.IndexFunc(t, unicode.IsSpace) >= 0 {
			return "", fmt.Errorf("store: invalid %s %q: empty or contains white space", what, t)
		}
	}
	return strings.Join(tokens, " "), nil
}

// splitTokens is the inverse of joinTokens; "" decodes to nil.
func splitTokens(s string) []string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return nil
	}
	return f
}

// nullString maps "" to NULL.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// rowScanner is *sql.Row or *sql.Rows.
type rowScanner interface {
	Scan(dest ...any) error
}

// validText reports whether s can be stored unchanged by every backend:
// PostgreSQL TEXT refuses NUL bytes and invalid UTF-8, SQLite would keep
// them. Checking here keeps both dialects alike.
func validText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// checkText returns an error naming the first field whose value is not
// valid text (see validText). fields alternates names and values.
func checkText(what string, fields ...string) error {
	for i := 0; i+1 < len(fields); i += 2 {
		if !validText(fields[i+1]) {
			return fmt.Errorf("store: invalid %s %s: contains a NUL byte or invalid UTF-8", what, fields[i])
		}
	}
	return nil
}

// sanitizeText makes s storable by every backend, replacing NUL bytes and
// invalid UTF-8 with U+FFFD. Used for the audit log, which must record
// hostile input (a tool name or User-Agent an attacker chose) rather than
// fail to record it.
func sanitizeText(s string) string {
	if validText(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// isASCII reports whether s holds only 7-bit characters.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
