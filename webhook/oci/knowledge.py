"""What registries have shown about themselves, remembered so later requests skip the probes.

Shared by every RegistryClient of a process (one per pull-secret credential set): how a host wants
to be authenticated (Basic, or Bearer tokens from which realm) and whether a registry has the OCI
referrers API. Both are facts about the registry, not about whoever asked, so sharing them leaks
nothing; tokens, which do depend on the credentials, stay with each client. Bounded, since hosts
come from image references.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

BASIC: Final = "basic"
UNSUPPORTED_TTL: Final = 600.0  # registries get upgraded: re-probe the referrers API now and then
MAX_HOSTS: Final = 1024


@dataclass(frozen=True, slots=True)
class BearerEndpoint:
    """Where a host's Bearer tokens come from, and the address of the registry that said so."""

    realm: str
    service: str | None
    peer: str | None


AuthScheme = str | BearerEndpoint


class RegistryKnowledge:
    """Per host: its auth scheme; per registry base URL: whether it has the referrers API."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_hosts: int = MAX_HOSTS) -> None:
        self._clock = clock
        self._max = max_hosts
        self._schemes: dict[str, AuthScheme] = {}
        self._referrers: dict[str, tuple[bool, float]] = {}

    def scheme(self, host: str) -> AuthScheme | None:
        return self._schemes.get(host)

    def learn_scheme(self, host: str, scheme: AuthScheme) -> None:
        if host not in self._schemes and len(self._schemes) >= self._max:
            self._schemes.clear()
        self._schemes[host] = scheme

    def referrers_api(self, base: str) -> bool | None:
        """True or False when known (a "no" is forgotten after ``UNSUPPORTED_TTL``), None when not."""
        known = self._referrers.get(base)
        if known is None:
            return None
        supported, until = known
        if self._clock() >= until:
            del self._referrers[base]
            return None
        return supported

    def learn_referrers_api(self, base: str, supported: bool) -> None:
        if base not in self._referrers and len(self._referrers) >= self._max:
            self._referrers.clear()
        # A "yes" is kept for good: should the API go away, its 404 falls back to the tag at once.
        self._referrers[base] = (supported, self._clock() + UNSUPPORTED_TTL if not supported else float("inf"))

    def stats(self) -> dict[str, int]:
        return {"auth_schemes": len(self._schemes), "referrers": len(self._referrers)}
