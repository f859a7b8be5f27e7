"""Reading an AdmissionReview body from the connection, within bounds a hostile client cannot stretch.

The body arrives as chunks (``Content-Length`` or chunked, the reader does not care) and is
collected only up to ``MAX_BODY``: a longer one is refused as soon as it passes the limit, so a
512 MiB chunked upload costs 16 MiB, not 512. The whole body must arrive within ``timeout``
seconds, so a client that sends headers and then trickles (or nothing) is answered and let go.

Size alone does not bound the work: orjson decodes 16 MiB of ``[[],[],...]`` into five million
lists in over a second, holding the GIL (nothing else in the process runs, ``/healthz``
included) and some 600 MB. So the reader also counts ``,``, ``[`` and ``{`` as chunks arrive (a
bound on the number of JSON values, over-counted inside strings) and refuses a body with more
than ``MAX_JSON_VALUES``: with that bound the worst decode measured takes ~65 ms (16 MiB of
long distinct keys), and a real AdmissionReview of 3 MiB has about a fifth of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Final

from webhook.admission.review import MalformedReviewError

MAX_BODY: Final = 16 * 1024 * 1024  # the API server sends objects of at most ~3 MiB, twice for UPDATE
MAX_JSON_VALUES: Final = 200_000


class UnreadableBodyError(MalformedReviewError):
    """The body was refused before parsing; ``code`` and ``status`` are the HTTP status to answer."""

    def __init__(self, message: str, code: int, status: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def too_large(message: str) -> UnreadableBodyError:
    return UnreadableBodyError(message, 413, "RequestEntityTooLarge")


def _json_values(chunk: bytes) -> int:
    return chunk.count(b",") + chunk.count(b"[") + chunk.count(b"{")


async def read_body(
    chunks: AsyncIterator[bytes],
    *,
    declared_length: str | None,
    timeout: float,
    max_bytes: int = MAX_BODY,
    max_values: int = MAX_JSON_VALUES,
) -> bytearray:
    """The body, or ``UnreadableBodyError`` (413 too large, 408 too slow) as soon as a bound is passed."""
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > max_bytes:
        raise too_large(f"body of {declared_length} bytes is larger than the limit of {max_bytes}")
    body = bytearray()
    values = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in chunks:
                body += chunk
                if len(body) > max_bytes:
                    raise too_large(f"body is larger than the limit of {max_bytes} bytes (stopped reading there)")
                values += _json_values(chunk)
                if values > max_values:
                    raise too_large(f"body holds more than {max_values} JSON values (counting commas, '[' and "
                                    "'{'); no AdmissionReview the API server sends comes near that")
    except TimeoutError:
        raise UnreadableBodyError(f"body not received within {timeout:g} s ({len(body)} bytes arrived)",
                                  408, "Timeout") from None
    return body
