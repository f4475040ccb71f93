"""Who may do what, as matrices.

The permission matrix: every declared REST route (`kefu.server.api.route.ROUTES`) against every
built-in role of the permission table: a user whose role lacks the route's permission gets 403
`forbidden`, audited; one whose role has it does not. A route served without a declaration, or
declared without a guard, fails `test_every_served_route_is_declared_with_one_guard`.

Department scoping: every agent frame and every REST endpoint that names a conversation, a
customer or an attachment, tried by an agent of another department (403 or error `forbidden`),
by an admin of another account (404 or `not_found`), and by the agent who holds the
conversation and a supervisor (allowed). Every refusal is in the audit log.

The matrices below list what they cover; `test_the_matrices_cover_every_frame_and_endpoint`
fails when a frame type or an endpoint is added without a row here.
"""

from __future__ import annotations

import re
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import trio

from kefu.protocol.agent import AGENT_FRAME_TYPES, AcceptOffer, AddNote, DeclineOffer, SetStatus, Transfer
from kefu.protocol.common import MarkRead, Resume, SendMessage, SetTyping
from kefu.protocol.customer import CloseConversation, StartConversation
from kefu.protocol.permissions import ADMIN, BUILT_IN_ROLES, Permission
from kefu.server import openapi
from kefu.server.accounts import create_account
from kefu.server.api.route import ROUTES, Open
from tests.conftest import open_database
from tests.server.live import PASSWORD, Center, Client, connect, live_center, poll, routing_settled

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64

# -- the frame matrix: one frame per agent frame type that is about a conversation ------------


def _frame(frame_type: type, conversation: str, client_id: str, department: str) -> Any:
    """The frame of `frame_type` an intruder sends about `conversation`."""
    return {
        SendMessage: lambda: SendMessage(client_id, conversation, "text", text="let me in"),
        AddNote: lambda: AddNote(client_id, conversation, "a note"),
        Transfer: lambda: Transfer(client_id, conversation, to_department_id=department),
        CloseConversation: lambda: CloseConversation(client_id, conversation, wrap_up_code="stolen"),
        SetTyping: lambda: SetTyping(conversation, True),
        MarkRead: lambda: MarkRead(conversation, 1),
        Resume: lambda: Resume(conversation, 0),
    }[frame_type]()


CONVERSATION_FRAMES = (SendMessage, AddNote, Transfer, CloseConversation, SetTyping, MarkRead, Resume)
OFFER_FRAMES = (AcceptOffer, DeclineOffer)
FRAMES_ABOUT_NOTHING_ELSE = {SetStatus, *{t for t in AGENT_FRAME_TYPES if t.TYPE == "ping"}}

# -- the endpoint matrix: (method, OpenAPI path, audited action) -------------------------------

ENDPOINTS = (
    ("get", "/api/v1/customers/{customer_id}", "customer.read"),
    ("patch", "/api/v1/customers/{customer_id}", "customer.update"),
    ("get", "/api/v1/customers/{customer_id}/conversations", "customer.history"),
    ("get", "/api/v1/conversations/{conversation_id}/events", "conversation.events"),
    ("get", "/api/v1/attachments/{attachment_id}", "attachment.read"),
    ("post", "/api/v1/customers/{customer_id}/erase", "customer.erase"),
)
ADMIN_ONLY = {("post", "/api/v1/customers/{customer_id}/erase")}
"""Refused (403) to everyone but an admin, even in scope; an admin's erasure is tested in test_privacy.py."""
PERMISSION_FIRST = {("patch", "/api/v1/customers/{customer_id}"), *ADMIN_ONLY}
"""Routes with a permission an agent lacks: refused for it before the scope is looked at (`forbidden`)."""
SCOPED_PARAMETERS = ("{customer_id}", "{conversation_id}", "{attachment_id}")


