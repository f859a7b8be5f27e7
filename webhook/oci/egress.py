"""Where registry traffic may go: address classes, and connection pools that check them at connect time.

A registry names hosts (its own, redirect targets, token realms); the only safe place to judge a
host is where it becomes an address. ``EgressTransport`` resolves every host itself, refuses the
connection when *any* address is in a class the request may not reach, and connects to a checked
address, so neither an IP literal nor a DNS name pointing inside (``169.254.169.254``, ``10.x``)
gets a packet. Which classes a request may reach besides public addresses travels with the request
(the ``EGRESS`` extension) and each allowance has its own pool, so a pooled connection is never
reused by a request that could not have opened it.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx

from webhook.oci.errors import EgressRefusedError
from webhook.oci.netio import AsyncioBackend
from webhook.oci.pools import HostGates, PoolTransport, TrackingBackend, default_ssl_context, pool_limits
from webhook.upstreams import NULL_OBSERVER, REGISTRY, UpstreamObserver

EGRESS = "signet.egress"  # request extension: frozenset[AddressClass] reachable besides public addresses

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
_STAGGER = 0.25  # RFC 8305: try the next address if the previous has not connected by then
DEFAULT_MAX_PER_HOST = 32  # HTTP/1.1 connections to one registry; chosen with bench/network.py


class AddressClass(enum.StrEnum):
    """Non-public address classes; a public address has none."""

    LOOPBACK = "loopback"
    LINK_LOCAL = "link-local"
    PRIVATE = "private"
    UNSPECIFIED = "unspecified"
    MULTICAST = "multicast"
    RESERVED = "reserved"


Allowance = frozenset[AddressClass]
PUBLIC_ONLY: Allowance = frozenset()

_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7", "fec0::/10")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    # Addresses that reach an IPv4 host through IPv6 are judged by that host.
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_class(address: IPAddress) -> AddressClass | None:
    """The class of an address, or None for a public (globally routed) one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return address_class(embedded)
    if address.is_unspecified:
        return AddressClass.UNSPECIFIED
    if address.is_loopback:
        return AddressClass.LOOPBACK
    if address.is_link_local:
        return AddressClass.LINK_LOCAL
    if address.is_multicast:
        return AddressClass.MULTICAST
    if any(address in network for network in _PRIVATE_NETWORKS):
        return AddressClass.PRIVATE
    if not address.is_global:
        return AddressClass.RESERVED
    return None


