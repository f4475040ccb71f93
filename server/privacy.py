"""Customers' personal data: encryption at rest, blind indexes, masking and erasure.

- Encryption: a customer's display name, phone number and e-mail address are stored AES-256-GCM encrypted
  (`cryptography`'s AESGCM), each value with a fresh 96-bit nonce and bound to its row and column
  by the associated data (account id, customer id, field name): a value copied into another row or
  column does not decrypt. Stored as `version (1 byte) || nonce (12) || ciphertext+tag`.
- Blind index: HMAC-SHA256 over the account id and the normalized value (E.164 phone number,
  lower-cased e-mail) finds a customer by phone or e-mail without decrypting every row, and
  without the value itself being in the database.
- Keys: one 32-byte data key from configuration (`data_key`, base64: KEFU_DATA_KEY or the config
  file). Without one, kefu generates a key into `<data_dir>/data.key` (mode 0600) on first start
  and logs the path, never the key. The encryption key and the index key are derived from it
  with HKDF-SHA256 under different labels, so neither reveals the other.
- Masking: staff without the permission `contacts.view_unmasked` (granted by a role, as the
  built-in admin and supervisor roles do, or to one user alone with `may_view_contact_details`)
  see `138****5678` and `a***@example.com` in every REST answer and every websocket frame, in
  customer records and inside texts (messages, topics); masked when shown, never when stored
  (see docs/security.md, Privacy).
- The event log holds no customer name: frames take it from the (encrypted) customer record.
- Erasure: `erase_customer` removes one customer's personal fields, message texts and
  attachments (rows and files) and writes an audit entry without personal data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import phonenumbers
import trio
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kefu.protocol.masking import mask_digits, mask_email
from kefu.protocol.permissions import Permission
from kefu.server import audit, roles
from kefu.server.attachments import attachments_dir
from kefu.server.database import Database
from kefu.server.directory import Conflict, InvalidInput, NotFound

log = logging.getLogger("kefu.privacy")

DATA_KEY_BYTES = 32
KEY_FILE_NAME = "data.key"
_VERSION = b"\x01"
_NONCE_BYTES = 12
MAX_EMAIL_CHARS = 254
MAX_PHONE_CHARS = 40
PERSONAL_FIELDS = ("phone", "email")
"""Encrypted columns of `customers` (`<field>_enc`, with `<field>_index` as blind index)."""


class DataKeyError(Exception):
    """The data key is missing, malformed, or not the key the stored data was encrypted with."""


def decode_data_key(text: str, where: str) -> bytes:
    """A base64 (standard or URL-safe) 32-byte key; `where` names its source in errors."""
    cleaned = text.strip()
    try:
        key = base64.b64decode(cleaned.replace("-", "+").replace("_", "/") + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise DataKeyError(f"{where} is not base64") from None
    if len(key) != DATA_KEY_BYTES:
        raise DataKeyError(f"{where} must be {DATA_KEY_BYTES} bytes in base64 (it is {len(key)} bytes)")
    return key


def new_data_key_text() -> str:
    return base64.b64encode(secrets.token_bytes(DATA_KEY_BYTES)).decode()


def _derive(key: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"kefu/" + label).derive(key)


@dataclass(frozen=True)
class DataKeys:
    """The keys derived from one data key."""

    _aead: AESGCM
    _index_key: bytes
    source: str
    """Where the key came from (a setting or a file's path): for messages, never the key."""

    @classmethod
    def from_key(cls, key: bytes, source: str = "the data key") -> DataKeys:
        if len(key) != DATA_KEY_BYTES:
            raise DataKeyError(f"{source} must be {DATA_KEY_BYTES} bytes")
        return cls(
            AESGCM(_derive(key, b"customer-fields/aes-256-gcm/v1")),
            _derive(key, b"blind-index/hmac-sha256/v1"),
            source,
        )

    def __repr__(self) -> str:
        return f"DataKeys(source={self.source!r})"

    @staticmethod
    def _context(account_id: UUID, customer_id: UUID, field: str) -> bytes:
        return account_id.bytes + customer_id.bytes + field.encode()

    def encrypt(self, account_id: UUID, customer_id: UUID, field: str, value: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode(), self._context(account_id, customer_id, field))
        return _VERSION + nonce + sealed

    def decrypt(self, account_id: UUID, customer_id: UUID, field: str, blob: bytes) -> str:
        if len(blob) < 1 + _NONCE_BYTES + 16 or blob[:1] != _VERSION:
            raise DataKeyError(f"customer {customer_id}: stored {field} is not in a format kefu knows")
        nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, sealed, self._context(account_id, customer_id, field)).decode()
        except InvalidTag:
            raise DataKeyError(
                f"cannot decrypt customer {customer_id}'s {field}: {self.source} is not the key it was encrypted"
                " with (or the stored value was altered or moved to another row)"
            ) from None

    def blind_index(self, account_id: UUID, field: str, normalized: str) -> bytes:
        message = account_id.bytes + field.encode() + b"\0" + normalized.encode()
        return hmac.new(self._index_key, message, hashlib.sha256).digest()


