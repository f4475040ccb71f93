"""The servers the benchmark suite starts by itself, as subprocesses on loopback.

- `EchoServer("trio")` / `EchoServer("quart")`: the baselines of `echo_servers.py`.
- `KefuServer`: `kefu serve` with its embedded PostgreSQL in a fresh data folder, and settings
  raised for a load run (see `BENCH_SETTINGS`), plus an account made with `kefu account create`.

Each is pinned to its own cores (`os.sched_setaffinity`) when the machine has more than one,
gets a raised open-files limit, and can report its resident memory and CPU time from /proc.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ADMIN_PASSWORD = "bench admin password"

BENCH_SETTINGS = {
    # A load generator opens thousands of sockets from a few loopback addresses and sends
    # faster than one person types: the per-address and per-socket limits are raised for the run.
    "KEFU_MAX_CONNECTIONS_PER_ADDRESS": "1000000",
    "KEFU_MAX_FRAMES_PER_SECOND": "1000000",
    # Every simulated customer and agent comes from the same address: the per-address limits of
    # the unauthenticated endpoints (sign-in, new visitors, uploads) are raised too.
    "KEFU_SIGN_INS_PER_ADDRESS_PER_MINUTE": "1000000",
    "KEFU_VISITORS_PER_ADDRESS_PER_MINUTE": "1000000",
    "KEFU_UPLOADS_PER_ADDRESS_PER_MINUTE": "1000000",
    # Idle sockets stay silent for the whole run instead of pinging every 30 s.
    "KEFU_HEARTBEAT_SECONDS": "3600",
    "KEFU_LOG_LEVEL": "WARNING",
    "KEFU_LOG_FORMAT": "text",
    "KEFU_SHUTDOWN_GRACE": "2",
}
"""Environment kefu is started with for the benchmarks (everything else is the default)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_open_files(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE (children inherit it) towards `wanted`; the limit reached."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard < wanted:
        try:  # root may raise the hard limit too, up to fs.nr_open
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            pass
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_plan() -> tuple[set[int] | None, set[int] | None]:
    """(server cores, load generator cores): split when there are at least two cores."""
    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None, None
    if len(cores) < 2:
        return None, None
    half = len(cores) // 2
    return set(cores[half:]), set(cores[:half])


def pin(pid: int, cores: set[int] | None) -> None:
    if cores:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, cores)


def rss_kib(pid: int) -> int:
    """Resident memory of one process in KiB (VmRSS of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (its own threads, not its children);
    0 for a process that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": memory_gib,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "ephemeral_ports": _read("/proc/sys/net/ipv4/ip_local_port_range"),
    }


def fsync_latency_ms(directory: Path, seconds: float = 1.0) -> dict[str, float]:
    """How long one 8 KiB write + fdatasync takes in `directory` (where the embedded PostgreSQL
    keeps its WAL): the floor under every durable acknowledgement. Median and p99 over `seconds`."""
    times: list[float] = []
    fd, name = tempfile.mkstemp(dir=directory, prefix="fsync-probe-")
    try:
        block = os.urandom(8192)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and len(times) < 10_000:
            t0 = time.perf_counter()
            os.pwrite(fd, block, 8192 * (len(times) % 16))
            os.fdatasync(fd)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        os.close(fd)
        os.unlink(name)
    times.sort()
    return {
        "median_ms": round(times[len(times) // 2], 3),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 3),
        "samples": len(times),
    }


def _read(path: str) -> str | None:
    try:
        return " ".join(Path(path).read_text().split())
    except OSError:
        return None


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"server did not listen on port {port} within {timeout:g} s")


class ServerProcess:
    """A server subprocess: started, pinned, measured, stopped (SIGTERM, then SIGKILL)."""

    name = "server"

    def __init__(self, cores: set[int] | None = None) -> None:
        self.port = free_port()
        self.cores = cores
        self.process: subprocess.Popen[bytes] | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix=f"kefu-bench-{self.name}-"))
        self.log = self.tmp / "server.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def ready(self) -> None:
        assert self.process is not None
        _wait_listening(self.port, self.process, self.log, 60)

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.command(), env=self.env(), stdout=log, stderr=log)
        pin(self.process.pid, self.cores)
        try:
            self.ready()
        except BaseException:
            self.stop()
            raise

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def related_pids(self) -> list[int]:
        """The server process and the processes working for it (kefu: its PostgreSQL)."""
        return [self.pid]

    def profile_window(self, on: bool) -> None:
        """Switch the server's profiler on or off (only a profiled kefu has one)."""

    def gc_pauses(self) -> dict[str, float] | None:
        """The server's garbage-collector pause counters so far (only kefu reports them)."""
        return None


