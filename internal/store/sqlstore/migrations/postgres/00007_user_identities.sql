-- External identities linked to local users (PostgreSQL). Keep in step
-- with ../sqlite/00007_user_identities.sql.
-- One row per account at an external identity source (a trusted external
-- token issuer, an upstream login provider): (issuer, subject) is the
-- source's stable name for the account and belongs to exactly one user.
-- email, email_verified and name are what the source said last; they are
-- for display and diagnostics, never a credential.

-- +goose Up
CREATE TABLE user_identities (
    issuer         TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    user_id        TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email          TEXT    NOT NULL DEFAULT '',
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    name           TEXT    NOT NULL DEFAULT '',
    created_at     BIGINT  NOT NULL,
    last_login_at  BIGINT,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX user_identities_user_id ON user_identities (user_id, created_at);

-- +goose Down
DROP TABLE user_identities;
