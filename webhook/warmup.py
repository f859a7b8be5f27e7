"""Warm-up before the first admission: connections, tokens and what would otherwise initialise lazily.

A fresh replica answers its first admission as fast as a later cold one only when nothing is left
to set up. So, before it reports ready: every registry the policies name literally is pinged
(``GET /v2/``: the connection is opened and HTTP/2 negotiated, the auth scheme learned and, for a
Bearer realm, an anonymous token fetched, which opens the realm's connection too); a registry
that speaks only HTTP/1.1 gets a few connections, as many as one Pod's requests use at once;
Rekor's connection is opened; the engine builds its verifier and planner. Failures are logged and
change nothing: warm-up only ever saves time, and it is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from webhook.decision.clients import UpstreamClients
from webhook.errors import SignetError
from webhook.oci import RegistryClient
from webhook.policy.matching import PolicySet
from webhook.rekor import RekorClient, rekor_v1_url
from webhook.verify.trustroot import TrustedRoot
from webhook.verify.verifier import Verifier

_logger = logging.getLogger(__name__)

MAX_REGISTRIES: Final = 32
"""Registries warmed at most: namespaced policies are written by tenants, and each costs requests."""
LOCAL_TIMEOUT: Final = 2.0
"""Readiness waits this long at most for the local preparation when network warm-up is off."""


def policy_registries(policy_set: PolicySet, limit: int = MAX_REGISTRIES) -> list[str]:
    """The literal registries of the policies' globs, cluster policies first, at most ``limit``."""
    found: dict[str, None] = {}
    specs = [p.spec for p in policy_set.cluster_policies] + [p.spec for p in policy_set.image_policies]
    for spec in specs:
        for image in spec.images:
            registry = image.compiled.registry
            if registry is not None:
                found.setdefault(registry)
    return list(found)[:limit]


@dataclass
class WarmReport:
    """What warm-up did: per registry ``h2``, ``http/1.1 ×N`` or why it failed; and how long it took."""

    registries: dict[str, str] = field(default_factory=dict)
    rekor: str | None = None
    seconds: float = 0.0
    timed_out: bool = False


async def warm_registry(client: RegistryClient, registry: str, connections: int) -> str:
    """Ping ``registry``; over HTTP/1.1 open ``connections`` connections in all. Returns what it got."""
    try:
        status = await client.ping(registry)
        if client.speaks_h2(registry):
            return f"h2 ({status})"
        if connections > 1:
            # Pings at once: one reuses the connection just opened, each of the others opens one.
            await asyncio.gather(*(client.ping(registry) for _ in range(connections)))
        return f"http/1.1 ×{connections} ({status})"
    except SignetError as exc:
        _logger.info("warm-up: registry %s: %s", registry, exc.reason)
        return f"failed: {exc.reason}"


async def warm_rekor(client: RekorClient, base_url: str) -> str:
    try:
        await client.warm(base_url)
    except SignetError as exc:
        _logger.info("warm-up: Rekor %s: %s", base_url, exc.reason)
        return f"failed: {exc.reason}"
    return "ok"


async def warm_up(
    *,
    registry: RegistryClient,
    registries: Callable[[], Awaitable[Sequence[str]]],
    connections: int,
    timeout: float,
    rekor: RekorClient | None = None,
    rekor_url: Callable[[], Awaitable[str | None]] | None = None,
    prepare: Callable[[], None] | None = None,
) -> WarmReport:
    """Warm everything at once, within ``timeout`` seconds; never raises.

    ``registries`` and ``rekor_url`` may wait until they are known (the cluster's policies are
    listed, the trust root fetched after start); ``prepare`` builds the engine's lazily built
    parts (run in a thread: it is CPU work).
    """
    report = WarmReport()
    started = time.monotonic()

    async def all_registries() -> None:
        names = await registries()
        results = await asyncio.gather(*(warm_registry(registry, name, connections) for name in names))
        report.registries.update(zip(names, results, strict=True))

    async def the_rest() -> None:
        url = await rekor_url() if rekor_url is not None else None  # the trust root is in from here on
        if prepare is not None:
            await asyncio.to_thread(prepare)
        if rekor is not None and url:
            report.rekor = await warm_rekor(rekor, url)

    tasks = [asyncio.ensure_future(all_registries()), asyncio.ensure_future(the_rest())]
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            _logger.warning("warm-up step failed unexpectedly", exc_info=task.exception())
    report.timed_out = bool(pending)
    report.seconds = time.monotonic() - started
    return report


async def _until(condition: Callable[[], bool], poll: float = 0.05) -> None:
    while not condition():
        await asyncio.sleep(poll)


def prepare_locally(root: TrustedRoot | None, engine: object) -> None:
    """What the first review would otherwise set up: the crypto backend, the verifier of the trust root
    (the engine's own, through its ``warm()``, when it has one), the engine's planner."""
    import cryptography.hazmat.backends.openssl  # noqa: F401  (loaded by the first signature check otherwise)

    warm = getattr(engine, "warm", None)
    if callable(warm):
        warm()
    elif root is not None:
        Verifier(root)  # the engine builds its own, but the libraries behind it are loaded and primed


async def warm_server(
    *,
    clients: UpstreamClients,
    policies: Callable[[], PolicySet],
    settled: Callable[[], bool],
    root: Callable[[], TrustedRoot | None],
    engine: object,
    connections: int,
    timeout: float,
) -> WarmReport:
    """``warm_up`` for ``signet serve``: once ``settled`` (the cluster's policies listed), the registries
    the policies name; once the trust root is in, its Rekor and ``prepare_locally``. With ``timeout``
    0 only the local preparation runs (no network), for at most ``LOCAL_TIMEOUT`` seconds."""

    async def registries() -> list[str]:
        await _until(settled)
        return policy_registries(policies()) if timeout > 0 else []

    async def rekor_url() -> str | None:
        await _until(lambda: root() is not None)
        current = root()
        return rekor_v1_url(current) if current is not None and timeout > 0 else None

    return await warm_up(registry=clients.registry, registries=registries, connections=connections,
                         timeout=timeout or LOCAL_TIMEOUT, rekor=clients.rekor, rekor_url=rekor_url,
                         prepare=lambda: prepare_locally(root(), engine))
