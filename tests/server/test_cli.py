"""The `kefu` command, run as a user runs it: a subprocess against a real database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from kefu.server.accounts import verify_password
from tests.conftest import open_database

KEFU = Path(sys.executable).with_name("kefu")
PASSWORD = "a long enough password"


def kefu(
    *args: str, dsn: str, tmp_path: Path, stdin: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
    env |= {"KEFU_DATABASE_URL": dsn, "KEFU_DATA_DIR": str(tmp_path / "data")}
    command = [str(KEFU)] if KEFU.exists() else [sys.executable, "-m", "kefu.server.cli"]
    return subprocess.run(
        [*command, *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def test_console_script_is_installed() -> None:
    assert KEFU.exists(), f"no kefu script next to {sys.executable}"


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = kefu("--help", dsn="", tmp_path=tmp_path)
    assert result.returncode == 0
    for command in ("serve", "migrate", "account"):
        assert command in result.stdout


def test_migrate_on_a_migrated_database_says_up_to_date(database_dsn: str, tmp_path: Path) -> None:
    result = kefu("migrate", dsn=database_dsn, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "schema is up to date"
    assert "Traceback" not in result.stderr


async def stored_admin(dsn: str, slug: str) -> tuple[str, str, str, str]:
    async with open_database(dsn) as database:
        row = await database.fetchrow(
            """SELECT a.name, u.email, u.role, u.password_hash
               FROM accounts a JOIN users u ON u.account_id = a.id WHERE a.slug = $1""",
            slug,
        )
    assert row is not None, f"no account {slug!r} with an admin"
    return row["name"], row["email"], row["role"], row["password_hash"]


async def test_account_create_with_password_on_stdin(database_dsn: str, tmp_path: Path) -> None:
    slug = f"acme-{uuid.uuid4().hex[:8]}"
    result = kefu(
        "account", "create", "--name", "Acme Support", "--slug", slug,
        "--admin-email", "admin@acme.test", "--password-stdin",
        dsn=database_dsn, tmp_path=tmp_path, stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Sign in at http://localhost:8080/admin as admin@acme.test" in result.stdout
    assert f"account: {slug}" in result.stdout
    assert PASSWORD not in result.stdout
    assert "password:" not in result.stdout
    name, email, role, password_hash = await stored_admin(database_dsn, slug)
    assert (name, email, role) == ("Acme Support", "admin@acme.test", "admin")
    assert verify_password(password_hash, PASSWORD)
    assert PASSWORD not in password_hash


async def test_account_create_slug_from_name(database_dsn: str, tmp_path: Path) -> None:
    name = f"Acme Support {uuid.uuid4().hex[:6]}"
    result = kefu(
        "account", "create", "--name", name, "--admin-email", "admin@acme.test", "--password-stdin",
        dsn=database_dsn, tmp_path=tmp_path, stdin=PASSWORD + "\r\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    match = re.search(r"Created account '([a-z0-9-]+)'", result.stdout)
    assert match, result.stdout
    assert match[1] == name.lower().replace(" ", "-")
    assert "Sign in at http://localhost:8080/admin as admin@acme.test" in result.stdout
    *_, password_hash = await stored_admin(database_dsn, match[1])
    assert verify_password(password_hash, PASSWORD)


async def test_account_create_without_tty_generates_a_password(database_dsn: str, tmp_path: Path) -> None:
    slug = f"gen-{uuid.uuid4().hex[:8]}"
    result = kefu(
        "account", "create", "--name", "Generated", "--slug", slug, "--admin-email", "boss@gen.test",
        dsn=database_dsn, tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Sign in at http://localhost:8080/admin as boss@gen.test" in result.stdout
    match = re.search(r"password: (\S+)", result.stdout)
    assert match, result.stdout
    password = match[1]
    assert len(password) >= 10
    *_, password_hash = await stored_admin(database_dsn, slug)
    assert verify_password(password_hash, password)
    assert not verify_password(password_hash, password + "x")


@pytest.mark.parametrize(
    ("extra", "stdin", "message"),
    [
        (["--admin-email", "admin@acme.test"], "short\n", "at least 10 characters"),
        (["--admin-email", "nobody"], PASSWORD + "\n", "not an e-mail address"),
    ],
)
async def test_account_create_refusals_are_one_line(
    database_dsn: str, tmp_path: Path, extra: list[str], stdin: str, message: str
) -> None:
    slug = f"bad-{uuid.uuid4().hex[:8]}"
    result = kefu(
        "account", "create", "--name", "Bad", "--slug", slug, *extra, "--password-stdin",
        dsn=database_dsn, tmp_path=tmp_path, stdin=stdin,
    )  # fmt: skip
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "Sign in" not in result.stdout
    async with open_database(database_dsn) as database:
        assert await database.fetchval("SELECT count(*) FROM accounts WHERE slug = $1", slug) == 0


async def test_account_create_duplicate_slug(database_dsn: str, tmp_path: Path) -> None:
    slug = f"dup-{uuid.uuid4().hex[:8]}"
    args = ("account", "create", "--name", "Dup", "--slug", slug, "--admin-email", "a@dup.test", "--password-stdin")
    first = kefu(*args, dsn=database_dsn, tmp_path=tmp_path, stdin=PASSWORD + "\n")
    assert first.returncode == 0, first.stderr
    second = kefu(*args, dsn=database_dsn, tmp_path=tmp_path, stdin=PASSWORD + "\n")
    assert second.returncode == 1
    assert f"'{slug}' already exists" in second.stderr
    assert "Traceback" not in second.stderr


async def test_account_create_links_the_port_and_scheme_kefu_serves_on(database_dsn: str, tmp_path: Path) -> None:
    slug = f"port-{uuid.uuid4().hex[:8]}"
    result = kefu(
        "account", "create", "--name", "Port", "--slug", slug, "--admin-email", "admin@port.test",
        "--password-stdin", "--port", "9137",
        dsn=database_dsn, tmp_path=tmp_path, stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Sign in at http://localhost:9137/admin as admin@port.test" in result.stdout
    assert "http://localhost:9137/agent" in result.stdout
    assert "8080" not in result.stdout


def test_psql_reaches_the_database_kefu_uses(database_dsn: str, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    result = kefu("psql", "-tAc", f"SELECT '{marker}' || (6 * 7)", dsn=database_dsn, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{marker}42"
