-- Why a session ended ('' while it is live): 'idle' (past the idle
-- timeout), 'lifetime' (past its absolute lifetime) or 'revoked' (sign-out,
-- revocation by the user or an admin, password change, user disabled, a new
-- sign-in replacing it). The browser cookie is dead whatever the reason,
-- but an OAuth grant's custom claims (00009, 00011) outlive an idle
-- session up to its lifetime: only the user or an admin ending the sign-in,
-- or the lifetime, ends them. Sessions revoked before this migration are
-- marked 'revoked' (fail closed). Same in both dialects.

-- +goose Up
ALTER TABLE sessions ADD COLUMN end_reason TEXT NOT NULL DEFAULT '';
UPDATE sessions SET end_reason = 'revoked' WHERE revoked_at IS NOT NULL;

-- +goose Down
ALTER TABLE sessions DROP COLUMN end_reason;
