-- Custom claims of a session (bring-your-own-login). A JSON object the
-- operator's login application vouched for ('' when none); they land in
-- the principal of requests made with the session. Same in both dialects.

-- +goose Up
ALTER TABLE sessions ADD COLUMN claims TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE sessions DROP COLUMN claims;
