-- The callback code of a custom login flow (bring your own login): the
-- SHA-256 of the one-time code mcpgate gives the operator's application
-- when it posts the user, for the browser that signed in there to bring
-- to /login/callback (NULL until then, and for upstream flows). The code
-- itself is never stored. Same in both dialects but for the type.

-- +goose Up
ALTER TABLE login_flows ADD COLUMN callback_hash BLOB;

-- +goose Down
ALTER TABLE login_flows DROP COLUMN callback_hash;
