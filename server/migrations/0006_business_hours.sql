-- Business hours of an account: its time zone (an IANA name) and, for each weekday, the
-- intervals it is open ("HH:MM-HH:MM" in that zone). One row per account; no row means
-- none have been set.

CREATE TABLE business_hours (
    account_id  uuid PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    timezone    text NOT NULL CHECK (length(timezone) BETWEEN 1 AND 64),
    schedule    jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
