"""A small thread-safe LRU set for remembering checks whose outcome cannot change.

Only time-independent facts go here (a certificate's signature by its issuer, its extension
profile, its SCT): every time-dependent check is redone on each verification.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable


class PassedChecks:
    """Keys of checks that passed; bounded, least recently used dropped first."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._entries: OrderedDict[Hashable, None] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return True
            return False

    def add(self, key: Hashable) -> None:
        with self._lock:
            self._entries[key] = None
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
