-- The contact center's own records: customers (web-chat visitors first), queues that route
-- conversations, canned responses, uploaded attachments and an append-only audit log.
-- As before, every reference carries the account, so no row can point into another account.

CREATE TABLE customers (
    account_id          uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    display_name        text CHECK (length(display_name) BETWEEN 1 AND 200),
    level               smallint NOT NULL DEFAULT 0 CHECK (level BETWEEN 0 AND 10),
    channel             text NOT NULL DEFAULT 'webchat' CHECK (length(channel) BETWEEN 1 AND 32),
    -- SHA-256 of the visitor's `kv_…` token; the token itself is never stored.
    visitor_token_hash  bytea UNIQUE CHECK (length(visitor_token_hash) = 32),
    created_at          timestamptz NOT NULL DEFAULT now(),
    last_seen_at        timestamptz,
    UNIQUE (account_id, id)
);

CREATE TABLE queues (
    account_id              uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                    text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    department_id           uuid,
    skill_id                uuid,
    strategy                text NOT NULL DEFAULT 'least_load'
                            CHECK (strategy IN ('least_load', 'longest_idle', 'round_robin', 'skills', 'priority')),
    min_skill_level         smallint NOT NULL DEFAULT 1 CHECK (min_skill_level BETWEEN 1 AND 10),
    widen_after_seconds     integer NOT NULL DEFAULT 30 CHECK (widen_after_seconds BETWEEN 1 AND 3600),
    offer_timeout_seconds   integer NOT NULL DEFAULT 20 CHECK (offer_timeout_seconds BETWEEN 1 AND 600),
    auto_accept             boolean NOT NULL DEFAULT false,
    overflow_after_seconds  integer CHECK (overflow_after_seconds BETWEEN 1 AND 86400),
    overflow_queue_id       uuid CHECK (overflow_queue_id <> id),
    no_agent_message        text CHECK (length(no_agent_message) BETWEEN 1 AND 2000),
    is_default              boolean NOT NULL DEFAULT false,
    created_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, id),
    -- A skills queue routes by its skill. (Deleting that skill is therefore refused while
    -- such a queue uses it: SET NULL would break this check.)
    CHECK (strategy <> 'skills' OR skill_id IS NOT NULL),
    FOREIGN KEY (account_id, department_id) REFERENCES departments (account_id, id)
        ON DELETE SET NULL (department_id),
    FOREIGN KEY (account_id, skill_id) REFERENCES skills (account_id, id) ON DELETE SET NULL (skill_id),
    FOREIGN KEY (account_id, overflow_queue_id) REFERENCES queues (account_id, id)
        ON DELETE SET NULL (overflow_queue_id)
);
CREATE UNIQUE INDEX queues_account_name ON queues (account_id, lower(name));
CREATE UNIQUE INDEX queues_account_default ON queues (account_id) WHERE is_default;
CREATE INDEX queues_department ON queues (account_id, department_id) WHERE department_id IS NOT NULL;
CREATE INDEX queues_skill ON queues (account_id, skill_id) WHERE skill_id IS NOT NULL;
CREATE INDEX queues_overflow ON queues (account_id, overflow_queue_id) WHERE overflow_queue_id IS NOT NULL;

-- owner_user_id NULL: shared by the whole account; otherwise one user's personal response.
CREATE TABLE canned_responses (
    account_id     uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_user_id  uuid,
    shortcut       text NOT NULL CHECK (length(shortcut) BETWEEN 1 AND 50),
    title          text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    body           text NOT NULL CHECK (length(body) BETWEEN 1 AND 8000),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, id),
    FOREIGN KEY (account_id, owner_user_id) REFERENCES users (account_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX canned_responses_shortcut
    ON canned_responses (account_id, owner_user_id, lower(shortcut)) NULLS NOT DISTINCT;

-- Files uploaded by customers or agents; the bytes live in <data_dir>/attachments/<account>/<id>.
-- uploader_id is a customers.id or a users.id, as uploader_role says.
CREATE TABLE attachments (
    account_id     uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    uploader_role  text NOT NULL CHECK (uploader_role IN ('customer', 'agent')),
    uploader_id    uuid NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('image', 'voice', 'video', 'file')),
    content_type   text NOT NULL CHECK (length(content_type) BETWEEN 3 AND 255),
    filename       text NOT NULL CHECK (length(filename) BETWEEN 1 AND 255),
    size_bytes     bigint NOT NULL CHECK (size_bytes > 0),
    sha256         bytea NOT NULL CHECK (length(sha256) = 32),
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, id)
);

-- Who changed what, and who was refused. Append-only: UPDATE is always refused, and so is
-- DELETE, except for the cascade that removes a whole account (its account row is then gone).
CREATE TABLE audit_log (
    account_id   uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor_role   text NOT NULL CHECK (length(actor_role) BETWEEN 1 AND 32),
    actor_id     text,
    action       text NOT NULL CHECK (length(action) BETWEEN 1 AND 100),
    target_type  text NOT NULL CHECK (length(target_type) BETWEEN 1 AND 100),
    target_id    text,
    detail       jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_account_at ON audit_log (account_id, at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF NOT EXISTS (SELECT 1 FROM accounts WHERE id = OLD.account_id) THEN
            RETURN OLD;  -- the account itself is being deleted: its log goes with it
        END IF;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
