"""`kefu chat`: a terminal client for trying conversations without a browser.

    kefu chat customer --account acme-support [--name "Li Wei"] [--department <id>]
    kefu chat agent --account acme-support --email anna@acme.example

The customer side gets a visitor token (kept in `~/.kefu-visitor-<account>` so a second run
is the same customer, like a page reload), starts a conversation or resumes its open one,
and sends each line typed as a message. The agent side signs in, goes online, and prints
offers and messages; lines starting with `/` are commands (`/help`). Both speak the same
websocket protocol as the web pages (docs/protocol.md) and resume after a reconnect.
"""

from __future__ import annotations

import argparse
import getpass
import itertools
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, open_websocket_url

from kefu.protocol import decode_server_frame, encode_frame
from kefu.protocol.agent import AcceptOffer, AddNote, DeclineOffer, SetStatus, Transfer
from kefu.protocol.common import MarkRead, Resume, SendMessage
from kefu.protocol.customer import CloseConversation, StartConversation
from kefu.protocol.errors import DO_NOT_RECONNECT
from kefu.protocol.server import (
    Ack,
    AgentStatus,
    ConversationEvent,
    ConversationList,
    Offer,
    OfferRevoked,
    PeerTyping,
    QueuePosition,
    ServerError,
    ServerFrame,
)

TypedFrame = (
    StartConversation | SendMessage | CloseConversation | SetStatus | AcceptOffer | DeclineOffer | AddNote | Transfer
)
"""What a line typed in the terminal may become."""

AGENT_HELP = """commands:
  /online, /break [reason], /offline      change your status
  /accept, /decline                       answer the latest offer
  /use <conversation>                     write to that conversation (the newest one by default)
  /note <text>                            an internal note (the customer never sees it)
  /transfer agent <id> | department <id>  hand the conversation over
  /close [wrap-up code]                   end the conversation (the code also ends wrap-up)
  /quit
anything else is sent as a message"""

CUSTOMER_HELP = """commands: /close (end the conversation), /quit; anything else is sent as a message"""


def add_arguments(commands: Any) -> None:
    chat = commands.add_parser("chat", help="talk over the websocket protocol from a terminal (customer or agent)")
    chat.add_argument("role", choices=("customer", "agent"))
    chat.add_argument("--url", default="http://127.0.0.1:8080", help="where kefu serves (default: %(default)s)")
    chat.add_argument("--account", required=True, help="the account's slug")
    chat.add_argument("--email", help="agent: the e-mail to sign in with (the password is asked)")
    chat.add_argument(
        "--password-stdin", action="store_true", help="agent: read the password from the first line of standard input"
    )
    chat.add_argument("--name", help="customer: the display name to show the agent")
    chat.add_argument("--department", help="customer: the id of the department to ask for")
    chat.add_argument("--topic", help="customer: what it is about")


