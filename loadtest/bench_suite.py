"""The benchmark suite: kefu side by side with its baselines, in one run.

    python -m kefu.loadtest.bench_suite [--only relay,latency,memory,capacity,store,routing]
        [--json bench.json] [--markdown bench.md] [--profile DIR] [sizes, see --help]

`make bench` runs everything at modest sizes in a few minutes. The suite starts every server
itself, as a subprocess on loopback, one at a time, on the other half of the cores than this
process (the load generator) when there are two or more:

- a raw trio-websocket relay and a hypercorn + quart-trio relay (`echo_servers.py`),
- `kefu serve` with its embedded PostgreSQL in a fresh data folder, per benchmark, with the
  per-address connection cap, the per-socket frame rate and the heartbeat raised for the run
  (`servers.BENCH_SETTINGS`), and an account made with `kefu account create`.

One load generator (`relay.py`) drives them the same way: rooms of one receiver and sender
sockets, a message going sender -> server -> receiver; for kefu customer -> kefu (stored,
committed, acknowledged) -> agent. Every message is checked to arrive exactly once and in order.

Benchmarks (each prints kefu beside its baselines, then a markdown table of all of them):

- relay: persisted relay throughput (closed loop, each sender waits for its ack).
- latency: delivery latency at a fixed open-loop rate with thousands of sockets open.
- memory: resident memory per idle customer connection (socket, and for kefu its actor).
- capacity: sockets held with a steady message rate, in steps, until a step fails.
- store, routing: the durable-append and routing-decision benchmarks, at modest sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from kefu.loadtest import relay
from kefu.loadtest.servers import (
    ADMIN_PASSWORD,
    EchoServer,
    KefuServer,
    ServerProcess,
    cpu_plan,
    fsync_latency_ms,
    machine,
    rss_kib,
)
from kefu.loadtest.servers import raise_open_files as _raise_open_files

BENCHMARKS = ("relay", "latency", "memory", "capacity", "store", "routing")
TARGETS = {
    "relay_vs_trio": 0.5,  # kefu throughput >= 0.5x the raw trio-websocket relay
    "latency_vs_quart": 2.0,  # kefu p99 <= 2x the quart-trio relay's p99
    "latency_p99_ms": 50.0,
    "memory_kib": 30.0,
    "capacity_sockets": 40_000,
    "capacity_rate": 3_000,
    "capacity_p99_ms": 100.0,
}


class Suite:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.server_cores, self.generator_cores = cpu_plan()
        self.kefu: KefuServer | None = None  # the one kefu of --reuse-kefu
        if self.generator_cores:
            os.sched_setaffinity(0, self.generator_cores)
        self.results: dict[str, Any] = {
            "machine": {**machine(), "fsync": fsync_latency_ms(Path(tempfile.gettempdir()))},
            "cores": {
                "server": sorted(self.server_cores or []),
                "generator": sorted(self.generator_cores or []),
            },
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "benchmarks": {},
        }

    # -- plumbing ------------------------------------------------------------------------

    def server(self, kind: str, profile_name: str | None = None) -> ServerProcess:
        if kind == "kefu":
            profile = None
            if self.args.profile is not None and profile_name is not None:
                self.args.profile.mkdir(parents=True, exist_ok=True)
                suffix = ".txt" if profile_name == "memory" else ".prof"  # memory: tracemalloc's text
                profile = self.args.profile / f"kefu-{profile_name}{suffix}"
            return KefuServer(self.server_cores, profile=profile)
        return EchoServer(kind, self.server_cores)

    def target(self, server: ServerProcess, tally: relay.Tally, per_room: int) -> relay.Target:
        if isinstance(server, KefuServer):
            return relay.KefuTarget(server.port, tally, per_room, server.slug, server.admin_email, ADMIN_PASSWORD)
        return relay.EchoTarget(server.name, server.port, tally, per_room)

    def run_on(
        self,
        kind: str,
        workload: Callable[[ServerProcess, relay.Fleet], Awaitable[dict[str, Any]]],
        per_room: int,
        profile_name: str | None = None,
    ) -> dict[str, Any]:
        """Start the server, run `workload` against it with a fresh fleet, stop the server."""
        reused = kind == "kefu" and self.args.reuse_kefu
        if reused and self.kefu is not None and self.kefu.alive():
            server: ServerProcess = self.kefu
            self.kefu.new_account()
        else:
            server = self.server(kind, None if reused else profile_name)
            print(f"  {server.name}: starting", file=sys.stderr, flush=True)
            server.start()
            if reused:
                assert isinstance(server, KefuServer)
                self.kefu = server
        try:
            tally = relay.Tally()
            target = self.target(server, tally, per_room)

            async def main() -> dict[str, Any]:
                async with trio.open_nursery() as nursery:
                    fleet = relay.Fleet(target, nursery)
                    try:
                        result = await workload(server, fleet)
                    finally:
                        target.close_all()
                        await target.aclose()
                        nursery.cancel_scope.cancel()
                return result

            result = trio.run(main)
            result["server"] = server.name
            result["server_alive_at_end"] = server.alive()
        finally:
            if server is not self.kefu:
                server.cleanup()
        if isinstance(server, KefuServer) and server.profile is not None:
            result["profile"] = str(server.profile)
        print(f"  {server.name}: {_short(result)}", file=sys.stderr, flush=True)
        return result

    # -- benchmarks ----------------------------------------------------------------------

    def bench_relay(self) -> dict[str, Any]:
        a = self.args

        async def workload(server: ServerProcess, fleet: relay.Fleet) -> dict[str, Any]:
            await fleet.grow(a.relay_rooms)
            tally = fleet.target.tally
            tally.latency = relay.histogram()
            result: dict[str, Any] = {"senders": len(fleet.senders), "receivers": fleet.rooms}
            with relay.measured(result, server):
                seconds = await relay.closed_loop(fleet.senders, a.relay_messages, timeout=a.timeout)
            result["messages_per_second"] = round(tally.delivered / seconds, 1)
            relay.cpu_ms_per_message(result, tally.delivered)
            result["check"] = tally.check()
            result["errors"] = dict(tally.errors)
            result["latency"] = relay.summary(tally.latency)
            return result

        runs = {
            kind: self.run_on(kind, workload, a.relay_per_room, profile_name="relay")
            for kind in ("trio", "quart", "kefu")
        }
        kefu, trio_, quart = runs["kefu"], runs["trio"], runs["quart"]
        return {
            "runs": runs,
            "ratios": {
                "kefu_vs_trio": _ratio(kefu["messages_per_second"], trio_["messages_per_second"]),
                "kefu_vs_quart": _ratio(kefu["messages_per_second"], quart["messages_per_second"]),
                # what the throughput ratio would be with a core to itself: CPU per message, inverted
                "cpu_per_message_trio_vs_kefu": _ratio(
                    trio_.get("server_cpu_ms_per_message", 0),
                    kefu.get("server_cpu_ms_per_message", 0) + kefu.get("database_cpu_ms_per_message", 0),
                ),
            },
        }

    def bench_latency(self) -> dict[str, Any]:
        a = self.args

        async def workload(server: ServerProcess, fleet: relay.Fleet) -> dict[str, Any]:
            await fleet.grow(a.latency_rooms)
            tally = fleet.target.tally
            active = fleet.active(a.latency_active)
            await trio.sleep(1)
            tally.latency = relay.histogram()
            result: dict[str, Any] = {
                "sockets": fleet.target.sockets,
                "active_senders": len(active),
                "idle_senders": len(fleet.senders) - len(active),
                "rate": a.latency_rate,
                "seconds": a.latency_seconds,
            }
            with relay.measured(result, server):
                count = await relay.open_loop(active, a.latency_rate, a.latency_seconds)
                await tally.wait_delivered(count, a.timeout)
            relay.cpu_ms_per_message(result, tally.delivered)
            result["check"] = tally.check()
            result["errors"] = dict(tally.errors)
            result["latency"] = relay.summary(tally.latency)
            return result

        runs = {kind: self.run_on(kind, workload, a.per_room, profile_name="latency") for kind in ("quart", "kefu")}
        return {
            "runs": runs,
            "ratios": {
                "kefu_p99_vs_quart": _ratio(
                    runs["kefu"]["latency"].get("p99_ms", 0), runs["quart"]["latency"].get("p99_ms", 0)
                )
            },
        }

    def bench_memory(self) -> dict[str, Any]:
        a = self.args

        async def workload(server: ServerProcess, fleet: relay.Fleet) -> dict[str, Any]:
            rooms = max(1, -(-a.memory_idle // a.per_room))
            # receivers (agents) first; measured are only the idle senders (customers) after them
            target = fleet.target
            await target.prepare(rooms, a.memory_idle)
            async with trio.open_nursery() as setup:
                for room in range(rooms):
                    setup.start_soon(target.open_receiver, fleet.nursery, room)
            await trio.sleep(a.settle)
            before = rss_kib(server.pid)
            server.profile_window(True)
            limiter = trio.CapacityLimiter(64)

            async def one(i: int) -> None:
                async with limiter:
                    fleet.senders.append(await target.open_sender(fleet.nursery, i))

            async with trio.open_nursery() as setup:
                for i in range(a.memory_idle):
                    setup.start_soon(one, i)
            await trio.sleep(a.settle)
            after = rss_kib(server.pid)
            server.profile_window(False)
            return {
                "idle_connections": len(fleet.senders),
                "rss_before_kib": before,
                "rss_after_kib": after,
                "kib_per_connection": round((after - before) / max(1, len(fleet.senders)), 2),
                "errors": dict(target.tally.errors),
            }

        runs = {kind: self.run_on(kind, workload, a.per_room, "memory") for kind in ("trio", "quart", "kefu")}
        return {
            "runs": runs,
            "ratios": {
                "kefu_vs_quart": _ratio(runs["kefu"]["kib_per_connection"], runs["quart"]["kib_per_connection"])
            },
        }

    def bench_capacity(self) -> dict[str, Any]:
        a = self.args
        steps = sorted(int(s) for s in a.capacity_steps.split(",") if s.strip())

        async def workload(server: ServerProcess, fleet: relay.Fleet) -> dict[str, Any]:
            tally = fleet.target.tally
            passed: list[dict[str, Any]] = []
            result: dict[str, Any] = {"steps": passed, "rate": a.capacity_rate, "seconds": a.capacity_seconds}
            for sockets in steps:
                rooms_wanted = -(-sockets // (a.per_room + 1))
                step: dict[str, Any] = {"sockets_wanted": sockets}
                # opening a kefu customer is a REST call, a handshake, a conversation and an
                # assignment: allow 0.2 s for each new socket on top of --timeout
                setup_timeout = a.timeout + 0.2 * max(0, sockets - fleet.target.sockets)
                try:
                    with trio.fail_after(setup_timeout):
                        await fleet.grow(rooms_wanted - fleet.rooms)
                except trio.TooSlowError:
                    step["limit"] = f"opening sockets took longer than {setup_timeout:g} s"
                    step["sockets"] = fleet.target.sockets
                    passed.append(step)
                    break
                except (OSError, ConnectionError, RuntimeError) as e:
                    step["limit"] = f"opening sockets failed: {type(e).__name__}: {e}"
                    step["sockets"] = fleet.target.sockets
                    passed.append(step)
                    break
                except BaseExceptionGroup as group:
                    first = _first_leaf(group)
                    step["limit"] = f"opening sockets failed: {type(first).__name__}: {first}"
                    step["sockets"] = fleet.target.sockets
                    passed.append(step)
                    break
                step["sockets"] = fleet.target.sockets
                active = fleet.active(a.capacity_active)
                tally.latency = relay.histogram()
                errors_before = sum(tally.errors.values())
                sent_before = sum(tally.sent.values())
                with relay.measured(step, server):
                    count = await relay.open_loop(active, a.capacity_rate, a.capacity_seconds)
                    complete = await tally.wait_delivered(sent_before + count, a.timeout)
                relay.cpu_ms_per_message(step, count)
                step["server_rss_kib"] = rss_kib(server.pid)
                step["messages"] = count
                step["delivered_per_second"] = round(count / max(step["elapsed_seconds"], 1e-9), 1)
                step["latency"] = relay.summary(tally.latency)
                step["check"] = tally.check()
                step["errors"] = sum(tally.errors.values()) - errors_before
                passed.append(step)
                p99 = step["latency"].get("p99_ms", float("inf"))
                c = step["check"]
                if not complete or c["lost"] or c["duplicated"] or c["out_of_order"] or step["errors"]:
                    step["limit"] = "messages lost or errors"
                    break
                if p99 >= a.capacity_p99_ms:
                    step["limit"] = f"p99 {p99} ms >= {a.capacity_p99_ms:g} ms"
                    break
            result["errors"] = dict(tally.errors)
            good = [s for s in passed if "limit" not in s]
            result["max_sockets_passed"] = max((s["sockets"] for s in good), default=0)
            return result

        runs = {kind: self.run_on(kind, workload, a.per_room) for kind in ("quart", "kefu")}
        return {"runs": runs}

    def bench_store(self) -> dict[str, Any]:
        a = self.args
        return self._subprocess_bench(
            "bench_store",
            [
                "--appends",
                str(a.store_appends),
                "--writers",
                str(min(1000, a.store_appends)),
                "--single-appends",
                "1000",
                "--rounds",
                str(a.rounds),
            ],
        )

    def bench_routing(self) -> dict[str, Any]:
        a = self.args
        return self._subprocess_bench(
            "bench_routing",
            ["--agents", str(a.routing_agents), "--assignments", str(a.routing_assignments), "--rounds", str(a.rounds)],
        )

    def _subprocess_bench(self, module: str, args: list[str]) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="kefu-bench-") as tmp:
            out = Path(tmp) / "out.json"
            command = [sys.executable, "-m", f"kefu.loadtest.{module}", *args, "--json", str(out)]
            print(f"  {' '.join(command[1:-2])}", file=sys.stderr, flush=True)
            subprocess.run(command, check=True, stdout=sys.stderr)
            result: dict[str, Any] = json.loads(out.read_text())
            return result

    # -- the run ---------------------------------------------------------------------------

    def run(self, only: list[str]) -> dict[str, Any]:
        try:
            for name in only:
                print(f"{name}:", file=sys.stderr, flush=True)
                self.results["benchmarks"][name] = getattr(self, f"bench_{name}")()
        finally:
            if self.kefu is not None:
                self.kefu.cleanup()
        self.results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        self.results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        return self.results


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    e: BaseException = group
    while isinstance(e, BaseExceptionGroup):
        e = e.exceptions[0]
    return e


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def _short(result: dict[str, Any]) -> str:
    keys = ("messages_per_second", "kib_per_connection", "max_sockets_passed")
    parts = [f"{k}={result[k]}" for k in keys if k in result]
    if "latency" in result:
        parts.append(f"p99={result['latency'].get('p99_ms')} ms")
    if "check" in result:
        c = result["check"]
        parts.append(f"sent={c['sent']} lost={c['lost']} dup={c['duplicated']} ooo={c['out_of_order']}")
    if result.get("errors"):
        parts.append(f"errors={result['errors']}")
    return " ".join(parts)


# -- the report ---------------------------------------------------------------------------------


def _ok(value: float | None, target: float, higher_is_better: bool) -> str:
    if value is None:
        return "n/a"
    good = value >= target if higher_is_better else value <= target
    return "meets" if good else "**misses**"


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def _gc(run: dict[str, Any]) -> str:
    """kefu's garbage-collector pauses in the measured window (server/gc_pauses.py)."""
    gc = run.get("gc")
    if not gc:
        return ""
    text = f"; GC in the window: {gc['gen0_collections'] + gc['gen1_collections']} young collections"
    text += f" ({gc['gen0_paused_ms'] + gc['gen1_paused_ms']:.0f} ms)"
    if gc["gen2_collections"]:
        longest = gc.get("gen2_longest_ms_at_most")
        text += f", {gc['gen2_collections']} full ({gc['gen2_paused_ms']:.0f} ms"
        text += f", the longest ≤ {longest:g} ms)" if longest is not None and longest != float("inf") else ")"
    else:
        text += ", no full one"
    return text


