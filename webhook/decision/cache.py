"""In-memory caches for the admission hot path: bounded, per-entry TTL, single-flight.

Every cache here answers "compute this once": concurrent callers of one missing key share one
computation, which runs as its own task so that a caller giving up (an admission deadline)
does not cancel it; it completes and warms the cache for the retry. Failures are not cached.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    shared: int = 0
    """Callers that joined a computation already under way (single-flight)."""

    def as_dict(self, size: int) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "shared": self.shared, "size": size}


class AsyncCache(Generic[K, V]):
    """LRU of at most ``max_entries`` values, each kept for ``ttl(value)`` seconds (0: not kept)."""

    def __init__(
        self,
        name: str,
        *,
        max_entries: int,
        ttl: float | Callable[[V], float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._max = max_entries
        self._ttl = ttl if callable(ttl) else (lambda _value, seconds=float(ttl): seconds)
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._inflight: dict[K, asyncio.Task[V]] = {}
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, key: K) -> V | None:
        """The fresh cached value, without computing; counts as a hit or a miss."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self._clock():
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return entry[1]
        if entry is not None:
            del self._entries[key]
        return None

    async def get(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        """The cached value for ``key``, computing it at most once across concurrent callers."""
        value = self.peek(key)
        if value is not None:
            return value
        task = self._inflight.get(key)
        if task is None:
            self.stats.misses += 1
            task = asyncio.ensure_future(self._compute(key, compute))
            # Retrieve the outcome even if every caller gave up, so a failure is never "unretrieved".
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._inflight[key] = task
        else:
            self.stats.shared += 1
        # shield: a caller that is cancelled (deadline) leaves the computation running for others.
        return await asyncio.shield(task)

    async def _compute(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        try:
            value = await compute()
        finally:
            self._inflight.pop(key, None)
        ttl = self._ttl(value)
        if ttl > 0:
            self._entries[key] = (self._clock() + ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self._entries.clear()

    def stats_dict(self) -> dict[str, int]:
        return self.stats.as_dict(len(self._entries))