class EchoServer(ServerProcess):
    def __init__(self, kind: str, cores: set[int] | None = None) -> None:
        self.kind = kind
        self.name = {"trio": "trio-websocket echo", "quart": "quart-trio echo"}[kind]
        super().__init__(cores)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "kefu.loadtest.echo_servers", self.kind, "--port", str(self.port)]


class KefuServer(ServerProcess):
    """`kefu serve` with the embedded PostgreSQL (which inherits kefu's cores)."""

    name = "kefu"

    def __init__(self, cores: set[int] | None = None, profile: Path | None = None) -> None:
        super().__init__(cores)
        self.profile = profile
        self.slug = f"bench-{uuid.uuid4().hex[:8]}"
        self.admin_email = f"admin@{self.slug}.example"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("KEFU_DATABASE_URL", None)
        env.pop("KEFU_CONFIG", None)
        env.update(BENCH_SETTINGS)
        env.update(KEFU_DATA_DIR=str(self.tmp / "data"), KEFU_PORT=str(self.port), KEFU_HOST="127.0.0.1")
        return env

    def command(self) -> list[str]:
        if self.profile is not None:
            return [
                sys.executable,
                "-m",
                "kefu.loadtest.profiled_serve",
                "--output",
                str(self.profile),
                "--on-signal",
                *(["--memory"] if self.profile.suffix == ".txt" else []),
            ]
        return [sys.executable, "-m", "kefu.server.cli", "serve"]

    def related_pids(self) -> list[int]:
        pids = [self.pid]
        with contextlib.suppress(OSError, ValueError, IndexError):
            postmaster = int((self.tmp / "data" / "postgres" / "postmaster.pid").read_text().split()[0])
            pids.append(postmaster)
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    with contextlib.suppress(OSError, ValueError):
                        stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                        if int(stat[1]) == postmaster:
                            pids.append(int(entry.name))
        return pids

    def gc_pauses(self) -> dict[str, float] | None:
        """`kefu_gc_pause_seconds` from /metrics: `count`/`sum` by generation, and the full
        (generation 2) collections' histogram buckets as `le=<bound>`."""
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return None
        counters: dict[str, float] = {}
        for line in text.splitlines():
            if not line.startswith("kefu_gc_pause_seconds"):
                continue
            name, _, value = line.rpartition(" ")
            generation = name.split('generation="', 1)[1][0]
            if name.startswith("kefu_gc_pause_seconds_count"):
                counters[f"count{generation}"] = float(value)
            elif name.startswith("kefu_gc_pause_seconds_sum"):
                counters[f"sum{generation}"] = float(value)
            elif generation == "2":
                counters["le=" + name.split('le="', 1)[1].split('"', 1)[0]] = float(value)
        return counters

    def profile_window(self, on: bool) -> None:
        if self.profile is not None and self.alive():
            self.process.send_signal(signal.SIGUSR1 if on else signal.SIGUSR2)  # type: ignore[union-attr]

    def ready(self) -> None:
        import urllib.request

        assert self.process is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kefu serve exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as r:
                if r.status == 200:
                    self.create_account()
                    return
            time.sleep(0.2)
        raise RuntimeError("kefu serve did not become ready in 120 s")

    def new_account(self) -> None:
        """Switch to a fresh account on the running server (for a reused server)."""
        self.slug = f"bench-{uuid.uuid4().hex[:8]}"
        self.admin_email = f"admin@{self.slug}.example"
        self.create_account()

    def create_account(self) -> None:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "kefu.server.cli",
                "account",
                "create",
                "--name",
                "Bench",
                "--slug",
                self.slug,
                "--admin-email",
                self.admin_email,
                "--password-stdin",
            ],
            input=ADMIN_PASSWORD.encode(),
            env=self.env(),
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        super().stop()
        # the embedded PostgreSQL outlives a killed kefu; pgserver stops it with its data folder
        postgres = self.tmp / "data" / "postgres"
        if postgres.exists() and (postgres / "postmaster.pid").exists():
            pg_ctl = shutil.which("pg_ctl")
            with contextlib.suppress(Exception):
                import pgserver

                pg_ctl = str(Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_ctl")
            if pg_ctl and Path(pg_ctl).exists():
                subprocess.run([pg_ctl, "stop", "-D", str(postgres), "-m", "fast"], capture_output=True, check=False)
