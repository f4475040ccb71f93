"""`kefu backup` and `kefu restore`: one archive holds the database and the attachment files,
a restore replaces both, and neither runs against a database a kefu node is using."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from kefu.server.backup import BackupError, backup, restore
from tests.conftest import _admin_dsn, new_account, new_conversation, open_database
from tests.server.live import PASSWORD, live_center

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8 + uuid.uuid4().bytes
PDF = b"%PDF-1.7\n" + uuid.uuid4().bytes * 100


async def _snapshot(dsn: str) -> dict[str, list[tuple[object, ...]]]:
    async with open_database(dsn) as database:
        return {
            "accounts": [tuple(r) for r in await database.fetch("SELECT id, slug, name FROM accounts ORDER BY id")],
            "conversations": [
                tuple(r) for r in await database.fetch("SELECT id, channel FROM conversations ORDER BY id")
            ],
            "events": [
                (r["conversation_id"], r["seq"], r["kind"], r["body"])
                for r in await database.fetch(
                    "SELECT conversation_id, seq, kind, body FROM conversation_events ORDER BY conversation_id, seq"
                )
            ],
            "audit": [tuple(r) for r in await database.fetch("SELECT id, action FROM audit_log ORDER BY id")],
            "attachments": [tuple(r) for r in await database.fetch("SELECT id, sha256 FROM attachments ORDER BY id")],
            "migrations": [tuple(r) for r in await database.fetch("SELECT version FROM schema_migrations ORDER BY 1")],
        }


def _files(data_dir: Path) -> set[str]:
    root = data_dir / "attachments"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


async def test_a_backup_restores_every_row(database_dsn: str, tmp_path: Path) -> None:
    async with open_database(database_dsn) as database:
        account = await new_account(database)
        for number in range(3):
            conversation = await new_conversation(database, account)
            await database.execute(
                "INSERT INTO conversation_events (account_id, conversation_id, seq, client_id, kind, sender_role,"
                " body, created_at) SELECT $1, $2, s, 'c-' || s, 'message', 'customer',"
                " jsonb_build_object('text', '你好 ' || s || ' of ' || $3::int), now() FROM generate_series(1, 20) s",
                account,
                conversation,
                number,
            )
        # the append-only audit log (a trigger refuses UPDATE and DELETE) comes back too
        await database.execute(
            "INSERT INTO audit_log (account_id, actor_role, action, target_type) VALUES ($1, 'admin', 'x', 'y')",
            account,
        )
    before = await _snapshot(database_dsn)
    assert len(before["events"]) == 60 and len(before["audit"]) == 1

    data_dir = tmp_path / "data"
    written = await _in_thread(backup, database_dsn, data_dir, tmp_path / "backups" / "kefu.tar")
    assert written.is_file() and written.stat().st_size > 0
    assert not list(written.parent.glob("*.partial"))

    async with open_database(database_dsn) as database:  # losing data after the backup
        await database.execute("DELETE FROM accounts WHERE id = $1", account)
    assert (await _snapshot(database_dsn))["events"] == []

    await _in_thread(restore, database_dsn, data_dir, written)
    assert await _snapshot(database_dsn) == before


async def test_restore_refuses_a_missing_or_broken_file_and_changes_nothing(database_dsn: str, tmp_path: Path) -> None:
    before = await _snapshot(database_dsn)
    data_dir = tmp_path / "data"
    (data_dir / "attachments" / "a").mkdir(parents=True)
    (data_dir / "attachments" / "a" / "kept").write_bytes(b"kept")
    with pytest.raises(BackupError, match="no backup file"):
        await _in_thread(restore, database_dsn, data_dir, tmp_path / "nothing.tar")
    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"not a backup")
    with pytest.raises(BackupError, match="not a kefu backup"):
        await _in_thread(restore, database_dsn, data_dir, broken)

    # A whole archive whose database part pg_restore refuses, and one with a file of the wrong bytes.
    good = await _in_thread(backup, database_dsn, data_dir, tmp_path / "good.tar")
    for name, replace in (("database.dump", b"not a dump"), ("attachments.tsv", None)):
        bad = tmp_path / f"bad-{name}.tar"
        _rewrite(good, bad, name, replace)
        with pytest.raises(BackupError, match=r"pg_restore failed|does not match"):
            await _in_thread(restore, database_dsn, data_dir, bad)
    assert await _snapshot(database_dsn) == before
    assert _files(data_dir) == {"a/kept"}
    assert sorted(p.name for p in data_dir.iterdir()) == ["attachments"]  # no staging left behind


def _rewrite(source: Path, target: Path, member: str, replace: bytes | None) -> None:
    """Copy an archive, changing one member (None: a listing that names a file that is not there)."""
    with tarfile.open(source) as old, tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as new:
        for info in old.getmembers():
            data = old.extractfile(info).read()  # type: ignore[union-attr]
            if info.name == member:
                data = (
                    replace
                    if replace is not None
                    else data + f"{uuid.uuid4()}\t{uuid.uuid4()}\t3\t{'0' * 64}\n".encode()
                )
                info.size = len(data)
            new.addfile(info, io.BytesIO(data))


def test_cli_restore_asks_for_yes(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kefu.server.cli", "restore", str(tmp_path / "x.tar"), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "--yes" in result.stderr


async def _upload(center: Any, token: str, content: bytes, content_type: str) -> str:
    response = await center.http.post(
        "/api/v1/attachments",
        params={"filename": "f"},
        content=content,
        headers={**center.auth(token), "Content-Type": content_type},
    )
    assert response.status_code == 201, response.text
    attachment_id: str = response.json()["id"]
    return attachment_id


async def test_restore_refuses_while_a_node_uses_the_database_and_brings_back_the_files(
    database_dsn: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "node"
    archive = tmp_path / "kefu.tar"
    async with live_center(database_dsn, data_dir) as center:
        image = await _upload(center, center.admin_token, PNG, "image/png")
        written = await _in_thread(backup, database_dsn, data_dir, archive)  # a backup of a running node
        with tarfile.open(written) as tar:
            names = tar.getnames()
        assert names[:3] == ["kefu-backup.json", "database.dump", "attachments.tsv"]
        account_id = (await center.fetch("SELECT id FROM accounts WHERE slug = $1", center.slug))[0]["id"]
        assert f"attachments/{account_id}/{image}" in names

        later = await _upload(center, center.admin_token, PDF, "application/pdf")  # after the backup
        with pytest.raises(BackupError, match="kefu node") as refused:
            await _in_thread(restore, database_dsn, data_dir, written)
        assert "stop every kefu node first" in str(refused.value)
        # Refused, nothing changed: the node still serves both files.
        for attachment, content in ((image, PNG), (later, PDF)):
            response = await center.http.get(
                f"/api/v1/attachments/{attachment}", headers=center.auth(center.admin_token)
            )
            assert response.status_code == 200 and response.content == content
        slug, token = center.slug, center.admin_token
    before = await _snapshot(database_dsn)

    # A restore holds the lock: a node that starts meanwhile refuses to, naming the restore.
    await _in_thread(restore, database_dsn, data_dir, written)
    after = await _snapshot(database_dsn)
    assert uuid.UUID(later) not in {row[0] for row in after["attachments"]}
    assert len(after["attachments"]) == len(before["attachments"]) - 1
    # Files and rows agree: every row has its file, no file is left without a row.
    assert _files(data_dir) == {f"{account_id}/{row[0]}" for row in after["attachments"]}
    assert hashlib.sha256((data_dir / "attachments" / str(account_id) / image).read_bytes()).digest() == next(
        row[1] for row in after["attachments"] if str(row[0]) == image
    )

    async with live_center(database_dsn, data_dir) as center:
        response = await center.http.get(f"/api/v1/attachments/{image}", headers=center.auth(token))
        assert response.status_code == 200 and response.content == PNG
        response = await center.http.get(f"/api/v1/attachments/{later}", headers=center.auth(token))
        assert response.status_code == 404
        response = await center.http.post(
            "/api/v1/auth/sign-in", json={"account": slug, "email": f"admin@{slug}.example", "password": PASSWORD}
        )
        assert response.status_code == 200


async def test_a_node_does_not_start_while_a_restore_holds_the_database(database_dsn: str, tmp_path: Path) -> None:
    from kefu.server.backup import exclusive_database

    async with live_center(database_dsn, tmp_path / "a"):
        pass
    entered, leave = trio.Event(), trio.Event()
    token = trio.lowlevel.current_trio_token()

    def hold() -> None:
        with exclusive_database(database_dsn):
            trio.from_thread.run_sync(entered.set, trio_token=token)
            trio.from_thread.run(leave.wait, trio_token=token)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, hold)
        await entered.wait()
        with pytest.raises(BaseException) as refused:
            async with live_center(database_dsn, tmp_path / "b"):
                pass
        assert "BackupError('a restore is replacing this database (kefu restore" in repr(refused.value)
        leave.set()
    async with live_center(database_dsn, tmp_path / "c"):
        pass


async def _in_thread(function, *args):  # type: ignore[no-untyped-def]
    return await trio.to_thread.run_sync(function, *args)


@pytest.fixture
def own_database(postgres_dsn: str, template_database: str) -> Iterator[str]:
    """A database of this test alone: the module's holds other tests' attachments without files here."""
    import asyncio

    import asyncpg

    name = f"kefu_backup_{uuid.uuid4().hex[:12]}"

    async def run(statement: str) -> None:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run(f"CREATE DATABASE {name} TEMPLATE {template_database}"))
    yield _admin_dsn(postgres_dsn, name)
    asyncio.run(run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


async def test_a_backup_never_holds_a_row_without_its_file(own_database: str, tmp_path: Path) -> None:
    """A file gone between the snapshot and the copy (an erasure) makes the backup take a new
    snapshot; a row whose file stays missing is refused, so no archive points at a missing file."""
    database_dsn = own_database
    data_dir = tmp_path / "data"
    async with open_database(database_dsn) as database:
        account = await new_account(database)
        attachment = uuid.uuid4()
        await database.execute(
            "INSERT INTO attachments (account_id, id, uploader_role, uploader_id, kind, content_type, filename,"
            " size_bytes, sha256) VALUES ($1, $2, 'agent', $3, 'file', 'application/pdf', 'a.pdf', $4, $5)",
            account,
            attachment,
            uuid.uuid4(),
            len(PDF),
            hashlib.sha256(PDF).digest(),
        )
    with pytest.raises(BackupError, match="removed during the backup"):
        await _in_thread(backup, database_dsn, data_dir, tmp_path / "no.tar")
    assert not list(tmp_path.glob("no.tar*"))
    # The same bytes under the wrong size or digest are refused too; the right ones are kept.
    folder = data_dir / "attachments" / str(account)
    folder.mkdir(parents=True)
    (folder / str(attachment)).write_bytes(PDF[:-1] + b"!")
    with pytest.raises(BackupError, match="does not match its recorded SHA-256"):
        await _in_thread(backup, database_dsn, data_dir, tmp_path / "no.tar")
    (folder / str(attachment)).write_bytes(PDF)
    written = await _in_thread(backup, database_dsn, data_dir, tmp_path / "yes.tar")
    with tarfile.open(written) as tar:
        stored = tar.extractfile(f"attachments/{account}/{attachment}")
        assert stored is not None and stored.read() == PDF
