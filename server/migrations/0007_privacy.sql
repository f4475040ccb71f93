-- Privacy: who may see customers' contact details in full, and those details encrypted at rest.
--
-- A customer's display name, phone number and e-mail address are stored only AES-GCM encrypted
-- (<field>_enc, see server/privacy.py); phone and e-mail have a keyed blind index (<field>_index,
-- HMAC-SHA256 of the normalized value) to find a customer by them. The plaintext display_name
-- column stays for names written before this migration: kefu encrypts those at its next start
-- (SQL has no key) and empties the column. erased_at marks a customer whose personal data was erased.

ALTER TABLE users
    ADD COLUMN may_view_contact_details boolean NOT NULL DEFAULT false;

ALTER TABLE customers
    ADD COLUMN display_name_enc bytea CHECK (length(display_name_enc) BETWEEN 29 AND 2048),
    ADD COLUMN phone_enc    bytea CHECK (length(phone_enc) BETWEEN 29 AND 512),
    ADD COLUMN phone_index  bytea CHECK (length(phone_index) = 32),
    ADD COLUMN email_enc    bytea CHECK (length(email_enc) BETWEEN 29 AND 1024),
    ADD COLUMN email_index  bytea CHECK (length(email_index) = 32),
    ADD COLUMN erased_at    timestamptz,
    ADD CONSTRAINT customers_phone_sealed CHECK ((phone_enc IS NULL) = (phone_index IS NULL)),
    ADD CONSTRAINT customers_email_sealed CHECK ((email_enc IS NULL) = (email_index IS NULL));

CREATE INDEX customers_phone_index ON customers (account_id, phone_index) WHERE phone_index IS NOT NULL;
CREATE INDEX customers_email_index ON customers (account_id, email_index) WHERE email_index IS NOT NULL;
