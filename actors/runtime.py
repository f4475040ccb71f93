"""The actor runtime: bounded mailboxes, references, request/reply, and the actor loop.

Theory of operation
-------------------
An actor is an object that owns its state and is reached only through its `Mailbox`.
The mailbox outlives any one incarnation of the actor: when a supervisor restarts a
crashed actor it builds a fresh instance from the child spec's factory and hands it the
same mailbox, so every `ActorRef` held elsewhere stays valid and the messages still
queued are not lost. Only the message being handled when the actor crashed is consumed;
if that message was an `ask`, its caller is answered with `ActorCrashed` at once instead
of waiting for its deadline.

Overflow policy (the same for every mailbox): a mailbox holds at most `capacity`
messages. `tell` waits for room (back-pressure on the sender); `tell_nowait` refuses
with `MailboxFull` (a `trio.WouldBlock`) and the sender decides, e.g. the edge answers
"busy, retry". Nothing is ever dropped silently.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import trio

from kefu.actors.deadlines import ask_deadlines

M = TypeVar("M")
T = TypeVar("T")

DEFAULT_MAILBOX_CAPACITY = 1024
"""Messages a mailbox holds before `tell` waits and `tell_nowait` refuses."""


_NOTHING: Any = object()


class MailboxFull(trio.WouldBlock):
    """`tell_nowait` found the mailbox at its capacity; nothing was enqueued."""


class AskTimeout(TimeoutError):
    """An `ask` got no reply before its deadline."""


class ActorCrashed(RuntimeError):
    """The actor raised while handling an `ask`; the request had no effect it vouches for."""


class ActorStopped(RuntimeError):
    """The actor's mailbox is closed: it was stopped for good."""


@dataclass(frozen=True, slots=True)
class ActorStatistics:
    """A snapshot of one actor's mailbox and work, as returned by `statistics()`."""

    name: str
    """The actor's registered name."""
    mailbox_size: int
    """Messages waiting in the mailbox now, at most `mailbox_capacity`; a sender waiting
    for room is not counted, nor a message handed straight to an idle actor."""
    mailbox_capacity: int
    """The mailbox bound."""
    mailbox_peak: int
    """The largest `mailbox_size` seen since the mailbox was made."""
    messages_handled: int
    """Messages taken out of the mailbox and handled (successfully or not)."""
    messages_refused: int
    """`tell_nowait` calls refused because the mailbox was full."""
    crashes: int
    """Times an incarnation of the actor ended with an exception."""
    restarts: int
    """Times the actor was started again after its first start."""


class Reply(Generic[T]):
    """A one-shot answer slot for `ask`. The handler calls `set` or `fail` once."""

    # Built on trio's low-level parking (one waiter, no ParkingLot): an `ask` is on the
    # hot path of every message, and this is measurably cheaper than a trio.Event.
    __slots__ = ("_done", "_error", "_value", "_waiter")

    def __init__(self) -> None:
        self._done = False
        self._value: T | None = None
        self._error: BaseException | None = None
        self._waiter: trio.lowlevel.Task | None = None

    @property
    def done(self) -> bool:
        return self._done

    def set(self, value: T) -> None:
        if self._done:
            return
        self._value = value
        self._resolve()

    def fail(self, error: BaseException) -> None:
        if self._done:
            return
        self._error = error
        self._resolve()

    def _resolve(self) -> None:
        self._done = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            trio.lowlevel.reschedule(waiter)

    async def wait(self) -> T:
        """Wait for the answer (one waiter at a time); returns it or raises the failure."""
        if self._done:
            await trio.lowlevel.checkpoint()
        else:
            if self._waiter is not None:
                raise RuntimeError("a Reply has one waiter at a time")
            self._waiter = trio.lowlevel.current_task()

            def abort(_raise_cancel: Any) -> trio.lowlevel.Abort:
                self._waiter = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class Flag:
    """A one-way flag that can be waited for, like a `trio.Event`, that makes the event only
    when somebody waits: a supervisor holds two per child (its stop request and its end),
    and most children are never waited for while they run."""

    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: trio.Event | None = None

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        if self._event is not None:
            self._event.set()

    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> None:
        if self._set:
            await trio.lowlevel.checkpoint()
            return
        if self._event is None:
            self._event = trio.Event()
        await self._event.wait()


class StopRequest(Flag):
    """What a supervisor sets to stop one child: a `Flag` that also calls back.

    An actor's message loop registers a callback that interrupts its wait for the next
    message, so an idle actor needs no task of its own watching for the stop.
    """

    __slots__ = ("_callbacks",)

    def __init__(self) -> None:
        super().__init__()
        self._callbacks: list[Callable[[], None]] | None = None

    def set(self) -> None:
        if self._set:
            return
        super().set()
        callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks or ():
            callback()

    def on_set(self, callback: Callable[[], None]) -> None:
        """Call `callback` when set (at once if already set)."""
        if self._set:
            callback()
        elif self._callbacks is None:
            self._callbacks = [callback]
        else:
            self._callbacks.append(callback)


