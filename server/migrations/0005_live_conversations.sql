-- Live conversations: who a conversation is for, where it waits, who holds it. The event log
-- (conversation_events) is the truth; these columns are an index the session keeps current
-- so that lists (a customer's history, an agent's open conversations) need no replay.

ALTER TABLE conversations
    ADD COLUMN customer_id     uuid,
    ADD COLUMN department_id   uuid,
    ADD COLUMN queue_id        uuid,
    ADD COLUMN agent_id        uuid,
    ADD COLUMN topic           text CHECK (length(topic) BETWEEN 1 AND 200),
    ADD COLUMN start_client_id text CHECK (length(start_client_id) BETWEEN 1 AND 64),
    ADD COLUMN last_seq        bigint NOT NULL DEFAULT 0,
    ADD CONSTRAINT conversations_customer FOREIGN KEY (account_id, customer_id)
        REFERENCES customers (account_id, id) ON DELETE CASCADE,
    ADD CONSTRAINT conversations_department FOREIGN KEY (account_id, department_id)
        REFERENCES departments (account_id, id) ON DELETE SET NULL (department_id),
    ADD CONSTRAINT conversations_agent FOREIGN KEY (account_id, agent_id)
        REFERENCES users (account_id, id) ON DELETE SET NULL (agent_id),
    ADD CONSTRAINT conversations_status CHECK
        (status IN ('queued', 'offered', 'assigned', 'transferring', 'wrap_up', 'closed'));

-- A retried conversation.start (same customer, same client_id) finds the first one.
CREATE UNIQUE INDEX conversations_start_client_id
    ON conversations (customer_id, start_client_id) WHERE start_client_id IS NOT NULL;
CREATE INDEX conversations_customer ON conversations (customer_id, created_at DESC);
CREATE INDEX conversations_open_by_agent ON conversations (agent_id) WHERE status <> 'closed';
CREATE INDEX conversations_open ON conversations (account_id) WHERE status <> 'closed';
