"""Privacy: customers' contact details masked, encrypted at rest, found by a blind index, erased.

Every test runs against a real server and a real PostgreSQL: what is asserted is what a user of
the REST API or the websockets sees, and what an attacker with a copy of the database reads.
"""

from __future__ import annotations

import base64
import logging
import os
import random
import stat
import string
import sys
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import phonenumbers
import pytest
import trio

from kefu.protocol.agent import AcceptOffer, SetStatus
from kefu.protocol.common import SendMessage
from kefu.protocol.customer import CloseConversation, StartConversation
from kefu.protocol.masking import mask_email, mask_text
from kefu.server.config import ConfigError, load_config
from kefu.server.node import serve
from kefu.server.privacy import DataKeyError, DataKeys, load_data_keys
from tests.server.live import Center, Client, connect, live_center, poll

DATA_KEY = base64.b64encode(b"k" * 32).decode()
OTHER_KEY = base64.b64encode(b"x" * 32).decode()
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 4

# Personal data made anew each run, so that no stored byte can hold it by chance: the checks that
# it is NOT stored look for all of it (eleven digits, a dozen letters). Letters are drawn from g-z,
# which hexadecimal (ciphertext as PostgreSQL prints it, UUIDs) never contains.
_RANDOM = random.SystemRandom()


def _letters(count: int) -> str:
    return "".join(_RANDOM.choice("ghijklmnopqrstuvwxyz") for _ in range(count))


PHONE_DIGITS = "138" + "".join(_RANDOM.choice(string.digits) for _ in range(8))
assert phonenumbers.is_valid_number(phonenumbers.parse(PHONE_DIGITS, "CN"))
PHONE = f"+86 {PHONE_DIGITS[:3]} {PHONE_DIGITS[3:7]} {PHONE_DIGITS[7:]}"
"""How kefu shows the number in full."""
PHONE_MASKED = f"{PHONE_DIGITS[:3]}****{PHONE_DIGITS[-4:]}"
PHONE_WRITINGS = (
    PHONE_DIGITS,
    f"{PHONE_DIGITS[:3]}-{PHONE_DIGITS[3:7]}-{PHONE_DIGITS[7:]}",
    PHONE,
    f"+86{PHONE_DIGITS}",
    f"(+86) {PHONE_DIGITS[:3]} {PHONE_DIGITS[3:7]} {PHONE_DIGITS[7:]}",
)
EMAIL_DOMAIN = f"{_letters(12).title()}.example"
EMAIL = f"Alice.{_letters(12).title()}@{EMAIL_DOMAIN}"
NAME = f"Alice {_letters(12).title()}"