def test_the_matrices_cover_every_frame_and_endpoint() -> None:
    about_conversations = {t for t in AGENT_FRAME_TYPES if "conversation_id" in t.__struct_fields__}
    assert about_conversations == set(CONVERSATION_FRAMES)
    assert set(AGENT_FRAME_TYPES) == set(CONVERSATION_FRAMES) | set(OFFER_FRAMES) | FRAMES_ABOUT_NOTHING_ELSE
    documented = {
        (method, path)
        for path, operations in openapi.document()["paths"].items()
        if any(parameter in path for parameter in SCOPED_PARAMETERS)
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert documented == {(method, path) for method, path, _ in ENDPOINTS}


# -- the permission matrix: every declared route, every built-in role -------------------------


async def test_every_served_route_is_declared_with_one_guard(database_dsn: str, tmp_path: Path) -> None:
    declared = {(spec.method, spec.rule): spec for spec in ROUTES}
    assert len(declared) == len(ROUTES), "a route is declared twice"
    for spec in ROUTES:
        assert isinstance(spec.guard, (Permission, Open)), spec
    async with live_center(database_dsn, tmp_path) as center:
        served = {
            (method, rule.rule)
            for rule in center.node.app.url_map.iter_rules()
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
            if rule.rule.startswith("/api/") or rule.rule in ("/healthz", "/readyz", "/metrics")
        }
    assert served == set(declared), "served without a declaration (or declared and not served)"


def _any_ids(rule: str) -> str:
    return re.sub(r"<(\w+)>", lambda _match: str(uuid.uuid4()), rule)


async def test_every_route_refuses_a_role_without_its_permission(database_dsn: str, tmp_path: Path) -> None:
    """For each route guarded by a permission and each built-in role: 403 `forbidden` and an
    audit row when the role lacks it, something else when it has it. Ids are random and bodies
    empty, so nothing is changed by the calls that pass the guard."""
    guarded = [spec for spec in ROUTES if isinstance(spec.guard, Permission)]
    assert guarded
    async with live_center(database_dsn, tmp_path) as center:
        tokens = {ADMIN: center.admin_token}
        for role in BUILT_IN_ROLES:
            if role not in tokens:
                tokens[role] = (await center.add_agent(f"Holder of {role}", role=role)).token
        for role, token in tokens.items():
            me = (await center.http.get("/api/v1/me", headers=center.auth(token))).json()
            for spec in guarded:
                url = _any_ids(spec.rule)
                body = {"json": {}} if spec.body is not None else {}
                response = await center.http.request(spec.method, url, headers=center.auth(token), **body)
                if spec.guard in BUILT_IN_ROLES[role].permissions:
                    assert response.status_code != 403, (role, spec.method, spec.rule, response.text)
                    continue
                assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden"), (role, spec)
                rows = await center.fetch(
                    "SELECT action, actor_role, target_type, detail FROM audit_log WHERE actor_id = $1"
                    " ORDER BY id DESC LIMIT 1",
                    me["id"],
                )
                (row,) = rows
                detail = orjson.loads(row["detail"]) if isinstance(row["detail"], str) else row["detail"]
                assert (row["action"], row["actor_role"], row["target_type"]) == ("forbidden", role, spec.target)
                assert (detail["method"], detail["path"], detail["attempted"]) == (spec.method, url, spec.action)


# -- the scene ----------------------------------------------------------------------------------


@dataclass
class Scene:
    center: Center
    sales: str
    support: str
    bob: Any  # Support agent holding the conversation
    alice: Any  # Sales agent
    sue: Any  # supervisor, no department
    bob_ws: Client
    alice_ws: Client
    customer_ws: Client
    customer_id: str
    conversation: str
    attachment: str
    outsider_token: str
    outsider_account: UUID


async def _online(stack: AsyncExitStack, nursery: trio.Nursery, center: Center, agent: Any) -> Client:
    client = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={agent.token}"))
    await client.wait_for("welcome")
    await client.send(SetStatus("online"))
    await client.wait_for("status", status="online")
    return client


async def _scene(stack: AsyncExitStack, nursery: trio.Nursery, center: Center, database_dsn: str) -> Scene:
    admin = center.auth(center.admin_token)
    sales = (await center.http.post("/api/v1/departments", json={"name": "Sales"}, headers=admin)).json()["id"]
    support = (await center.http.post("/api/v1/departments", json={"name": "Support"}, headers=admin)).json()["id"]
    for name, department in (("Sales", sales), ("Support", support)):
        response = await center.http.post(
            "/api/v1/queues", json={"name": name, "department_id": department}, headers=admin
        )
        assert response.status_code == 201, response.text
    bob = await center.add_agent("Bob", departments=[support])
    alice = await center.add_agent("Alice", departments=[sales])
    sue = await center.add_agent("Sue", role="supervisor")
    bob_ws = await _online(stack, nursery, center, bob)
    alice_ws = await _online(stack, nursery, center, alice)

    visitor = await center.add_visitor("Li Wei")
    customer_ws = await stack.enter_async_context(
        connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}")
    )
    await customer_ws.send(StartConversation("start-1", department=support))
    (ack,) = await customer_ws.wait_for("ack", client_id="start-1")
    conversation = ack.conversation_id
    (offer,) = await bob_ws.wait_for("offer")
    await bob_ws.send(AcceptOffer(offer.offer_id))
    await bob_ws.wait_for("resumed", conversation_id=conversation)
    await customer_ws.wait_for("event", kind="assigned")
    await routing_settled(center, alice_ws)
    assert alice_ws.of("offer") == []  # Support's queue never offers to Sales

    upload = await center.http.post(
        "/api/v1/attachments?filename=screen.png",
        content=PNG,
        headers={**center.auth(bob.token), "Content-Type": "image/png"},
    )
    assert upload.status_code == 201, upload.text
    attachment = upload.json()["id"]
    await bob_ws.send(SendMessage("img-1", conversation, "image", attachment_id=attachment))
    await bob_ws.wait_for("ack", client_id="img-1")

    slug = f"other-{uuid.uuid4().hex[:8]}"
    async with open_database(database_dsn) as database:
        outsider = await create_account(
            database, name="Other", slug=slug, admin_email=f"admin@{slug}.example", admin_password=PASSWORD
        )
    response = await center.http.post(
        "/api/v1/auth/sign-in", json={"account": slug, "email": outsider.admin_email, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    outsider_token = response.json()["token"]
    outsider_account = UUID(response.json()["user"]["account_id"])
    return Scene(
        center,
        sales,
        support,
        bob,
        alice,
        sue,
        bob_ws,
        alice_ws,
        customer_ws,
        visitor.customer_id,
        conversation,
        attachment,
        outsider_token,
        outsider_account,
    )


async def _denials(center: Center, actor_id: str) -> list[tuple[str, str, str]]:
    rows = await center.fetch(
        "SELECT action, target_type, target_id FROM audit_log WHERE actor_id = $1 ORDER BY id", actor_id
    )
    return [(row["action"], row["target_type"], row["target_id"]) for row in rows]


async def _stored(center: Center, conversation: str) -> list[tuple[int, str]]:
    rows = await center.fetch(
        "SELECT seq, kind FROM conversation_events WHERE conversation_id = $1 ORDER BY seq", UUID(conversation)
    )
    return [(row["seq"], row["kind"]) for row in rows]


async def _refused(client: Client, frame: Any, count: int) -> Any:
    """Send `frame`; its answer is the `count`-th error frame on this socket."""
    await client.send(frame)
    errors = await client.wait_for("error", count)
    return errors[count - 1]


async def test_every_conversation_frame_of_another_department_is_refused_and_audited(
    database_dsn: str, tmp_path: Path
) -> None:
    async with (
        live_center(database_dsn, tmp_path) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        scene = await _scene(stack, nursery, center, database_dsn)
        conversation = scene.conversation
        before = await _stored(center, conversation)
        typing_before = len(scene.customer_ws.of("typing"))

        # Alice (Sales) tries every frame about Bob's Support conversation.
        for number, frame_type in enumerate(CONVERSATION_FRAMES, 1):
            frame = _frame(frame_type, conversation, f"x-{number}", scene.sales)
            error = await _refused(scene.alice_ws, frame, number)
            assert error.code == "forbidden", (frame_type.TYPE, error)
            assert error.ref == getattr(frame, "client_id", None)
        # Someone else's offer is answered like a lapsed one, and audited too.
        visitor = await center.add_visitor()
        second = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}")
        )
        await second.send(StartConversation("start-2", department=scene.support))
        (second_ack,) = await second.wait_for("ack")
        (offer,) = await scene.bob_ws.wait_for("offer", conversation_id=second_ack.conversation_id)
        count = len(CONVERSATION_FRAMES)
        for number, frame in enumerate((AcceptOffer(offer.offer_id), DeclineOffer(offer.offer_id)), count + 1):
            error = await _refused(scene.alice_ws, frame, number)
            assert error.code == "offer_gone"
        # ... and the offer still stands for Bob.
        await scene.bob_ws.send(AcceptOffer(offer.offer_id))
        await scene.bob_ws.wait_for("resumed", conversation_id=second_ack.conversation_id)

        # An admin of another account is told the conversation does not exist.
        outsider = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/agent?token={scene.outsider_token}")
        )
        await outsider.wait_for("welcome")
        for number, frame_type in enumerate(CONVERSATION_FRAMES, 1):
            error = await _refused(outsider, _frame(frame_type, conversation, f"o-{number}", scene.sales), number)
            assert error.code == "not_found", (frame_type.TYPE, error)

        # Nothing changed: no event stored, no typing shown to the customer, Bob still holds it.
        assert await _stored(center, conversation) == before
        await scene.customer_ws.round_trip()  # a typing frame sent to the customer would be here
        assert len(scene.customer_ws.of("typing")) == typing_before
        expected = [(f"denied:{t.TYPE}", "conversation", conversation) for t in CONVERSATION_FRAMES]
        expected += [(f"denied:{t.TYPE}", "conversation", second_ack.conversation_id) for t in OFFER_FRAMES]

        async def all_audited() -> bool:
            return len(await _denials(center, scene.alice.id)) >= len(expected)

        await poll(all_audited, f"{len(expected)} refusals in the audit log")
        assert await _denials(center, scene.alice.id) == expected
        outsider_id = (await center.fetch("SELECT id FROM users WHERE account_id = $1", scene.outsider_account))[0]
        outsider_rows = await center.fetch(
            "SELECT account_id, actor_role, action, target_id FROM audit_log WHERE actor_id = $1 ORDER BY id",
            str(outsider_id["id"]),
        )
        # recorded as who tried: the other account's admin
        assert [(r["account_id"], r["actor_role"], r["action"], r["target_id"]) for r in outsider_rows] == [
            (scene.outsider_account, "admin", f"denied:{t.TYPE}", conversation) for t in CONVERSATION_FRAMES
        ]

        # The holder may do each of them.
        bob = scene.bob_ws
        await bob.send(SendMessage("ok-1", conversation, "text", text="Hello"))
        await bob.wait_for("ack", client_id="ok-1")
        await bob.send(AddNote("ok-2", conversation, "VIP"))
        await bob.wait_for("ack", client_id="ok-2")
        await bob.send(SetTyping(conversation, True))
        await scene.customer_ws.wait_for("typing", role="agent", active=True)
        await bob.send(MarkRead(conversation, 2))
        await scene.customer_ws.wait_for("read", role="agent")
        await bob.send(Resume(conversation, 0))
        await bob.wait_for("resumed", 2, conversation_id=conversation)
        await bob.send(CloseConversation("ok-3", conversation, wrap_up_code="solved"))
        await bob.wait_for("ack", client_id="ok-3")
        # A supervisor of the account may follow it (resume), but not act on it.
        sue = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={scene.sue.token}"))
        await sue.wait_for("welcome")
        await sue.send(Resume(conversation, 0))
        await sue.wait_for("resumed", conversation_id=conversation)
        error = await _refused(sue, SendMessage("sue-1", conversation, "text", text="hi"), 1)
        assert error.code == "forbidden"
        assert bob.of("error") == []
        nursery.cancel_scope.cancel()