def load_data_keys(configured: str, data_dir: Path) -> DataKeys:
    """The keys from the `data_key` setting, else from `<data_dir>/data.key`, created if missing."""
    if configured:
        return DataKeys.from_key(decode_data_key(configured, "setting 'data_key'"), "setting 'data_key'")
    path = data_dir / KEY_FILE_NAME
    source = f"the key file {path}"
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        text = new_data_key_text()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it just now: use that one
            return load_data_keys(configured, data_dir)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(text + "\n")
            file.flush()
            os.fsync(file.fileno())
        log.warning(
            "generated a new data key for customers' personal data; back it up: without it the data"
            " cannot be read (or set KEFU_DATA_KEY)",
            extra={"path": str(path)},
        )
    except (OSError, UnicodeDecodeError) as error:
        raise DataKeyError(f"cannot read {source}: {getattr(error, 'strerror', None) or error}") from None
    if path.stat().st_mode & 0o077:
        log.warning("the data key file is readable by others; it should be mode 0600", extra={"path": str(path)})
    return DataKeys.from_key(decode_data_key(text, source), source)


async def check_data_keys(database: Database, keys: DataKeys) -> None:
    """Fail clearly at start when stored personal data does not decrypt with `keys`."""
    row = await database.fetchrow(
        """SELECT account_id, id, display_name_enc, phone_enc, email_enc FROM customers
           WHERE display_name_enc IS NOT NULL OR phone_enc IS NOT NULL OR email_enc IS NOT NULL LIMIT 1"""
    )
    if row is None:
        return
    field = next(f for f in ("display_name", "phone", "email") if row[f"{f}_enc"] is not None)
    keys.decrypt(row["account_id"], row["id"], field, row[f"{field}_enc"])


async def seal_plaintext_names(database: Database, keys: DataKeys, batch: int = 1000) -> int:
    """Encrypt display names stored in plaintext (before migration 0007); returns how many."""
    sealed = 0
    while True:

        async def work(conn: asyncpg.Connection) -> int:
            async with conn.transaction():
                rows = await conn.fetch(
                    """SELECT account_id, id, display_name FROM customers WHERE display_name IS NOT NULL
                       LIMIT $1 FOR UPDATE SKIP LOCKED""",
                    batch,
                )
                await conn.executemany(
                    "UPDATE customers SET display_name = NULL, display_name_enc = $3 WHERE account_id = $1 AND id = $2",
                    [
                        (
                            r["account_id"],
                            r["id"],
                            keys.encrypt(r["account_id"], r["id"], "display_name", r["display_name"]),
                        )
                        for r in rows
                    ],
                )
                return len(rows)

        done = await database.run(work)
        sealed += done
        if done < batch:
            break
    if sealed:
        log.info("encrypted customers' display names stored in plaintext", extra={"customers": sealed})
    return sealed


# -- normalizing and masking ---------------------------------------------------------------------


