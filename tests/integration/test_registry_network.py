"""The registry client over real connections: reuse, HTTP/2, the per-host bound, stale keep-alives, warm-up.

Against the real ``docker-registry``, through the benchmark's proxy where TLS (and so ALPN h2) is
needed; connections are counted by the proxy and by the client's own observer.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench.netproxy import DelayProxy, ProxyThread, server_tls_context
from tests.integration.registry import LocalRegistry
from tests.unit.server.tls_certs import TestCA
from webhook.oci import EgressTransport, RegistryClient, Repository, parse_reference
from webhook.warmup import warm_registry

pytestmark = pytest.mark.anyio


@dataclass
class Seen:
    opened: list[tuple[str, str]] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)

    def request_done(self, upstream: str, host: str, seconds: float, outcome: str) -> None:
        self.outcomes.append(outcome)

    def connection_opened(self, upstream: str, host: str, protocol: str) -> None:
        self.opened.append((host, protocol))

    def connection_closed(self, upstream: str, host: str) -> None:
        return None


@pytest.fixture(scope="module")
def thread() -> Iterator[ProxyThread]:
    with ProxyThread() as proxies:
        yield proxies


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """(the proxy's server context offering h2, the CA file that trusts it)."""
    work = tmp_path_factory.mktemp("network-tls")
    ca = TestCA()
    ca.issue(work / "proxy.crt", work / "proxy.key")
    return server_tls_context(work / "proxy.crt", work / "proxy.key", http2=True), ca.write_ca(work / "ca.pem")


@pytest.fixture(scope="module")
def images(registry: LocalRegistry) -> list[str]:
    return [registry.push_random_image(f"network/app{n}", "v1") for n in range(12)]


@asynccontextmanager
async def tls_client(proxy: DelayProxy, ca: Path, seen: Seen) -> AsyncIterator[RegistryClient]:
    """A client reaching the proxy over https (named as its own mirror: loopback is allowed for mirrors)."""
    transport = EgressTransport(http2=True, ssl_context=ssl.create_default_context(cafile=str(ca)), observer=seen)
    async with RegistryClient(transport=transport, mirrors={proxy.host: f"https://{proxy.host}"},
                              observer=seen) as client:
        yield client
    await transport.aclose()


async def test_over_http2_every_request_of_a_pod_shares_one_connection(
    thread: ProxyThread, registry: LocalRegistry, images: list[str], tls: tuple[ssl.SSLContext, Path]
) -> None:
    proxy = thread.start_proxy(registry.url, rt=0.05, tls=tls[0])
    seen = Seen()
    async with tls_client(proxy, tls[1], seen) as client:
        refs = [parse_reference(f"{proxy.host}/network/app{n}@{d}") for n, d in enumerate(images)]
        manifests = await asyncio.gather(*(client.get_manifest(ref, ref.digest or "") for ref in refs),
                                         *(client.get_tag_manifest(ref, "missing") for ref in refs))
        assert client.speaks_h2(proxy.host)
    assert all(m is not None for m in manifests[:12]) and manifests[12:] == [None] * 12
    stats = thread.stats(proxy)
    assert (stats.connections, stats.h2_connections, stats.requests) == (1, 1, 24)
    assert stats.peak_concurrency() > 12  # they were in flight together, not one after another
    assert seen.opened == [(proxy.host, "h2")]


async def test_unread_answers_do_not_cost_their_http1_connection(
    thread: ProxyThread, registry: LocalRegistry, images: list[str]
) -> None:
    proxy = thread.start_proxy(registry.url, rt=0.0, connect_rts=0)
    seen = Seen()
    repo = Repository(proxy.host, "network/app0")
    async with RegistryClient(allow_http=True, observer=seen) as client:
        for _ in range(5):  # a 404's body is never read by the client: it is drained so the connection stays
            assert await client.get_tag_manifest(repo, "missing") is None
    assert thread.stats(proxy).connections == 1
    assert seen.outcomes == ["not_found"] * 5 and seen.opened == [(proxy.host, "http/1.1")]


async def test_requests_to_one_http1_registry_are_bounded_per_host(
    thread: ProxyThread, registry: LocalRegistry, images: list[str]
) -> None:
    proxy = thread.start_proxy(registry.url, rt=0.02, connect_rts=0)
    transport = EgressTransport(max_per_host=3)
    repo = Repository(proxy.host, "network/app0")
    async with RegistryClient(allow_http=True, transport=transport) as client:
        found = await asyncio.gather(*(client.get_tag_manifest(repo, "v1") for _ in range(15)))
    await transport.aclose()
    stats = thread.stats(proxy)
    assert all(m is not None for m in found)
    assert stats.requests == 15 and stats.connections <= 3 and stats.peak_concurrency() <= 3


async def test_a_keep_alive_connection_the_server_dropped_is_retried_on_a_fresh_one() -> None:
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        first = connections == 1
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                break
            if first and b"/again" in head:
                writer.close()  # idle timeout on the server side: gone without an answer
                return
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nno")
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    repo = Repository(f"127.0.0.1:{port}", "acme/app")
    async with server, RegistryClient(allow_http=True) as client:
        assert await client.get_tag_manifest(repo, "first") is None
        assert await client.get_tag_manifest(repo, "again") is None  # not a RegistryError
    assert connections == 2


async def test_warm_up_opens_the_connection_and_learns_the_protocol(
    thread: ProxyThread, registry: LocalRegistry, images: list[str], tls: tuple[ssl.SSLContext, Path]
) -> None:
    proxy = thread.start_proxy(registry.url, rt=0.02, tls=tls[0])
    seen = Seen()
    async with tls_client(proxy, tls[1], seen) as client:
        assert (await warm_registry(client, proxy.host, connections=4)).startswith("h2")
        warmed = thread.stats(proxy)
        ref = parse_reference(f"{proxy.host}/network/app1@{images[1]}")
        await asyncio.gather(client.get_manifest(ref, images[1]), client.get_tag_manifest(ref, "missing"))
    assert warmed.connections == 1 and warmed.requests == 1  # h2: one ping, one connection, nothing more
    assert thread.stats(proxy).connections == 1  # the review found it open


async def test_warm_up_of_an_http1_registry_opens_several_connections(
    thread: ProxyThread, registry: LocalRegistry
) -> None:
    proxy = thread.start_proxy(registry.url, rt=0.02, connect_rts=0)
    async with RegistryClient(allow_http=True) as client:
        assert (await warm_registry(client, proxy.host, connections=4)).startswith("http/1.1 ×4")
        repo = Repository(proxy.host, "network/app0")
        await asyncio.gather(*(client.get_tag_manifest(repo, "v1") for _ in range(4)))
    stats = thread.stats(proxy)
    assert stats.connections == 4  # the four requests found four open connections


async def test_warm_up_learns_a_token_realm_so_the_first_review_gets_no_401(
    thread: ProxyThread, token_registry: LocalRegistry
) -> None:
    digest = token_registry.push_random_image("network/private", "v1")
    proxy = thread.start_proxy(token_registry.url, rt=0.0, connect_rts=0)
    async with RegistryClient(allow_http=True) as client:
        assert "failed" not in await warm_registry(client, proxy.host, connections=1)
        before = thread.stats(proxy)
        await client.get_manifest(Repository(proxy.host, "network/private"), digest)
        after = thread.stats(proxy).since(before)
    assert [e.status for e in after.exchanges] == [200]  # the token came first; the registry never said 401
