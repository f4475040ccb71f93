"""`kefu backup` and `kefu restore`: the database and the attachment files, in one archive.

A backup is one uncompressed tar archive (the database part is compressed by pg_dump, and
most attachments are compressed formats already), written beside its final name and renamed
when complete, so an interrupted backup never leaves a file that looks whole:

1. `kefu-backup.json`: what this is (format, time, how many attachments and bytes).
2. `database.dump`: pg_dump's custom format, taken in an exported snapshot.
3. `attachments.tsv`: one line per attachment row of that same snapshot (account, id, size,
   SHA-256), so the listing and the dump agree by construction.
4. `attachments/<account_id>/<id>`: each listed file, streamed from the data folder and checked
   against its recorded size and SHA-256 as it is copied. A file that is gone (a customer was
   erased after the snapshot) makes the backup start over with a new snapshot.

The embedded server's own PostgreSQL 16 tools (shipped in the pgserver wheel) are used, so a
backup works on a fresh machine with nothing else installed; for a configured server the same
tools work (pg_dump reads servers older than itself).

A restore refuses while a kefu node uses the database: every node holds a shared advisory lock
(`NODE_LOCK_ID`) on a connection named `kefu node <host> pid <pid>` for as long as it serves,
and the restore takes that lock exclusively, without waiting, for its whole run, so no node can
start meanwhile either. It first extracts and checks every file into a staging folder beside
the data folder's `attachments/`, then replaces the database's contents in one transaction
(pg_restore), then swaps the staged folder in for `attachments/`: the restored rows and files
are those of the backup, no more and no less. If anything fails before the swap, the database
and the files are as they were.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import asyncpg
import trio
import trio_asyncio

from kefu.server.attachments import fsync_dir

log = logging.getLogger("kefu.backup")

BACKUP_SUFFIX = ".tar"
FORMAT = 1
MANIFEST = "kefu-backup.json"
DATABASE_MEMBER = "database.dump"
LISTING_MEMBER = "attachments.tsv"
ATTACHMENTS = "attachments"
BACKUP_ATTEMPTS = 3
"""A backup whose snapshot lists a file that is gone when copied (erased meanwhile) starts over,
at most this many times in all."""
COPY_CHUNK_BYTES = 1 << 20

NODE_LOCK_ID = 0x6B656667
"""The advisory lock every serving node holds shared, and a restore takes exclusively."""
NODE_LOCK_CHECK_SECONDS = 5.0
"""How often a node checks that its lock connection is alive, and takes the lock again if not."""
NODE_APPLICATION_PREFIX = "kefu node"
RESTORE_APPLICATION_NAME = "kefu restore"

_MEMBER = re.compile(r"attachments/([0-9a-f-]{36})/([0-9a-f-]{36})")


class BackupError(RuntimeError):
    """A backup or restore could not be done; the message says why, in one line."""


class _FilesChanged(Exception):
    """A listed attachment file was gone when copied: take a new snapshot."""


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


def node_application_name() -> str:
    """How a node's connections show in pg_stat_activity (PostgreSQL keeps 63 bytes)."""
    return f"{NODE_APPLICATION_PREFIX} {socket.gethostname()[:32]} pid {os.getpid()}"


# -- the node's side: holding the database while serving -----------------------------------------


async def _connect_holding(dsn: str) -> asyncpg.Connection:
    async def connect() -> asyncpg.Connection:
        conn = await asyncpg.connect(dsn, server_settings={"application_name": node_application_name()})
        try:
            if not await conn.fetchval("SELECT pg_try_advisory_lock_shared($1)", NODE_LOCK_ID):
                holders = await _lock_holders(conn)
                raise BackupError(
                    f"a restore is replacing this database ({holders}): start kefu again when it has finished"
                )
        except BaseException:
            await conn.close()
            raise
        return conn

    conn: asyncpg.Connection = await trio_asyncio.aio_as_trio(connect)()
    return conn


