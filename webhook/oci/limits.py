"""Bounds on registry work: per-response limits, a process-wide request limiter, a per-image byte budget.

A registry decides how much it sends and how many things it lists; these bounds decide how much
of that Signet holds, so one hostile registry cannot exhaust memory or the request capacity every
other admission needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from webhook.errors import InputError
from webhook.oci.errors import ImageBudgetError

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RegistryLimits:
    """Bounds on what one registry may make us read or wait for; small by default (admission path)."""

    max_manifest_bytes: int = 4 * MiB
    max_blob_bytes: int = 4 * MiB
    max_layers: int = 1000
    max_redirects: int = 5
    max_referrers: int = 1000
    max_referrer_pages: int = 10
    connect_timeout: float = 3.0
    read_timeout: float = 5.0
    operation_timeout: float = 8.0
    max_connections: int = 32
    max_image_bytes: int = 16 * MiB  # every manifest and blob one image's signature discovery reads
    max_concurrent_fetches: int = 8  # manifests and blobs fetched at once for one image


def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n % MiB == 0 else f"{n} bytes"


class RequestLimiter:
    """A bound on registry and Rekor requests in flight; one per process, shared by every client."""

    def __init__(self, max_in_flight: int = 64) -> None:
        if max_in_flight < 1:
            raise InputError(f"the in-flight request bound must be at least 1, got {max_in_flight}")
        self.max_in_flight = max_in_flight
        self._semaphore = asyncio.Semaphore(max_in_flight)
        self.in_flight = 0
        self.peak = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one request slot (the request, its redirects and reading its body)."""
        async with self._semaphore:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            try:
                yield
            finally:
                self.in_flight -= 1


class ImageBudget:
    """What one image's signature discovery may fetch: ``max_bytes`` in total, ``max_concurrent`` at once.

    Bytes are charged before a fetch when its size is declared (a descriptor), else as they arrive,
    and never refunded: fetched-then-rejected content cost the same work.
    """

    def __init__(self, image: str, *, max_bytes: int, max_concurrent: int) -> None:
        self.image = image
        self.max_bytes = max_bytes
        self.used = 0
        self._slots = asyncio.Semaphore(max(1, max_concurrent))

    def charge(self, size: int, what: str) -> None:
        """Count ``size`` more bytes for ``what``; ImageBudgetError (nothing counted) when over budget."""
        if self.used + size > self.max_bytes:
            raise ImageBudgetError(
                f"signature data of image {self.image} exceeds the budget of {_size(self.max_bytes)} per image: "
                f"{what} needs {size} more bytes after {self.used} bytes already fetched",
                image=self.image,
                limit=self.max_bytes,
            )
        self.used += size

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the image's concurrent-fetch slots."""
        async with self._slots:
            yield
