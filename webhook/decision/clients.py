"""The upstream clients of a server, and registry clients per pull-secret credential set.

``UpstreamClients`` is what every review shares: one bound on requests in flight, one guarded
connection pool (HTTP/2 where offered), one memory of what each registry supports, one Rekor
client. Tokens obtained with one workload's credentials must never serve another, so each
distinct credential set gets its own client (``ClientPool``). The set of clients is bounded
(least recently used are retired), but a retired client is closed only once its last lease ends:
a verification that outlives its admission's deadline keeps working with the client it started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

import httpx

from webhook.oci import CredentialStore, EgressTransport, RegistryClient, RegistryLimits, RequestLimiter
from webhook.oci.auth import HitCount, TokenCache
from webhook.oci.knowledge import RegistryKnowledge
from webhook.oci.manifest import Manifest
from webhook.oci.transport import RepositoryLike
from webhook.rekor import RekorClient, issuer_key_ids, rekor_v1_url
from webhook.upstreams import NULL_OBSERVER, UpstreamObserver
from webhook.verify.trustroot import TrustedRoot

MAX_CREDENTIALED_CLIENTS = 64


@dataclass
class UpstreamClients:
    """Registry and Rekor clients sharing one limiter, one connection pool and one registry memory."""

    limiter: RequestLimiter
    transport: httpx.AsyncBaseTransport
    """Connection pools (an ``EgressTransport``), shared: every client leaves it open."""
    knowledge: RegistryKnowledge
    rekor: RekorClient
    registry: RegistryClient = field(init=False)
    """The anonymous client (reviews without pull secrets, warm-up)."""
    allow_http: bool = False
    mirrors: Mapping[str, str] = field(default_factory=dict)
    observer: UpstreamObserver = NULL_OBSERVER
    trust_root: Callable[[], TrustedRoot | None] = lambda: None
    """The current trust root: its Rekor is asked ahead of time about its own CAs' signatures."""
    tokens: HitCount = field(default_factory=HitCount)
    _prefetch_for: tuple[str, str | None, frozenset[bytes]] = ("", None, frozenset())

    def __post_init__(self) -> None:
        self.registry = self.client_for(None)

    def client_for(self, credentials: CredentialStore | None) -> RegistryClient:
        """A registry client for these credentials (its own tokens), sharing everything else."""
        return RegistryClient(credentials=credentials, allow_http=self.allow_http, mirrors=dict(self.mirrors),
                              limiter=self.limiter, transport=self.transport, knowledge=self.knowledge,
                              observer=self.observer, token_cache=TokenCache(counts=self.tokens),
                              tag_manifest_hook=self._prefetch)

    def _prefetch(self, _repo: RepositoryLike, tag: str, manifest: Manifest) -> None:
        if not tag.endswith(".sig"):
            return
        root = self.trust_root()
        if root is None:
            return
        if self._prefetch_for[0] != root.fingerprint:
            self._prefetch_for = (root.fingerprint, rekor_v1_url(root), issuer_key_ids(root))
        _, url, issuers = self._prefetch_for
        self.rekor.prefetch_legacy(url, manifest, issuers)

    def cache_stats(self) -> dict[str, dict[str, int]]:
        """Hits and misses of the caches kept beside the engine's: registry tokens, Rekor entries."""
        return {"registry_tokens": {"hits": self.tokens.hits, "misses": self.tokens.misses, "size": 0},
                "rekor_entries": self.rekor.cache_stats()}

    async def aclose(self) -> None:
        await self.registry.aclose()
        await self.rekor.aclose()
        await self.transport.aclose()


def build_upstream_clients(
    *,
    max_in_flight: int,
    max_per_host: int,
    allow_http: bool = False,
    mirrors: Mapping[str, str] | None = None,
    observer: UpstreamObserver = NULL_OBSERVER,
    trust_root: Callable[[], TrustedRoot | None] = lambda: None,
) -> UpstreamClients:
    """Everything a server needs to reach registries and Rekor, bounded by ``max_in_flight`` requests."""
    limiter = RequestLimiter(max_in_flight)
    # As many connections as requests may be in flight (HTTP/1.1 needs one each), at least the
    # client default; HTTP/2 registries use one.
    transport = EgressTransport(max_connections=max(max_in_flight, RegistryLimits().max_connections),
                                max_per_host=max_per_host, http2=True, observer=observer)
    rekor = RekorClient(limiter=limiter, observer=observer)
    return UpstreamClients(limiter, transport, RegistryKnowledge(), rekor, allow_http=allow_http,
                           mirrors=dict(mirrors or {}), observer=observer, trust_root=trust_root)


class ClientPool:
    """``default`` for anonymous work, one leased client per credential set otherwise."""

    def __init__(self, default: RegistryClient, make: Callable[[CredentialStore], RegistryClient] | None,
                 *, max_clients: int = MAX_CREDENTIALED_CLIENTS) -> None:
        self.default = default
        self._make = make
        self._max = max_clients
        self._clients: OrderedDict[str, RegistryClient] = OrderedDict()
        self._leases: dict[int, int] = {}
        self._retired: dict[int, RegistryClient] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def client_for(self, credentials: CredentialStore | None) -> RegistryClient:
        """The client for these credentials (the default one when there are none)."""
        if credentials is None or not credentials.hosts() or self._make is None:
            return self.default
        fingerprint = hashlib.sha256(repr(sorted(
            (host, c.username, c.password) for host in credentials.hosts()
            if (c := credentials.lookup(host)) is not None)).encode()).hexdigest()
        client = self._clients.get(fingerprint)
        if client is None:
            client = self._clients[fingerprint] = self._make(credentials)
            while len(self._clients) > self._max:
                _, old = self._clients.popitem(last=False)
                self._retire(old)
        self._clients.move_to_end(fingerprint)
        return client

    @contextlib.asynccontextmanager
    async def lease(self, client: RegistryClient) -> AsyncIterator[RegistryClient]:
        """Use ``client`` for the duration of the block; a retired client closes after its last lease."""
        self._leases[id(client)] = self._leases.get(id(client), 0) + 1
        try:
            yield client
        finally:
            remaining = self._leases[id(client)] - 1
            if remaining:
                self._leases[id(client)] = remaining
            else:
                del self._leases[id(client)]
                retired = self._retired.pop(id(client), None)
                if retired is not None:
                    self._close_later(retired)

    @property
    def open_clients(self) -> int:
        return 1 + len(self._clients) + len(self._retired)

    def _retire(self, client: RegistryClient) -> None:
        if self._leases.get(id(client)):
            self._retired[id(client)] = client
        else:
            self._close_later(client)

    def _close_later(self, client: RegistryClient) -> None:
        task = asyncio.ensure_future(client.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        clients = [*self._clients.values(), *self._retired.values()]
        self._clients.clear()
        self._retired.clear()
        for client in clients:
            await client.aclose()
        await asyncio.gather(*self._closing, return_exceptions=True)
