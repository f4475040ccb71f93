-- Departments (teams) and skills of an account, which users belong to and have (with a
-- level), and how many conversations a user may hold at once. Every reference carries the
-- account, so a row can never point at another account's department, skill or user.

CREATE TABLE departments (
    account_id  uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, id)
);
CREATE UNIQUE INDEX departments_account_name ON departments (account_id, lower(name));

CREATE TABLE skills (
    account_id  uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, id)
);
CREATE UNIQUE INDEX skills_account_name ON skills (account_id, lower(name));

CREATE TABLE user_departments (
    account_id    uuid NOT NULL,
    user_id       uuid NOT NULL,
    department_id uuid NOT NULL,
    PRIMARY KEY (user_id, department_id),
    FOREIGN KEY (account_id, user_id) REFERENCES users (account_id, id) ON DELETE CASCADE,
    FOREIGN KEY (account_id, department_id) REFERENCES departments (account_id, id) ON DELETE CASCADE
);
CREATE INDEX user_departments_department ON user_departments (account_id, department_id);

CREATE TABLE user_skills (
    account_id  uuid NOT NULL,
    user_id     uuid NOT NULL,
    skill_id    uuid NOT NULL,
    level       smallint NOT NULL CHECK (level BETWEEN 1 AND 10),
    PRIMARY KEY (user_id, skill_id),
    FOREIGN KEY (account_id, user_id) REFERENCES users (account_id, id) ON DELETE CASCADE,
    FOREIGN KEY (account_id, skill_id) REFERENCES skills (account_id, id) ON DELETE CASCADE
);
CREATE INDEX user_skills_skill ON user_skills (account_id, skill_id);

ALTER TABLE users ADD COLUMN max_concurrent_conversations integer NOT NULL DEFAULT 5
    CHECK (max_concurrent_conversations BETWEEN 1 AND 100);
