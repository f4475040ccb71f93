-- The live statistics' day counters, saved by the aggregator (actors/aggregator.py, rule 7)
-- so that a restart keeps the day's figures: one row per queue and day, one per agent and
-- day. `day` is the UTC date. Rows hold absolute values; a save replaces them. A queue's id
-- is not a foreign key: the default queue of an account has no row in `queues`.

CREATE TABLE queue_day_counters (
    account_id         uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    day                date NOT NULL,
    queue_id           uuid NOT NULL,
    offered            bigint NOT NULL CHECK (offered >= 0),
    answered           bigint NOT NULL CHECK (answered >= 0),
    abandoned          bigint NOT NULL CHECK (abandoned >= 0),
    answered_in_time   bigint NOT NULL CHECK (answered_in_time >= 0),
    abandoned_late     bigint NOT NULL CHECK (abandoned_late >= 0),
    answer_wait_total  double precision NOT NULL CHECK (answer_wait_total >= 0),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, account_id, queue_id)
);

CREATE TABLE agent_day_counters (
    account_id  uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    day         date NOT NULL,
    agent_id    uuid NOT NULL,
    handled     bigint NOT NULL CHECK (handled >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, account_id, agent_id)
);
