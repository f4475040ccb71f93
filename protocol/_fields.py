"""The limits of the protocol and the field types built from them, each written once.

A field type is a JSON type with its limits as a msgspec ``Meta``: the decoders check them
in msgspec's one C pass, and ``schema`` turns the same ``Meta`` into the JSON Schema's
``minLength``/``maxLength``/``minimum``/``maximum``/``pattern``. msgspec is strict, as the
protocol is: ``true`` is never an integer, ``1.0`` never a sequence number, ``"1"`` never 1.
Strings are counted in characters (Unicode code points), as JSON Schema counts them.
"""

from __future__ import annotations

from typing import Annotated, Final

from msgspec import Meta

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "MAX_CLIENT_ID_CHARS",
    "MAX_CODE_CHARS",
    "MAX_COUNT",
    "MAX_ID_CHARS",
    "MAX_LABEL_CHARS",
    "MAX_LIST_ITEMS",
    "MAX_NONCE_CHARS",
    "MAX_SEQ",
    "MAX_TEXT_CHARS",
    "MAX_TIMESTAMP_CHARS",
    "ClientId",
    "Code",
    "Count",
    "Id",
    "Label",
    "NonNegativeNumber",
    "Nonce",
    "PositiveCount",
    "PositiveSeq",
    "Seq",
    "Text",
    "Timestamp",
]

# A text message of MAX_TEXT_CHARS four-byte characters plus its envelope fits.
DEFAULT_MAX_FRAME_BYTES: Final = 64 * 1024
MAX_TEXT_CHARS: Final = 8000
MAX_CLIENT_ID_CHARS: Final = 64
MAX_ID_CHARS: Final = 128
MAX_NONCE_CHARS: Final = 64
# Machine words: error codes, event kinds, channel names.
MAX_CODE_CHARS: Final = 64
# Short free-text labels: reasons, topics, wrap-up codes, departments, display names.
MAX_LABEL_CHARS: Final = 200
MAX_TIMESTAMP_CHARS: Final = 40
# Sequence numbers are PostgreSQL bigints.
MAX_SEQ: Final = 2**63 - 1
# Counts, positions and durations in seconds: PostgreSQL integers.
MAX_COUNT: Final = 2**31 - 1
# The lists a server frame carries (conversations, queues, agents).
MAX_LIST_ITEMS: Final = 100_000

ClientId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_CLIENT_ID_CHARS,
        description="Chosen by the sender, unique per sender and conversation: the idempotency key of the frame.",
    ),
]
Id = Annotated[str, Meta(min_length=1, max_length=MAX_ID_CHARS, description="An id chosen by the server.")]
Label = Annotated[str, Meta(min_length=1, max_length=MAX_LABEL_CHARS)]
Code = Annotated[str, Meta(min_length=1, max_length=MAX_CODE_CHARS)]
Text = Annotated[str, Meta(min_length=1, max_length=MAX_TEXT_CHARS)]
Nonce = Annotated[str, Meta(min_length=1, max_length=MAX_NONCE_CHARS)]
Seq = Annotated[int, Meta(ge=0, le=MAX_SEQ)]
PositiveSeq = Annotated[int, Meta(ge=1, le=MAX_SEQ)]
Count = Annotated[int, Meta(ge=0, le=MAX_COUNT)]
PositiveCount = Annotated[int, Meta(ge=1, le=MAX_COUNT)]
NonNegativeNumber = Annotated[float, Meta(ge=0)]

# The wire's form of an instant (see server.utc_timestamp). The pattern is checked with the
# field; that the date and time exist (no 30 February) is checked after decoding.
Timestamp = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_TIMESTAMP_CHARS,
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|\+00:00)$",
        description="An ISO-8601 date and time in UTC, e.g. 2024-05-01T12:00:00.123Z.",
        extra_json_schema={"format": "date-time"},
    ),
]
