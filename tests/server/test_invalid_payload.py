"""Text frames that are not UTF-8, sent by a hand-built client to a real node (issue 11, point 4).

trio-websocket (and every browser) refuses to send invalid UTF-8 in a text frame, so the frames
here are framed and masked by hand, as RFC 6455 has a client do. The protocol's promise
(docs/protocol.md, "Errors"): such a frame is answered with `error` `malformed_json`, then a
close frame with 1007, on every socket, whenever it arrives; `welcome` always comes first.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trio

from tests.server.live import Center, live_center
from tests.server.raw_websocket import RawSocket, client_frame

BAD_UTF8 = b'{"type": "ping", "nonce": "\xff\xfe"}'
"""A ping whose nonce holds two bytes that never occur in UTF-8."""


async def open_raw(center: Center, path: str) -> RawSocket:
    url = urlsplit(center.node.urls[0])
    assert url.hostname is not None and url.port is not None
    return await RawSocket.open(url.hostname, url.port, path)


def assert_answered_and_closed_1007(texts: list[dict[str, object]], code: int | None, ended: bool) -> None:
    assert [text["type"] for text in texts] == ["welcome", "conversations", "error"], texts
    assert texts[2]["code"] == "malformed_json"
    assert code == 1007
    assert ended


async def test_invalid_utf8_is_answered_with_malformed_json_and_closed_with_1007(
    database_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with live_center(database_dsn, tmp_path) as center:
        visitor = await center.add_visitor()
        for _attempt in range(10):
            raw = await open_raw(center, f"/ws/customer?token={visitor.token}")
            async with raw.stream:
                # after welcome: the socket is open and read
                assert (await raw.frame() or (0, b""))[1].startswith(b'{"v":1,"type":"welcome"')
                await raw.stream.send_all(client_frame(0x1, BAD_UTF8))
                with trio.fail_after(10):
                    texts, code, ended = await raw.until_closed()
            assert_answered_and_closed_1007([{"type": "welcome"}, *texts], code, ended)
        # a valid ping on a new socket is still answered
        raw = await open_raw(center, f"/ws/customer?token={visitor.token}")
        async with raw.stream:
            await raw.stream.send_all(client_frame(0x1, b'{"type": "ping", "nonce": "fine"}'))
            with trio.fail_after(10):
                while (frame := await raw.frame()) is not None and b'"pong"' not in frame[1]:
                    pass
            assert frame is not None and b'"nonce":"fine"' in frame[1]
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR], caplog.text
    assert "BusyResourceError" not in caplog.text


async def test_invalid_utf8_sent_right_after_the_handshake_still_gets_welcome_first(
    database_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The bad frame goes out as soon as the 101 is read, before the server wrote anything more:
    whenever it arrives, the server answers `welcome` first (it was queued before the socket was
    read), then the error and the close. 25 sockets at once, customers and agents."""
    caplog.set_level(logging.WARNING)
    async with live_center(database_dsn, tmp_path, max_connections_per_address=100) as center:
        agent = await center.add_agent("Anna")
        visitors = [await center.add_visitor() for _ in range(20)]
        paths = [f"/ws/customer?token={visitor.token}" for visitor in visitors]
        paths += [f"/ws/agent?token={agent.token}"] * 5
        outcomes: list[tuple[list[dict[str, object]], int | None, bool]] = []

        async def one(path: str) -> None:
            raw = await open_raw(center, path)
            async with raw.stream:
                await raw.stream.send_all(client_frame(0x1, BAD_UTF8))
                outcomes.append(await raw.until_closed())

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for path in paths:
                    nursery.start_soon(one, path)
        assert len(outcomes) == 25
        for texts, code, ended in outcomes:
            if texts and texts[0].get("role") == "agent":
                # an agent also gets its status and what it holds before the error
                texts = [text for text in texts if text["type"] in ("welcome", "error")]
                texts.insert(1, {"type": "conversations"})
            assert_answered_and_closed_1007(texts, code, ended)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR], caplog.text
    assert "BusyResourceError" not in caplog.text
