"""Routing decisions per second: the Router core beside a raw trio memory-channel round trip, in one run.

    python -m kefu.loadtest.bench_routing [--agents 10000] [--capacity 5] [--queues 10]
        [--assignments 200000] [--rounds 3] [--json out.json]

Measured side by side, interleaved over `--rounds` rounds (the median round is reported):

(a) channel round trip: one trio task sends a message through a trio memory channel to a
    consumer task and waits for the reply on a second channel, `--assignments` times. This is
    the floor cost of one actor `ask` per decision, without any work in the actor.
(b) Router core, per strategy: `--agents` agents (capacity `--capacity`) in departments, spread
    over `--queues` queues, held at about 70% load. Each step one conversation ends (`release`,
    oldest first), a new one is enqueued in a random queue, and `next_matches(now)` is asked for
    the offers, as the Dispatcher would after each message. Counted: matches made.
(c) through the Dispatcher actor, per strategy: the same agents and queues (auto-accepting)
    in a running Dispatcher (with the Aggregator it reports to); each step is two messages in
    (`Released`, `Enqueue`) and the decision comes back as an `Assign` to the conversation's
    session mailbox. Target: 20,000 assignments/s at 10,000 agents.

Only the steady state is timed; building the agents and filling them to 70% is not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from kefu.actors import messages as m
from kefu.actors.aggregator import AGGREGATOR_MAILBOX_CAPACITY, Aggregator, Unwatched
from kefu.actors.center import CenterSettings, ContactCenter
from kefu.actors.dispatcher import DISPATCHER_MAILBOX_CAPACITY, Dispatcher
from kefu.actors.ports import AgentProfile, QueueSettings, SessionHandle
from kefu.actors.routing import QueueRules, Router, RoutingStrategy
from kefu.actors.runtime import Mailbox
from kefu.actors.supervisor import DynamicSupervisor
from kefu.actors.timers import Timers
from kefu.protocol.permissions import AGENT, BUILT_IN_ROLES
from kefu.protocol.server import CustomerSummary

TARGET_LOAD = 0.7
"""Share of all agent slots kept busy in the steady state."""
DISPATCHER_TARGET = 20_000
"""Assignments/s the Dispatcher actor must reach at 10,000 agents (issue 3's target)."""
CORE_TARGET = 50_000
"""Decisions/s the core should beat at 10,000 agents (the dispatcher's target is 20,000/s)."""
STEP_SECONDS = 0.01
"""Simulated time between two steps (one conversation ends, one arrives)."""


@dataclass(frozen=True, slots=True)
class BenchConfig:
    agents: int = 10_000
    capacity: int = 5
    queues: int = 10
    assignments: int = 200_000
    strategies: tuple[RoutingStrategy, ...] = tuple(RoutingStrategy)
    seed: int = 7


def run_result(name: str, decisions: int, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"name": name, "decisions": decisions, "seconds": seconds, "per_second": decisions / seconds, **extra}


# -- (a) the raw trio memory-channel round trip ------------------------------------------


async def _round_trips(count: int) -> float:
    request_send, request_receive = trio.open_memory_channel[int](1024)
    reply_send, reply_receive = trio.open_memory_channel[int](1)

    async def consumer() -> None:
        async with reply_send:
            async for message in request_receive:
                await reply_send.send(message)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        started = time.perf_counter()
        async with request_send:
            for i in range(count):
                await request_send.send(i)
                await reply_receive.receive()
        elapsed = time.perf_counter() - started
    return elapsed


def bench_channel(config: BenchConfig) -> list[dict[str, Any]]:
    """(a): one request and one reply through trio memory channels per decision."""
    seconds = trio.run(_round_trips, config.assignments)
    return [run_result("trio channel round trip", config.assignments, seconds)]


# -- (b) the Router core ---------------------------------------------------------------


@dataclass(slots=True)
class Scenario:
    """A router at steady-state load, and what the driver needs to keep it there."""

    router: Router
    queue_ids: list[uuid.UUID]
    active: deque[uuid.UUID]  # agents of the conversations in progress, oldest first
    rng: random.Random
    now: float
    next_id: int


def build_scenario(config: BenchConfig, strategy: RoutingStrategy) -> Scenario:
    """Agents in departments (some in two), one queue per (department, skill) pair, filled to TARGET_LOAD."""
    rng = random.Random(config.seed)
    departments = [uuid.UUID(int=1_000 + i) for i in range(max(1, config.queues // 2))]
    skills = [uuid.UUID(int=2_000 + i) for i in range(3)]
    router = Router()
    queue_ids = []
    for i in range(config.queues):
        queue_id = uuid.UUID(int=3_000 + i)
        queue_ids.append(queue_id)
        skilled = strategy is RoutingStrategy.SKILLS
        router.set_queue(
            QueueRules(
                queue_id,
                strategy,
                department_id=departments[i % len(departments)],
                skill_id=skills[i % len(skills)] if skilled else None,
                min_skill_level=4 if skilled else 1,
            )
        )
    for i in range(config.agents):
        agent_id = uuid.UUID(int=10_000_000 + i)
        member_of = {departments[i % len(departments)]}
        if rng.random() < 0.3:
            member_of.add(rng.choice(departments))
        router.set_agent(
            agent_id,
            capacity=config.capacity,
            departments=frozenset(member_of),
            skills={skill: rng.randint(1, 10) for skill in skills},
            now=0.0,
        )
        router.set_available(agent_id, True, 0.0)
    scenario = Scenario(router, queue_ids, deque(), rng, 1.0, 100_000_000)
    target = int(config.agents * config.capacity * TARGET_LOAD)
    while len(scenario.active) < target:
        for _ in range(min(1000, target - len(scenario.active))):
            _arrive(scenario)
        scenario.active.extend(match.agent_id for match in router.next_matches(scenario.now))
        scenario.now += STEP_SECONDS
    return scenario


def _arrive(scenario: Scenario) -> None:
    scenario.next_id += 1
    rng = scenario.rng
    scenario.router.enqueue(
        uuid.UUID(int=scenario.next_id),
        scenario.queue_ids[rng.randrange(len(scenario.queue_ids))],
        customer_level=rng.randrange(4),
        waiting_since=scenario.now,
    )


def drive(scenario: Scenario, decisions: int) -> tuple[int, float]:
    """Steady state: one conversation ends, one arrives, ask for the offers; until `decisions` matches."""
    router = scenario.router
    active = scenario.active
    rng = scenario.rng
    queue_ids = scenario.queue_ids
    n_queues = len(queue_ids)
    # Arrivals are drawn beforehand so the timed loop measures the router, not the random module.
    steps = decisions + decisions // 10
    ids = [uuid.UUID(int=scenario.next_id + 1 + i) for i in range(steps)]
    targets = [queue_ids[rng.randrange(n_queues)] for _ in range(steps)]
    levels = [rng.randrange(4) for _ in range(steps)]
    scenario.next_id += steps
    now = scenario.now
    made = 0
    step = 0
    started = time.perf_counter()
    while made < decisions and step < steps:
        if active:
            router.release(active.popleft(), now)
        router.enqueue(ids[step], targets[step], customer_level=levels[step], waiting_since=now)
        for match in router.next_matches(now):
            active.append(match.agent_id)
            made += 1
        step += 1
        now += STEP_SECONDS
    elapsed = time.perf_counter() - started
    scenario.now = now
    return made, elapsed


def bench_router_core(config: BenchConfig) -> list[dict[str, Any]]:
    """(b): decisions/s of the Router alone at steady state, one run per strategy."""
    runs = []
    for strategy in config.strategies:
        scenario = build_scenario(config, strategy)
        made, seconds = drive(scenario, config.assignments)
        loads = [scenario.router.load(uuid.UUID(int=10_000_000 + i)) for i in range(config.agents)]
        waiting = sum(scenario.router.waiting(q) for q in scenario.queue_ids)
        runs.append(
            run_result(
                f"router core: {strategy.value}",
                made,
                seconds,
                mean_load=sum(loads) / len(loads) / config.capacity,
                waiting_at_end=waiting,
            )
        )
    return runs


# -- (c) through the Dispatcher actor ----------------------------------------------------


class _BenchStorage:
    """The only storage the dispatcher reads while routing: the account's queues."""

    def __init__(self, queues: list[QueueSettings]) -> None:
        self._queues = queues

    async def queues(self, account_id: uuid.UUID) -> list[QueueSettings]:
        return list(self._queues)


async def _through_dispatcher(config: BenchConfig, strategy: RoutingStrategy) -> tuple[int, float, float]:
    """`drive`'s steady state as messages to a running Dispatcher (and Aggregator).

    Each step tells the dispatcher that a conversation ended (`Released`) and that a new
    one waits (`Enqueue`); the queues auto-accept, so every routing decision comes back as
    an `Assign` to the conversation's session mailbox, where this driver reads it. A window
    of `WINDOW` steps is kept in flight, as many sessions would do at once. (`Released`
    names a placeholder conversation: the driver sees which agent took each conversation,
    not which conversation it was, so the aggregator's handled count is not exercised.)
    """
    account = uuid.UUID(int=1)
    departments = [uuid.UUID(int=1_000 + i) for i in range(max(1, config.queues // 2))]
    skills = [uuid.UUID(int=2_000 + i) for i in range(3)]
    skilled = strategy is RoutingStrategy.SKILLS
    queues = [
        QueueSettings(
            account_id=account,
            queue_id=uuid.UUID(int=3_000 + i),
            name=f"queue {i}",
            strategy=strategy.value,
            department_id=departments[i % len(departments)],
            skill_id=skills[i % len(skills)] if skilled else None,
            min_skill_level=4 if skilled else 1,
            auto_accept=True,
            is_default=i == 0,
        )
        for i in range(config.queues)
    ]
    rng = random.Random(config.seed)
    sessions_mailbox: Mailbox[Any] = Mailbox("bench-sessions", 1_000_000)
    center = ContactCenter(
        store=Mailbox("bench-store").ref,
        storage=_BenchStorage(queues),  # type: ignore[arg-type]
        timers=Timers(),
        sessions=DynamicSupervisor("sessions"),
        agents=DynamicSupervisor("agents"),
        settings=CenterSettings(),
    )
    dispatcher_mailbox: Mailbox[Any] = Mailbox("dispatcher", DISPATCHER_MAILBOX_CAPACITY)
    aggregator_mailbox: Mailbox[Any] = Mailbox("aggregator", AGGREGATOR_MAILBOX_CAPACITY)
    center.dispatcher = dispatcher_mailbox.ref
    center.aggregator = aggregator_mailbox.ref
    dispatcher_ref = dispatcher_mailbox.ref
    steps = config.assignments + config.assignments // 10
    target = int(config.agents * config.capacity * TARGET_LOAD)
    conversation_ids = [uuid.UUID(int=100_000_000 + i) for i in range(target + steps)]
    for conversation_id in conversation_ids:
        center.sessions[conversation_id] = SessionHandle(account, conversation_id, sessions_mailbox)
    summary = CustomerSummary(customer_id="bench", channel="webchat")
    now = datetime.now(UTC)
    active: deque[uuid.UUID] = deque()

    async def enqueue(index: int) -> None:
        conversation_id = conversation_ids[index]
        queue = queues[rng.randrange(len(queues))]
        await dispatcher_ref.tell(m.Enqueue(account, conversation_id, queue.queue_id, now, summary, rng.randrange(4)))

    async def collect(until: int) -> int:
        got = 0
        while got < until:
            message = await sessions_mailbox.receive()
            sessions_mailbox.mark_handled()
            if isinstance(message, m.Assign):
                active.append(message.agent_id)
                got += 1
        return got

    async with trio.open_nursery() as nursery:
        stop = trio.Event()
        nursery.start_soon(center.timers.run, stop)
        nursery.start_soon(Aggregator(aggregator_mailbox, feeds=Unwatched()).run, stop)
        dispatcher = Dispatcher(dispatcher_mailbox, center)
        nursery.start_soon(dispatcher.run, stop)
        for i in range(config.agents):
            member_of = {departments[i % len(departments)]}
            if rng.random() < 0.3:
                member_of.add(rng.choice(departments))
            profile = AgentProfile(
                account_id=account,
                agent_id=uuid.UUID(int=10_000_000 + i),
                display_name=f"Agent {i}",
                role=AGENT,
                permissions=BUILT_IN_ROLES[AGENT].permissions,
                capacity=config.capacity,
                departments=frozenset(member_of),
                skills={skill: rng.randint(1, 10) for skill in skills},
            )
            await dispatcher_ref.tell(m.AgentUpdate(profile, True, 0))
        for index in range(target):
            await enqueue(index)
        await collect(target)  # warm: agents at TARGET_LOAD
        made = 0
        step = 0
        started = time.perf_counter()
        released: set[uuid.UUID] = set()
        while made < config.assignments and step < steps:
            window = min(WINDOW, len(active), steps - step, config.assignments - made)
            for _ in range(window):
                # A release names a conversation the agent holds (the dispatcher counts held
                # conversations by id): one of those assigned to it, not released before.
                agent_id = active.popleft()
                held = dispatcher.agents[agent_id].assigned
                conversation_id = next(c for c in held if c not in released)
                released.add(conversation_id)
                await dispatcher_ref.tell(m.Released(account, agent_id, conversation_id))
                await enqueue(target + step)
                step += 1
            made += await collect(window)
        seconds = time.perf_counter() - started
        backlog_peak = dispatcher_mailbox.statistics().mailbox_peak
        stop.set()
        nursery.cancel_scope.cancel()
    return made, seconds, backlog_peak


WINDOW = 500
"""Steps in flight through the dispatcher at once."""


def bench_dispatcher(config: BenchConfig) -> list[dict[str, Any]]:
    """(c): assignments/s through the Dispatcher actor at steady state, one run per strategy."""
    runs = []
    for strategy in config.strategies:
        made, seconds, peak = trio.run(_through_dispatcher, config, strategy)
        runs.append(run_result(f"dispatcher: {strategy.value}", made, seconds, mailbox_peak=peak))
    return runs


Measurement = Callable[[BenchConfig], list[dict[str, Any]]]
MEASUREMENTS: list[Measurement] = [bench_channel, bench_router_core, bench_dispatcher]


def median_runs(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per run name, the round with the median rate, with every round's rate beside it."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for runs in rounds:
        for run in runs:
            by_name.setdefault(run["name"], []).append(run)
    result = []
    for runs in by_name.values():
        chosen = dict(sorted(runs, key=lambda run: run["per_second"])[len(runs) // 2])
        chosen["all_rounds_per_second"] = [round(run["per_second"]) for run in runs]
        result.append(chosen)
    return result


def machine() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def run(config: BenchConfig, rounds: int) -> dict[str, Any]:
    all_rounds: list[list[dict[str, Any]]] = []
    for _ in range(rounds):  # interleaved, so drift on the machine hits every measurement alike
        runs: list[dict[str, Any]] = []
        for measurement in MEASUREMENTS:
            runs.extend(measurement(config))
        all_rounds.append(runs)
    runs = median_runs(all_rounds)
    baseline = next(r["per_second"] for r in runs if r["name"] == "trio channel round trip")
    config_dict = asdict(config)
    config_dict["strategies"] = [s.value for s in config.strategies]
    return {
        "benchmark": "routing decisions",
        "machine": machine(),
        "config": config_dict,
        "rounds": rounds,
        "runs": runs,
        "ratios_to_channel_round_trip": {r["name"]: r["per_second"] / baseline for r in runs},
        "targets": {"router_core_per_second": CORE_TARGET, "dispatcher_per_second": DISPATCHER_TARGET},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=10_000, help="agents, all available")
    parser.add_argument("--capacity", type=int, default=5, help="conversations per agent at most")
    parser.add_argument("--queues", type=int, default=10, help="queues, over queues/2 departments")
    parser.add_argument("--assignments", type=int, default=200_000, help="decisions (and round trips) per run")
    parser.add_argument(
        "--strategies",
        default=",".join(s.value for s in RoutingStrategy),
        help="comma-separated strategies for the router runs",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every run; the median round is reported")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if not (1 <= args.agents <= 1_000_000 and 1 <= args.capacity <= 100 and 1 <= args.queues <= 1000):
        parser.error("need 1 <= agents <= 1,000,000, 1 <= capacity <= 100, 1 <= queues <= 1000")
    if not (1 <= args.assignments <= 10_000_000 and 1 <= args.rounds <= 20):
        parser.error("need 1 <= assignments <= 10,000,000 and 1 <= rounds <= 20")
    try:
        strategies = tuple(RoutingStrategy(s.strip()) for s in args.strategies.split(",") if s.strip())
    except ValueError as error:
        parser.error(str(error))
    config = BenchConfig(args.agents, args.capacity, args.queues, args.assignments, strategies)

    results = run(config, args.rounds)
    print(
        f"{config.agents} agents x {config.capacity} slots, {config.queues} queues, "
        f"{config.assignments} decisions per run, median of {args.rounds} rounds"
    )
    print(f"{'run':<30} {'decisions':>10} {'seconds':>8} {'per second':>11} {'x channel':>10}")
    for r in results["runs"]:
        ratio = results["ratios_to_channel_round_trip"][r["name"]]
        print(
            f"{r['name']:<30} {r['decisions']:>10} {r['seconds']:>8.2f} {r['per_second']:>11,.0f} {ratio:>9.2f}x"
            f"   rounds: {r['all_rounds_per_second']}"
        )
    for r in results["runs"]:
        if r["name"].startswith("router core"):
            verdict = "ok" if r["per_second"] >= CORE_TARGET else "BELOW TARGET"
            print(
                f"{r['name']}: mean load {r['mean_load']:.0%}, {r['waiting_at_end']} waiting at the end, "
                f"target >= {CORE_TARGET:,}/s {verdict}"
            )
        if r["name"].startswith("dispatcher"):
            verdict = "ok" if r["per_second"] >= DISPATCHER_TARGET else "BELOW TARGET"
            print(f"{r['name']}: target >= {DISPATCHER_TARGET:,}/s {verdict}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
