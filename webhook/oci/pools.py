"""Connection pools for upstreams: httpx transports over httpcore pools with our own network backend.

Every connection is reported to an ``UpstreamObserver`` once it carries its first bytes (with the
protocol ALPN chose) and again when it closes. Over HTTP/1.1 a connection carries one request at a
time, so ``HostGate`` bounds requests in flight per origin (the per-host connection limit); an
origin that negotiated HTTP/2 multiplexes every request over one connection and is no longer gated.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import select
import ssl
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Protocol

import httpcore
import httpx

from webhook.oci.netio import AsyncioBackend, AsyncioStream
from webhook.upstreams import NULL_OBSERVER, UpstreamObserver

KEEPALIVE_EXPIRY = 60.0  # idle connections are kept this long: warm-up opens them before the first review


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


class _Connection:
    """One connection's report: opened once (with its protocol), closed once."""

    __slots__ = ("_host", "_observer", "_on_h2", "_upstream", "closed", "opened")

    def __init__(self, upstream: str, host: str, observer: UpstreamObserver, on_h2: Callable[[], None]) -> None:
        self._upstream, self._host, self._observer, self._on_h2 = upstream, host, observer, on_h2
        self.opened = self.closed = False

    def open(self, ssl_object: ssl.SSLObject | None) -> None:
        self.opened = True
        protocol = (ssl_object.selected_alpn_protocol() if ssl_object is not None else None) or "http/1.1"
        if protocol == "h2":
            self._on_h2()
        self._observer.connection_opened(self._upstream, self._host, protocol)

    def close(self) -> None:
        if self.opened and not self.closed:
            self.closed = True
            self._observer.connection_closed(self._upstream, self._host)


class TrackedStream(httpcore.AsyncNetworkStream):
    """A network stream that reports its connection, and answers ``is_readable`` without anyio's lookups."""

    def __init__(self, inner: httpcore.AsyncNetworkStream, connection: _Connection) -> None:
        self._inner = inner
        self._connection = connection
        # The asyncio stream answers is_readable from its own state; for others poll the socket (under
        # uvloop not a socket.socket, but it has a fileno()).
        raw = None if isinstance(inner, AsyncioStream) else inner.get_extra_info("socket")
        self._socket: _HasFileno | None = raw if callable(getattr(raw, "fileno", None)) else None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not self._connection.opened:
            self._connection.open(self._inner.get_extra_info("ssl_object"))
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._connection.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        try:
            tls = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        except BaseException:
            self._connection.close()
            raise
        return TrackedStream(tls, self._connection)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._socket is not None:
            # Called for every idle connection each time the pool assigns a request: keep it one poll().
            return _readable(self._socket)
        return self._inner.get_extra_info(info)


def _readable(sock: _HasFileno) -> bool:
    """Readable while idle means the peer closed it (or sent what nobody asked for): not reusable."""
    fd = sock.fileno()
    if fd == -1:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class TrackingBackend(httpcore.AsyncNetworkBackend):
    """Wraps a network backend so that every stream it opens is a ``TrackedStream``."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, upstream: str, observer: UpstreamObserver,
                 gates: HostGates | None = None) -> None:
        self._inner, self._upstream, self._observer, self._gates = inner, upstream, observer, gates

    def track(self, stream: httpcore.AsyncNetworkStream, host: str, port: int) -> TrackedStream:
        origin = f"{host}:{port}"
        gates = self._gates
        on_h2 = (lambda: gates.multiplexed(origin)) if gates is not None else (lambda: None)
        return TrackedStream(stream, _Connection(self._upstream, origin, self._observer, on_h2))

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return self.track(stream, host, port)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not an upstream address")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class HostGate:
    """At most ``limit`` requests in flight to one HTTP/1.1 origin; unbounded once it speaks HTTP/2."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self.multiplexed = False
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def idle(self) -> bool:
        return self.active == 0 and not self._waiters

    async def acquire(self) -> None:
        while not self.multiplexed and self.active >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif not waiter.cancelled():
                    self._wake(1)  # woken and cancelled at once: pass the turn on
                raise
        self.active += 1

    def release(self) -> None:
        self.active -= 1
        self._wake(1)

    def lift(self) -> None:
        self.multiplexed = True
        self._wake(len(self._waiters))

    def _wake(self, count: int) -> None:
        while count > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                count -= 1


