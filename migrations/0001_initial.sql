-- 0001: the tenant schema's first tables.
-- Applied by faceid-migrations inside one tenant schema (search_path = <tenant>, public),
-- in one transaction. Never edit this file once released: add a new numbered file instead.

CREATE TABLE users (
    id             uuid        PRIMARY KEY,
    username       text        NOT NULL CHECK (char_length(username) BETWEEN 3 AND 64),
    email          text        NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    password_hash  text        NOT NULL,
    -- The registration template (the first enrolled face). Every template, this one
    -- included, is also a row of face_embeddings, which is what login searches.
    face_embedding vector(128) NOT NULL,
    model_version  text        NOT NULL,
    is_active      boolean     NOT NULL DEFAULT true,
    is_locked      boolean     NOT NULL DEFAULT false,
    locked_until   timestamptz,
    -- Failures before this instant (the last lock or unlock) no longer count to lockout.
    lockout_reset_at timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
-- Uniqueness ignores case so "Alice" and "alice" cannot both register.
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
-- The admin metric summary and the active/locked gauges count by these flags.
CREATE INDEX users_locked_idx ON users (is_locked) WHERE is_locked;

CREATE TABLE face_embeddings (
    id            uuid        PRIMARY KEY,
    user_id       uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    embedding     vector(128) NOT NULL,
    model_version text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX face_embeddings_user_idx ON face_embeddings (user_id);
-- dlib-derived embeddings separate by Euclidean distance, so the index uses L2.
-- m / ef_construction are pgvector's defaults; the operator rebuilds the index
-- (CONCURRENTLY) when a tenant asks for other values.
CREATE INDEX face_embeddings_hnsw_idx ON face_embeddings
    USING hnsw (embedding vector_l2_ops) WITH (m = 16, ef_construction = 64);

CREATE TABLE failed_login_attempts (
    id               uuid        PRIMARY KEY,
    -- Kept (as NULL) when the user is erased: fraud history outlives the account,
    -- biometric data does not.
    user_id          uuid        REFERENCES users (id) ON DELETE SET NULL,
    ip_address       text        NOT NULL,
    user_agent       text        NOT NULL DEFAULT '',
    reason           text        NOT NULL CHECK (reason IN (
                         'no_match', 'liveness_failed', 'rate_limit', 'locked',
                         'ambiguous_match', 'no_face', 'multiple_faces', 'poor_quality',
                         'invalid_image', 'inactive')),
    confidence_score real,
    liveness_score   real,
    attempted_at     timestamptz NOT NULL DEFAULT now()
);
-- failed-attempts?hours=N and retention cleanup scan by time.
CREATE INDEX failed_login_attempts_time_idx ON failed_login_attempts (attempted_at);
-- Lockout counts one user's recent failures.
CREATE INDEX failed_login_attempts_user_time_idx ON failed_login_attempts (user_id, attempted_at)
    WHERE user_id IS NOT NULL;
-- suspicious-activity?threshold=N groups recent failures by IP.
CREATE INDEX failed_login_attempts_ip_time_idx ON failed_login_attempts (ip_address, attempted_at);

CREATE TABLE refresh_tokens (
    -- SHA-256 of the opaque token: a stolen table cannot be replayed.
    token_hash bytea       PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Every rotation stays in one family; reuse of a spent token revokes the family.
    family_id  uuid        NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);

-- Which template key protects the stored embeddings (a public fingerprint, not the key),
-- so a service started with the wrong TEMPLATE_KEY refuses to start instead of
-- silently failing every login, and re-keying can check it was given the right old key.
CREATE TABLE template_protection (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    fingerprint text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