def _writings(secret: str) -> set[str]:
    """Every way `secret` could show in stored data printed as text: as it is, as the hex of its
    UTF-8 bytes (PostgreSQL's bytea), and as their base64 or base64url at each of the three
    alignments it can have inside a longer value (only the characters that depend on it alone)."""
    raw = secret.encode()
    forms = {secret, raw.hex()}
    for shift in range(3):
        start, end = -(-shift * 8 // 6), (shift + len(raw)) * 8 // 6
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            forms.add(encode(bytes(shift) + raw).decode()[start:end])
    return forms


def assert_not_stored(stored: str | bytes | None, *secrets: str) -> None:
    """None of `secrets` is in `stored` (a row as text, a bytea value, a log) in any writing, in
    any letter case. Each secret must be long and random enough that chance cannot put it there."""
    text = (stored.decode("latin-1") if isinstance(stored, bytes) else stored or "").lower()
    for secret in secrets:
        assert len(secret) >= 11, f"{secret!r} is too short to rule out a match by chance"
        for form in _writings(secret):
            assert form.lower() not in text, f"{secret!r} is stored (written {form!r})"


def test_the_check_for_stored_secrets_finds_each_writing() -> None:
    for secret in (PHONE_DIGITS, EMAIL, NAME):
        raw = secret.encode()
        for stored in (
            f"x {secret.upper()} y",
            f"\\x00{raw.hex()}ff",
            base64.b64encode(raw).decode(),
            base64.b64encode(b"a" + raw + b"bc").decode(),
            base64.urlsafe_b64encode(b"ab" + raw).decode(),
            b"\x00" + raw + b"\xff",
        ):
            with pytest.raises(AssertionError, match="is stored"):
                assert_not_stored(stored, secret)
    with pytest.raises(AssertionError, match="too short"):
        assert_not_stored("", "1234")


def _center(database_dsn: str, tmp_path: Path, **settings: object):  # type: ignore[no-untyped-def]
    return live_center(database_dsn, tmp_path, data_key=DATA_KEY, **settings)


async def _customer_with_contact(center: Center, phone: str = PHONE, email: str = EMAIL) -> str:
    visitor = await center.add_visitor(NAME)
    response = await center.http.patch(
        f"/api/v1/customers/{visitor.customer_id}",
        json={"phone": phone, "email": email},
        headers=center.auth(center.admin_token),
    )
    assert response.status_code == 200, response.text
    return visitor.customer_id


# -- masking and the permission --------------------------------------------------------------------


def test_masks_keep_only_the_ends() -> None:
    assert mask_email("alice@example.com") == "a***@example.com"
    assert mask_text("call 138 1234 5678 or mail bob@shop.example") == "call 138****5678 or mail b***@shop.example"
    # identifiers and times in log lines are not numbers to mask
    line = "conversation 550e8400-e29b-41d4-a716-446655440000 at 2026-11-24T08:59:29.123Z took 0.123456789"
    assert mask_text(line) == line


async def test_agents_see_contact_details_masked_unless_allowed(database_dsn: str, tmp_path: Path) -> None:
    async with _center(database_dsn, tmp_path) as center:
        customer_id = await _customer_with_contact(center)
        anna = await center.add_agent("Anna")
        boss = await center.add_agent("Boss", role="supervisor")

        response = await center.http.get(f"/api/v1/customers/{customer_id}", headers=center.auth(anna.token))
        assert response.status_code == 200
        seen = response.json()
        assert (seen["phone"], seen["email"], seen["contact_details_masked"]) == (
            PHONE_MASKED,
            f"a***@{EMAIL_DOMAIN.lower()}",
            True,
        )
        found = await center.http.get(
            "/api/v1/customers", params={"phone": PHONE_DIGITS}, headers=center.auth(anna.token)
        )
        assert [c["phone"] for c in found.json()["customers"]] == [PHONE_MASKED]
        assert_not_stored(found.text, *PHONE_WRITINGS, EMAIL)

        for token in (boss.token, center.admin_token):
            full = (await center.http.get(f"/api/v1/customers/{customer_id}", headers=center.auth(token))).json()
            assert (full["phone"], full["email"], full["contact_details_masked"]) == (PHONE, EMAIL.lower(), False)

        # An admin grants the permission (the admin page's checkbox sends this).
        response = await center.http.patch(
            f"/api/v1/agents/{anna.id}",
            json={"may_view_contact_details": True},
            headers=center.auth(center.admin_token),
        )
        assert response.status_code == 200 and response.json()["may_view_contact_details"] is True
        seen = (await center.http.get(f"/api/v1/customers/{customer_id}", headers=center.auth(anna.token))).json()
        assert seen["phone"] == PHONE and seen["contact_details_masked"] is False

        response = await center.http.patch(
            f"/api/v1/agents/{anna.id}",
            json={"may_view_contact_details": "yes"},
            headers=center.auth(center.admin_token),
        )
        assert response.status_code == 400 and "may_view_contact_details" in response.text


async def test_offers_mask_numbers_and_addresses_the_customer_typed(database_dsn: str, tmp_path: Path) -> None:
    async with _center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        visitor = await center.add_visitor(NAME)
        customer = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}")
        )
        await customer.send(StartConversation(customer.client_id(), topic=f"refund for {PHONE_DIGITS}"))
        (ack,) = await customer.wait_for("ack")
        conversation = ack.conversation_id
        text = f"my number is {PHONE_WRITINGS[1]}, mail {EMAIL}"
        await customer.send(SendMessage(customer.client_id(), conversation, "text", text))
        await customer.wait_for("ack", count=2)
        # After a restart the waiting conversation is offered with its first message as preview.
        await center.restart()
        anna = await center.add_agent("Anna")
        agent = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={anna.token}"))
        await agent.wait_for("welcome")
        await agent.send(SetStatus("online"))
        (offer,) = await agent.wait_for("offer", conversation_id=conversation, timeout=20)
        assert offer.customer.preview == f"my number is {PHONE_MASKED}, mail A***@{EMAIL_DOMAIN}"
        assert offer.customer.topic == f"refund for {PHONE_MASKED}"


