-- A client_id is unique per sender, not per conversation (docs/protocol.md): a customer and an
-- agent that both count c-1, c-2, ... in one conversation are two senders, and a retry is a
-- duplicate only of the same sender's frame. The sender is (sender_role, sender_id); the system's
-- events have no sender_id, hence coalesce. The old index was stricter, so every stored row
-- satisfies the new one.
CREATE UNIQUE INDEX conversation_events_sender_client_id
    ON conversation_events (conversation_id, sender_role, coalesce(sender_id, ''), client_id)
    WHERE client_id IS NOT NULL;
DROP INDEX conversation_events_client_id;

-- Customers' display names are stored only encrypted (customers.display_name_enc, docs/security.md,
-- Privacy): frames take the name from the customer record. Remove the plaintext copies that
-- customers' message events carried in body.sender_name (agents' names stay: they are not
-- customers' personal data).
UPDATE conversation_events SET body = body - 'sender_name'
    WHERE sender_role = 'customer' AND body ? 'sender_name';
