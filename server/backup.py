"""`kefu backup` and `kefu restore`: pg_dump and pg_restore of kefu's database.

The embedded server's own PostgreSQL 16 tools (shipped in the pgserver wheel) are used, so
a backup works on a fresh machine with nothing else installed; for a configured server the
same tools work (pg_dump reads servers older than itself). A backup is one file in
PostgreSQL's custom format, written beside its final name and renamed when complete, so an
interrupted backup never leaves a file that looks whole. A restore replaces the database's
contents in one transaction: it succeeds completely or changes nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

BACKUP_SUFFIX = ".dump"


class BackupError(RuntimeError):
    """A backup or restore could not be done; the message says why, in one line."""


def pg_tool(name: str) -> str:
    """The path of a PostgreSQL client tool: pgserver's own, else one on PATH."""
    try:
        import pgserver

        bundled = Path(pgserver.__file__).resolve().parent / "pginstall" / "bin" / name
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} was not found (install the PostgreSQL client tools)")
    return found


def default_backup_path(data_dir: Path, now: datetime | None = None) -> Path:
    moment = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return data_dir / "backups" / f"kefu-{moment}{BACKUP_SUFFIX}"


def _tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    return env


def _failure(what: str, result: subprocess.CompletedProcess[bytes]) -> BackupError:
    lines = [line for line in result.stderr.decode(errors="replace").splitlines() if line.strip()]
    detail = lines[-1] if lines else f"exit code {result.returncode}"
    return BackupError(f"{what} failed: {detail}")


def backup(dsn: str, output: Path) -> Path:
    """Dump the whole database to `output` (custom format); returns the file written."""
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    command = [pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--file={partial}", dsn]
    result = subprocess.run(command, capture_output=True, env=_tool_env(), check=False)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise _failure("pg_dump", result)
    with partial.open("rb") as written:
        os.fsync(written.fileno())
    partial.replace(output)
    directory = os.open(output.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return output


def restore(dsn: str, dump: Path) -> None:
    """Replace the database's contents with those of `dump`, in one transaction."""
    if not dump.is_file():
        raise BackupError(f"no backup file at {dump}")
    command = [
        pg_tool("pg_restore"),
        "--clean",
        "--if-exists",
        "--no-owner",
        "--no-privileges",
        "--single-transaction",
        "--exit-on-error",
        f"--dbname={dsn}",
        str(dump),
    ]
    result = subprocess.run(command, capture_output=True, env=_tool_env(), check=False)
    if result.returncode != 0:
        raise _failure("pg_restore", result)