# -- encryption at rest and the blind index --------------------------------------------------------


async def test_contact_details_are_encrypted_at_rest_and_found_in_any_writing(
    database_dsn: str, tmp_path: Path
) -> None:
    async with _center(database_dsn, tmp_path) as center:
        customer_id = await _customer_with_contact(center, phone=PHONE.removeprefix("+86 "))
        (row,) = await center.fetch("SELECT c::text AS raw, c.* FROM customers c WHERE id = $1", uuid.UUID(customer_id))
        # in no writing, and neither the address nor its parts
        secrets = (*PHONE_WRITINGS, EMAIL, *EMAIL.split("@"), NAME)
        assert_not_stored(row["raw"], *secrets)
        for column in ("phone_enc", "email_enc", "display_name_enc"):
            assert_not_stored(row[column], *secrets)
        assert len(row["phone_index"]) == len(row["email_index"]) == 32

        admin = center.auth(center.admin_token)
        for writing in PHONE_WRITINGS:
            response = await center.http.get("/api/v1/customers", params={"phone": writing}, headers=admin)
            assert response.status_code == 200, response.text
            assert [c["id"] for c in response.json()["customers"]] == [customer_id], writing
        response = await center.http.get("/api/v1/customers", params={"email": f" {EMAIL.swapcase()}"}, headers=admin)
        assert [c["id"] for c in response.json()["customers"]] == [customer_id]
        response = await center.http.get("/api/v1/customers", params={"phone": "139 0000 0000"}, headers=admin)
        assert response.json() == {"customers": []}

        # bad input: a clear error, nothing changed
        for params in ({"phone": "12"}, {}, {"phone": PHONE_DIGITS, "email": EMAIL}):
            response = await center.http.get("/api/v1/customers", params=params, headers=admin)
            assert response.status_code == 400, params
            assert response.json()["error"]["code"] == "invalid_request", params
            if len(params) != 1:
                assert response.json()["error"]["message"] == "give exactly one of ?phone= and ?email=", params
        response = await center.http.patch(
            f"/api/v1/customers/{customer_id}", json={"phone": "not a number"}, headers=admin
        )
        assert response.status_code == 400 and "phone" in response.json()["error"]["message"]
        shown = (await center.http.get(f"/api/v1/customers/{customer_id}", headers=admin)).json()
        assert shown["phone"] == PHONE

        # The audit log of the change names the fields, never the values.
        entries = await center.fetch("SELECT detail::text AS detail FROM audit_log WHERE action = 'customer.update'")
        assert entries
        for entry in entries:
            assert_not_stored(entry["detail"], *secrets)

        # A visitor may leave its own contact details; they are sealed the same way.
        response = await center.http.post(
            "/api/v1/webchat/visitors",
            json={"account": center.slug, "phone": "+1 650 253 0000", "email": "v@x.example"},
        )
        assert response.status_code == 201, response.text
        found = await center.http.get("/api/v1/customers", params={"phone": "+16502530000"}, headers=admin)
        assert [c["phone"] for c in found.json()["customers"]] == ["+1 650-253-0000"]


