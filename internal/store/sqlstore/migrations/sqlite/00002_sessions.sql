-- Browser sessions (SQLite). Keep in step with ../postgres/00002_sessions.sql.
-- A session row holds only the SHA-256 of the cookie secret. Session keys
-- (api_keys.session_id) are revoked together with their session by the
-- store, in one transaction; they are deleted only when the cleaner deletes
-- the session row itself (ON DELETE CASCADE), never while it exists.

-- +goose Up
CREATE TABLE sessions (
    id           TEXT    NOT NULL PRIMARY KEY,
    user_id      TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash         BLOB    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    ip           TEXT    NOT NULL DEFAULT '',
    user_agent   TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user_id ON sessions (user_id, created_at);
CREATE INDEX sessions_live_expires_at ON sessions (expires_at) WHERE revoked_at IS NULL;
CREATE INDEX sessions_live_last_seen_at ON sessions (last_seen_at) WHERE revoked_at IS NULL;
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX sessions_revoked_at ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

ALTER TABLE api_keys ADD COLUMN session_id TEXT REFERENCES sessions (id) ON DELETE CASCADE;
-- At most one key per session; also the index revocation uses.
CREATE UNIQUE INDEX api_keys_session_id ON api_keys (session_id) WHERE session_id IS NOT NULL;

-- +goose Down
DROP INDEX api_keys_session_id;
ALTER TABLE api_keys DROP COLUMN session_id;
DROP TABLE sessions;
