"""The contact center's shared wiring: where the actors of one node find each other.

A `ContactCenter` is built once per node. It holds the refs of the singleton actors
(store, dispatcher, aggregator), the timer service, the storage port, the settings, and
the tables of running CustomerSession and Agent actors with the supervisors that start
them. It holds no conversation or agent state of its own: that lives in the actors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from uuid import UUID

import trio

from kefu.actors.agent import AgentHandle
from kefu.actors.aggregator import AgentChanged, AggregatorMessage
from kefu.actors.messages import AgentMessage, DispatcherMessage, Reannounce, SessionMessage
from kefu.actors.ports import AgentProfile, ConversationStorage, SessionHandle
from kefu.actors.runtime import ActorRef, Mailbox, MailboxFull
from kefu.actors.store import StoreMessage
from kefu.actors.supervisor import DynamicSupervisor, Restart, actor_child
from kefu.actors.timers import Timers

if TYPE_CHECKING:
    from kefu.actors.runtime import Actor

log = logging.getLogger("kefu.center")

SESSION_MAILBOX_CAPACITY = 512
"""Messages a CustomerSession actor's mailbox holds (`kefu.actors.messages.SessionMessage`).
Full: the edge waits for room (`tell`), so a flooding conversation slows its own sockets and
loses nothing; the dispatcher never waits: it holds the message in its backlog for that
conversation and delivers it, in order, when there is room; the timer service tries again later
(`kefu.actors.deadlines.RETRY_FULL_MAILBOX_SECONDS`); `reannounce` reports the refused ref to its
caller, which tries again."""
AGENT_MAILBOX_CAPACITY = 1024
"""Messages an Agent actor's mailbox holds (`kefu.actors.messages.AgentMessage`). Full: the edge
and the sessions wait for room (`tell`); the dispatcher and the timers never wait: the
dispatcher drops a frame for the agent's tabs, a missed-offers break or an audit of a denial
(each logged), the timer service tries again later, and a sign-out closes the sockets itself
(see `kefu.actors.agent`, "Ownership")."""
RECONNECT_GRACE_SECONDS = 30.0
"""How long an agent whose last tab closed keeps its status (a page reload keeps it online);
it gets no offers meanwhile, and after it the agent is offline."""


@dataclass(frozen=True, slots=True)
class CenterSettings:
    wrap_up_seconds: float = 30.0
    max_missed_offers: int = 3
    no_agent_message: str = "All our agents are busy or offline. Please stay: we answer as soon as one is free."
    resume_page_size: int = 500
    append_timeout: float = 10.0
    default_offer_timeout_seconds: float = 20.0
    reconnect_grace_seconds: float = RECONNECT_GRACE_SECONDS


class _Handle(Protocol):
    """What `ContactCenter` needs of a session's or an agent's handle."""

    @property
    def mailbox(self) -> Mailbox[Any]: ...


H = TypeVar("H", bound=_Handle)


class _Bound:
    """`factory(handle)` as the actor factory of a child spec (it is called with the mailbox,
    which the handle holds): one small object per running actor rather than a closure."""

    __slots__ = ("factory", "handle")

    def __init__(self, factory: Callable[[Any], Actor[Any]], handle: Any) -> None:
        self.factory = factory
        self.handle = handle

    def __call__(self, _mailbox: Mailbox[Any]) -> Actor[Any]:
        return self.factory(self.handle)


class ContactCenter:
    def __init__(
        self,
        *,
        store: ActorRef[StoreMessage],
        storage: ConversationStorage,
        timers: Timers,
        sessions: DynamicSupervisor[Any],
        agents: DynamicSupervisor[Any],
        settings: CenterSettings,
    ) -> None:
        self.store = store
        self.storage = storage
        self.timers = timers
        self.settings = settings
        self._session_supervisor = sessions
        self._agent_supervisor = agents
        self.sessions: dict[UUID, SessionHandle] = {}
        self.agents: dict[UUID, AgentHandle] = {}
        self._starting: dict[UUID, trio.Event] = {}
        self.queues_to_reload: set[UUID] = set()
        """Accounts whose queues changed while the dispatcher's mailbox was full: it reloads
        them at its next tick (one entry per account, so bounded by the accounts)."""
        self.open_offers: dict[str, tuple[UUID, UUID]] = {}
        """Offers the dispatcher made that are still open, by offer id: (agent, conversation).
        Written by the dispatcher alone; it outlives a dispatcher incarnation (like its
        mailbox) so that the next one can withdraw what the dead one offered."""
        self.dispatcher: ActorRef[DispatcherMessage] | None = None
        self.aggregator: ActorRef[AggregatorMessage] | None = None
        self.session_factory: Callable[[SessionHandle], Actor[SessionMessage]] | None = None
        self.agent_factory: Callable[[AgentHandle], Actor[AgentMessage]] | None = None

    # -- telling the singletons without ever blocking ---------------------------------------

    async def tell_dispatcher(self, message: DispatcherMessage) -> None:
        """Routing facts are never dropped: a sender waits for room (back-pressure on it alone)."""
        if self.dispatcher is None:
            raise RuntimeError("the dispatcher is not running")
        await self.dispatcher.tell(message)

    def tell_aggregator(self, message: AggregatorMessage) -> None:
        if self.aggregator is None:
            return
        try:
            self.aggregator.tell_nowait(message)
        except MailboxFull:
            # Live statistics are a view: a lost fold under overload is never waited for (the
            # mailbox counts it in its `messages_refused`).
            pass

    def agent_changed(self, profile: AgentProfile, presence: str, reason: str | None, load: int) -> None:
        self.tell_aggregator(
            AgentChanged(
                profile.account_id,
                profile.agent_id,
                profile.display_name,
                presence,
                reason,
                load,
                profile.capacity,
                trio.current_time(),
                profile.permissions,
            )
        )

    async def audit_denial(
        self,
        account_id: UUID,
        actor_role: str,
        actor_id: UUID,
        action: str,
        target_id: UUID | str,
        *,
        target_type: str = "conversation",
    ) -> None:
        """Append a refused frame to the audit log; a storage failure is logged, never raised."""
        try:
            await self.storage.record_denial(
                account_id, actor_role, actor_id, action, target_id, target_type=target_type
            )
        except Exception:
            log.warning("could not write an audit record", extra={"action": action})

    def reannounce(self, *, sessions: bool) -> list[ActorRef[Any]]:
        """Ask every Agent actor (and, with `sessions`, every CustomerSession) to tell its
        routing state again (`Reannounce`): a singleton restarted with nothing. Never blocks;
        returns the refs whose mailbox was full, for the caller to try again."""
        handles: list[Any] = list(self.agents.values())
        if sessions:
            handles.extend(self.sessions.values())
        refused: list[ActorRef[Any]] = []
        for handle in handles:
            try:
                handle.ref.tell_nowait(Reannounce())
            except MailboxFull:
                refused.append(handle.ref)
            except Exception:
                pass  # stopped for good: its successor announces itself when it starts
        return refused

    # -- sessions ---------------------------------------------------------------------------

    def session(self, conversation_id: UUID) -> SessionHandle | None:
        return self.sessions.get(conversation_id)

    async def ensure_session(self, account_id: UUID, conversation_id: UUID) -> SessionHandle:
        """The running session of a conversation, started (and rebuilt from the store) if needed."""
        running = self.sessions.get(conversation_id)
        if running is not None:
            return running
        factory = self.session_factory
        assert factory is not None, "the node sets session_factory"
        handle = SessionHandle(
            account_id, conversation_id, Mailbox(f"session:{conversation_id}", SESSION_MAILBOX_CAPACITY)
        )
        return await self._ensure(self.sessions, conversation_id, handle, factory, self._session_supervisor)

    async def _ensure(
        self,
        table: dict[UUID, H],
        key: UUID,
        handle: H,
        factory: Callable[[H], Actor[Any]],
        supervisor: DynamicSupervisor[Any],
    ) -> H:
        """The running actor of `key` in `table`, or `handle`'s, started now under `supervisor`.

        Concurrent callers for the same key wait for the one start instead of starting two.
        """
        while True:
            running = table.get(key)
            if running is not None:
                return running
            starting = self._starting.get(key)
            if starting is None:
                break
            await starting.wait()
        starting = self._starting[key] = trio.Event()
        try:
            spec = actor_child(_Bound(factory, handle), handle.mailbox, restart=Restart.TRANSIENT)
            table[key] = handle
            try:
                await supervisor.start_child(spec)
            except BaseException:
                table.pop(key, None)
                raise
            return handle
        finally:
            del self._starting[key]
            starting.set()

    async def restart_sessions(self) -> int:
        """After the sessions supervisor was restarted: start a session again for every handle
        (its mailbox and subscribed sockets survived); returns how many."""
        factory = self.session_factory
        assert factory is not None
        return await self._restart_all(self.sessions, factory, self._session_supervisor)

    async def restart_agents(self) -> int:
        """After the agents supervisor was restarted: start an Agent actor again for every handle."""
        factory = self.agent_factory
        assert factory is not None
        return await self._restart_all(self.agents, factory, self._agent_supervisor)

    async def _restart_all(
        self, table: dict[UUID, H], factory: Callable[[H], Actor[Any]], supervisor: DynamicSupervisor[Any]
    ) -> int:
        restarted = 0
        for key, handle in list(table.items()):
            if key in self._starting or handle.mailbox.name in supervisor or table.get(key) is not handle:
                continue
            spec = actor_child(_Bound(factory, handle), handle.mailbox, restart=Restart.TRANSIENT)
            try:
                await supervisor.start_child(spec)
                restarted += 1
            except Exception:
                # it starts again on its next use (`ensure_session` / `ensure_agent`)
                log.exception("could not restart an actor", extra={"actor": handle.mailbox.name})
                if table.get(key) is handle:
                    del table[key]
        log.info("actors restarted after their supervisor", extra={"actors": restarted})
        return restarted

    def session_ended(self, conversation_id: UUID) -> None:
        self.sessions.pop(conversation_id, None)

    # -- agents -----------------------------------------------------------------------------

    def agent(self, agent_id: UUID) -> AgentHandle | None:
        return self.agents.get(agent_id)

    async def ensure_agent(self, account_id: UUID, agent_id: UUID) -> AgentHandle:
        running = self.agents.get(agent_id)
        if running is not None:
            return running
        factory = self.agent_factory
        assert factory is not None, "the node sets agent_factory"
        handle = AgentHandle(account_id, agent_id, Mailbox(f"agent:{agent_id}", AGENT_MAILBOX_CAPACITY))
        return await self._ensure(self.agents, agent_id, handle, factory, self._agent_supervisor)

    def agent_ended(self, agent_id: UUID) -> None:
        self.agents.pop(agent_id, None)
