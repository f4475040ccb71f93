"""Attachments over REST: limits, content checks, storage on disk and who may download."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from kefu.server import audit
from kefu.server.attachments import attachment_kind, content_disposition, sanitize_filename
from tests.server.test_auth import bearer
from tests.server.test_contact_center import _account_id, node_and_database
from tests.server.test_directory import _admin_token, _user_token

LIMIT = 64 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
PDF = b"%PDF-1.7\n" + b"x" * 2000


def upload_headers(token: str, content_type: str) -> dict[str, str]:
    return {**bearer(token), "Content-Type": content_type}


async def test_upload_and_download(database_dsn: str, tmp_path: Path) -> None:
    async with node_and_database(database_dsn, tmp_path, max_upload_bytes=LIMIT) as (_node, client, database):
        slug, admin = await _admin_token(client, database, "files")
        account_id = await _account_id(client, admin)
        _, agent = await _user_token(client, admin, slug, "agent")
        visitor = (await client.post("/api/v1/webchat/visitors", json={"account": slug})).json()["token"]
        other_visitor = (await client.post("/api/v1/webchat/visitors", json={"account": slug})).json()["token"]
        slug_b, admin_b = await _admin_token(client, database, "other")
        visitor_b = (await client.post("/api/v1/webchat/visitors", json={"account": slug_b})).json()["token"]

        response = await client.post(
            "/api/v1/attachments",
            params={"filename": "../../etc/screen shot.png"},
            content=PNG,
            headers=upload_headers(visitor, "image/png"),
        )
        assert response.status_code == 201, response.text
        image = response.json()
        assert image == {
            "id": image["id"],
            "kind": "image",
            "content_type": "image/png",
            "filename": "screen shot.png",
            "size_bytes": len(PNG),
        }
        stored = tmp_path / "attachments" / str(account_id) / image["id"]
        assert stored.read_bytes() == PNG
        assert not [p for p in stored.parent.iterdir() if p.name.endswith(".part")]
        row = await database.fetchrow("SELECT * FROM attachments WHERE id = $1", uuid.UUID(image["id"]))
        assert row["uploader_role"] == "customer" and row["sha256"] == hashlib.sha256(PNG).digest()
        assert await attachment_kind(database, account_id, uuid.UUID(image["id"])) == "image"
        assert await attachment_kind(database, uuid.uuid4(), uuid.UUID(image["id"])) is None

        response = await client.post(
            "/api/v1/attachments",
            params={"filename": "report.pdf"},
            content=PDF,
            headers=upload_headers(agent, "application/pdf; charset=binary"),
        )
        assert response.status_code == 201, response.text
        pdf = response.json()
        assert pdf["kind"] == "file" and pdf["filename"] == "report.pdf"

        # Users of the account and the uploading visitor download; nobody else sees it.
        for token in (admin, agent, visitor):
            response = await client.get(f"/api/v1/attachments/{image['id']}", headers=bearer(token))
            assert response.status_code == 200, token
            assert response.content == PNG
            assert response.headers["content-type"] == "image/png"
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["content-disposition"].startswith("inline;")
        response = await client.get(f"/api/v1/attachments/{pdf['id']}", headers=bearer(admin))
        assert response.status_code == 200 and response.content == PDF
        assert response.headers["content-disposition"].startswith('attachment; filename="report.pdf"')
        for token in (other_visitor, admin_b, visitor_b):
            response = await client.get(f"/api/v1/attachments/{image['id']}", headers=bearer(token))
            assert response.status_code == 404, token
            assert response.json()["error"]["code"] == "not_found"
        # A visitor sees only what they uploaded themself.
        assert (await client.get(f"/api/v1/attachments/{pdf['id']}", headers=bearer(visitor))).status_code == 404
        assert (await client.get(f"/api/v1/attachments/{image['id']}")).status_code == 401
        assert (await client.get(f"/api/v1/attachments/{image['id']}", headers=bearer("kv_x"))).status_code == 401
        assert (await client.get("/api/v1/attachments/nope", headers=bearer(admin))).status_code == 404
        assert (await client.get(f"/api/v1/attachments/{uuid.uuid4()}", headers=bearer(admin))).status_code == 404
        # Uploading needs a live token.
        response = await client.post("/api/v1/attachments", content=PNG, headers={"Content-Type": "image/png"})
        assert response.status_code == 401
        # The log holds the agent's creation and the probe of an unknown id, nothing of the downloads.
        entries = [(e["action"], e["detail"].get("status")) for e in await audit.entries(database, account_id)]
        assert entries == [("agent.create", None), ("denied:attachment.read", 404)]


# A refused upload is answered before its body is read; httpx then drops the rest of its own
# request body generator, which the garbage collector reports. The server side is clean.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_upload_limits_and_content_checks(database_dsn: str, tmp_path: Path) -> None:
    async with node_and_database(database_dsn, tmp_path, max_upload_bytes=LIMIT) as (_node, client, database):
        _slug, admin = await _admin_token(client, database, "limits")
        account_id = await _account_id(client, admin)
        folder = tmp_path / "attachments" / str(account_id)

        async def upload(content: bytes | AsyncIterator[bytes], content_type: str) -> httpx.Response:
            return await client.post(
                "/api/v1/attachments",
                params={"filename": "f"},
                content=content,
                headers=upload_headers(admin, content_type),
            )

        # Exactly at the limit is fine; one byte more is refused by its Content-Length, before reading.
        at_limit = PNG + b"\x00" * (LIMIT - len(PNG))
        assert (await upload(at_limit, "image/png")).status_code == 201
        response = await upload(at_limit + b"\x00", "image/png")
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        # Above the app-wide 1 MiB JSON limit too (the upload route has its own limit).
        response = await upload(PNG + b"\x00" * (2 * 1024 * 1024), "image/png")
        assert response.status_code == 413

        # A client that sends no length (chunked) is counted while it streams, and stopped.
        async def chunked(total: int) -> AsyncIterator[bytes]:
            yield PNG
            sent = len(PNG)
            while sent < total:
                piece = min(8192, total - sent)
                sent += piece
                yield b"\x00" * piece

        response = await upload(chunked(LIMIT * 4), "image/png")
        assert response.headers["connection"] == "close"
        assert response.status_code == 413
        response = await upload(chunked(LIMIT - 10), "image/png")
        assert response.status_code == 201, response.text

        # Types outside the allowlist, and content that is not what it claims to be.
        for content, content_type in [
            (b"<html><script>alert(1)</script>", "text/html"),
            (b"MZ\x90\x00", "application/x-msdownload"),
            (PNG, "image/svg+xml"),
            (PNG, "application/octet-stream"),
        ]:
            response = await upload(content, content_type)
            assert response.status_code == 415, content_type
            assert response.json()["error"]["code"] == "unsupported_media_type"
        for content, content_type in [
            (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/png"),
            (PNG, "image/jpeg"),
            (b"GIF87a" + bytes(600), "image/webp"),
            (b"not a pdf at all", "application/pdf"),
            (b"MZ\x90\x00\x03" + bytes(1000), "application/zip"),
            (b"text\x00with nul", "text/plain"),
        ]:
            response = await upload(content, content_type)
            assert response.status_code == 415, content_type
        for content, content_type in [
            (b"\xff\xd8\xff\xe0" + bytes(100), "image/jpeg"),
            (b"GIF89a" + bytes(100), "image/gif"),
            (b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(100), "image/webp"),
            (b"OggS" + bytes(100), "audio/ogg"),
            (b"\x00\x00\x00\x18ftypmp42" + bytes(100), "video/mp4"),
            (b"name,amount\nana,3\n", "text/csv"),
        ]:
            response = await upload(content, content_type)
            assert response.status_code == 201, (content_type, response.text)
        assert (await upload(b"", "text/plain")).status_code == 400
        # Nothing refused was left on disk, and every kept file has its row.
        on_disk = {p.name for p in folder.iterdir()}
        rows = {
            str(r["id"]) for r in await database.fetch("SELECT id FROM attachments WHERE account_id = $1", account_id)
        }
        assert on_disk == rows and len(rows) == 8


def test_filenames_are_sanitized_and_quoted() -> None:
    assert sanitize_filename("C:\\Users\\ana\\photo.jpg") == "photo.jpg"
    assert sanitize_filename("a\x00b\r\nc.txt") == "abc.txt"
    assert sanitize_filename("..") == "file"
    assert sanitize_filename(None) == "file"
    long = sanitize_filename("x" * 400 + ".pdf")
    assert len(long) == 255 and long.endswith(".pdf")
    header = content_disposition("file", 'résumé "final".pdf')
    assert header.startswith('attachment; filename="r_sum_ _final_.pdf"')
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf" in header
