-- Custom roles: an account's own named sets of permissions, beside kefu's built-in roles.
--
-- The built-in roles and the permission names are data of `protocol/permissions.py`, not rows:
-- this table holds only an account's custom roles, and `server/roles.py` keeps their rules
-- (built-in names reserved in any case, permission names known, at most MAX_CUSTOM_ROLES an
-- account). A user's `users.role` is a built-in name or the name of one of its account's rows
-- here; a rename updates its holders in the same transaction, and a role cannot be deleted
-- while a user holds it (server/roles.py). Names are unique per account whatever their case.
--
-- `users.role` loses its CHECK of the three built-in names so a user may hold a custom role; it
-- keeps a length limit, the same as `audit_log.actor_role`'s, since audit rows record it.
-- created_by / updated_by are the users who made the last changes (no foreign key: the audit
-- log is the history, and a user's deletion must not be blocked by the roles they edited).

CREATE TABLE roles (
    account_id   uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id           uuid NOT NULL DEFAULT gen_random_uuid(),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 32 AND name = btrim(name)),
    permissions  text[] NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    created_by   uuid,
    updated_by   uuid,
    PRIMARY KEY (id),
    UNIQUE (account_id, id),
    UNIQUE (account_id, name)
);
CREATE UNIQUE INDEX roles_account_name_any_case ON roles (account_id, lower(name));

ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_length CHECK (length(role) BETWEEN 1 AND 32);
