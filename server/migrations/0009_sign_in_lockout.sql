-- Sign-in lockout: consecutive failed sign-ins of a user, and until when it is locked out.
--
-- After `sign_in_lockout_failures` wrong passwords in a row the user is locked for
-- `sign_in_lockout_minutes`, even with the right password (server/auth.py). Stored here, not in
-- memory, so a restart does not lift it and `kefu account unlock` (another process) can.
-- failed_sign_ins counts since the last success, lock or unlock.

ALTER TABLE users
    ADD COLUMN failed_sign_ins integer NOT NULL DEFAULT 0 CHECK (failed_sign_ins >= 0),
    ADD COLUMN locked_until    timestamptz;