def _url(path: str, scene: Scene) -> str:
    ids = {
        "customer_id": scene.customer_id,
        "conversation_id": scene.conversation,
        "attachment_id": scene.attachment,
    }
    return re.sub(r"\{(\w+)\}", lambda match: ids[match.group(1)], path)


async def _call(center: Center, method: str, path: str, token: str) -> Any:
    body = {"json": {"level": 3}} if method == "patch" else {}
    return await center.http.request(method.upper(), path, headers=center.auth(token), **body)


async def test_every_endpoint_about_another_departments_conversation_is_refused_and_audited(
    database_dsn: str, tmp_path: Path
) -> None:
    async with (
        live_center(database_dsn, tmp_path) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        scene = await _scene(stack, nursery, center, database_dsn)
        for method, path, _action in ENDPOINTS:
            url = _url(path, scene)
            response = await _call(center, method, url, scene.alice.token)
            assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden"), (method, path)
            response = await _call(center, method, url, scene.outsider_token)
            assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found"), (method, path)
        targets = {"customer": scene.customer_id, "conversation": scene.conversation, "attachment": scene.attachment}
        expected = [
            (
                "forbidden" if (method, path) in PERMISSION_FIRST else f"denied:{action}",
                action.split(".")[0],
                targets[action.split(".")[0]],
            )
            for method, path, action in ENDPOINTS
        ]
        assert await _denials(center, scene.alice.id) == expected
        outsider_rows = await center.fetch(
            "SELECT action, detail->>'status' AS status FROM audit_log WHERE account_id = $1 ORDER BY id",
            scene.outsider_account,
        )
        assert [(r["action"], r["status"]) for r in outsider_rows] == [(f"denied:{a}", "404") for _, _, a in ENDPOINTS]

        # Alice's lists never show it.
        for view in ("departments", "queued"):
            listed = await center.http.get(f"/api/v1/conversations?view={view}", headers=center.auth(scene.alice.token))
            assert scene.conversation not in {c["id"] for c in listed.json()["conversations"]}

        # Bob (who holds it) reads everything; the PATCH is a supervisor's right, not his.
        for method, path, _action in ENDPOINTS:
            response = await _call(center, method, _url(path, scene), scene.bob.token)
            expected_status = 403 if method == "patch" or (method, path) in ADMIN_ONLY else 200
            assert response.status_code == expected_status, (method, path, response.text)
        events = await center.http.get(_url(ENDPOINTS[3][1], scene), headers=center.auth(scene.bob.token))
        assert "message" in [e["kind"] for e in events.json()["events"]]
        download = await center.http.get(_url(ENDPOINTS[4][1], scene), headers=center.auth(scene.bob.token))
        assert download.content == PNG
        # The supervisor reads and changes all of the account's.
        for method, path, _action in ENDPOINTS:
            response = await _call(center, method, _url(path, scene), scene.sue.token)
            expected_status = 403 if (method, path) in ADMIN_ONLY else 200
            assert response.status_code == expected_status, (method, path, response.text)

        # Moving Alice into Support lets her read it (departments are read live), not act on it.
        admin = center.auth(center.admin_token)
        response = await center.http.patch(
            f"/api/v1/agents/{scene.alice.id}", json={"departments": [scene.support]}, headers=admin
        )
        assert response.status_code == 200
        response = await _call(center, "get", _url(ENDPOINTS[3][1], scene), scene.alice.token)
        assert response.status_code == 200
        error = await _refused(scene.alice_ws, SendMessage("late-1", scene.conversation, "text", text="hi"), 1)
        assert error.code == "forbidden"
        nursery.cancel_scope.cancel()


async def test_looking_a_customer_up_by_phone_or_email_keeps_to_the_same_scope(
    database_dsn: str, tmp_path: Path
) -> None:
    """`GET /customers?phone=|email=` answers an agent of another department as it answers for a
    number nobody has (it neither confirms the number nor returns the record), and audits the
    refusal; the agent who holds the conversation and the supervisor find the customer."""
    async with (
        live_center(database_dsn, tmp_path) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        scene = await _scene(stack, nursery, center, database_dsn)
        response = await center.http.patch(
            f"/api/v1/customers/{scene.customer_id}",
            json={"phone": "+86 139 8765 4321", "email": "li.wei@example.com"},
            headers=center.auth(scene.sue.token),
        )
        assert response.status_code == 200, response.text
        lookups = ({"phone": "13987654321"}, {"email": "li.wei@example.com"})
        nobody = await center.http.get(
            "/api/v1/customers", params={"phone": "13900000000"}, headers=center.auth(scene.alice.token)
        )
        assert (nobody.status_code, nobody.json()) == (200, {"customers": []})
        for params in lookups:
            response = await center.http.get("/api/v1/customers", params=params, headers=center.auth(scene.alice.token))
            assert (response.status_code, response.content) == (nobody.status_code, nobody.content), params
            for holder in (scene.bob, scene.sue):
                found = await center.http.get("/api/v1/customers", params=params, headers=center.auth(holder.token))
                assert [c["id"] for c in found.json()["customers"]] == [scene.customer_id], params
        assert await _denials(center, scene.alice.id) == [("denied:customer.find", "customer", scene.customer_id)] * 2
        rows = await center.fetch(
            "SELECT detail FROM audit_log WHERE actor_id = $1 AND action = 'denied:customer.find'", scene.alice.id
        )
        # The audit row says which field was looked up, never the value.
        assert [orjson.loads(r["detail"]) if isinstance(r["detail"], str) else r["detail"] for r in rows] == [
            {"outcome": "denied", "field": field, "method": "GET", "path": "/api/v1/customers"}
            for field in ("phone", "email")
        ]
        nursery.cancel_scope.cancel()
