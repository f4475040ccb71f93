"""The `kefu` command: serve, migrate, account create, customer erase, backup, restore, psql, chat."""

from __future__ import annotations

import argparse
import errno
import getpass
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import asyncpg
import trio
import trio_asyncio

from kefu.actors.supervisor import ChildStartError
from kefu.server import backup, console, privacy
from kefu.server.accounts import AccountError, create_account, generate_password
from kefu.server.config import Config, ConfigError, load_config
from kefu.server.database import Database, DatabaseUnavailable, DurabilityOff, MigrationError, resolve_dsn
from kefu.server.directory import DirectoryError
from kefu.server.logs import configure_logging
from kefu.server.privacy import DataKeyError

log = logging.getLogger("kefu.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kefu", description="kefu contact-center messaging server")
    parser.add_argument("--config", type=Path, help="TOML configuration file (default: $KEFU_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="start everything (embedded PostgreSQL unless a database URL is set)")
    serve.add_argument("--host", help="listen address (KEFU_HOST)")
    serve.add_argument("--port", type=int, help="listen port (KEFU_PORT)")
    serve.add_argument("--data-dir", type=Path, help="data folder (KEFU_DATA_DIR)")

    migrate = commands.add_parser("migrate", help="apply schema migrations and exit")
    migrate.add_argument("--data-dir", type=Path, help="data folder (KEFU_DATA_DIR)")

    account = commands.add_parser("account", help="manage accounts (tenants)")
    account_commands = account.add_subparsers(dest="account_command", required=True)
    create = account_commands.add_parser("create", help="create an account with its first admin user")
    create.add_argument("--name", required=True, help="the account's display name, e.g. 'Acme Support'")
    create.add_argument("--slug", help="short unique id used at sign-in (default: from the name)")
    create.add_argument("--admin-email", required=True, help="e-mail of the first admin (their sign-in name)")
    create.add_argument("--admin-name", help="display name of the first admin")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the admin password from standard input (otherwise asked, or generated when there is no terminal)",
    )
    create.add_argument("--data-dir", type=Path, help="data folder (KEFU_DATA_DIR)")
    create.add_argument("--host", help="the address `kefu serve` listens on, for the sign-in link (KEFU_HOST)")
    create.add_argument("--port", type=int, help="the port `kefu serve` listens on, for the sign-in link (KEFU_PORT)")
    unlock = account_commands.add_parser(
        "unlock", help="lift a user's sign-in lockout (after too many wrong passwords) and reset its failure count"
    )
    unlock.add_argument("--account", required=True, help="the account's slug")
    unlock.add_argument("--email", required=True, help="the user's e-mail")
    unlock.add_argument("--data-dir", type=Path, help="data folder (KEFU_DATA_DIR)")

    commands.add_parser(
        "psql",
        help="open psql on kefu's database (the embedded one in KEFU_DATA_DIR, started or joined, or database_url);"
        " what follows goes to psql",
        add_help=False,
    )
    dump = commands.add_parser("backup", help="write a backup of the database and the attachment files (one archive)")
    dump.add_argument("--output", type=Path, help="the file to write (default: <data_dir>/backups/kefu-<time>.tar)")
    dump.add_argument("--data-dir", type=Path, help="data folder (KEFU_DATA_DIR)")

    load = commands.add_parser(
        "restore", help="replace the database and the attachment files with a backup (refused while kefu runs)"
    )
    load.add_argument("file", type=Path, help="a file written by `kefu backup`")
    load.add_argument("--yes", action="store_true", help="really replace everything in the database")
    load.add_argument("--data-dir", type=Path, help="data folder (KEFU_DATA_DIR)")

    customer = commands.add_parser("customer", help="customers' personal data")
    customer_commands = customer.add_subparsers(dest="customer_command", required=True)
    erase = customer_commands.add_parser(
        "erase",
        help="erase one customer's personal data, message texts and attachments (an audit entry remains)",
    )
    erase.add_argument("customer_id", help="the customer's id")
    erase.add_argument("--account", required=True, help="the account's slug")
    erase.add_argument("--data-dir", type=Path, help="data folder (KEFU_DATA_DIR), where the attachments are")

    console.add_arguments(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command_at = _command_position(words)
    psql_args: list[str] = []
    if command_at < len(words) and words[command_at] == "psql":
        words, psql_args = words[: command_at + 1], words[command_at + 1 :]
    args = _parser().parse_args(words)
    if args.command == "chat":
        return console.main(args)
    try:
        config = load_config(
            args.config,
            host=getattr(args, "host", None),
            port=getattr(args, "port", None),
            data_dir=getattr(args, "data_dir", None),
        )
    except ConfigError as error:
        print(f"kefu: {error}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.log_format)
    try:
        return _run(args, config, psql_args)
    except BaseException as error:
        code = _failure_code(error, config)
        if code is None:
            raise
        return code


def _run(args: argparse.Namespace, config: Config, psql_args: list[str]) -> int:
    if args.command == "serve":
        return _serve(config)
    if args.command == "migrate":
        return trio.run(_migrate, config)
    if args.command == "account" and args.account_command == "create":
        return _account_create(config, args)
    if args.command == "account" and args.account_command == "unlock":
        return trio.run(_account_unlock, config, args)
    if args.command == "customer" and args.customer_command == "erase":
        return trio.run(_customer_erase, config, args)
    if args.command == "psql":
        return _psql(config, psql_args)
    if args.command == "backup":
        written = backup.backup(
            resolve_dsn(config), config.data_dir, args.output or backup.default_backup_path(config.data_dir)
        )
        print(f"kefu: backup written to {written}")
        return 0
    if args.command == "restore":
        return _restore(config, args)
    return 2


def _restore(config: Config, args: argparse.Namespace) -> int:
    if not args.yes:
        print(
            f"kefu: this replaces everything in the database and the attachment files with {args.file};"
            " stop kefu, then run again with --yes",
            file=sys.stderr,
        )
        return 2
    backup.restore(resolve_dsn(config), config.data_dir, args.file)
    print(f"kefu: restored {args.file}; start kefu again")
    return 0


def _failure_code(error: BaseException, config: Config) -> int | None:
    """Print what went wrong in one line per cause and return the exit code; None for a bug.

    Errors raised inside trio nurseries (trio-asyncio's loop among them) arrive wrapped in
    exception groups; a user should see one line saying what is wrong, not a traceback.
    """
    leaves = list(_leaves(error))
    if leaves and all(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
        return 130
    messages = [_explain(leaf, config) for leaf in leaves]
    if not messages or None in messages:
        return None
    for message in dict.fromkeys(messages):
        print(f"kefu: {message}", file=sys.stderr)
    return 1


def _command_position(words: list[str]) -> int:
    """Where the command is among the words: after the global `--config FILE`, if given."""
    at = 0
    while at < len(words) and words[at].startswith("-"):
        at += 2 if words[at] == "--config" else 1
    return at


_LISTEN_ERRNOS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}


def _leaves(error: BaseException) -> Iterator[BaseException]:
    """The exceptions inside groups, and the causes of children that failed to start."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    elif isinstance(error, ChildStartError) and error.__cause__ is not None:
        yield from _leaves(error.__cause__)
    else:
        yield error


def _explain(error: BaseException, config: Config) -> str | None:
    """A one-line explanation of an expected failure, or None for a bug (shown with its traceback)."""
    if isinstance(error, DurabilityOff | MigrationError | backup.BackupError | DataKeyError):
        return str(error)
    if isinstance(error, OSError) and error.errno in _LISTEN_ERRNOS:
        return f"cannot listen on {config.host}:{config.port}: {error.strerror or error}"
    if isinstance(error, DatabaseUnavailable | OSError | asyncpg.InterfaceError):
        return f"cannot reach the database: {str(error) or type(error).__name__}"
    if isinstance(error, asyncpg.PostgresError):
        return f"the database refused: {error}"
    return None


def _serve(config: Config) -> int:
    from kefu.server.node import serve

    trio.run(partial(serve, config, freeze_startup=True))
    return 0


async def _with_database(config: Config) -> Database:
    dsn = await trio.to_thread.run_sync(resolve_dsn, config)
    return await Database.open(dsn, pool_size=2)


async def _migrate(config: Config) -> int:
    async with trio_asyncio.open_loop():
        database = await _with_database(config)
        try:
            await database.check_durability()
            applied = await database.migrate()
        finally:
            await database.close()
    if applied:
        print("applied: " + ", ".join(f"{m.version:04d}_{m.name}" for m in applied))
    else:
        print("schema is up to date")
    return 0


def _account_create(config: Config, args: argparse.Namespace) -> int:
    generated = False
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password for the admin: ")
    else:
        password, generated = generate_password(), True

    async def run() -> int:
        async with trio_asyncio.open_loop():
            database = await _with_database(config)
            try:
                await database.migrate()
                created = await create_account(
                    database,
                    name=args.name,
                    slug=args.slug,
                    admin_email=args.admin_email,
                    admin_password=password,
                    admin_name=args.admin_name,
                )
            except AccountError as error:
                print(f"kefu: {error}", file=sys.stderr)
                return 1
            finally:
                await database.close()
        base = serving_address(config)
        print(f"Created account {created.slug!r} ({created.account_id}).")
        print(f"Sign in at {base}/admin as {created.admin_email}")
        print(f"  agents' workbench: {base}/agent, supervisors' dashboard: {base}/supervisor")
        print(f"  account: {created.slug}")
        if generated:
            print(f"  password: {password}   (generated; shown only now)")
        return 0

    return trio.run(run)


def serving_address(config: Config) -> str:
    """Where `kefu serve` with these settings is reached from this machine, for printed links."""
    host = "localhost" if config.host in ("127.0.0.1", "::1", "0.0.0.0", "::") else config.host
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if config.tls_certfile else "http"
    return f"{scheme}://{host}:{config.port}"


def _psql(config: Config, psql_args: list[str]) -> int:
    """Run psql against kefu's database: the one `database_url` names, else the embedded server
    in `data_dir` (joined when `kefu serve` runs, started and stopped again otherwise)."""
    dsn = resolve_dsn(config)
    return subprocess.run([backup.pg_tool("psql"), f"--dbname={dsn}", *psql_args], check=False).returncode


async def _account_unlock(config: Config, args: argparse.Namespace) -> int:
    from kefu.server.auth import unlock

    async with trio_asyncio.open_loop():
        database = await _with_database(config)
        try:
            await database.migrate()
            was_locked = await unlock(database, args.account, args.email, actor_role="cli", actor_id=getpass.getuser())
        finally:
            await database.close()
    if was_locked is None:
        print(f"kefu: no user {args.email!r} in account {args.account!r}", file=sys.stderr)
        return 1
    state = "was locked out; unlocked" if was_locked else "was not locked out; failure count reset"
    print(f"{args.email} in {args.account}: {state}.")
    return 0


async def _customer_erase(config: Config, args: argparse.Namespace) -> int:
    try:
        customer_id = uuid.UUID(args.customer_id)
    except ValueError:
        print(f"kefu: {args.customer_id!r} is not a customer id", file=sys.stderr)
        return 2
    async with trio_asyncio.open_loop():
        database = await _with_database(config)
        try:
            await database.migrate()
            slug = args.account.strip().lower()
            account_id = await database.fetchval("SELECT id FROM accounts WHERE slug = $1", slug)
            if account_id is None:
                print(f"kefu: no account {args.account!r}", file=sys.stderr)
                return 1
            erased = await privacy.erase_customer(
                database, config.data_dir, account_id, customer_id, actor_role="cli", actor_id=getpass.getuser()
            )
        except DirectoryError as error:
            print(f"kefu: {error}", file=sys.stderr)
            return 1
        finally:
            await database.close()
    print(
        f"Erased customer {customer_id}: {erased.messages} message(s) in {erased.conversations} conversation(s)"
        f" redacted, {erased.attachments} attachment(s) deleted ({erased.files_removed} file(s) removed)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
