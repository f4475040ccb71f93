"""One kefu process: the supervisor tree of ARCHITECTURE.md inside one trio run.

```
root                 one_for_one
├── store            the group-commit writer of the event log
├── timers           one heap of deadlines (offer expiry, wrap-up, retries) for every actor
├── core             rest_for_one (dispatcher, aggregator)
├── agents           dynamic: one Agent actor per signed-in agent
├── sessions         dynamic: one CustomerSession actor per open conversation
├── gateways         one_for_one, one actor per channel
└── http             hypercorn serving the quart-trio app
```

Children start top to bottom and stop bottom to top: on SIGINT/SIGTERM the HTTP server
stops accepting and drains first, and the store commits what it holds last.
"""

from __future__ import annotations

import logging
import signal
from collections import Counter
from collections.abc import Callable
from typing import Any
from uuid import UUID

import trio
import trio_asyncio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from kefu.actors import messages as m
from kefu.actors.agent import Agent
from kefu.actors.aggregator import (
    AGGREGATOR_MAILBOX_CAPACITY,
    Aggregator,
    AggregatorMessage,
    WatchEnded,
    WatchStarted,
)
from kefu.actors.center import CenterSettings, ContactCenter
from kefu.actors.dispatcher import DISPATCHER_MAILBOX_CAPACITY, Dispatcher
from kefu.actors.ports import Outbox
from kefu.actors.runtime import ActorStopped, Mailbox, MailboxFull, Registry
from kefu.actors.session import CustomerSession
from kefu.actors.store import STORE_MAILBOX_CAPACITY, Store, StoreMessage, StoreStatistics
from kefu.actors.supervisor import (
    ChildSpec,
    DynamicSupervisor,
    Restart,
    Strategy,
    Supervisor,
    SupervisorStatistics,
    actor_child,
)
from kefu.actors.timers import Timers
from kefu.server.accounts import return_hash_memory
from kefu.server.app import create_app
from kefu.server.backup import hold_database
from kefu.server.config import Config
from kefu.server.conversations import PostgresConversations
from kefu.server.database import Database, DatabaseUnavailable, resolve_dsn
from kefu.server.event_log import PostgresEventLog
from kefu.server.gc_pauses import freeze_startup_heap, gc_pauses
from kefu.server.live_stats import PostgresDayStore
from kefu.server.privacy import Privacy, check_data_keys, load_data_keys, seal_plaintext_names
from kefu.server.sockets import SupervisorFeeds

log = logging.getLogger("kefu.node")

WATCH_ENDED_SECONDS = 5.0
"""Longest a closed supervisor socket waits for room in the aggregator's mailbox to say it stops
watching; past it, the socket leaves the watchers when a send to it fails (aggregator rule 9)."""

