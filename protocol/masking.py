"""Masking of phone numbers and e-mail addresses for people who may not see them in full.

Pure functions (sans-IO) shared by the server, the actors and the log filter:
`138****5678`, `a***@example.com`. `mask_text` finds numbers and addresses inside free text
(a message preview, a log line) and masks each one.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
_PHONE = re.compile(r"(?<![\w*.\-])\+?\(?\d(?:[\s\-()]{0,2}\d){6,16}(?![\w*]|\.\d|-\w)")
"""7 to 17 digits, optionally led by +, with spaces, dashes or brackets between them; not part
of a longer word, decimal number or identifier (so UUIDs and times stay as they are)."""


def mask_digits(digits: str) -> str:
    """The first 3 and last 4 of 11 digits stay (`138****5678`); shorter numbers show less."""
    digits = "".join(c for c in digits if c.isdigit())
    if len(digits) >= 10:
        return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]
    if len(digits) >= 7:
        return digits[:2] + "*" * (len(digits) - 4) + digits[-2:]
    return "*" * len(digits)


def mask_phone_text(raw: str) -> str:
    """A phone number as found in text, masked; a leading + and country code are not kept."""
    return mask_digits(raw)


def mask_email(address: str) -> str:
    """`alice@example.com` → `a***@example.com`: the first character of the local part stays."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "***"
    return (local[:1] or "*") + "***@" + domain


def mask_text(text: str) -> str:
    """`text` with every e-mail address and phone-like number in it masked."""
    text = _EMAIL.sub(lambda match: mask_email(match.group(0)), text)
    return _PHONE.sub(lambda match: mask_phone_text(match.group(0)), text)
