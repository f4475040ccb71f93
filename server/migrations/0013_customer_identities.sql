-- Customers with many identities: a web visitor, an app user, an external id of the business, a
-- phone number, an e-mail address, a WeChat openid/unionid, a QQ openid. One identity belongs to
-- one customer (UNIQUE per account, kind and value); a customer has any number of them.
--
-- The value itself is stored only AES-GCM encrypted (value_enc, bound to the account, the
-- identity's own id and its kind: moving an identity to another customer in a merge needs no
-- re-encryption) with a keyed blind index (value_index, HMAC-SHA256 of the normalized value) to
-- find it. A visitor identity stores the SHA-256 of its `kv_` token as value_index and no value.

CREATE TABLE customer_identities (
    account_id    uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id   uuid NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('visitor', 'app_user', 'external', 'phone', 'email',
                                                'wechat_openid', 'wechat_unionid', 'qq_openid')),
    value_index   bytea NOT NULL CHECK (length(value_index) = 32),
    value_enc     bytea CHECK (length(value_enc) BETWEEN 29 AND 1024),
    -- the channel an identity speaks on when it names one (a visitor token: webchat or app)
    channel       text CHECK (length(channel) BETWEEN 1 AND 32),
    verified      boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz,
    UNIQUE (account_id, kind, value_index),
    FOREIGN KEY (account_id, customer_id) REFERENCES customers (account_id, id) ON DELETE CASCADE,
    CHECK (kind = 'visitor' OR value_enc IS NOT NULL)
);
CREATE INDEX customer_identities_customer ON customer_identities (customer_id);