@functools.lru_cache(maxsize=1024)  # asked for every request and hop; hosts come from references
def ip_literal(host: str) -> IPAddress | None:
    """The address a host string denotes by itself (``[::1]``, ``127.1``, ``2130706433``), if any."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    try:
        # The resolver accepts the old inet_aton forms too; judge them as the address they are.
        return ipaddress.IPv4Address(socket.inet_aton(bare))
    except OSError:
        return None


def describe(allowance: Allowance) -> str:
    """The rule an allowance stands for, in words."""
    names = ["public", *sorted(c.value for c in allowance)]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return f"only {listed} addresses may be reached from here"


def refusal(
    host: str, address: IPAddress, allowance: Allowance, *, shown: str | None = None
) -> EgressRefusedError | None:
    """The error for contacting ``address`` (of ``host``, ``shown`` with its port) under ``allowance``."""
    kind = address_class(address)
    if kind is None or kind in allowance:
        return None
    rule = describe(allowance)
    shown = shown or host
    subject = f"{shown} is" if ip_literal(host) == address else f"{shown} resolves to {address}, which is"
    return EgressRefusedError(f"{subject} a {kind.value} address; {rule}", host=shown, rule=rule)


def peer_address(response: httpx.Response) -> str | None:
    """The IP address that sent ``response`` (None when it did not come over a socket, as in tests)."""
    stream = response.extensions.get("network_stream")
    if stream is None:
        return None
    try:
        address = stream.get_extra_info("server_addr")
    except OSError:
        return None
    return str(address[0]) if isinstance(address, tuple) and address else None


def allowance_of(request: httpx.Request) -> Allowance:
    """The allowance a request carries; strictest when it carries none (fail closed)."""
    value = request.extensions.get(EGRESS)
    if isinstance(value, frozenset) and all(isinstance(c, AddressClass) for c in value):
        return value
    return PUBLIC_ONLY


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order of preference."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that resolves, checks every address, then connects to a checked one."""

    def __init__(
        self,
        allowance: Allowance,
        *,
        resolver: Resolver | None = None,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.allowance = allowance
        self._resolve = resolver or system_resolver
        self._inner = inner or AsyncioBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        deadline = time.monotonic() + (timeout if timeout is not None else 3600.0)
        addresses = await self._addresses(host, port, timeout)
        for address in addresses:
            refused = refusal(host, address, self.allowance)
            if refused is not None:
                raise refused  # one bad address refuses the name: no choosing among them for an attacker
        return await self._connect_first(host, port, [str(a) for a in addresses], deadline=deadline,
                                         local_address=local_address, socket_options=socket_options)

    async def _addresses(self, host: str, port: int, timeout: float | None) -> list[IPAddress]:
        literal = ip_literal(host)
        if literal is not None:
            return [literal]
        try:
            async with asyncio.timeout(timeout):
                names = await self._resolve(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} took more than {timeout} s") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from exc
        addresses: list[IPAddress] = []
        for name in names:
            try:
                addresses.append(ipaddress.ip_address(name))
            except ValueError as exc:
                raise httpcore.ConnectError(f"resolver returned {name!r} for {host}, not an address") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        return addresses

    async def _connect_first(
        self,
        host: str,
        port: int,
        addresses: list[str],
        *,
        deadline: float,
        local_address: str | None,
        socket_options: Iterable[Any] | None,
    ) -> httpcore.AsyncNetworkStream:
        """Happy eyeballs over checked addresses: staggered attempts, first connection wins."""
        queue = list(addresses)
        pending: set[asyncio.Task[httpcore.AsyncNetworkStream]] = set()
        last_error: Exception | None = None
        options = list(socket_options or ())
        try:
            while queue or pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise httpcore.ConnectTimeout(f"connecting to {host}:{port} timed out")
                if queue:
                    address = queue.pop(0)
                    pending.add(asyncio.ensure_future(self._inner.connect_tcp(
                        address, port, timeout=remaining, local_address=local_address, socket_options=options)))
                wait = min(_STAGGER, remaining) if queue else remaining
                done, pending = await asyncio.wait(pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    error = task.exception()
                    if error is None:
                        return task.result()
                    if not isinstance(error, httpcore.ConnectError | httpcore.ConnectTimeout):
                        raise error
                    last_error = error
        finally:
            for task in pending:
                task.cancel()
            for late in await asyncio.gather(*pending, return_exceptions=True):
                if isinstance(late, httpcore.AsyncNetworkStream):
                    await late.aclose()  # a losing attempt that connected anyway must not leak its socket
        raise last_error or httpcore.ConnectError(f"cannot connect to {host}:{port}")

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not a registry address")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class EgressTransport(httpx.AsyncBaseTransport):
    """The network transport of registry clients: one guarded pool per allowance; may be shared by clients.

    ``max_connections`` bounds each pool, ``max_per_host`` the requests in flight to one HTTP/1.1
    origin (its connections); ``http2`` lets every request to an origin that offers h2 share one
    connection. ``observer`` is told about every connection.
    """

    def __init__(
        self,
        *,
        max_connections: int = 64,
        max_per_host: int = DEFAULT_MAX_PER_HOST,
        http2: bool = False,
        resolver: Resolver | None = None,
        ssl_context: Any = None,
        observer: UpstreamObserver = NULL_OBSERVER,
    ) -> None:
        self._limits = pool_limits(max_connections)
        self._http2 = http2
        self._resolver = resolver
        self._ssl_context = ssl_context if ssl_context is not None else default_ssl_context()
        self._observer = observer
        self.gates = HostGates(max_per_host)
        self._pools: dict[Allowance, PoolTransport] = {}

    def _pool(self, allowance: Allowance) -> PoolTransport:
        pool = self._pools.get(allowance)
        if pool is None:
            guarded = GuardedBackend(allowance, resolver=self._resolver)
            backend = TrackingBackend(guarded, REGISTRY, self._observer, self.gates)
            pool = self._pools[allowance] = PoolTransport(
                backend, ssl_context=self._ssl_context, limits=self._limits, http2=self._http2, gates=self.gates
            )
        return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pool(allowance_of(request)).handle_async_request(request)

    def connections(self) -> int:
        """Connections open (or opening) in every pool."""
        return sum(pool.connections() for pool in self._pools.values())

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()