def normalize_phone(raw: Any, region: str) -> str:
    """E.164 (`+8613812345678`) of a number written any usual way; `region` for numbers without +."""
    if not isinstance(raw, str) or not 1 <= len(raw.strip()) <= MAX_PHONE_CHARS:
        raise InvalidInput(f"phone must be a string of 1 to {MAX_PHONE_CHARS} characters")
    try:
        number = phonenumbers.parse(raw, region.upper())
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise InvalidInput(f"phone must be a valid phone number (with +country code, or a number of region {region})")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def normalize_email(raw: Any) -> str:
    if not isinstance(raw, str) or not _EMAIL.fullmatch(raw.strip()) or len(raw.strip()) > MAX_EMAIL_CHARS:
        raise InvalidInput("email must be an e-mail address")
    return raw.strip().lower()


def display_phone(e164: str) -> str:
    number = phonenumbers.parse(e164, None)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def mask_phone(e164: str, region: str) -> str:
    """`138****5678` for a number of `region`; `+44 74****0123`-like (country code kept) otherwise."""
    number = phonenumbers.parse(e164, None)
    masked = mask_digits(str(number.national_number))
    home = phonenumbers.country_code_for_region(region.upper())
    return masked if number.country_code == home else f"+{number.country_code} {masked}"


def sees_unmasked(permissions: AbstractSet[Permission]) -> bool:
    """Whether a holder of `permissions` sees customers' phone numbers and e-mail addresses in
    full (a signed-in caller: `sees_unmasked(user.permissions)`, no query)."""
    return Permission.CONTACTS_VIEW_UNMASKED in permissions


async def viewer_may_see(database: Database, account_id: UUID, user_id: UUID) -> bool:
    """`sees_unmasked` for a user read from storage now (an agent just edited, say)."""
    permissions = await roles.permissions_of_user(database, account_id, user_id)
    return permissions is not None and sees_unmasked(permissions)


@dataclass(frozen=True)
class Privacy:
    """What the edge needs to store, find and show customers' contact details."""

    keys: DataKeys
    phone_region: str

    def sealed(self, account_id: UUID, customer_id: UUID, field: str, normalized: str | None) -> tuple[Any, Any]:
        """(ciphertext, blind index) of a normalized value; (None, None) to clear it."""
        if normalized is None:
            return None, None
        return (
            self.keys.encrypt(account_id, customer_id, field, normalized),
            self.keys.blind_index(account_id, field, normalized),
        )

    def seal_name(self, account_id: UUID, customer_id: UUID, name: str | None) -> bytes | None:
        return None if name is None else self.keys.encrypt(account_id, customer_id, "display_name", name)

    def name(self, account_id: UUID, customer_id: UUID, sealed: bytes | None, legacy: str | None = None) -> str | None:
        """A customer's display name from `display_name_enc` (or a not yet sealed plaintext one)."""
        if sealed is None:
            return legacy
        return self.keys.decrypt(account_id, customer_id, "display_name", sealed)

    def normalize(self, field: str, raw: Any) -> str | None:
        if raw is None:
            return None
        return normalize_phone(raw, self.phone_region) if field == "phone" else normalize_email(raw)

    def contact_json(self, row: asyncpg.Record | dict[str, Any], *, full: bool) -> dict[str, Any]:
        """`phone` and `email` of a customer row, in full or masked, and whether they are masked."""
        shown: dict[str, Any] = {}
        for field in PERSONAL_FIELDS:
            blob = row[f"{field}_enc"]
            if blob is None:
                shown[field] = None
                continue
            value = self.keys.decrypt(row["account_id"], row["id"], field, blob)
            if field == "phone":
                shown[field] = display_phone(value) if full else mask_phone(value, self.phone_region)
            else:
                shown[field] = value if full else mask_email(value)
        shown["contact_details_masked"] = not full
        return shown


