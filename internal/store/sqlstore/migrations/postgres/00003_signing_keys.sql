-- JWT signing keys (PostgreSQL). Keep in step with ../sqlite/00003_signing_keys.sql.
-- One row per key generation. The unique generation is the rotation slot:
-- two nodes rotating at once both try to insert generation n+1 and only
-- one succeeds. private_key is sealed with AES-256-GCM by internal/tokens
-- (key derived from the server key); the plaintext never reaches the
-- database. retires_at is set on the previous generation when the next one
-- is created; NULL marks the newest generation.

-- +goose Up
CREATE TABLE signing_keys (
    id           TEXT    NOT NULL PRIMARY KEY,
    generation   BIGINT  NOT NULL UNIQUE CHECK (generation >= 1),
    algorithm    TEXT    NOT NULL,
    public_jwk   TEXT    NOT NULL,
    private_key  BYTEA   NOT NULL,
    created_at   BIGINT  NOT NULL,
    activates_at BIGINT  NOT NULL,
    retires_at   BIGINT
);

-- +goose Down
DROP TABLE signing_keys;
