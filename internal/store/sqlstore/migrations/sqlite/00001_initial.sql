-- Initial schema (SQLite). Keep in step with ../postgres/00001_initial.sql.
-- Times are unix milliseconds; NULL is the zero time. Lists are
-- space-separated tokens.

-- +goose Up
CREATE TABLE users (
    id            TEXT    NOT NULL PRIMARY KEY,
    email         TEXT    NOT NULL,
    display_name  TEXT    NOT NULL DEFAULT '',
    roles         TEXT    NOT NULL DEFAULT '',
    password_hash TEXT    NOT NULL DEFAULT '',
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE api_keys (
    id           TEXT    NOT NULL PRIMARY KEY,
    user_id      TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL DEFAULT '',
    prefix       TEXT    NOT NULL DEFAULT '',
    hash         BLOB    NOT NULL UNIQUE,
    kind         TEXT    NOT NULL DEFAULT 'manual',
    scopes       TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX api_keys_user_id ON api_keys (user_id, created_at);
CREATE INDEX api_keys_expires_at ON api_keys (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX api_keys_revoked_at ON api_keys (revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE audit_events (
    id            INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    time          INTEGER NOT NULL,
    type          TEXT    NOT NULL,
    outcome       TEXT    NOT NULL DEFAULT '',
    reason        TEXT    NOT NULL DEFAULT '',
    user_id       TEXT    NOT NULL DEFAULT '',
    credential_id TEXT    NOT NULL DEFAULT '',
    client_ip     TEXT    NOT NULL DEFAULT '',
    user_agent    TEXT    NOT NULL DEFAULT '',
    resource      TEXT    NOT NULL DEFAULT '',
    tool          TEXT    NOT NULL DEFAULT '',
    details       TEXT
);
CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_user_id ON audit_events (user_id, id);
CREATE INDEX audit_events_type ON audit_events (type, id);

CREATE TABLE ledger_transactions (
    id              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    from_user_id    TEXT    NOT NULL REFERENCES users (id),
    to_user_id      TEXT    NOT NULL REFERENCES users (id),
    amount          INTEGER NOT NULL CHECK (amount > 0),
    created_at      INTEGER NOT NULL,
    idempotency_key TEXT,
    UNIQUE (from_user_id, idempotency_key)
);
CREATE INDEX ledger_transactions_from ON ledger_transactions (from_user_id, created_at);
CREATE INDEX ledger_transactions_to ON ledger_transactions (to_user_id, created_at);

-- +goose Down
DROP TABLE ledger_transactions;
DROP TABLE audit_events;
DROP TABLE api_keys;
DROP TABLE users;