async def test_a_wrong_data_key_fails_clearly(database_dsn: str, tmp_path: Path) -> None:
    async with _center(database_dsn, tmp_path) as center:
        await _customer_with_contact(center)
        config = center.node.config
    wrong = load_config(environ={}, port=0, database_url=database_dsn, data_dir=tmp_path, data_key=OTHER_KEY)
    with pytest.raises(BaseException) as raised:  # a group around it, unwrapped below
        with trio.fail_after(20):
            await serve(wrong)
    leaf = raised.value
    while isinstance(leaf, BaseExceptionGroup):
        (leaf,) = leaf.exceptions
    assert isinstance(leaf, DataKeyError)
    assert "setting 'data_key' is not the key it was encrypted with" in str(leaf)
    assert OTHER_KEY not in str(leaf) and config.data_key not in str(leaf)

    # `kefu serve` says so in one line and exits 1.
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
    env |= {"KEFU_DATABASE_URL": database_dsn, "KEFU_DATA_DIR": str(tmp_path), "KEFU_PORT": "0"}
    env["KEFU_DATA_KEY"] = OTHER_KEY
    with trio.fail_after(60):
        done = await trio.run_process(
            [str(Path(sys.executable).with_name("kefu")), "serve"],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert "kefu: cannot decrypt customer" in stderr and "is not the key it was encrypted with" in stderr
    assert "Traceback" not in stderr and OTHER_KEY not in stderr

    # A value that does not decrypt while serving (written under another key) is a clear 500.
    async with _center(database_dsn, tmp_path) as center:
        customer_id = await _customer_with_contact(center)
        (row,) = await center.fetch("SELECT account_id FROM customers WHERE id = $1", uuid.UUID(customer_id))
        foreign = DataKeys.from_key(b"x" * 32).encrypt(row["account_id"], uuid.UUID(customer_id), "phone", "+1")
        await center.fetch("UPDATE customers SET phone_enc = $2 WHERE id = $1", uuid.UUID(customer_id), foreign)
        response = await center.http.get(f"/api/v1/customers/{customer_id}", headers=center.auth(center.admin_token))
        assert response.status_code == 500 and response.json()["error"]["code"] == "data_key_mismatch"
        # (the module's next nodes check their key against stored values: leave none under another key)
        await center.fetch(
            "UPDATE customers SET phone_enc = NULL, phone_index = NULL WHERE id = $1", uuid.UUID(customer_id)
        )

    keys, other = DataKeys.from_key(b"k" * 32), DataKeys.from_key(b"x" * 32)
    account, customer = uuid.uuid4(), uuid.uuid4()
    sealed = keys.encrypt(account, customer, "phone", "+8613812345678")
    assert keys.decrypt(account, customer, "phone", sealed) == "+8613812345678"
    with pytest.raises(DataKeyError, match="not the key it was encrypted with"):
        other.decrypt(account, customer, "phone", sealed)
    with pytest.raises(DataKeyError):  # bound to its row: copied into another customer, it does not decrypt
        keys.decrypt(account, uuid.uuid4(), "phone", sealed)


def test_a_key_is_generated_once_into_the_data_directory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="kefu.privacy"):
        first = load_data_keys("", tmp_path)
    key_file = tmp_path / "data.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert str(key_file) in str([r.__dict__ for r in caplog.records])
    assert key_file.read_text().strip() not in caplog.text
    account, customer = uuid.uuid4(), uuid.uuid4()
    sealed = first.encrypt(account, customer, "email", "a@b.example")
    assert load_data_keys("", tmp_path).decrypt(account, customer, "email", sealed) == "a@b.example"

    with pytest.raises(ConfigError, match=r"data_key.*32 bytes"):
        load_config(environ={"KEFU_DATA_KEY": base64.b64encode(b"short").decode()})
    with pytest.raises(ConfigError, match=r"data_key.*base64"):
        load_config(environ={"KEFU_DATA_KEY": "not base64 !"})
    assert DATA_KEY not in repr(load_config(environ={"KEFU_DATA_KEY": DATA_KEY}))


# -- erasure -----------------------------------------------------------------------------------


FILE_NAME = f"passport-{_letters(12)}.png"
TOPIC = f"my passport {_letters(12)}"