def _per_message(run: dict[str, Any]) -> str:
    text = f"CPU {_fmt(run.get('server_cpu_ms_per_message'), 3)} ms/msg"
    if "database_cpu_ms_per_message" in run:
        text += f" + PG {_fmt(run['database_cpu_ms_per_message'], 3)}"
    return text


def _cpu(run: dict[str, Any]) -> str:
    return f"{run['server_cpu_percent']} / {run.get('database_cpu_percent', '–')} / {run['generator_cpu_percent']}"


def _loss(run: dict[str, Any]) -> str:
    c = run.get("check")
    if c is None:
        return f"errors {sum(run.get('errors', {}).values())}"
    errors = sum(run.get("errors", {}).values()) if isinstance(run.get("errors"), dict) else run.get("errors", 0)
    return f"{c['sent']:,} sent, {c['lost']} lost, {c['duplicated']} dup, {c['out_of_order']} ooo, {errors} errors"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    b = results["benchmarks"]
    lines = [
        f"Run {results['started']} – {results.get('finished', '?')}: {m['cpus']} CPUs ({m['cpu_model']}),"
        f" {m['memory_gib']} GiB, Python {m['python']}, {m['platform']}; server cores {results['cores']['server']},"
        f" load generator cores {results['cores']['generator']}; load average at start {m['load_average']},"
        f" at end {m.get('load_average_at_end')}; 8 KiB write + fdatasync in the data folder's file system:"
        f" median {m['fsync']['median_ms']} ms, p99 {m['fsync']['p99_ms']} ms.",
        "",
        "| benchmark | kefu | baseline(s) | ratio | target | verdict | losses, errors (kefu) | CPU % kefu/PG/gen |",
        "| --- | ---: | --- | ---: | --- | --- | --- | --- |",
    ]
    if "relay" in b:
        r = b["relay"]["runs"]
        k = r["kefu"]
        ratio = b["relay"]["ratios"]["kefu_vs_trio"]
        lines.append(
            f"| relay throughput, msgs/s ({k['senders']} senders, {k['receivers']} receivers, closed loop)"
            f" | {_fmt(k['messages_per_second'], 0)}"
            f" ({_per_message(k)})"
            f" | trio-websocket {_fmt(r['trio']['messages_per_second'], 0)} ({_per_message(r['trio'])});"
            f" quart-trio {_fmt(r['quart']['messages_per_second'], 0)} ({_per_message(r['quart'])})"
            f" | {_fmt(ratio, 2)}× trio, {_fmt(b['relay']['ratios']['kefu_vs_quart'], 2)}× quart;"
            f" {_fmt(b['relay']['ratios'].get('cpu_per_message_trio_vs_kefu'), 2)}× trio by CPU per message"
            f" | ≥ {TARGETS['relay_vs_trio']}× trio | {_ok(ratio, TARGETS['relay_vs_trio'], True)}"
            f" | {_loss(k)} | {_cpu(k)} |"
        )
    if "latency" in b:
        r = b["latency"]["runs"]
        k, q = r["kefu"], r["quart"]
        kp99, qp99 = k["latency"].get("p99_ms"), q["latency"].get("p99_ms")
        ratio = b["latency"]["ratios"]["kefu_p99_vs_quart"]
        verdict = (
            "meets"
            if ratio is not None and ratio <= TARGETS["latency_vs_quart"] and (kp99 or 1e9) < TARGETS["latency_p99_ms"]
            else "**misses**"
        )
        lines.append(
            f"| p99 delivery latency, ms ({k['sockets']:,} sockets, {k['active_senders']} active senders,"
            f" {k['rate']:g} msgs/s open loop, {k['seconds']:g} s)"
            f" | {_fmt(kp99, 2)} (p50 {_fmt(k['latency'].get('p50_ms'), 2)},"
            f" p99.9 {_fmt(k['latency'].get('p99.9_ms'), 2)})"
            f"; {_per_message(k)}{_gc(k)}"
            f" | quart-trio {_fmt(qp99, 2)} (p50 {_fmt(q['latency'].get('p50_ms'), 2)}; {_per_message(q)})"
            f" | {_fmt(ratio, 2)}× | ≤ {TARGETS['latency_vs_quart']:g}× quart and < {TARGETS['latency_p99_ms']:g} ms"
            f" | {verdict} | {_loss(k)} | {_cpu(k)} |"
        )
    if "memory" in b:
        r = b["memory"]["runs"]
        k = r["kefu"]
        lines.append(
            f"| memory per idle customer connection, KiB ({k['idle_connections']:,} idle; kefu: socket + assigned"
            f" conversation) | {_fmt(k['kib_per_connection'])}"
            f" | quart-trio {_fmt(r['quart']['kib_per_connection'])};"
            f" trio-websocket {_fmt(r['trio']['kib_per_connection'])}"
            f" | {_fmt(b['memory']['ratios']['kefu_vs_quart'], 2)}× quart | ≤ {TARGETS['memory_kib']:g} KiB"
            f" | {_ok(k['kib_per_connection'], TARGETS['memory_kib'], False)} | {_loss(k)} | – |"
        )
    if "capacity" in b:
        r = b["capacity"]["runs"]
        for name in ("kefu", "quart"):
            run = r[name]
            last = run["steps"][-1] if run["steps"] else {}
            good = [s for s in run["steps"] if "limit" not in s]
            best = good[-1] if good else {}
            limit = last.get("limit", "none: every step passed")
            rate = run["rate"]
            p99 = best.get("latency", {}).get("p99_ms")
            verdict = (
                "meets"
                if run["max_sockets_passed"] >= TARGETS["capacity_sockets"] and rate >= TARGETS["capacity_rate"]
                else "**misses**"
            )
            lines.append(
                f"| max sockets at {rate:g} msgs/s ({name}) | {_fmt(run['max_sockets_passed'])} (p99 {_fmt(p99, 1)} ms,"
                f" RSS {_fmt(best.get('server_rss_kib', 0) // 1024)} MiB) | stopped by: {limit}"
                f" | – | {TARGETS['capacity_sockets']:,} sockets, {TARGETS['capacity_rate']:,} msgs/s, p99 <"
                f" {TARGETS['capacity_p99_ms']:g} ms | {verdict if name == 'kefu' else 'baseline'}"
                f" | {_loss(best) if best else '–'} | {_cpu(best) if best else '–'} |"
            )
    if "store" in b:
        s = b["store"]
        runs = {run["name"]: run for run in s["runs"]}
        names = list(runs)
        ratio = s["ratios"]["store_vs_copy"]
        lines.append(
            f"| durable appends/s (store actor, group commit) | {_fmt(runs[names[0]]['appends_per_second'], 0)}"
            f" | {names[1]} {_fmt(runs[names[1]]['appends_per_second'], 0)}; {names[2]}"
            f" {_fmt(runs[names[2]]['appends_per_second'], 0)} | {_fmt(ratio, 2)}× COPY"
            f" | ≥ {s['targets']['store_vs_copy']}× COPY | {_ok(ratio, s['targets']['store_vs_copy'], True)} | – | – |"
        )
    if "routing" in b:
        s = b["routing"]
        channel = next(r for r in s["runs"] if r["name"] == "trio channel round trip")
        for r in s["runs"]:
            if r["name"].startswith("dispatcher"):
                target = s["targets"]["dispatcher_per_second"]
                lines.append(
                    f"| routing decisions/s, {r['name']} ({s['config']['agents']:,} agents)"
                    f" | {_fmt(r['per_second'], 0)} | trio channel round trip {_fmt(channel['per_second'], 0)}"
                    f" | {_fmt(r['per_second'] / channel['per_second'], 2)}× | ≥ {target:,}/s"
                    f" | {_ok(r['per_second'], target, True)} | – | – |"
                )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m kefu.loadtest.bench_suite",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated benchmarks to run")
    p.add_argument("--json", type=Path, help="write all results here")
    p.add_argument("--markdown", type=Path, help="write the summary table here too")
    p.add_argument("--profile", type=Path, help="profile kefu: cProfile (relay, latency), tracemalloc (memory)")
    p.add_argument(
        "--reuse-kefu",
        action="store_true",
        help="one kefu for all benchmarks (a new account each) instead of a fresh one each: quicker, but the"
        " memory figure then starts from a grown heap (for smoke runs)",
    )
    p.add_argument("--per-room", type=int, default=100, help="senders per receiver (kefu: agent capacity, <= 100)")
    p.add_argument("--relay-rooms", type=int, default=10, help="receivers in the relay benchmark")
    p.add_argument("--relay-per-room", type=int, default=50, help="senders per receiver in the relay benchmark")
    p.add_argument("--relay-messages", type=int, default=10_000, help="messages in the relay benchmark")
    p.add_argument("--latency-rooms", type=int, default=10, help="rooms of --per-room idle+active senders")
    p.add_argument("--latency-active", type=int, default=100, help="senders that send in the latency benchmark")
    p.add_argument("--latency-rate", type=float, default=300.0, help="messages/s in the latency benchmark")
    p.add_argument("--latency-seconds", type=float, default=10.0)
    p.add_argument("--memory-idle", type=int, default=1_000, help="idle customer connections to measure")
    p.add_argument("--capacity-steps", default="2000,4000", help="socket counts to try, in order")
    p.add_argument("--capacity-active", type=int, default=200, help="senders that send in the capacity benchmark")
    p.add_argument("--capacity-rate", type=float, default=300.0, help="messages/s held at every capacity step")
    p.add_argument("--capacity-seconds", type=float, default=10.0)
    p.add_argument(
        "--capacity-p99-ms", type=float, default=TARGETS["capacity_p99_ms"], help="a step with a higher p99 fails"
    )
    p.add_argument("--store-appends", type=int, default=20_000)
    p.add_argument("--routing-agents", type=int, default=2_000)
    p.add_argument("--routing-assignments", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=1, help="rounds of the store and routing benchmarks")
    p.add_argument("--settle", type=float, default=2.0, help="seconds to wait before reading memory")
    p.add_argument("--timeout", type=float, default=120.0, help="bound on each phase of each benchmark, seconds")
    args = p.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    if not 1 <= args.per_room <= 100 or not 1 <= args.relay_per_room <= 100:
        p.error("--per-room and --relay-per-room must be in 1..100 (an agent's capacity)")
    if not 0 < args.timeout <= 3600 or not 0 < args.latency_seconds <= 600 or not 0 < args.capacity_seconds <= 600:
        p.error("--timeout must be in (0, 3600] and the measuring windows in (0, 600] seconds")
    if args.latency_rate <= 0 or args.capacity_rate <= 0:
        p.error("rates must be positive")
    args.only_list = only
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    steps = [int(s) for s in args.capacity_steps.split(",") if s.strip()] if "capacity" in args.only_list else []
    wanted = 2 * max([*steps, args.memory_idle, args.latency_rooms * (args.per_room + 1), 1000]) + 1000
    limit = _raise_open_files(wanted)
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        suite = Suite(args)
        suite.results["machine"]["open_files_limit"] = limit
        results = suite.run(args.only_list)
    finally:
        if affinity is not None:
            os.sched_setaffinity(0, affinity)
    table = markdown(results)
    results["markdown"] = table
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    if args.markdown:
        args.markdown.write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
