-- The service_bot_keys table of the SITG backend (backend-api), as this project's
-- provisioning script and its tests rely on it. backend-api owns and migrates the real
-- table; this file mirrors its columns so that tests and local set-ups can create it.
-- Do not run it against the backend's database.
--
-- key_id       the value workers send in x-sitg-key-id (BACKEND_BOT_KEY_ID)
-- secret_hash  'sha256:' || hex(SHA-256(BACKEND_INTERNAL_HMAC_SECRET)); the 32-byte
--              digest is the HMAC key of contract section 1.1, so this column is as
--              sensitive as the secret itself
-- active       false refuses the key (HTTP 403)
-- revoked_at   set when the key was revoked; a revoked key is refused
-- created_at   when the row was created
CREATE TABLE IF NOT EXISTS service_bot_keys (
    key_id      text        PRIMARY KEY,
    secret_hash text        NOT NULL,
    active      boolean     NOT NULL DEFAULT true,
    revoked_at  timestamptz NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