ROOT_INTENSITY = (5, 30.0)
"""More than 5 restarts of the root's children within 30 s stop the process (exit 1)."""


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Node:
    def __init__(self, config: Config, database: Database, privacy: Privacy | None = None) -> None:
        self.config = config
        self.database = database
        self.privacy = privacy or Privacy(load_data_keys(config.data_key, config.data_dir), config.phone_region)
        """Keys and rules for customers' personal data (server/privacy.py)."""
        self.registry = Registry()
        self.urls: list[str] = []
        self.closing = trio.Event()
        """Set when the HTTP server starts to stop: every websocket is closed with 1001."""
        self.on_closing: list[Callable[[], None]] = []
        """Called when `closing` is set (the websocket edge closes its sockets)."""
        self.queue_changes: Counter[UUID] = Counter()
        """Queue changes told to the dispatcher, per account."""
        self.store_mailbox: Mailbox[StoreMessage] = Mailbox("store", STORE_MAILBOX_CAPACITY)
        self.store: Store | None = None
        self.dispatcher: Dispatcher | None = None
        """The running dispatcher incarnation (for statistics and tests)."""
        self.timers = Timers()
        self.conversations = PostgresConversations(database, self.privacy)
        self.supervisor_feeds = SupervisorFeeds()
        self.dispatcher_mailbox: Mailbox[m.DispatcherMessage] = Mailbox("dispatcher", DISPATCHER_MAILBOX_CAPACITY)
        self.aggregator_mailbox: Mailbox[AggregatorMessage] = Mailbox("aggregator", AGGREGATOR_MAILBOX_CAPACITY)
        # When one of these two gives up (more restarts than its intensity), the root
        # restarts it, and the actors it held start again on their surviving handles.
        self.agents: DynamicSupervisor[Any] = DynamicSupervisor("agents", on_restart=self._restart_agents)
        self.sessions: DynamicSupervisor[Any] = DynamicSupervisor(
            "sessions", intensity=100, period=5.0, on_restart=self._restart_sessions
        )
        self.center = ContactCenter(
            store=self.store_mailbox.ref,
            storage=self.conversations,
            timers=self.timers,
            sessions=self.sessions,
            agents=self.agents,
            settings=CenterSettings(
                wrap_up_seconds=config.wrap_up_seconds,
                max_missed_offers=config.max_missed_offers,
                no_agent_message=config.no_agent_message,
            ),
        )
        self.center.dispatcher = self.dispatcher_mailbox.ref
        self.center.aggregator = self.aggregator_mailbox.ref
        self.center.session_factory = lambda handle: CustomerSession(handle, self.center)
        self.center.agent_factory = lambda handle: Agent(handle, self.center)
        self.core = Supervisor(
            "core",
            [
                actor_child(self._new_dispatcher, self.dispatcher_mailbox, registry=self.registry),
                actor_child(self._new_aggregator, self.aggregator_mailbox, registry=self.registry),
            ],
            strategy=Strategy.REST_FOR_ONE,
        )
        self.gateways = Supervisor("gateways", [], strategy=Strategy.ONE_FOR_ONE)
        self.app = create_app(self)
        intensity, period = ROOT_INTENSITY
        self.root = Supervisor(
            "root",
            [
                actor_child(
                    self._new_store, self.store_mailbox, registry=self.registry, shutdown=config.shutdown_grace
                ),
                ChildSpec("timers", self.timers.run, Restart.PERMANENT, shutdown=1.0),
                self.core.spec(),
                self.agents.spec(),
                self.sessions.spec(),
                self.gateways.spec(),
                ChildSpec("http", self._serve_http, Restart.PERMANENT, shutdown=config.shutdown_grace + 5),
            ],
            strategy=Strategy.ONE_FOR_ONE,
            intensity=intensity,
            period=period,
        )

    async def _restart_sessions(self) -> None:
        await self.center.restart_sessions()

    async def _restart_agents(self) -> None:
        await self.center.restart_agents()

    def _new_dispatcher(self, mailbox: Mailbox[m.DispatcherMessage]) -> Dispatcher:
        # A restarted dispatcher rebuilds itself from the agents and sessions (its `started`).
        self.dispatcher = Dispatcher(mailbox, self.center)
        return self.dispatcher

    def _new_aggregator(self, mailbox: Mailbox[AggregatorMessage]) -> Aggregator:
        # The watchers outlive an incarnation (the node keeps them), like the mailbox.
        aggregator = Aggregator(mailbox, feeds=self.supervisor_feeds, store=PostgresDayStore(self.database))
        if mailbox.starts > 1:
            # Restarted with nothing: the agents tell it their status and load again, the
            # dispatcher its queues, their availability and who waits (queued before anything
            # else is folded, since the mailbox outlives the incarnation).
            self.center.reannounce(sessions=False)
            try:
                self.dispatcher_mailbox.ref.tell_nowait(m.Describe())
            except MailboxFull:
                log.warning("dispatcher busy: queues reappear in live statistics at their next change")
        return aggregator

    def _new_store(self, mailbox: Mailbox[StoreMessage]) -> Store:
        self.store = Store(mailbox, PostgresEventLog(self.database), batch_max=self.config.store_batch_max)
        return self.store

    async def _serve_http(self, stop_requested: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        hc = HypercornConfig()
        hc.bind = [bind_address(self.config.host, self.config.port)]
        hc.graceful_timeout = self.config.shutdown_grace
        # Limits (docs/security.md): hypercorn refuses a larger websocket message with 1009 while it
        # arrives (it counts a text message's characters; the protocol decoder then counts its bytes);
        # a connection gets `handshake_timeout_seconds` to send a complete request head (slowloris).
        hc.websocket_max_message_size = self.config.max_frame_bytes
        hc.keep_alive_timeout = self.config.handshake_timeout_seconds
        if self.config.tls_certfile:
            # TLS only: hypercorn serves HTTPS and WSS on the bound address (TLS 1.2 and newer).
            hc.certfile = self.config.tls_certfile
            hc.keyfile = self.config.tls_keyfile
        hc.accesslog = None
        hc.errorlog = logging.getLogger("hypercorn.error")

        class _Started(trio.TaskStatus[list[str]]):
            def started(inner, urls: list[str] | None = None) -> None:
                self.urls = list(urls or ())
                task_status.started(self.urls)

        async def shutdown_trigger() -> None:
            await stop_requested.wait()
            self.closing.set()
            for callback in self.on_closing:
                callback()

        await hypercorn_serve(self.app, hc, shutdown_trigger=shutdown_trigger, task_status=_Started())

    # -- what the edge asks -------------------------------------------------------------

    async def readiness(self) -> dict[str, bool]:
        database = await self.database.ping()
        migrations = False
        if database:
            try:
                migrations = not await self.database.pending_migrations()
            except DatabaseUnavailable:
                migrations = False
        store = self.store is not None and "store" in self.registry.names()
        return {"database": database, "migrations": migrations, "store": store}

    async def start_watching(self, account_id: UUID, connection: Outbox) -> None:
        """A supervisor's socket starts getting the account's live statistics; waits for room in
        the aggregator's mailbox (the aggregator owns the watchers, its rule 9)."""
        await self.aggregator_mailbox.ref.tell(WatchStarted(account_id, connection))

    async def stop_watching(self, account_id: UUID, connection: Outbox) -> None:
        """The socket closed: it stops watching. Shielded (called while the socket is cancelled)
        and bounded by `WATCH_ENDED_SECONDS`."""
        with trio.CancelScope(shield=True), trio.move_on_after(WATCH_ENDED_SECONDS):
            try:
                await self.aggregator_mailbox.ref.tell(WatchEnded(account_id, connection))
            except ActorStopped:
                pass  # the node is stopping: nobody is published to any more

    def queues_changed(self, account_id: UUID) -> None:
        """An account's queues were created, changed or deleted: the dispatcher reloads them."""
        self.queue_changes[account_id] += 1
        try:
            self.dispatcher_mailbox.ref.tell_nowait(m.ReloadQueues(account_id))
        except MailboxFull:
            # nothing lost: the dispatcher reloads the account's queues at its next tick
            self.center.queues_to_reload.add(account_id)
            log.warning("dispatcher busy: queue change applies at its next tick", extra={"account_id": str(account_id)})

    def agent_changed(self, agent_id: UUID) -> None:
        """An agent's capacity, departments or skills changed: its actor reloads them."""
        handle = self.center.agent(agent_id)
        if handle is not None:
            try:
                handle.ref.tell_nowait(m.ProfileChanged())
            except MailboxFull:
                log.warning("agent busy: profile change not applied", extra={"agent_id": str(agent_id)})

    def signed_out(self, agent_id: UUID, session_token_hash: bytes | None) -> None:
        """A session was revoked (None: every session of the agent): close its sockets."""
        handle = self.center.agent(agent_id)
        if handle is not None:
            handle.sign_out_nowait(session_token_hash)

    async def recover_sessions(self) -> int:
        """Start the session of every open conversation (after a restart); returns how many."""
        started = 0
        for account_id, conversation_id in await self.conversations.open_conversation_ids():
            try:
                await self.center.ensure_session(account_id, conversation_id)
                started += 1
            except Exception:
                log.exception("could not recover a conversation", extra={"conversation_id": str(conversation_id)})
        return started

    def supervisor_statistics(self) -> list[SupervisorStatistics]:
        return [s.statistics() for s in (self.root, self.core, self.agents, self.sessions, self.gateways)]

    def store_statistics(self) -> StoreStatistics | None:
        return self.store.store_statistics() if self.store is not None else None


async def _stop_on_signals(stop: trio.Event, cancel_scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if not stop.is_set():
                log.info("shutting down", extra={"signal": signal.Signals(signum).name})
                stop.set()
            else:
                log.warning("second signal: stopping now", extra={"signal": signal.Signals(signum).name})
                cancel_scope.cancel()


async def serve(config: Config, *, freeze_startup: bool = False, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Run kefu until SIGINT/SIGTERM (or cancellation); returns after a graceful stop.

    `freeze_startup` (the `kefu serve` process, not a node inside a test) takes what exists once
    kefu is serving out of the garbage collector's reach (server/gc_pauses.py)."""
    gc_pauses()
    return_hash_memory()
    keys = await trio.to_thread.run_sync(load_data_keys, config.data_key, config.data_dir)
    if not config.data_key and not config.embedded_database:
        log.warning(
            "customers' personal data is encrypted with the key in the data folder, but the database is"
            " shared: give every node the same key with KEFU_DATA_KEY",
            extra={"key": keys.source},
        )
    dsn = await trio.to_thread.run_sync(resolve_dsn, config)
    async with trio_asyncio.open_loop():
        database = await Database.open(dsn, pool_size=config.database_pool_size)
        try:
            await database.check_durability()
            await database.migrate()
            await check_data_keys(database, keys)
            await seal_plaintext_names(database, keys)
            node = Node(config, database, Privacy(keys, config.phone_region))
            stop = trio.Event()
            async with trio.open_nursery() as nursery:
                # `kefu restore` refuses while this is held, and a node does not start during a restore.
                await nursery.start(hold_database, dsn)
                nursery.start_soon(_stop_on_signals, stop, nursery.cancel_scope)
                await nursery.start(_run_tree, node, stop, nursery.cancel_scope)
                recovered = await node.recover_sessions()
                if recovered:
                    log.info("open conversations recovered", extra={"conversations": recovered})
                if freeze_startup:
                    frozen = freeze_startup_heap()
                    log.info("startup heap frozen", extra={"objects": frozen})
                log.info("kefu is serving", extra={"urls": node.urls, "embedded_database": config.embedded_database})
                task_status.started(node)
        finally:
            with trio.CancelScope(shield=True):
                await database.close()
    log.info("kefu stopped")


async def _run_tree(
    node: Node, stop: trio.Event, done: trio.CancelScope, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    try:
        await node.root.run(stop, task_status=task_status)
    finally:
        done.cancel()
