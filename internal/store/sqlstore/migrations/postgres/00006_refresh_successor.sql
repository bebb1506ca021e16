-- Refresh-token rotation keeps one successor per token (PostgreSQL). Keep
-- in step with ../sqlite/00006_refresh_successor.sql.
--
-- successor_id: the token a rotation created. A retry of the rotated token
--   within the grace window gets this same successor back, never a new
--   sibling (RFC 9700 §4.14.2: a stolen token cannot fork the family).
-- successor_sealed: that successor's secret, AES-256-GCM-sealed by the
--   authorization server with a key derived from the server key (the
--   database never holds a refresh token in clear). Kept only until
--   successor_sealed_until (rotation time + grace window), wiped earlier
--   when the successor rotates, and wiped by the cleaner after.

-- +goose Up
ALTER TABLE oauth_refresh_tokens
    ADD COLUMN successor_id           TEXT,
    ADD COLUMN successor_sealed       BYTEA,
    ADD COLUMN successor_sealed_until BIGINT;
CREATE INDEX oauth_refresh_tokens_sealed_until ON oauth_refresh_tokens (successor_sealed_until)
    WHERE successor_sealed IS NOT NULL;

-- +goose Down
DROP INDEX oauth_refresh_tokens_sealed_until;
ALTER TABLE oauth_refresh_tokens
    DROP COLUMN successor_sealed_until,
    DROP COLUMN successor_sealed,
    DROP COLUMN successor_id;
