-- 0004: OpenID Connect: authorization codes, and which client a refresh token was
-- issued to.
--
-- A code is stored only as its SHA-256, lives a minute and is spent once: the UPDATE
-- that spends it is the only way to read it. `family_id` names the refresh-token family
-- its exchange started, so a code presented again revokes what it was exchanged for
-- (OAuth 2.0 Security BCP, 4.5 / RFC 6749 10.5).
CREATE TABLE authorization_codes (
    code_hash      bytea       PRIMARY KEY,
    client_id      text        NOT NULL,
    redirect_uri   text        NOT NULL,
    user_id        uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scope          text        NOT NULL,
    nonce          text,
    code_challenge text        NOT NULL,
    auth_time      timestamptz NOT NULL,
    -- How the user authenticated (the ID token's `amr`): 'face' or 'pwd'.
    amr            text        NOT NULL CHECK (amr IN ('face', 'pwd')),
    liveness_score real,
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz,
    family_id      uuid,
    created_at     timestamptz NOT NULL DEFAULT now()
);
-- Housekeeping deletes expired codes.
CREATE INDEX authorization_codes_expiry_idx ON authorization_codes (expires_at);

-- A refresh token of an OpenID Connect client keeps the grant it came from across
-- rotations: the client, the scope, when and how the user authenticated. NULL for the
-- original API's tokens.
ALTER TABLE refresh_tokens
    ADD COLUMN client_id text,
    ADD COLUMN scope     text,
    ADD COLUMN auth_time timestamptz,
    ADD COLUMN amr       text,
    ADD COLUMN liveness_score real;