async def _closed_conversation_with_file(center: Center, nursery: trio.Nursery, stack: AsyncExitStack) -> tuple:
    """A customer with contact details, an uploaded file and a closed conversation with messages."""
    anna = await center.add_agent("Anna")
    agent = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={anna.token}"))
    await agent.wait_for("welcome")
    await agent.send(SetStatus("online"))
    await agent.wait_for("status", status="online")
    visitor = await center.add_visitor(NAME)
    await center.http.patch(
        "/api/v1/webchat/visitor", json={"phone": PHONE_DIGITS, "email": EMAIL}, headers=center.auth(visitor.token)
    )
    upload = await center.http.post(
        "/api/v1/attachments",
        params={"filename": FILE_NAME},
        content=PNG,
        headers={**center.auth(visitor.token), "Content-Type": "image/png"},
    )
    assert upload.status_code == 201, upload.text
    attachment_id = upload.json()["id"]
    customer: Client = await stack.enter_async_context(
        connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}")
    )
    await customer.send(StartConversation(customer.client_id(), topic=TOPIC))
    (ack,) = await customer.wait_for("ack")
    conversation = ack.conversation_id
    (offer,) = await agent.wait_for("offer", conversation_id=conversation)
    await agent.send(AcceptOffer(offer.offer_id))
    await customer.wait_for("event", kind="assigned")
    await customer.send(SendMessage(customer.client_id(), conversation, "text", f"call me on {PHONE_DIGITS}"))
    await customer.send(SendMessage(customer.client_id(), conversation, "image", attachment_id=attachment_id))
    await customer.wait_for("ack", count=3)
    await customer.send(CloseConversation(customer.client_id(), conversation))

    async def closed() -> bool:
        (row,) = await center.fetch("SELECT status FROM conversations WHERE id = $1", uuid.UUID(conversation))
        return bool(row["status"] == "closed")

    await poll(closed, "the conversation stored as closed")
    return visitor, anna, conversation, attachment_id


async def test_erasure_removes_personal_data_and_files_and_leaves_an_audit_entry(
    database_dsn: str, tmp_path: Path
) -> None:
    async with (
        _center(database_dsn, tmp_path, wrap_up_seconds=0) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        visitor, anna, conversation, attachment_id = await _closed_conversation_with_file(center, nursery, stack)
        admin = center.auth(center.admin_token)
        account_id = (
            await center.fetch("SELECT account_id FROM customers WHERE id = $1", uuid.UUID(visitor.customer_id))
        )[0][0]
        stored = tmp_path / "attachments" / str(account_id) / attachment_id
        assert stored.is_file()

        # Only admins erase; the refusal is audited.
        refused = await center.http.post(
            f"/api/v1/customers/{visitor.customer_id}/erase", headers=center.auth(anna.token)
        )
        assert refused.status_code == 403
        assert (await center.http.post(f"/api/v1/customers/{uuid.uuid4()}/erase", headers=admin)).status_code == 404

        response = await center.http.post(f"/api/v1/customers/{visitor.customer_id}/erase", headers=admin)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "customer_id": visitor.customer_id,
            "conversations": 1,
            "messages_redacted": 2,
            "attachments_deleted": 1,
            "files_removed": 1,
        }
        assert not stored.exists()
        assert (await center.http.get(f"/api/v1/attachments/{attachment_id}", headers=admin)).status_code == 404

        (row,) = await center.fetch(
            "SELECT c::text AS raw, c.* FROM customers c WHERE id = $1", uuid.UUID(visitor.customer_id)
        )
        assert row["display_name_enc"] is None and row["phone_enc"] is None and row["email_enc"] is None
        assert row["visitor_token_hash"] is None and row["erased_at"] is not None
        assert_not_stored(row["raw"], NAME, *PHONE_WRITINGS, EMAIL)
        shown = (await center.http.get(f"/api/v1/customers/{visitor.customer_id}", headers=admin)).json()
        assert (shown["display_name"], shown["phone"], shown["email"], shown["erased"]) == (None, None, None, True)
        found = await center.http.get("/api/v1/customers", params={"phone": PHONE_DIGITS}, headers=admin)
        assert found.json() == {"customers": []}
        # The visitor's token no longer opens anything.
        assert (await center.http.get("/api/v1/webchat/visitor", headers=center.auth(visitor.token))).status_code == 401

        # The conversation stays (reports count it), without its texts or topic.
        events = (await center.http.get(f"/api/v1/conversations/{conversation}/events", headers=admin)).json()["events"]
        messages = [e for e in events if e["kind"] == "message"]
        assert len(messages) == 2 and all(e.get("text") is None and e.get("attachment_id") is None for e in messages)
        (stored_conversation,) = await center.fetch(
            "SELECT topic, (SELECT string_agg(body::text, ' ') FROM conversation_events e"
            " WHERE e.conversation_id = c.id) AS bodies FROM conversations c WHERE id = $1",
            uuid.UUID(conversation),
        )
        assert stored_conversation["topic"] is None
        assert_not_stored(stored_conversation["bodies"], *PHONE_WRITINGS, EMAIL, NAME, TOPIC, FILE_NAME)

        entries = await center.fetch(
            "SELECT actor_role, target_id, detail::text AS detail FROM audit_log WHERE action = 'customer.erase'"
        )
        assert [(e["actor_role"], e["target_id"]) for e in entries] == [("admin", visitor.customer_id)]
        assert_not_stored(entries[0]["detail"], *PHONE_WRITINGS, EMAIL, NAME, TOPIC, FILE_NAME)


