"""Parsing of Rekor entry fields: every malformed value becomes a VerificationError naming the field."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from webhook.errors import VerificationError

STEP_ENTRY = "log entry"
STEP_TLOG = "transparency log"
STEP_PROOF = "inclusion proof"

_INT = re.compile(r"^-?[0-9]+$")
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----([A-Za-z0-9+/=\s]*?)-----END \1-----")
_MAX_INT64 = (1 << 63) - 1


def _fail(reason: str) -> VerificationError:
    return VerificationError(reason, step=STEP_ENTRY)


def _obj(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(f"{what} is missing or not a JSON object")
    return value


def _str(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(f"{what} is missing or not a string")
    return value


def _int(value: object, what: str, *, optional: bool = False) -> int:
    """An int64 as protobuf JSON writes it (string) or as Rekor does (number); never negative."""
    if value is None and optional:
        return 0
    if isinstance(value, str) and _INT.match(value):
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise _fail(f"{what} is missing or not an integer")
    if number < 0:
        raise _fail(f"{what} is negative ({number})")
    if number > _MAX_INT64:
        raise _fail(f"{what} is out of range")
    return number


def _b64(value: object, what: str) -> bytes:
    """Base64 as protobuf JSON allows it: standard or URL-safe alphabet, padding optional."""
    text = _str(value, what)
    try:
        # Fast path (C, strict): what every Sigstore client actually writes.
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        pass
    altchars = b"-_" if ("-" in text or "_" in text) else None
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=altchars, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _fail(f"{what} is not valid base64") from exc


def _hex(value: object, what: str) -> bytes:
    try:
        return bytes.fromhex(_str(value, what))
    except ValueError as exc:
        raise _fail(f"{what} is not valid hex") from exc


def _utc(seconds: int) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise VerificationError(f"integrated time {seconds} is out of range", step=STEP_TLOG) from exc