class HostGates:
    """A ``HostGate`` per origin (``host:port``); idle ones are forgotten so the map stays small."""

    MAX_IDLE = 256

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._gates: dict[str, HostGate] = {}
        self._h2: set[str] = set()

    def gate(self, origin: str) -> HostGate:
        gate = self._gates.get(origin)
        if gate is None:
            if len(self._gates) >= self.MAX_IDLE:
                self._gates = {o: g for o, g in self._gates.items() if not g.idle}
            gate = self._gates[origin] = HostGate(self.limit)
            gate.multiplexed = origin in self._h2
        return gate

    def multiplexed(self, origin: str) -> None:
        """``origin`` negotiated HTTP/2: its requests share a connection and need no gate."""
        if len(self._h2) >= 4 * self.MAX_IDLE:
            self._h2.clear()
        self._h2.add(origin)
        gate = self._gates.get(origin)
        if gate is not None:
            gate.lift()

    def speaks_h2(self, origin: str) -> bool:
        return origin in self._h2


class _GatedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, gate: HostGate) -> None:
        self._inner, self._gate, self._released = inner, gate, False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if not self._released:
                self._released = True
                self._gate.release()


class _Pool(httpcore.AsyncConnectionPool):
    """httpcore's pool with its bookkeeping made linear in the number of connections.

    httpcore rebuilds a list of every connection for each idle one (to count idle connections, in
    fact counting all of them), and another for each queued request, each time a request arrives or
    finishes: quadratic in the connections a Pod's parallel HTTP/1.1 requests open, and a tenth of
    a request's CPU at thirty connections. Same decisions here, in one pass each.
    """

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        if not any(r.is_queued() for r in self._requests):
            # A request finished and none waits: only forget closed connections. Expiry is checked
            # when a request next needs a connection (each check may cost a poll of the socket).
            self._connections = [c for c in self._connections if not c.is_closed()]
            return []
        closing: list[httpcore.AsyncConnectionInterface] = []
        kept: list[httpcore.AsyncConnectionInterface] = []
        for connection in self._connections:
            if connection.is_closed():
                continue
            # Only an idle connection expires (its keep-alive ran out, or the server closed it).
            if connection.is_idle() and connection.has_expired():
                closing.append(connection)
            else:
                kept.append(connection)
        surplus = sum(1 for c in kept if c.is_idle()) - self._max_keepalive_connections
        for connection in list(kept):
            if surplus <= 0:
                break
            if connection.is_idle():  # the oldest idle ones go first
                kept.remove(connection)
                closing.append(connection)
                surplus -= 1
        self._connections = kept
        none_available: set[tuple[bytes, bytes, int]] = set()
        for pool_request in self._requests:
            if not pool_request.is_queued():
                continue
            origin = pool_request.request.url.origin
            key = (origin.scheme, origin.host, origin.port)
            if key not in none_available:
                available = next((c for c in kept if c.can_handle_request(origin) and c.is_available()), None)
                if available is not None:
                    pool_request.assign_to_connection(available)
                    continue
                none_available.add(key)
            if len(kept) >= self._max_connections:
                idle = next((c for c in kept if c.is_idle()), None)
                if idle is None:
                    continue  # full: it waits for a connection to be released
                kept.remove(idle)
                closing.append(idle)
            connection = self.create_connection(origin)
            kept.append(connection)
            pool_request.assign_to_connection(connection)
            none_available.discard(key)  # a connection still opening may take more (HTTP/2)
        return closing


class PoolTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over an httpcore pool built around ``backend`` (httpx takes no backend itself)."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend, *, ssl_context: ssl.SSLContext,
                 limits: httpx.Limits, http2: bool, gates: HostGates | None = None) -> None:
        super().__init__(verify=ssl_context, limits=limits, http2=http2)
        self._gates = gates
        self._pool = _Pool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=http2,
            network_backend=backend,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._gates is None:
            return await super().handle_async_request(request)
        gate = self._gates.gate(f"{request.url.host}:{request.url.port or _default_port(request.url)}")
        if gate.multiplexed:
            return await super().handle_async_request(request)
        await gate.acquire()
        try:
            response = await super().handle_async_request(request)
        except BaseException:
            gate.release()
            raise
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        response.stream = _GatedStream(stream, gate)
        return response

    def connections(self) -> int:
        """Connections in the pool now (open or opening)."""
        return len(self._pool.connections)


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


def pool_limits(max_connections: int) -> httpx.Limits:
    """Pool limits: idle connections kept (up to the bound) for ``KEEPALIVE_EXPIRY`` seconds."""
    return httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                        keepalive_expiry=KEEPALIVE_EXPIRY)


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """The system trust store as an SSL context, built once per process (it costs tens of ms)."""
    return httpx.create_ssl_context()


def plain_pool(upstream: str, observer: UpstreamObserver = NULL_OBSERVER, *, max_connections: int = 16,
               http2: bool = True, ssl_context: ssl.SSLContext | None = None) -> PoolTransport:
    """A tracked pool without egress rules, for upstreams the trust root names (Rekor)."""
    backend = TrackingBackend(AsyncioBackend(), upstream, observer)
    return PoolTransport(backend, ssl_context=ssl_context or default_ssl_context(),
                         limits=pool_limits(max_connections), http2=http2)