async def test_erasure_waits_for_open_conversations_and_the_cli_erases(database_dsn: str, tmp_path: Path) -> None:
    async with _center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        visitor = await center.add_visitor("Bob")
        customer = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}")
        )
        await customer.send(StartConversation(customer.client_id()))
        await customer.wait_for("ack")
        response = await center.http.post(
            f"/api/v1/customers/{visitor.customer_id}/erase", headers=center.auth(center.admin_token)
        )
        assert response.status_code == 409 and "open conversation" in response.json()["error"]["message"]
        shown = await center.http.get(
            f"/api/v1/customers/{visitor.customer_id}", headers=center.auth(center.admin_token)
        )
        assert shown.json()["display_name"] == "Bob" and not shown.json()["erased"]  # refused: nothing changed

        other = await center.add_visitor("Carol")
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
        env |= {"KEFU_DATABASE_URL": database_dsn, "KEFU_DATA_DIR": str(tmp_path)}
        kefu = [str(Path(sys.executable).with_name("kefu"))]
        with trio.fail_after(60):
            done = await trio.run_process(
                [*kefu, "customer", "erase", other.customer_id, "--account", center.slug],
                env=env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        assert done.returncode == 0, done.stderr
        assert f"Erased customer {other.customer_id}" in done.stdout.decode()
        (row,) = await center.fetch(
            "SELECT display_name_enc, erased_at FROM customers WHERE id = $1", uuid.UUID(other.customer_id)
        )
        assert row["display_name_enc"] is None and row["erased_at"] is not None
        entries = await center.fetch(
            "SELECT actor_role FROM audit_log WHERE action = 'customer.erase' AND target_id = $1", other.customer_id
        )
        assert [e["actor_role"] for e in entries] == ["cli"]

        with trio.fail_after(60):
            missing = await trio.run_process(
                [*kefu, "customer", "erase", str(uuid.uuid4()), "--account", center.slug],
                env=env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        assert missing.returncode == 1 and "no such customer" in missing.stderr.decode()


def test_the_privacy_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from kefu.loadtest.bench_privacy import main

    assert main(["--operations", "2", "--rounds", "1"]) == 0
    assert "AES-256-GCM encrypt" in capsys.readouterr().out
    assert main(["--rounds", "0"]) == 2


async def test_names_stored_in_plaintext_before_0007_are_encrypted_at_start(database_dsn: str, tmp_path: Path) -> None:
    async with _center(database_dsn, tmp_path) as center:
        (account,) = await center.fetch("SELECT id FROM accounts WHERE slug = $1", center.slug)
        (legacy,) = await center.fetch(
            "INSERT INTO customers (account_id, display_name) VALUES ($1, $2) RETURNING id", account["id"], NAME
        )
        admin = center.auth(center.admin_token)
        shown = (await center.http.get(f"/api/v1/customers/{legacy['id']}", headers=admin)).json()
        assert shown["display_name"] == NAME  # readable before it is sealed
        await center.restart()
        (row,) = await center.fetch("SELECT c::text AS raw, c.* FROM customers c WHERE id = $1", legacy["id"])
        assert row["display_name"] is None and row["display_name_enc"] is not None
        assert_not_stored(row["raw"], NAME)
        shown = (await center.http.get(f"/api/v1/customers/{legacy['id']}", headers=admin)).json()
        assert shown["display_name"] == NAME
