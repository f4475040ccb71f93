-- Foundation: accounts (tenants), their users, conversations and the durable event log.
-- Every table carries the account it belongs to.

CREATE TABLE accounts (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    account_id    uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    email         text NOT NULL CHECK (position('@' in email) > 1),
    display_name  text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    role          text NOT NULL CHECK (role IN ('admin', 'supervisor', 'agent')),
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz,
    PRIMARY KEY (id),
    UNIQUE (account_id, id)
);
CREATE UNIQUE INDEX users_account_email ON users (account_id, lower(email));

CREATE TABLE conversations (
    account_id  uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    channel     text NOT NULL,
    status      text NOT NULL DEFAULT 'queued',
    created_at  timestamptz NOT NULL DEFAULT now(),
    closed_at   timestamptz,
    PRIMARY KEY (id),
    UNIQUE (account_id, id)
);

-- The durable log of everything that happens in a conversation. `seq` is gapless per
-- conversation and assigned by the conversation's owner before the append; a sender's
-- `client_id` makes a retried append idempotent.
CREATE TABLE conversation_events (
    account_id      uuid NOT NULL,
    conversation_id uuid NOT NULL,
    seq             bigint NOT NULL CHECK (seq >= 0),
    client_id       text CHECK (length(client_id) BETWEEN 1 AND 64),
    kind            text NOT NULL,
    sender_role     text NOT NULL,
    sender_id       text,
    body            jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, seq),
    FOREIGN KEY (account_id, conversation_id) REFERENCES conversations (account_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX conversation_events_client_id
    ON conversation_events (conversation_id, client_id) WHERE client_id IS NOT NULL;
