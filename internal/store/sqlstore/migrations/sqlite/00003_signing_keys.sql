-- JWT signing keys (SQLite). Keep in step with ../postgres/00003_signing_keys.sql.
-- One row per key generation. The unique generation is the rotation slot:
-- two nodes rotating at once both try to insert generation n+1 and only
-- one succeeds. private_key is sealed with AES-256-GCM by internal/tokens
-- (key derived from the server key); the plaintext never reaches the
-- database. retires_at is set on the previous generation when the next one
-- is created; NULL marks the newest generation.

-- +goose Up
CREATE TABLE signing_keys (
    id           TEXT    NOT NULL PRIMARY KEY,
    generation   INTEGER NOT NULL UNIQUE CHECK (generation >= 1),
    algorithm    TEXT    NOT NULL,
    public_jwk   TEXT    NOT NULL,
    private_key  BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    activates_at INTEGER NOT NULL,
    retires_at   INTEGER
);

-- +goose Down
DROP TABLE signing_keys;
