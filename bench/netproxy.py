"""A loopback reverse proxy that puts a registry far away: a delay per request and per new connection.

Model of a client one round trip (``rt`` seconds) from a registry: every answer leaves one RT
after its request arrived (or when the upstream answers, if that is later: the loopback
registry's own time hides inside the RT instead of adding to it); every new connection waits
``connect_rts`` RT (default 2: TCP, then TLS) before its first byte is read. With ``tls`` the
proxy terminates TLS itself, so the handshake is real; ALPN offers ``h2`` only when ``http2`` is
true, so HTTP/2 clients fall back to HTTP/1.1 otherwise. Plain-HTTP clients always speak
HTTP/1.1 (no h2c). Counts connections, requests and client-side bytes; keeps one ``Exchange``
record per request.

Synchronous callers (the benchmark, tests) run proxies on a ``ProxyThread``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import socket
import ssl
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvloop

from bench.netproxy_http import ProxiedRequest, Reply, end_to_end, serve_http1, serve_http2
from webhook.oci.netio import AsyncioBackend
from webhook.oci.pools import PoolTransport

T = TypeVar("T")
HTTP1, HTTP2 = "HTTP/1.1", "HTTP/2"
_DEFAULT_CLIENT_HEADERS = ("accept", "accept-encoding", "user-agent")


@dataclass(frozen=True)
class Exchange:
    """One proxied request; times are seconds on the proxy's clock (arrival, answer ready)."""

    connection: int
    protocol: str
    method: str
    path: str
    status: int
    started: float
    finished: float
    upstream: float  # seconds the upstream took (within the delay unless longer)


@dataclass
class ProxyStats:
    """What clients did through the proxy; ``since`` gives the part after an earlier snapshot."""

    connections: int = 0
    h2_connections: int = 0
    failed_handshakes: int = 0
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    exchanges: list[Exchange] = field(default_factory=list)

    def copy(self) -> ProxyStats:
        return dataclasses.replace(self, exchanges=list(self.exchanges))

    def since(self, earlier: ProxyStats) -> ProxyStats:
        return ProxyStats(
            connections=self.connections - earlier.connections,
            h2_connections=self.h2_connections - earlier.h2_connections,
            failed_handshakes=self.failed_handshakes - earlier.failed_handshakes,
            requests=self.requests - earlier.requests,
            bytes_in=self.bytes_in - earlier.bytes_in,
            bytes_out=self.bytes_out - earlier.bytes_out,
            exchanges=self.exchanges[len(earlier.exchanges):],
        )

    def peak_concurrency(self) -> int:
        """Most requests in the proxy at one moment (arrival to answer)."""
        edges = sorted([(e.started, 1) for e in self.exchanges] + [(e.finished, -1) for e in self.exchanges])
        peak = current = 0
        for _when, step in edges:
            current += step
            peak = max(peak, current)
        return peak


class _CountingStream:
    """A connection's reader/writer pair that adds every byte to the proxy's stats."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stats: ProxyStats) -> None:
        self.reader, self.writer, self.stats = reader, writer, stats

    async def read(self) -> bytes:
        data = await self.reader.read(65536)
        self.stats.bytes_in += len(data)
        return data

    def write(self, data: bytes) -> None:
        self.stats.bytes_out += len(data)
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()


def server_tls_context(cert: Path, key: Path, *, http2: bool = True) -> ssl.SSLContext:
    """A server context for the proxy; ALPN offers h2 only when ``http2``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2", "http/1.1"] if http2 else ["http/1.1"])
    return context


class DelayProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``upstream`` (an http:// base URL)."""

    def __init__(self, upstream: str, *, rt: float, connect_rts: float = 2.0, tls: ssl.SSLContext | None = None,
                 upstream_timeout: float = 30.0, upstream_connections: int = 256) -> None:
        self.upstream = httpx.URL(upstream.rstrip("/"))
        self.rt, self.connect_rts, self.tls = rt, connect_rts, tls
        self.stats = ProxyStats()
        self._timeout = upstream_timeout
        self._upstream_connections = upstream_connections
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    async def start(self) -> None:
        self._listener.listen(1024)
        self._listener.setblocking(False)
        limits = httpx.Limits(max_connections=self._upstream_connections,
                              max_keepalive_connections=self._upstream_connections)
        # The registry's answers must not wait on the proxy: a Pod's burst is dozens of requests at once
        # on a machine Signet and the registry share, so the proxy forwards on the loop's own transports.
        transport = PoolTransport(AsyncioBackend(), ssl_context=ssl.create_default_context(), limits=limits,
                                  http2=False)
        self._client = httpx.AsyncClient(trust_env=False, timeout=self._timeout, transport=transport)
        self._spawn(self._accept_loop())

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._listener.close()
        if self._client is not None:
            await self._client.aclose()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            sock, _address = await loop.sock_accept(self._listener)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as Go's servers (the registry) do
            self._spawn(self._serve(sock))

    async def _serve(self, sock: socket.socket) -> None:
        self.stats.connections += 1
        connection = self.stats.connections
        loop = asyncio.get_running_loop()
        try:
            # The client's SYN-ACK and TLS ServerHello are "in flight": its first bytes wait in the kernel.
            await asyncio.sleep(self.connect_rts * self.rt)
            reader = asyncio.StreamReader(limit=1 << 20)
            protocol = asyncio.StreamReaderProtocol(reader)
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, sock, ssl=self.tls, ssl_handshake_timeout=10 if self.tls else None
            )
        except (OSError, ssl.SSLError, TimeoutError):
            self.stats.failed_handshakes += 1
            sock.close()
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        stream = _CountingStream(reader, writer, self.stats)
        ssl_object = writer.get_extra_info("ssl_object")
        forward = functools.partial(self._forward, connection)
        try:
            if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
                self.stats.h2_connections += 1
                await serve_http2(stream, forward)
            else:
                await serve_http1(stream, forward)
        except (ConnectionError, OSError, ssl.SSLError):
            pass  # the client went away mid-exchange
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
                await writer.wait_closed()

    async def _forward(self, connection: int, request: ProxiedRequest) -> Reply:
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.stats.requests += 1
        (reply, upstream), _ = await asyncio.gather(self._upstream(request), asyncio.sleep(self.rt))
        path = request.target.split("?", 1)[0]
        self.stats.exchanges.append(
            Exchange(connection, request.protocol, request.method, path, reply.status, started, loop.time(), upstream)
        )
        return reply

    async def _upstream(self, incoming: ProxiedRequest) -> tuple[Reply, float]:
        """The upstream's answer and the seconds it took."""
        started = time.perf_counter()
        reply = await self._send_upstream(incoming)
        return reply, time.perf_counter() - started

    async def _send_upstream(self, incoming: ProxiedRequest) -> Reply:
        assert self._client is not None
        forwarded = end_to_end(incoming.headers)
        sent = {name.lower() for name, _ in forwarded}
        # Host stays the client's, so the registry writes Location and realm URLs that point at us.
        forwarded += [("Host", incoming.authority or self.host),
                      ("X-Forwarded-Proto", "https" if self.tls else "http")]
        target = incoming.target if incoming.target.startswith("/") else "/"
        url = self.upstream.copy_with(raw_path=target.encode("latin-1"))
        request = self._client.build_request(incoming.method, url, headers=forwarded, content=incoming.body or None)
        for name in _DEFAULT_CLIENT_HEADERS:
            if name not in sent:
                del request.headers[name]  # httpx's defaults: forward only what the client sent
        try:
            response = await self._client.send(request, stream=True)
            try:
                data = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            message = f"proxy: upstream {self.upstream} failed: {type(exc).__name__}: {exc}".encode()
            return Reply(502, [("Content-Type", "text/plain")], message)
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in response.headers.raw]
        return Reply(response.status_code, headers, data, response.headers.get("content-length"))


class ProxyThread:
    """An event loop in a daemon thread hosting proxies, for synchronous callers."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="netproxy", daemon=True)
        self._proxies: list[DelayProxy] = []

    def __enter__(self) -> ProxyThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start_proxy(self, upstream: str, **options: Any) -> DelayProxy:
        """A started ``DelayProxy(upstream, **options)`` served by this thread's loop."""

        async def make() -> DelayProxy:
            proxy = DelayProxy(upstream, **options)
            await proxy.start()
            return proxy

        proxy = self.call(make())
        self._proxies.append(proxy)
        return proxy

    def stats(self, proxy: DelayProxy) -> ProxyStats:
        """A consistent copy of ``proxy``'s stats (taken on the loop thread)."""

        async def copy() -> ProxyStats:
            return proxy.stats.copy()

        return self.call(copy())

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        for proxy in self._proxies:
            self.call(proxy.aclose())
        self._proxies.clear()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
