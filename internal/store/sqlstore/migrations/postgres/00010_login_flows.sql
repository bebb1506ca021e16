-- Sign-ins in progress through an upstream identity provider or the
-- operator's own login application (PostgreSQL). Keep in step with
-- ../sqlite/00010_login_flows.sql.
--
-- One row per started sign-in, shared by every node, 10 minutes. The state
-- and the login request id travel through the browser and are bearer
-- secrets for the flow: only their SHA-256 is kept (state_hash,
-- request_hash). sealed holds what the callback needs in clear (PKCE
-- verifier, OIDC nonce), encrypted by the application under a key derived
-- from the server key. posted_user is the user description the operator's
-- application posted (custom flows; '' until then). used_at marks the one
-- use; used rows stay until they expire so a replay is told apart from an
-- unknown state. The cleaner deletes expired rows.

-- +goose Up
CREATE TABLE login_flows (
    id           TEXT    NOT NULL PRIMARY KEY,
    kind         TEXT    NOT NULL,
    provider     TEXT    NOT NULL DEFAULT '',
    state_hash   BYTEA   NOT NULL UNIQUE,
    request_hash BYTEA   UNIQUE,
    sealed       BYTEA,
    return_to    TEXT    NOT NULL DEFAULT '',
    posted_user  TEXT    NOT NULL DEFAULT '',
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,
    user_at      BIGINT,
    used_at      BIGINT
);
CREATE INDEX login_flows_expires_at ON login_flows (expires_at);

-- +goose Down
DROP TABLE login_flows;
