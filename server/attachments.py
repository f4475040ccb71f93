"""Attachments: files customers and agents upload, stored on disk, described in PostgreSQL.

The bytes go to `<data_dir>/attachments/<account_id>/<id>`: streamed to a temporary file beside
it (never more than the size limit in memory), fsynced, renamed into place, and only then is
the row inserted, so a row always has its file. Only allowed content types are accepted, and
the first bytes must match the type (a PNG starts with the PNG signature, …).
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import UUID

import asyncpg
import trio

from kefu.server.database import Database
from kefu.server.directory import InvalidInput, NotFound

MAX_FILENAME_CHARS = 255
SNIFF_BYTES = 512
"""How many leading bytes are kept to check the content against its declared type."""


class TooLarge(Exception):
    """The upload is larger than `max_upload_bytes`."""


class UnsupportedType(Exception):
    """The content type is not allowed, or the bytes are not of that type."""


@dataclass(frozen=True, slots=True)
class Uploader:
    account_id: UUID
    role: str  # 'customer' or 'agent'
    id: UUID


def attachments_dir(data_dir: Path, account_id: UUID) -> Path:
    return data_dir / "attachments" / str(account_id)


def sanitize_filename(name: str | None) -> str:
    """A safe display name: no folders, no control characters, at most 255 characters."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    name = name.strip().strip(".").strip()
    if not name:
        return "file"
    if len(name) > MAX_FILENAME_CHARS:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 16:
            name = stem[: MAX_FILENAME_CHARS - len(extension) - 1] + "." + extension
        else:
            name = name[:MAX_FILENAME_CHARS]
    return name


def content_disposition(kind: str, filename: str) -> str:
    disposition = "attachment" if kind == "file" else "inline"
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


# -- content sniffing ------------------------------------------------------------------------

_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP = (b"PK\x03\x04", b"PK\x05\x06")


def _ftyp(data: bytes) -> bool:
    return data[4:8] == b"ftyp"


def _text(data: bytes) -> bool:
    return b"\x00" not in data


