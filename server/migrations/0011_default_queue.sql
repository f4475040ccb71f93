-- Every account has a real default queue: where a conversation waits when nothing routes it
-- elsewhere (no department asked, or a department without a queue of its own). Before this,
-- an account that configured no queue routed through an implicit "Default" that was not a row
-- (its id was the account id, 404 over REST), which nobody could see or change.
--
-- An account without a default gets one: its queue named "Default" (any case) if it has one,
-- else a new "Default" queue with the usual settings (least load, every agent of the account).
-- Conversations that waited in the implicit queue (no queue recorded) now belong to it.

UPDATE queues q SET is_default = true
WHERE lower(q.name) = 'default'
  AND NOT EXISTS (SELECT 1 FROM queues d WHERE d.account_id = q.account_id AND d.is_default);

INSERT INTO queues (account_id, name, is_default)
SELECT a.id, 'Default', true FROM accounts a
WHERE NOT EXISTS (SELECT 1 FROM queues q WHERE q.account_id = a.id AND q.is_default);

UPDATE conversations c SET queue_id = q.id
FROM queues q
WHERE q.account_id = c.account_id AND q.is_default
  AND (c.queue_id IS NULL OR c.queue_id = c.account_id);
