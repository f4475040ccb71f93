"""A websocket client on a bare TCP stream, for frames no websocket library would send
(invalid UTF-8 in a text frame, unmasked frames): frames are built and read by hand."""

from __future__ import annotations

import os
import struct

import orjson
import trio


def client_frame(opcode: int, payload: bytes, *, masked: bool = True) -> bytes:
    """One final frame, masked as a client's must be (RFC 6455, 5.3) unless `masked` is false."""
    bit = 0x80 if masked else 0
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, bit | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, bit | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, bit | 127, length)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))


class RawSocket:
    """A websocket client on a bare TCP stream: the upgrade, then frames read one by one."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.received = b""

    @classmethod
    async def open(cls, host: str, port: int, path: str) -> RawSocket:
        """Connect and upgrade; returns once the server's 101 is read."""
        raw = cls(await trio.open_tcp_stream(host, port))
        await raw.stream.send_all(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await raw._until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return raw

    async def _more(self) -> bool:
        try:
            chunk = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:
            return False
        self.received += chunk
        return bool(chunk)

    async def _until(self, marker: bytes) -> bytes:
        while marker not in self.received:
            assert await self._more(), f"connection ended before {marker!r}: {self.received!r}"
        head, _, self.received = self.received.partition(marker)
        return head

    async def _exactly(self, count: int) -> bytes | None:
        while len(self.received) < count:
            if not await self._more():
                return None
        data, self.received = self.received[:count], self.received[count:]
        return data

    async def frame(self) -> tuple[int, bytes] | None:
        """The next whole frame the server sent (opcode, payload), or None at the end of the stream."""
        head = await self._exactly(2)
        if head is None:
            return None
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        assert head[0] & 0x80 and not head[1] & 0x80, "the server sends unfragmented, unmasked frames"
        if length == 126:
            extended = await self._exactly(2)
            assert extended is not None
            (length,) = struct.unpack("!H", extended)
        elif length == 127:
            extended = await self._exactly(8)
            assert extended is not None
            (length,) = struct.unpack("!Q", extended)
        payload = await self._exactly(length)
        assert payload is not None, "the stream ended inside a frame"
        return opcode, payload

    async def until_closed(self) -> tuple[list[dict[str, object]], int | None, bool]:
        """The text frames received until the close frame, its code (None when the stream ended
        without one), and whether the server then ended the TCP stream."""
        texts: list[dict[str, object]] = []
        while (frame := await self.frame()) is not None:
            opcode, payload = frame
            if opcode == 0x8:
                (code,) = struct.unpack("!H", payload[:2])
                return texts, code, await self.frame() is None
            assert opcode == 0x1, frame
            texts.append(orjson.loads(payload))
        return texts, None, True