_SIGNATURES: dict[str, Any] = {
    "image/png": lambda d: d.startswith(b"\x89PNG\r\n\x1a\n"),
    "image/jpeg": lambda d: d.startswith(b"\xff\xd8\xff"),
    "image/gif": lambda d: d.startswith((b"GIF87a", b"GIF89a")),
    "image/webp": lambda d: d.startswith(b"RIFF") and d[8:12] == b"WEBP",
    "audio/mpeg": lambda d: d.startswith(b"ID3") or (len(d) > 1 and d[0] == 0xFF and d[1] & 0xE0 == 0xE0),
    "audio/ogg": lambda d: d.startswith(b"OggS"),
    "audio/wav": lambda d: d.startswith(b"RIFF") and d[8:12] == b"WAVE",
    "audio/webm": lambda d: d.startswith(b"\x1a\x45\xdf\xa3"),
    "audio/mp4": _ftyp,
    "audio/amr": lambda d: d.startswith(b"#!AMR"),
    "video/mp4": _ftyp,
    "video/webm": lambda d: d.startswith(b"\x1a\x45\xdf\xa3"),
    "video/quicktime": lambda d: d[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"),
    "application/pdf": lambda d: d.startswith(b"%PDF-"),
    "application/zip": lambda d: d.startswith(_ZIP),
    "application/msword": lambda d: d.startswith(_OLE),
    "application/vnd.ms-excel": lambda d: d.startswith(_OLE),
    "application/vnd.ms-powerpoint": lambda d: d.startswith(_OLE),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": lambda d: d.startswith(_ZIP),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": lambda d: d.startswith(_ZIP),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": lambda d: d.startswith(_ZIP),
    "text/plain": _text,
    "text/csv": _text,
}
"""Known content types and how their files begin. Images must match; so must every type listed.
A type added by configuration without an entry here is accepted by its declared type alone."""


def content_matches(content_type: str, head: bytes) -> bool:
    check = _SIGNATURES.get(content_type)
    if check is None:
        return not content_type.startswith("image/")  # an unknown image type cannot be vouched for
    return bool(check(head))


# -- storing and finding -------------------------------------------------------------------------


async def store_upload(
    database: Database,
    data_dir: Path,
    uploader: Uploader,
    *,
    content_type: str,
    kind: str,
    filename: str,
    chunks: AsyncIterator[bytes],
    limit: int,
) -> dict[str, Any]:
    """Stream `chunks` to disk and record the attachment; raises TooLarge or UnsupportedType."""
    attachment_id = uuid.uuid4()
    folder = attachments_dir(data_dir, uploader.account_id)
    await trio.to_thread.run_sync(lambda: folder.mkdir(parents=True, exist_ok=True))
    final = folder / str(attachment_id)
    partial = folder / f".{attachment_id}.part"
    digest = hashlib.sha256()
    head = b""
    size = 0
    sniffed = False
    try:
        async with await trio.open_file(partial, "xb") as file:
            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"the file is larger than {limit} bytes")
                if len(head) < SNIFF_BYTES:
                    head += chunk[: SNIFF_BYTES - len(head)]
                if not sniffed and len(head) >= SNIFF_BYTES:
                    sniffed = True
                    if not content_matches(content_type, head):
                        raise UnsupportedType(f"the file's content is not {content_type}")
                digest.update(chunk)
                await file.write(chunk)
            if size == 0:
                raise InvalidInput("the file is empty")
            if not sniffed and not content_matches(content_type, head):
                raise UnsupportedType(f"the file's content is not {content_type}")
            await file.flush()
            await trio.to_thread.run_sync(os.fsync, file.fileno())
        await trio.to_thread.run_sync(os.replace, partial, final)
        await trio.to_thread.run_sync(fsync_dir, folder)
    except BaseException:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(lambda: partial.unlink(missing_ok=True))
        raise
    try:
        await database.execute(
            """INSERT INTO attachments (account_id, id, uploader_role, uploader_id, kind, content_type,
                                        filename, size_bytes, sha256)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            uploader.account_id,
            attachment_id,
            uploader.role,
            uploader.id,
            kind,
            content_type,
            filename,
            size,
            digest.digest(),
        )
    except BaseException:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(lambda: final.unlink(missing_ok=True))
        raise
    return {
        "id": str(attachment_id),
        "kind": kind,
        "content_type": content_type,
        "filename": filename,
        "size_bytes": size,
    }


def fsync_dir(folder: Path) -> None:
    """Make a folder's entries (a file just renamed into it) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def find_attachment(database: Database, account_id: UUID, attachment_id: UUID) -> asyncpg.Record:
    row = await database.fetchrow(
        """SELECT id, uploader_role, uploader_id, kind, content_type, filename, size_bytes, created_at
           FROM attachments WHERE account_id = $1 AND id = $2""",
        account_id,
        attachment_id,
    )
    if row is None:
        raise NotFound("no such attachment")
    return row


async def attachment_kind(database: Database, account_id: UUID, attachment_id: UUID) -> str | None:
    """'image', 'voice', 'video' or 'file' when the attachment exists in the account; else None."""
    kind: str | None = await database.fetchval(
        "SELECT kind FROM attachments WHERE account_id = $1 AND id = $2", account_id, attachment_id
    )
    return kind


async def visible_to_customer(database: Database, account_id: UUID, attachment_id: UUID, customer_id: UUID) -> bool:
    """Did this customer upload it, or was it sent in one of the customer's conversations?"""
    visible: bool = await database.fetchval(
        """SELECT EXISTS (SELECT 1 FROM attachments
                           WHERE account_id = $1 AND id = $2 AND uploader_role = 'customer' AND uploader_id = $3)
               OR EXISTS (SELECT 1 FROM conversations c JOIN conversation_events e ON e.conversation_id = c.id
                           WHERE c.account_id = $1 AND c.customer_id = $3 AND e.kind = 'message'
                             AND e.body->>'attachment_id' = $2::text)""",
        account_id,
        attachment_id,
        customer_id,
    )
    return visible
