-- The browser session an OAuth grant was approved from ('' when none:
-- client credentials, direct login, and grants stored before this
-- migration). The grant's custom claims (00009) are the claims of that
-- sign-in: the code exchange and each refresh copy them into the access
-- token only while the session lives (not revoked, expired or idle), and
-- drop them from the grant once it has ended. No foreign key: sessions
-- are deleted after their retention period, grants may outlive them.
-- Same in both dialects.

-- +goose Up
ALTER TABLE oauth_grants ADD COLUMN session_id TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE oauth_grants DROP COLUMN session_id;