# -- erasure -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Erased:
    customer_id: UUID
    conversations: int
    messages: int
    attachments: int
    files_removed: int

    def json(self) -> dict[str, Any]:
        return {
            "customer_id": str(self.customer_id),
            "conversations": self.conversations,
            "messages_redacted": self.messages,
            "attachments_deleted": self.attachments,
            "files_removed": self.files_removed,
        }


async def erase_customer(
    database: Database,
    data_dir: Path,
    account_id: UUID,
    customer_id: UUID,
    *,
    actor_role: str,
    actor_id: UUID | str | None,
) -> Erased:
    """Remove one customer's personal data: name, phone, e-mail, visitor token, conversation
    topics, the text of every message of its conversations (both sides) and every attachment of
    them (rows, then files). The customer row and the conversations stay, as anonymous records,
    so reports still count them; the audit log gets an entry that names only the customer id.

    Refused (Conflict) while one of the customer's conversations is open: close it first.
    """

    async def work(conn: asyncpg.Connection) -> tuple[Erased, list[UUID]]:
        async with conn.transaction():
            found = await conn.fetchval(
                "SELECT true FROM customers WHERE account_id = $1 AND id = $2 FOR UPDATE", account_id, customer_id
            )
            if not found:
                raise NotFound("no such customer")
            conversation_ids = [
                r["id"]
                for r in await conn.fetch(
                    "SELECT id, status FROM conversations WHERE account_id = $1 AND customer_id = $2 FOR UPDATE",
                    account_id,
                    customer_id,
                )
            ]
            still_open = await conn.fetchval(
                "SELECT count(*) FROM conversations WHERE id = ANY($1::uuid[]) AND status <> 'closed'",
                conversation_ids,
            )
            if still_open:
                raise Conflict(f"the customer has {still_open} open conversation(s): close them first, then erase")
            attachment_ids = [
                r["id"]
                for r in await conn.fetch(
                    """DELETE FROM attachments WHERE account_id = $1 AND (
                           (uploader_role = 'customer' AND uploader_id = $2)
                           OR id::text IN (SELECT body->>'attachment_id' FROM conversation_events
                                           WHERE conversation_id = ANY($3::uuid[]) AND body ? 'attachment_id'))
                       RETURNING id""",
                    account_id,
                    customer_id,
                    conversation_ids,
                )
            ]
            status = await conn.execute(
                """UPDATE conversation_events
                   SET body = (body - 'text' - 'sender_name' - 'attachment_id' - 'filename')
                              || '{"erased": true}'::jsonb
                   WHERE conversation_id = ANY($1::uuid[]) AND kind = 'message'""",
                conversation_ids,
            )
            messages = int(status.split()[-1])
            await conn.execute("UPDATE conversations SET topic = NULL WHERE id = ANY($1::uuid[])", conversation_ids)
            await conn.execute(
                """UPDATE customers SET display_name = NULL, display_name_enc = NULL,
                          phone_enc = NULL, phone_index = NULL, email_enc = NULL, email_index = NULL,
                          visitor_token_hash = NULL, erased_at = now()
                   WHERE account_id = $1 AND id = $2""",
                account_id,
                customer_id,
            )
            erased = Erased(customer_id, len(conversation_ids), messages, len(attachment_ids), 0)
            detail = {k: v for k, v in erased.json().items() if k not in ("customer_id", "files_removed")}
            await audit.record(
                conn, account_id, actor_role, actor_id, "customer.erase", "customer", customer_id, detail
            )
            return erased, attachment_ids

    erased, attachment_ids = await database.run(work)
    folder = attachments_dir(data_dir, account_id)

    def remove_files() -> int:
        removed = 0
        for attachment_id in attachment_ids:
            try:
                (folder / str(attachment_id)).unlink()
                removed += 1
            except FileNotFoundError:
                pass
        return removed

    removed = await trio.to_thread.run_sync(remove_files)
    log.info(
        "customer erased",
        extra={"customer_id": str(customer_id), "attachments": erased.attachments, "files_removed": removed},
    )
    return Erased(erased.customer_id, erased.conversations, erased.messages, erased.attachments, removed)
