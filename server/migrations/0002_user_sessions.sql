-- Sign-in sessions of users (agents, supervisors, admins). Only the SHA-256 of a session
-- token is stored; the token itself is handed to the client once and never kept.

CREATE TABLE user_sessions (
    account_id  uuid NOT NULL,
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL,
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    user_agent  text,
    FOREIGN KEY (account_id, user_id) REFERENCES users (account_id, id) ON DELETE CASCADE
);
CREATE INDEX user_sessions_user ON user_sessions (account_id, user_id);
