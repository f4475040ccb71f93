"""A process that appends through the store actor and prints each acknowledgement.

Used by the hard-stop test: the test kills this process (and PostgreSQL) mid-stream and
then checks that every append printed as acknowledged is in the database.
Usage: python -m tests.server.append_driver DSN ACCOUNT_ID CONVERSATION_ID [CONVERSATION_ID ...]
"""

from __future__ import annotations

import sys
import uuid

import trio

from kefu.actors.runtime import Mailbox
from kefu.actors.store import EventRecord, Store, StoreMessage, StoreUnavailable, append
from kefu.actors.supervisor import Supervisor, actor_child
from kefu.server.event_log import PostgresEventLog
from tests.conftest import open_database


async def main(dsn: str, account_id: uuid.UUID, conversations: list[uuid.UUID]) -> None:
    async with open_database(dsn) as database:
        mailbox: Mailbox[StoreMessage] = Mailbox("store", 20_000)
        supervisor = Supervisor("driver", [actor_child(lambda mb: Store(mb, PostgresEventLog(database)), mailbox)])
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run, trio.Event())

            async def conversation(conversation_id: uuid.UUID) -> None:
                seq = 0
                while True:
                    rec = EventRecord(
                        account_id, conversation_id, seq, f"m{seq}", "message", "customer", "v", {"text": "x"}
                    )
                    try:
                        ack = await append(mailbox.ref, rec)
                    except StoreUnavailable:
                        continue  # retry the same append
                    sys.stdout.write(f"ack {conversation_id} {ack.seq}\n")
                    sys.stdout.flush()
                    seq += 1

            for conversation_id in conversations:
                nursery.start_soon(conversation, conversation_id)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], uuid.UUID(sys.argv[2]), [uuid.UUID(a) for a in sys.argv[3:]])
