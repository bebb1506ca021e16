-- OAuth authorization server state (SQLite). Keep in step with
-- ../postgres/00005_oauth_grants.sql.
--
-- oauth_requests: pending authorization requests (RFC 6749 §4.1.1) kept
--   server-side across the login and consent pages; single use, minutes.
-- oauth_consents: what a user allowed a client at a resource ("connected
--   apps"); one row per user, client and resource.
-- oauth_grants: one authorization each: the authorization code (SHA-256
--   only) and everything issued from it. Access tokens carry the grant id
--   ("gid"); revoking the grant revokes them all. Client-credentials grants
--   have no user, consent or code.
-- oauth_refresh_tokens: a grant's refresh-token family (SHA-256 only);
--   rotated_at marks a used token, kept for replay detection.
-- Rows go with their client (oauth_clients.client_id) and user.

-- +goose Up
CREATE TABLE oauth_requests (
    id                    TEXT    NOT NULL PRIMARY KEY,
    client_id             TEXT    NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    redirect_uri          TEXT    NOT NULL,
    redirect_uri_provided INTEGER NOT NULL DEFAULT 1 CHECK (redirect_uri_provided IN (0, 1)),
    scopes                TEXT    NOT NULL DEFAULT '',
    resource              TEXT    NOT NULL,
    state                 TEXT    NOT NULL DEFAULT '',
    code_challenge        TEXT    NOT NULL,
    nonce                 TEXT    NOT NULL DEFAULT '',
    prompt                TEXT    NOT NULL DEFAULT '',
    created_at            INTEGER NOT NULL,
    expires_at            INTEGER NOT NULL
);
CREATE INDEX oauth_requests_expires_at ON oauth_requests (expires_at);
CREATE INDEX oauth_requests_client_id ON oauth_requests (client_id);

CREATE TABLE oauth_consents (
    id           TEXT    NOT NULL PRIMARY KEY,
    user_id      TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id    TEXT    NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    resource     TEXT    NOT NULL,
    scopes       TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    UNIQUE (user_id, client_id, resource)
);
CREATE INDEX oauth_consents_client_id ON oauth_consents (client_id);

CREATE TABLE oauth_grants (
    id                    TEXT    NOT NULL PRIMARY KEY,
    consent_id            TEXT    REFERENCES oauth_consents (id) ON DELETE SET NULL,
    user_id               TEXT    REFERENCES users (id) ON DELETE CASCADE,
    client_id             TEXT    NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    resource              TEXT    NOT NULL,
    scopes                TEXT    NOT NULL DEFAULT '',
    nonce                 TEXT    NOT NULL DEFAULT '',
    auth_time             INTEGER,
    code_hash             BLOB    UNIQUE,
    code_challenge        TEXT    NOT NULL DEFAULT '',
    redirect_uri          TEXT    NOT NULL DEFAULT '',
    redirect_uri_provided INTEGER NOT NULL DEFAULT 1 CHECK (redirect_uri_provided IN (0, 1)),
    code_expires_at       INTEGER,
    code_redeemed_at      INTEGER,
    created_at            INTEGER NOT NULL,
    expires_at            INTEGER NOT NULL,
    last_used_at          INTEGER,
    revoked_at            INTEGER,
    revoke_reason         TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX oauth_grants_consent_id ON oauth_grants (consent_id) WHERE consent_id IS NOT NULL;
CREATE INDEX oauth_grants_user_id ON oauth_grants (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX oauth_grants_client_id ON oauth_grants (client_id);
CREATE INDEX oauth_grants_expires_at ON oauth_grants (expires_at);
CREATE INDEX oauth_grants_revoked_at ON oauth_grants (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX oauth_grants_unredeemed ON oauth_grants (code_expires_at) WHERE code_redeemed_at IS NULL AND code_hash IS NOT NULL;

CREATE TABLE oauth_refresh_tokens (
    id         TEXT    NOT NULL PRIMARY KEY,
    grant_id   TEXT    NOT NULL REFERENCES oauth_grants (id) ON DELETE CASCADE,
    hash       BLOB    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    rotated_at INTEGER
);
CREATE INDEX oauth_refresh_tokens_grant_id ON oauth_refresh_tokens (grant_id);
CREATE INDEX oauth_refresh_tokens_expires_at ON oauth_refresh_tokens (expires_at);

-- +goose Down
DROP TABLE oauth_refresh_tokens;
DROP TABLE oauth_grants;
DROP TABLE oauth_consents;
DROP TABLE oauth_requests;
