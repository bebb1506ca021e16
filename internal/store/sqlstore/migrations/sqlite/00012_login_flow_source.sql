-- The client each sign-in in progress was started from (SQLite). Keep in
-- step with ../postgres/00012_login_flow_source.sql.
--
-- source is the per-client rate-limit key of the browser that started the
-- flow (an IPv4 address or an IPv6 /64; '' for rows from before this
-- migration), so that one client can hold only a bounded share of the
-- sign-ins in progress: starts count the pending (unused, unexpired) rows
-- of their source through login_flows_source.

-- +goose Up
ALTER TABLE login_flows ADD COLUMN source TEXT NOT NULL DEFAULT '';
CREATE INDEX login_flows_source ON login_flows (source, expires_at);

-- +goose Down
DROP INDEX login_flows_source;
ALTER TABLE login_flows DROP COLUMN source;
