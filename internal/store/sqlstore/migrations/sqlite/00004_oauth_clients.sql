-- OAuth clients (SQLite). Keep in step with ../postgres/00004_oauth_clients.sql.
-- One table for the three kinds: cimd (a cache of a fetched Client ID
-- Metadata Document, client_id = its URL), dcr (RFC 7591 registrations) and
-- static (added by an operator). Only the SHA-256 of a confidential client's
-- secret is kept. Lists (redirect URIs, grant types, scopes) are
-- space-separated tokens: the store refuses tokens with white space.

-- +goose Up
CREATE TABLE oauth_clients (
    id                         TEXT    NOT NULL PRIMARY KEY,
    client_id                  TEXT    NOT NULL UNIQUE,
    kind                       TEXT    NOT NULL CHECK (kind IN ('cimd', 'dcr', 'static')),
    name                       TEXT    NOT NULL DEFAULT '',
    secret_hash                BLOB,
    redirect_uris              TEXT    NOT NULL DEFAULT '',
    grant_types                TEXT    NOT NULL DEFAULT '',
    response_types             TEXT    NOT NULL DEFAULT '',
    token_endpoint_auth_method TEXT    NOT NULL,
    application_type           TEXT    NOT NULL DEFAULT 'web',
    scopes                     TEXT    NOT NULL DEFAULT '',
    client_uri                 TEXT    NOT NULL DEFAULT '',
    logo_uri                   TEXT    NOT NULL DEFAULT '',
    metadata_url               TEXT    NOT NULL DEFAULT '',
    metadata_json              TEXT    NOT NULL DEFAULT '',
    software_id                TEXT    NOT NULL DEFAULT '',
    software_version           TEXT    NOT NULL DEFAULT '',
    dedup_key                  TEXT,
    created_at                 INTEGER NOT NULL,
    last_used_at               INTEGER,
    fetched_at                 INTEGER,
    cache_until                INTEGER
);
-- Identical public registrations collapse into one row.
CREATE UNIQUE INDEX oauth_clients_dedup_key ON oauth_clients (dedup_key) WHERE dedup_key IS NOT NULL;
-- The reaper: never-used registrations by age, used ones by idleness.
CREATE INDEX oauth_clients_unused ON oauth_clients (created_at) WHERE last_used_at IS NULL AND kind <> 'static';
CREATE INDEX oauth_clients_idle ON oauth_clients (last_used_at) WHERE last_used_at IS NOT NULL AND kind <> 'static';
CREATE INDEX oauth_clients_kind ON oauth_clients (kind, created_at);

-- +goose Down
DROP TABLE oauth_clients;