def _post(url: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: dict[str, Any] = json.loads(response.read() or b"{}")
            return answer
    except urllib.error.HTTPError as error:
        detail = str(json.loads(error.read() or b"{}").get("error", {}).get("message", error.reason))
        raise SystemExit(f"kefu: {detail}") from None
    except urllib.error.URLError as error:
        raise SystemExit(f"kefu: cannot reach {url}: {error.reason}") from None


def _say(text: str) -> None:
    print(text, flush=True)


def _describe_event(frame: ConversationEvent) -> str:
    who = frame.sender.display_name or frame.sender.role
    if frame.kind == "message":
        body = frame.text or ""
        if frame.attachment_id:
            body = f"[{frame.message_kind} {frame.attachment_id}] {body}"
        return f"#{frame.seq} {who}: {body}"
    if frame.kind == "note":
        return f"#{frame.seq} (note) {who}: {frame.text}"
    if frame.kind == "system":
        return f"#{frame.seq} * {frame.text}"
    details = {
        k: getattr(frame, k)
        for k in ("agent_id", "queue_id", "to_agent_id", "to_department_id", "reason", "wrap_up_code")
        if getattr(frame, k)
    }
    return f"#{frame.seq} * {frame.kind} {details or ''}".rstrip()


def _describe(frame: ServerFrame) -> str | None:
    match frame:
        case ConversationEvent():
            return _describe_event(frame)
        case Offer(customer=customer):
            about = customer.topic or customer.preview or ""
            who = customer.display_name or customer.customer_id
            return f"offer {frame.offer_id}: {who} {about} (/accept)".replace("  ", " ")
        case QueuePosition():
            wait = f", about {frame.estimated_wait_seconds}s" if frame.estimated_wait_seconds is not None else ""
            return f"* you are number {frame.position} in the queue{wait}"
        case AgentStatus():
            extra = f" ({frame.reason})" if frame.reason else ""
            return f"* status {frame.status}{extra}: {frame.active_conversations}/{frame.capacity} conversations"
        case PeerTyping():
            return f"* the {frame.role} is typing…" if frame.active else None
        case ServerError():
            return f"! {frame.code}: {frame.message}"
        case OfferRevoked():
            return f"* offer {frame.offer_id} withdrawn ({frame.reason})"
        case _:
            return None


class ChatClient:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.base = str(args.url).rstrip("/")
        self.ids = itertools.count(1)
        self.last_seq: dict[str, int] = {}
        self.current: str | None = None
        self.offer: str | None = None
        self.token = ""
        self.pending: list[str] = []
        """Customer lines typed before its (new) conversation was acknowledged."""

    def client_id(self) -> str:
        return f"{self.args.role}-{trio.current_time():.0f}-{next(self.ids)}"

    def ws_url(self, path: str) -> str:
        return self.base.replace("http", "ws", 1) + f"{path}?token={self.token}"

    async def run(self) -> None:
        # One reader of standard input for the whole run: lines typed while reconnecting wait
        # in the channel and are sent once connected again (a reader thread per connection
        # would be abandoned at a disconnect and take the next line with it).
        if self.args.role == "customer":
            self.token = await trio.to_thread.run_sync(self.visitor_token)
        else:
            self.token = await trio.to_thread.run_sync(self.sign_in)  # may read the password from stdin first
        self.lines_in, self.lines = trio.open_memory_channel[str](100)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_stdin)
            await self._run()
            nursery.cancel_scope.cancel()

    async def _read_stdin(self) -> None:
        async with self.lines_in:
            while True:
                line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
                if not line:
                    return
                await self.lines_in.send(line)

    async def _run(self) -> None:
        if self.args.role == "customer":
            path = "/ws/customer"
            _say(CUSTOMER_HELP)
        else:
            path = "/ws/agent"
            _say(AGENT_HELP)
        delay = 0.5
        while True:
            try:
                async with open_websocket_url(self.ws_url(path)) as ws:
                    delay = 0.5
                    await self.session(ws)
                    return
            except (ConnectionClosed, HandshakeError, OSError) as error:
                code = getattr(getattr(error, "reason", None), "code", None)
                if code in DO_NOT_RECONNECT:
                    raise SystemExit(f"kefu: the server closed the connection ({code})") from None
                _say(f"* connection lost; reconnecting in {delay:.1f}s")
                await trio.sleep(delay)
                delay = min(delay * 2, 10)

    def visitor_token(self) -> str:
        store = Path.home() / f".kefu-visitor-{self.args.account}"
        if store.exists():
            return store.read_text().strip()
        body: dict[str, Any] = {"account": self.args.account}
        if self.args.name:
            body["display_name"] = self.args.name
        token = str(_post(f"{self.base}/api/v1/webchat/visitors", body)["token"])
        store.write_text(token)
        store.chmod(0o600)
        return token

    def sign_in(self) -> str:
        if not self.args.email:
            raise SystemExit("kefu: an agent signs in with --email")
        if self.args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"password for {self.args.email}: ")
        body = {"account": self.args.account, "email": self.args.email, "password": password}
        return str(_post(f"{self.base}/api/v1/auth/sign-in", body)["token"])

    async def session(self, ws: WebSocketConnection) -> None:
        closed: list[ConnectionClosed] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.read, ws, nursery.cancel_scope, closed)
            try:
                if self.args.role == "agent":
                    await ws.send_message(encode_frame(SetStatus("online")).decode())
                await self.type(ws)
            except ConnectionClosed as error:
                closed.append(error)
            nursery.cancel_scope.cancel()
        if closed:
            raise closed[0]  # outside the nursery, so `run` sees it bare and reconnects

    async def read(self, ws: WebSocketConnection, done: trio.CancelScope, closed: list[ConnectionClosed]) -> None:
        try:
            await self._read(ws)
        except ConnectionClosed as error:
            closed.append(error)
            done.cancel()

    async def _read(self, ws: WebSocketConnection) -> None:
        while True:
            frame = decode_server_frame(await ws.get_message())
            match frame:
                case ConversationList():
                    await self._resume_all(ws, frame)
                    continue
                case Ack() if self.current is None:
                    await self._started(ws, frame.conversation_id)
                case Offer():
                    self.offer = frame.offer_id
                case ConversationEvent():
                    if frame.seq <= self.last_seq.get(frame.conversation_id, 0):
                        continue
                    await self._on_event(ws, frame)
            text = _describe(frame)
            if text:
                _say(text)

    async def _send(self, ws: WebSocketConnection, frame: TypedFrame | Resume | MarkRead) -> None:
        await ws.send_message(encode_frame(frame).decode())

    async def _resume_all(self, ws: WebSocketConnection, frame: ConversationList) -> None:
        for summary in frame.conversations:
            self.current = summary.conversation_id
            await self._send(ws, Resume(summary.conversation_id, self.last_seq.get(summary.conversation_id, 0)))
        if self.args.role == "customer" and not frame.conversations:
            await self._send(
                ws, StartConversation(self.client_id(), department=self.args.department, topic=self.args.topic)
            )

    async def _started(self, ws: WebSocketConnection, conversation_id: str) -> None:
        """The customer's new conversation is acknowledged: send what was typed meanwhile."""
        self.current = conversation_id
        for text in self.pending:
            await self._send(ws, SendMessage(self.client_id(), conversation_id, "text", text=text))
        self.pending.clear()

    async def _on_event(self, ws: WebSocketConnection, frame: ConversationEvent) -> None:
        self.last_seq[frame.conversation_id] = frame.seq
        if frame.kind == "assigned" and self.args.role == "agent":
            self.current = frame.conversation_id
        if frame.kind == "closed" and self.args.role == "customer" and frame.conversation_id == self.current:
            self.current = None
            _say("* the conversation has ended; type to start a new one")
        await self._send(ws, MarkRead(frame.conversation_id, frame.seq))

    async def type(self, ws: WebSocketConnection) -> None:
        while True:
            try:
                line = await self.lines.receive()
            except trio.EndOfChannel:
                return
            line = line.strip()
            if not line:
                continue
            if line == "/quit":
                return
            frame = self.command(line)
            if frame is not None:
                await self._send(ws, frame)

    def command(self, line: str) -> TypedFrame | None:
        if not line.startswith("/"):
            return self._message(line)
        head = line.split(maxsplit=1)[0]
        conversation = self.current
        if head == "/help":
            _say(AGENT_HELP if self.args.role == "agent" else CUSTOMER_HELP)
            return None
        if head == "/close" and conversation:
            code = line.partition(" ")[2].strip() or None
            return CloseConversation(self.client_id(), conversation, wrap_up_code=code)
        if self.args.role == "agent":
            frame, understood = self._agent_command(line)
            if understood:
                return frame
        _say("! unknown command, or nothing to do it on (/help)")
        return None

    def _message(self, line: str) -> TypedFrame | None:
        """A line that is not a command: a message, or (customer) the start of a conversation."""
        if self.current is not None:
            return SendMessage(self.client_id(), self.current, "text", text=line)
        if self.args.role == "agent":
            _say("! no conversation yet")
            return None
        first = not self.pending
        self.pending.append(line)
        if first:
            return StartConversation(self.client_id(), department=self.args.department, topic=self.args.topic)
        return None

    def _agent_command(self, line: str) -> tuple[TypedFrame | None, bool]:
        """The frame an agent's command sends, and whether the command was understood."""
        words = line.split(maxsplit=2)
        head = words[0]
        rest = line.partition(" ")[2].strip() or None
        conversation = self.current
        match head:
            case "/online":
                return SetStatus("online"), True
            case "/offline":
                return SetStatus("offline"), True
            case "/break":
                return SetStatus("break", rest), True
            case "/accept" | "/decline" if self.offer:
                offer, self.offer = self.offer, None
                return (AcceptOffer(offer) if head == "/accept" else DeclineOffer(offer)), True
            case "/use" if rest:
                self.current = rest
                return None, True
            case "/note" if conversation and rest:
                return AddNote(self.client_id(), conversation, rest), True
            case "/transfer" if conversation and len(words) == 3:
                if words[1] == "agent":
                    return Transfer(self.client_id(), conversation, to_agent_id=words[2]), True
                return Transfer(self.client_id(), conversation, to_department_id=words[2]), True
        return None, False


def main(args: argparse.Namespace) -> int:
    try:
        trio.run(ChatClient(args).run)
    except KeyboardInterrupt:
        return 130
    return 0
