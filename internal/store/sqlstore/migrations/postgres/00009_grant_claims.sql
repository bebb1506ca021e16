-- Custom claims of an OAuth grant: the claims of the user's browser
-- session that --access-token-claims names, taken when the user approved
-- (consent page or consent given before). A JSON object ('' when none):
-- the code exchange and every refresh copy them into the access token, so
-- one authorization keeps the claims of the sign-in it came from. Same in
-- both dialects.

-- +goose Up
ALTER TABLE oauth_grants ADD COLUMN claims TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE oauth_grants DROP COLUMN claims;