async def hold_database(dsn: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Hold the node lock while the node serves (until cancelled); refuse to start during a restore.

    Runs inside trio-asyncio's loop. A lock connection that breaks (a database outage) loses the
    lock with it: it is taken again on a new connection once the database answers."""
    conn = await _connect_holding(dsn)
    task_status.started()
    try:
        while True:
            await trio.sleep(NODE_LOCK_CHECK_SECONDS)
            if conn.is_closed():
                try:
                    conn = await _connect_holding(dsn)
                    log.info("node lock taken again after its connection broke")
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, BackupError) as error:
                    log.warning("node lock not held: the database is not answering", extra={"error": str(error)})
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(2) as closing:
            await trio_asyncio.aio_as_trio(conn.close)()
        if closing.cancelled_caught:
            conn.terminate()


# -- the restore's side: nobody else on the database ----------------------------------------------


async def _lock_holders(conn: asyncpg.Connection) -> str:
    rows = await conn.fetch(
        """SELECT DISTINCT a.pid, a.application_name, a.client_addr, a.backend_start
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND l.classid = 0 AND l.objid = $1::bigint::oid AND a.pid <> pg_backend_pid()
           UNION
           SELECT a.pid, a.application_name, a.client_addr, a.backend_start FROM pg_stat_activity a
           WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
             AND (a.application_name LIKE $2 OR a.application_name = $3)
           ORDER BY 1""",
        NODE_LOCK_ID,
        NODE_APPLICATION_PREFIX + "%",
        RESTORE_APPLICATION_NAME,
    )
    described = [
        f"{r['application_name'] or 'a client'} (backend pid {r['pid']}"
        + (f", from {r['client_addr']}" if r["client_addr"] else "")
        + f", since {r['backend_start']:%Y-%m-%d %H:%M:%S %Z})"
        for r in rows
    ]
    return ", ".join(described) or "another session"


@contextmanager
def exclusive_database(dsn: str) -> Iterator[None]:
    """Hold the node lock exclusively (no node serves, none starts) for the body; sync code.

    Raises BackupError naming what holds the database when a node is serving on it."""
    loop = asyncio.new_event_loop()
    try:

        async def take() -> asyncpg.Connection:
            conn = await asyncpg.connect(dsn, server_settings={"application_name": RESTORE_APPLICATION_NAME})
            try:
                taken = await conn.fetchval("SELECT pg_try_advisory_lock($1)", NODE_LOCK_ID)
                others = await _lock_holders(conn) if not taken else None
                if taken:
                    nodes = await conn.fetchval(
                        """SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                           AND pid <> pg_backend_pid() AND application_name LIKE $1""",
                        NODE_APPLICATION_PREFIX + "%",
                    )
                    if nodes:
                        others = await _lock_holders(conn)
            except BaseException:
                await conn.close()
                raise
            if others is not None:
                await conn.close()
                raise BackupError(f"kefu is using this database: {others}; stop every kefu node first, then restore")
            return conn

        try:
            conn = loop.run_until_complete(take())
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise BackupError(f"cannot reach the database: {error}") from error
        try:
            yield
        finally:
            loop.run_until_complete(conn.close())
    finally:
        loop.close()


# -- backup -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Listed:
    account_id: uuid.UUID
    id: uuid.UUID
    size: int
    sha256: bytes

    @property
    def member(self) -> str:
        return f"{ATTACHMENTS}/{self.account_id}/{self.id}"

    def line(self) -> str:
        return f"{self.account_id}\t{self.id}\t{self.size}\t{self.sha256.hex()}\n"


class _HashingReader(io.RawIOBase):
    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size)
        self.digest.update(data)
        return data


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(datetime.now(UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


def backup(dsn: str, data_dir: Path, output: Path) -> Path:
    """Write the database and its attachment files to the archive `output`; returns the file written."""
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    try:
        for attempt in range(1, BACKUP_ATTEMPTS + 1):
            try:
                asyncio.run(_backup_once(dsn, data_dir, partial))
                break
            except _FilesChanged as changed:
                if attempt == BACKUP_ATTEMPTS:
                    raise BackupError(
                        f"attachment files were removed during the backup ({changed}) {attempt} times: try again"
                    ) from None
                log.info("an attachment file went away during the backup: starting over", extra={"file": str(changed)})
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                raise BackupError(f"backup failed: {error}") from error
        with partial.open("rb") as written:
            os.fsync(written.fileno())
        partial.replace(output)
        fsync_dir(output.parent)
    finally:
        partial.unlink(missing_ok=True)
    return output


async def _backup_once(dsn: str, data_dir: Path, partial: Path) -> None:
    conn = await asyncpg.connect(dsn, server_settings={"application_name": "kefu backup"})
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            listed = [
                _Listed(r["account_id"], r["id"], r["size_bytes"], bytes(r["sha256"]))
                for r in await conn.fetch(
                    "SELECT account_id, id, size_bytes, sha256 FROM attachments ORDER BY account_id, id"
                )
            ]
            loop = asyncio.get_running_loop()
            # The snapshot stays valid while this transaction is open: pg_dump sees exactly the rows
            # listed above.
            await loop.run_in_executor(None, _write_archive, dsn, snapshot, data_dir, listed, partial)
    finally:
        await conn.close()


def _write_archive(dsn: str, snapshot: str, data_dir: Path, listed: list[_Listed], partial: Path) -> None:
    dump = partial.with_name(partial.name + ".dump")
    try:
        command = [
            pg_tool("pg_dump"),
            "--format=custom",
            "--no-owner",
            "--no-privileges",
            f"--snapshot={snapshot}",
            f"--file={dump}",
            dsn,
        ]
        result = subprocess.run(command, capture_output=True, env=_tool_env(), check=False)
        if result.returncode != 0:
            raise _failure("pg_dump", result)
        manifest = {
            "format": FORMAT,
            "created_at": datetime.now(UTC).isoformat(),
            "attachments": len(listed),
            "attachment_bytes": sum(item.size for item in listed),
        }
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=1).encode())
            tar.add(dump, arcname=DATABASE_MEMBER, recursive=False)
            _add_bytes(tar, LISTING_MEMBER, "".join(item.line() for item in listed).encode())
            root = data_dir / ATTACHMENTS
            for item in listed:
                path = root / str(item.account_id) / str(item.id)
                try:
                    file = path.open("rb")
                except FileNotFoundError:
                    raise _FilesChanged(path) from None
                with file:
                    if os.fstat(file.fileno()).st_size != item.size:
                        raise BackupError(f"the attachment file {path} is not the size recorded for it")
                    info = tarfile.TarInfo(item.member)
                    info.size = item.size
                    info.mtime = int(os.fstat(file.fileno()).st_mtime)
                    reader = _HashingReader(file)
                    tar.addfile(info, reader)
                    if reader.digest.digest() != item.sha256:
                        raise BackupError(f"the attachment file {path} does not match its recorded SHA-256")
    finally:
        dump.unlink(missing_ok=True)


# -- restore ----------------------------------------------------------------------------------------


def restore(dsn: str, data_dir: Path, archive: Path) -> None:
    """Replace the database's contents and the attachment files with those of `archive`."""
    if not archive.is_file():
        raise BackupError(f"no backup file at {archive}")
    if not tarfile.is_tarfile(archive):
        raise BackupError(f"{archive} is not a kefu backup (an archive written by `kefu backup`)")
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = data_dir / f".restore-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        dump = _extract(archive, staging)
        with exclusive_database(dsn):
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
            # Still holding the database: swap the files in before any node can start.
            current = data_dir / ATTACHMENTS
            replaced = staging / "replaced"
            if current.exists():
                current.replace(replaced)
            (staging / ATTACHMENTS).replace(current)
            fsync_dir(data_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract(archive: Path, staging: Path) -> Path:
    """Extract and check the archive into `staging`; returns the database dump's path."""
    extraction = _Extraction(staging)
    try:
        with tarfile.open(archive, "r:") as tar:
            for info in tar:
                if not info.isfile():
                    raise BackupError(f"the archive holds {info.name!r}, which is not a file")
                source = tar.extractfile(info)
                assert source is not None
                extraction.member(info, source)
    except (tarfile.TarError, ValueError, OSError) as error:
        raise BackupError(f"{archive} is not a whole kefu backup: {error}") from error
    if extraction.manifest is None or extraction.listing is None:
        raise BackupError(f"{archive} is not a kefu backup (its manifest or listing is missing)")
    missing = extraction.listing.keys() - extraction.seen
    if missing:
        raise BackupError(f"the archive does not match its listing: {len(missing)} listed file(s) missing")
    for folder in extraction.files.iterdir():
        fsync_dir(folder)
    return extraction.dump


class _Extraction:
    """The members of an archive, in their order: manifest, database dump, listing, attachments."""

    def __init__(self, staging: Path) -> None:
        self.files = staging / ATTACHMENTS
        self.files.mkdir()
        self.dump = staging / DATABASE_MEMBER
        self.listing: dict[str, tuple[int, bytes]] | None = None
        self.seen: set[str] = set()
        self.manifest: dict[str, Any] | None = None

    def member(self, info: tarfile.TarInfo, source: IO[bytes]) -> None:
        if info.name == MANIFEST and self.manifest is None:
            manifest = json.loads(source.read(1 << 20))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise BackupError("the archive is of an unknown format")
            self.manifest = manifest
        elif info.name == DATABASE_MEMBER and self.manifest is not None and not self.dump.exists():
            with self.dump.open("xb") as target:
                shutil.copyfileobj(source, target, COPY_CHUNK_BYTES)
        elif info.name == LISTING_MEMBER and self.dump.exists() and self.listing is None:
            self.listing = _read_listing(source.read())
        elif (match := _MEMBER.fullmatch(info.name)) and self.listing is not None:
            self._attachment(info, source, self.listing, match[1], match[2])
        else:
            raise BackupError(f"the archive holds {info.name!r} where kefu does not expect it")

    def _attachment(
        self, info: tarfile.TarInfo, source: IO[bytes], listing: dict[str, tuple[int, bytes]], folder: str, name: str
    ) -> None:
        expected = listing.get(info.name)
        if expected is None or info.name in self.seen:
            raise BackupError(f"the archive's file {info.name} does not match its listing")
        (self.files / folder).mkdir(exist_ok=True)
        digest = hashlib.sha256()
        with (self.files / folder / name).open("xb") as target:
            while chunk := source.read(COPY_CHUNK_BYTES):
                digest.update(chunk)
                target.write(chunk)
            target.flush()
            os.fsync(target.fileno())
        if (info.size, digest.digest()) != expected:
            raise BackupError(f"the archive's file {info.name} does not match its listing")
        self.seen.add(info.name)


def _read_listing(data: bytes) -> dict[str, tuple[int, bytes]]:
    listing: dict[str, tuple[int, bytes]] = {}
    for line in data.decode().splitlines():
        account_id, attachment_id, size, sha256 = line.split("\t")
        listing[f"{ATTACHMENTS}/{uuid.UUID(account_id)}/{uuid.UUID(attachment_id)}"] = (
            int(size),
            bytes.fromhex(sha256),
        )
    return listing