class _Interrupted(Exception):
    """The actor's wait for its next message was interrupted (a stop or `finish`)."""


class Mailbox(Generic[M]):
    """A bounded queue of messages for one actor, stable across its restarts.

    A FIFO with one receiver (the actor) and any number of senders, with the semantics of a
    trio memory channel of `capacity` (a waiting receiver is handed a message directly;
    senders that find it full wait in arrival order and their messages go in as room is
    made), built on trio's low-level parking instead: an idle contact center holds one
    mailbox per open conversation, and a memory channel (its state, two endpoints, their
    sets and ordered dicts, the receiver's registration) was about 2 KiB of it. Here an
    idle, empty mailbox holds no container at all.
    """

    __slots__ = (
        "_buffer",
        "_closed",
        "_handed",
        "_handled",
        "_peak",
        "_queued",
        "_receiver",
        "_refused",
        "_senders",
        "capacity",
        "crashes",
        "name",
        "ref",
        "starts",
    )

    def __init__(self, name: str, capacity: int = DEFAULT_MAILBOX_CAPACITY) -> None:
        if capacity < 1 or capacity == math.inf:
            raise ValueError("a mailbox must be bounded and hold at least one message")
        self.name = name
        self.capacity = capacity
        self._buffer: deque[M] | None = None
        """Messages waiting for the actor; made when one has to wait, dropped when empty."""
        self._senders: dict[trio.lowlevel.Task, list[M]] | None = None
        """Senders waiting for room (in arrival order), each with its message in a list that
        is emptied when the message goes in."""
        self._receiver: trio.lowlevel.Task | None = None
        """The actor, while it waits in `receive`."""
        self._handed: Any = _NOTHING
        """What the waiting receiver is woken with: a message, or `_NOTHING` (interrupted or closed)."""
        self._closed = False
        self._queued = 0
        self._peak = 0
        self._handled = 0
        self._refused = 0
        self.crashes = 0
        self.starts = 0
        self.ref: ActorRef[M] = ActorRef(self)

    # -- sending side (used through ActorRef) ------------------------------------------

    def _offer(self, message: M) -> bool:
        """Hand over or enqueue `message` if there is room now (no checkpoint)."""
        if self._closed:
            raise ActorStopped(self.name)
        receiver = self._receiver
        if receiver is not None:
            self._receiver = None
            self._handed = message
            trio.lowlevel.reschedule(receiver)
        else:
            buffer = self._buffer
            if buffer is None:
                buffer = self._buffer = deque()
            elif len(buffer) >= self.capacity:
                return False
            buffer.append(message)
        self._note_peak()
        return True

    def _put_nowait(self, message: M) -> None:
        if not self._offer(message):
            self._refused += 1
            raise MailboxFull(self.name)

    def _try_put(self, message: M) -> bool:
        """Enqueue if there is room now (no checkpoint, nothing counted as refused)."""
        return self._offer(message)

    async def _put(self, message: M) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._offer(message):
            # No scheduling point after a send that found room: the sender goes on and the
            # receiver later takes every message that piled up meanwhile in one go. (A send
            # is still a cancellation point, above, and waits, yielding, when the box is full.)
            return
        # A waiting sender's message is not in the mailbox yet: it is not counted until it
        # goes in (in `receive_nowait`), so the size never exceeds the capacity.
        task = trio.lowlevel.current_task()
        box = [message]
        if self._senders is None:
            self._senders = {}
        self._senders[task] = box

        def abort(_raise_cancel: Any) -> trio.lowlevel.Abort:
            senders = self._senders
            if senders is not None:
                senders.pop(task, None)
                if not senders:
                    self._senders = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        if box:
            raise ActorStopped(self.name)  # woken by `close`, the message did not go in

    @property
    def size(self) -> int:
        """Messages waiting in the mailbox now (taken by it, not yet by the actor)."""
        return self._queued

    def _note_peak(self) -> None:
        # one successful send in, one receive out
        self._queued += 1
        if self._queued > self._peak:
            self._peak = self._queued

    # -- receiving side (used by the actor loop) ---------------------------------------

    def receive_nowait(self) -> M:
        buffer = self._buffer
        if not buffer:
            if self._closed:
                raise trio.EndOfChannel
            raise trio.WouldBlock
        message = buffer.popleft()
        self._queued -= 1
        senders = self._senders
        if senders:
            # room was made: the longest-waiting sender's message goes in
            task = next(iter(senders))
            box = senders.pop(task)
            if not senders:
                self._senders = None
            buffer.append(box.pop())
            self._note_peak()
            trio.lowlevel.reschedule(task)
        elif not buffer:
            self._buffer = None
        return message

    async def receive(self) -> M:
        """Wait for the next message (one receiving task at a time)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            message = self.receive_nowait()
        except trio.WouldBlock:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return message
        return await self._wait_for_message()

    async def _wait_for_message(self) -> M:
        """Park until a sender hands a message over; `_Interrupted` if `interrupt` comes first."""
        await trio.lowlevel.wait_task_rescheduled(self._park_receiver())
        return self._take_handed()

    # The two halves of `_wait_for_message`, for the actor loop to park without a coroutine
    # frame of its own (one per idle actor).

    def _park_receiver(self) -> Callable[[Any], trio.lowlevel.Abort]:
        if self._receiver is not None:
            raise RuntimeError(f"mailbox {self.name} already has a receiver waiting")
        self._receiver = trio.lowlevel.current_task()
        return self._abort_receive

    def _abort_receive(self, _raise_cancel: Any) -> trio.lowlevel.Abort:
        self._receiver = None
        return trio.lowlevel.Abort.SUCCEEDED

    def _take_handed(self) -> M:
        message, self._handed = self._handed, _NOTHING
        if message is _NOTHING:
            if self._closed:
                raise trio.EndOfChannel
            raise _Interrupted
        self._queued -= 1
        return message  # type: ignore[no-any-return]

    def interrupt(self) -> None:
        """Wake the receiver waiting for a message, if any, with `_Interrupted`."""
        receiver = self._receiver
        if receiver is not None:
            self._receiver = None
            trio.lowlevel.reschedule(receiver)

    def mark_handled(self) -> None:
        self._handled += 1

    def close(self) -> None:
        """Refuse further messages for good (the actor will not run again)."""
        if self._closed:
            return
        self._closed = True
        senders, self._senders = self._senders, None
        for task in senders or ():
            trio.lowlevel.reschedule(task)
        self.interrupt()

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(
            name=self.name,
            mailbox_size=self.size,
            mailbox_capacity=self.capacity,
            mailbox_peak=self._peak,
            messages_handled=self._handled,
            messages_refused=self._refused,
            crashes=self.crashes,
            restarts=max(0, self.starts - 1),
        )


class ActorRef(Generic[M]):
    """The only way to reach an actor: `tell` (one-way) and `ask` (request/reply)."""

    __slots__ = ("_mailbox",)

    def __init__(self, mailbox: Mailbox[M]) -> None:
        self._mailbox = mailbox

    @property
    def name(self) -> str:
        return self._mailbox.name

    async def tell(self, message: M) -> None:
        """Enqueue `message`, waiting while the mailbox is full.

        A cancellation point; it lets other tasks run only when it has to wait for room.
        """
        await self._mailbox._put(message)

    def tell_nowait(self, message: M) -> None:
        """Enqueue `message` or raise `MailboxFull` at once."""
        self._mailbox._put_nowait(message)

    async def ask(self, make: Callable[[Reply[T]], M], *, timeout: float) -> T:
        """Send `make(reply)` and wait for the actor to answer through `reply`.

        Raises `AskTimeout` when no answer came within `timeout` seconds (time spent
        waiting for mailbox room counts), `ActorCrashed` when the handler raised.
        """
        reply: Reply[T] = Reply()
        message = make(reply)
        mailbox = self._mailbox
        deadline = trio.current_time() + timeout
        if mailbox._try_put(message):
            # the common case: no cancel scope, the run's deadline keeper times it out
            ask_deadlines().register(deadline, reply, self.name)
            return await reply.wait()
        with trio.CancelScope(deadline=deadline):
            await mailbox._put(message)
            return await reply.wait()
        raise AskTimeout(f"{self.name} did not answer within {timeout} s")

    def statistics(self) -> ActorStatistics:
        return self._mailbox.statistics()

    def __repr__(self) -> str:
        return f"<ActorRef {self.name}>"


YIELD_EVERY = 32
"""Messages an actor handles back to back before it lets other tasks run (if it did not wait)."""


class Actor(Generic[M]):
    """Base class: override `handle`; optionally `started` and `stopping`.

    `run` is the incarnation's whole life: `started`, then messages one at a time until
    the supervisor asks for a graceful stop, then `stopping`. An actor that needs tasks of
    its own overrides `run` and keeps them in a nursery inside it.
    """

    def __init__(self, mailbox: Mailbox[M]) -> None:
        self.mailbox = mailbox
        self._finishing = False
        self._waiting = False
        """This incarnation waits in its mailbox for the next message."""

    def finish(self) -> None:
        """End this incarnation after the message being handled: a normal exit, not a crash
        (a transient child that finishes is not restarted)."""
        self._finishing = True
        self._cancel_receive()

    @property
    def ref(self) -> ActorRef[M]:
        return self.mailbox.ref

    async def started(self) -> None:
        """Called once before the first message of this incarnation."""

    async def handle(self, message: M) -> None:
        raise NotImplementedError

    async def stopping(self) -> None:
        """Called on a graceful stop, after the last message this incarnation handles."""

    def statistics(self) -> ActorStatistics:
        return self.mailbox.statistics()

    async def run(self, stop_requested: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await self.started()
        task_status.started(self.ref)
        await self.message_loop(stop_requested)
        await self.stopping()

    def message_loop(self, stop_requested: trio.Event) -> Awaitable[None]:
        """Handle messages until `stop_requested` is set; a message being handled finishes.

        (A plain function returning the loop's coroutine: no coroutine frame of its own
        stays on every idle actor's stack.)
        """
        on_set = getattr(stop_requested, "on_set", None)
        if on_set is not None:
            # A `StopRequest` (what supervisors give their children) interrupts the wait for
            # the next message itself: no watcher task, which every idle actor would hold.
            on_set(self._cancel_receive)
            return self._message_loop(stop_requested)
        return self._watched_message_loop(stop_requested)

    async def _watched_message_loop(self, stop_requested: trio.Event) -> None:
        async with trio.open_nursery() as nursery:

            async def cancel_receive_on_stop() -> None:
                await stop_requested.wait()
                self._cancel_receive()

            nursery.start_soon(cancel_receive_on_stop)
            crash: Exception | None = None
            try:
                await self._message_loop(stop_requested)
            except Exception as error:
                crash = error
            nursery.cancel_scope.cancel()
        if crash is not None:
            # raised outside the nursery so the supervisor sees the error itself
            raise crash

    def _cancel_receive(self) -> None:
        if self._waiting:
            self.mailbox.interrupt()

    async def _message_loop(self, stop_requested: trio.Event) -> None:
        mailbox = self.mailbox
        handled_since_yield = 0
        while True:
            # The checkpoint comes before a message is taken, never between taking
            # and handling it: a cancel here leaves every queued message queued. It
            # is a cancellation point every time and lets other tasks run after
            # every YIELD_EVERY messages, so a full mailbox is worked off in batches.
            if handled_since_yield >= YIELD_EVERY:
                handled_since_yield = 0
                await trio.lowlevel.checkpoint()
            else:
                handled_since_yield += 1
                await trio.lowlevel.checkpoint_if_cancelled()
            if stop_requested.is_set() or self._finishing:
                break
            try:
                message = mailbox.receive_nowait()
            except trio.WouldBlock:
                message = _NOTHING  # waited for below, not in here: the exception would stay alive
            if message is _NOTHING:
                # Parked in the mailbox without a cancel scope of its own (one per idle actor):
                # a stop or `finish` interrupts the wait instead of cancelling it.
                self._waiting = True
                try:
                    await trio.lowlevel.wait_task_rescheduled(mailbox._park_receiver())
                    message = mailbox._take_handed()
                except _Interrupted:
                    break
                finally:
                    self._waiting = False
            # a crash propagates as the error itself (no nursery wraps it): the supervisor sees it
            await self.deliver(message)

    async def deliver(self, message: M) -> None:
        """Handle one message; a crash answers a pending `ask` before propagating."""
        try:
            await self.handle(message)
        except BaseException as error:
            reply = getattr(message, "reply", None)
            if isinstance(reply, Reply):
                if isinstance(error, Exception):
                    reply.fail(ActorCrashed(f"{self.mailbox.name} crashed: {error!r}"))
                else:
                    reply.fail(ActorStopped(self.mailbox.name))
            raise
        finally:
            self.mailbox.mark_handled()


class Registry:
    """Actors by name, for one application. Names are unique while registered."""

    def __init__(self) -> None:
        self._refs: dict[str, ActorRef[Any]] = {}

    def register(self, ref: ActorRef[Any]) -> None:
        if ref.name in self._refs and self._refs[ref.name] is not ref:
            raise KeyError(f"an actor named {ref.name!r} is already registered")
        self._refs[ref.name] = ref

    def unregister(self, name: str) -> None:
        self._refs.pop(name, None)

    def whereis(self, name: str) -> ActorRef[Any] | None:
        return self._refs.get(name)

    def lookup(self, name: str) -> ActorRef[Any]:
        try:
            return self._refs[name]
        except KeyError:
            raise KeyError(f"no actor named {name!r}") from None

    def names(self) -> list[str]:
        return sorted(self._refs)

    def statistics(self) -> list[ActorStatistics]:
        return [self._refs[name].statistics() for name in sorted(self._refs)]
