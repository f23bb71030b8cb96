-- Lockout per client, the duplicate-face signal, revocable access tokens, and the
-- network that made each template.
--
-- `client_key`: the client a failure came from as limits count it (an IPv4 address, or
-- an IPv6 /64). Lockout counts failures per (account, client), so a stranger's failures
-- throttle and lock out that stranger, not the account's owner. NULL on rows written
-- before this migration: they count towards the account-wide limit only.
--
-- `invalid_password`: a wrong password given to prove ownership (erasing an account).
--
-- `duplicate_face`: a registration refused because its face is already enrolled under
-- another account, kept as a fraud signal for the admin endpoints and naming that
-- account. It never counts towards that account's lockout.
ALTER TABLE failed_login_attempts ADD COLUMN client_key text;
CREATE INDEX failed_login_attempts_user_client_time_idx
    ON failed_login_attempts (user_id, client_key, attempted_at)
    WHERE user_id IS NOT NULL;
ALTER TABLE failed_login_attempts DROP CONSTRAINT failed_login_attempts_reason_check;
ALTER TABLE failed_login_attempts ADD CONSTRAINT failed_login_attempts_reason_check
    CHECK (reason IN (
        'no_match', 'liveness_failed', 'rate_limit', 'locked',
        'ambiguous_match', 'no_face', 'multiple_faces', 'poor_quality',
        'invalid_image', 'inactive', 'duplicate_face', 'invalid_password'));

-- `token_generation`: access tokens carry the generation they were issued at and are
-- refused once the user's generation moved on. Logout, deactivation and locks raise it,
-- so they take effect on access tokens at once, not when the tokens expire.
ALTER TABLE users ADD COLUMN token_generation integer NOT NULL DEFAULT 0;

-- `network`: the recognition network and embedding dimension that made each template.
-- Templates of different networks are not comparable; the service compares only
-- templates of its own network, so a tenant can move to a stronger one by re-enrolment
-- (docs/FACE_ENGINE.md, "Moving to another network"). Every template so far was made
-- by this one.
ALTER TABLE users ADD COLUMN network text NOT NULL DEFAULT 'face-api-resnet128@1.7.15/128';
ALTER TABLE face_embeddings ADD COLUMN network text NOT NULL DEFAULT 'face-api-resnet128@1.7.15/128';
