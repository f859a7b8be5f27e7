"""The benchmark's delay proxy (bench/netproxy.py) in front of the real registry: delays, counts, TLS, h2.

Timing bounds are one whole RT wide: a request that should cost k RT must take at least k RT
and less than k + 1, so a missing or doubled delay fails while a loaded machine does not.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.netproxy import DelayProxy, ProxyThread, server_tls_context
from bench.netsetup import process_tree, start_site
from tests.integration.registry import OCI_MANIFEST, LocalRegistry, free_port
from tests.unit.server.tls_certs import TestCA

RT = 0.2
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def thread() -> Iterator[ProxyThread]:
    with ProxyThread() as proxies:
        yield proxies


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(certificate, key, CA) for a proxy on 127.0.0.1."""
    work = tmp_path_factory.mktemp("netproxy-tls")
    ca = TestCA()
    ca.issue(work / "proxy.crt", work / "proxy.key")
    return work / "proxy.crt", work / "proxy.key", ca.write_ca(work / "ca.pem")


@pytest.fixture(scope="module")
def image(registry: LocalRegistry) -> str:
    return registry.push_random_image("netproxy/app", "v1")


def timed(client: httpx.Client, url: str) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    response = client.get(url, headers={"Accept": OCI_MANIFEST})
    return response, time.perf_counter() - start


def assert_costs(seconds: float, round_trips: float) -> None:
    assert round_trips * RT * 0.98 <= seconds < (round_trips + 1) * RT, f"{seconds:.3f} s for {round_trips} RT"


@pytest.mark.parametrize("connect_rts", [2, 0])
def test_a_new_connection_costs_its_handshakes_and_each_request_one_round_trip(
    thread: ProxyThread, registry: LocalRegistry, image: str, connect_rts: int
) -> None:
    proxy = thread.start_proxy(registry.url, rt=RT, connect_rts=connect_rts)
    with httpx.Client(trust_env=False) as client:
        first, first_seconds = timed(client, f"{proxy.url}/v2/netproxy/app/manifests/v1")
        again, again_seconds = timed(client, f"{proxy.url}/v2/netproxy/app/manifests/{image}")
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.headers["docker-content-digest"] == image
    assert_costs(first_seconds, connect_rts + 1)
    assert_costs(again_seconds, 1)  # keep-alive: the same connection, no handshakes
    stats = thread.stats(proxy)
    assert (stats.connections, stats.requests, stats.h2_connections) == (1, 2, 0)
    assert [(e.connection, e.method, e.status) for e in stats.exchanges] == [(1, "GET", 200), (1, "GET", 200)]
    assert all(e.finished - e.started >= RT * 0.98 for e in stats.exchanges)


def test_parallel_connections_pay_their_delays_at_once_and_are_each_counted(
    thread: ProxyThread, registry: LocalRegistry, image: str
) -> None:
    proxy = thread.start_proxy(registry.url, rt=RT)
    results: list[int] = []
    clients = [httpx.Client(trust_env=False) for _ in range(5)]  # made before the clock starts: slow to build

    def fetch(client: httpx.Client) -> None:
        url = f"{proxy.url}/v2/netproxy/app/manifests/{image}"
        results.append(client.head(url, headers={"Accept": OCI_MANIFEST}).status_code)

    workers = [threading.Thread(target=fetch, args=(client,)) for client in clients]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start
    for client in clients:
        client.close()
    assert_costs(elapsed, 3)  # not 15 RT: five connections side by side
    assert results == [200] * 5
    stats = thread.stats(proxy)
    assert (stats.connections, stats.requests, stats.peak_concurrency()) == (5, 5, 5)


def test_bytes_are_counted_exactly_and_head_keeps_the_upstream_length(
    thread: ProxyThread, registry: LocalRegistry, image: str
) -> None:
    proxy = thread.start_proxy(registry.url, rt=0.0, connect_rts=0)
    request = (f"HEAD /v2/netproxy/app/manifests/{image} HTTP/1.1\r\nHost: {proxy.host}\r\n"
               f"Accept: {OCI_MANIFEST}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    direct = httpx.head(f"{registry.url}/v2/netproxy/app/manifests/{image}", headers={"Accept": OCI_MANIFEST},
                        trust_env=False)
    lines = head.decode().lower().split("\r\n")
    assert lines[0].startswith("http/1.1 200")
    assert f"content-length: {direct.headers['content-length']}" in lines
    assert f"docker-content-digest: {image}" in lines
    assert body == b""
    stats = thread.stats(proxy)
    assert (stats.bytes_in, stats.bytes_out) == (len(request), len(answer))


def test_stats_since_an_earlier_snapshot_count_only_what_came_after(
    thread: ProxyThread, registry: LocalRegistry
) -> None:
    proxy = thread.start_proxy(registry.url, rt=0.0, connect_rts=0)
    with httpx.Client(trust_env=False) as client:
        client.get(f"{proxy.url}/v2/")
        earlier = thread.stats(proxy)
        client.get(f"{proxy.url}/v2/netproxy/app/tags/list")
        client.get(f"{proxy.url}/v2/netproxy/missing/manifests/v1")
    delta = thread.stats(proxy).since(earlier)
    assert (delta.connections, delta.requests) == (0, 2)
    assert [(e.path, e.status) for e in delta.exchanges] == [
        ("/v2/netproxy/app/tags/list", 200), ("/v2/netproxy/missing/manifests/v1", 404)]
    assert delta.bytes_in > 0 and delta.bytes_out > 0


def test_tls_with_h2_multiplexes_every_request_on_one_connection(
    thread: ProxyThread, registry: LocalRegistry, image: str, tls_files: tuple[Path, Path, Path]
) -> None:
    cert, key, ca = tls_files
    big = registry.push_blob("netproxy/app", b"x" * 300_000)  # > the 64 KiB initial window: flow control
    proxy = thread.start_proxy(registry.url, rt=RT, tls=server_tls_context(cert, key, http2=True))
    context = ssl.create_default_context(cafile=str(ca))

    async def run() -> tuple[float, float, list[httpx.Response], httpx.Response]:
        async with httpx.AsyncClient(http2=True, verify=context, trust_env=False) as client:
            start = time.perf_counter()
            await client.get(f"{proxy.url}/v2/")
            opened = time.perf_counter() - start
            start = time.perf_counter()
            many = await asyncio.gather(*(
                client.get(f"{proxy.url}/v2/netproxy/app/manifests/{image}", headers={"Accept": OCI_MANIFEST})
                for _ in range(10)))
            batch = time.perf_counter() - start
            return opened, batch, many, await client.get(f"{proxy.url}/v2/netproxy/app/blobs/{big}")

    opened, batch, many, blob = asyncio.run(run())
    assert_costs(opened, 3)
    assert_costs(batch, 1)  # ten streams, one round trip
    assert {(r.status_code, r.http_version) for r in many} == {(200, "HTTP/2")}
    assert "sha256:" + hashlib.sha256(blob.content).hexdigest() == big
    stats = thread.stats(proxy)
    assert (stats.connections, stats.h2_connections, stats.requests) == (1, 1, 12)
    assert stats.peak_concurrency() == 10
    assert {e.protocol for e in stats.exchanges} == {"HTTP/2"}


def test_without_h2_in_alpn_http2_clients_fall_back_to_http1(
    thread: ProxyThread, registry: LocalRegistry, tls_files: tuple[Path, Path, Path]
) -> None:
    cert, key, ca = tls_files
    proxy = thread.start_proxy(registry.url, rt=0.0, tls=server_tls_context(cert, key, http2=False))

    async def run() -> httpx.Response:
        async with httpx.AsyncClient(http2=True, verify=ssl.create_default_context(cafile=str(ca))) as client:
            return await client.get(f"{proxy.url}/v2/")

    assert asyncio.run(run()).http_version == "HTTP/1.1"
    assert thread.stats(proxy).h2_connections == 0


def test_the_tls_handshake_is_real(thread: ProxyThread, registry: LocalRegistry,
                                   tls_files: tuple[Path, Path, Path]) -> None:
    cert, key, _ca = tls_files
    proxy = thread.start_proxy(registry.url, rt=0.0, tls=server_tls_context(cert, key))
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"), httpx.Client(trust_env=False) as c:
        c.get(f"{proxy.url}/v2/")  # the system roots do not know the test CA
    deadline = time.monotonic() + 5
    while thread.stats(proxy).failed_handshakes == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    stats = thread.stats(proxy)
    assert (stats.connections, stats.failed_handshakes, stats.requests) == (1, 1, 0)


def test_a_dead_upstream_is_a_prompt_502(thread: ProxyThread) -> None:
    proxy = thread.start_proxy(f"http://127.0.0.1:{free_port()}", rt=0.0, connect_rts=0)
    response = httpx.get(f"{proxy.url}/v2/", timeout=10, trust_env=False)
    assert response.status_code == 502
    assert b"upstream" in response.content


def test_closing_the_proxy_drops_idle_keep_alive_connections(registry: LocalRegistry) -> None:
    async def run() -> tuple[bytes, bytes]:
        proxy = DelayProxy(registry.url, rt=0.0, connect_rts=0)
        await proxy.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(f"GET /v2/ HTTP/1.1\r\nHost: {proxy.host}\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        body = await reader.readexactly(length)
        await proxy.aclose()
        after = await asyncio.wait_for(reader.read(), 5)  # the idle keep-alive connection is closed
        writer.close()
        return body, after

    body, after = asyncio.run(run())
    assert (body, after) == (b"{}", b"")


def test_token_site_makes_clients_dance_through_the_token_proxy(
    thread: ProxyThread, tmp_path: Path
) -> None:
    site = start_site(tmp_path, thread, "token", rt=0.0, connect_rts=0)
    try:
        digest = site.registry.push_random_image("bench/app", "v1")
        url = f"{site.proxy.url}/v2/bench/app/manifests/{digest}"
        with httpx.Client(trust_env=False) as client:
            challenge = client.get(url, headers={"Accept": OCI_MANIFEST})
            assert challenge.status_code == 401
            assert site.token_proxy is not None
            realm = f'realm="{site.token_proxy.url}/token"'
            assert realm in challenge.headers["www-authenticate"]
            token = client.get(f"{site.token_proxy.url}/token",
                               params={"service": "signet-test-registry", "scope": "repository:bench/app:pull"})
            answer = client.get(url, headers={"Accept": OCI_MANIFEST,
                                              "Authorization": f"Bearer {token.json()['access_token']}"})
        assert answer.status_code == 200
        assert (thread.stats(site.proxy).requests, thread.stats(site.token_proxy).requests) == (2, 1)
    finally:
        site.stop()


def test_the_benchmark_runs_end_to_end_over_tls(tmp_path: Path) -> None:
    """One command, the costliest path (tag, bundle referrers, token dance, TLS); every figure present."""
    out = tmp_path / "figures.json"
    # Its own session, so a timeout also ends the registries and servers it started.
    bench = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "network.py"), "--rt-ms", "20", "--images", "2", "--tls",
         "--refs", "tag", "--signatures", "bundle", "--auth", "token", "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True,
    )
    try:
        stdout, stderr = bench.communicate(timeout=100)
    except subprocess.TimeoutExpired:
        os.killpg(bench.pid, signal.SIGKILL)
        bench.communicate()
        raise
    assert bench.returncode == 0, stdout + stderr
    assert "first admission after start ÷ a later cold one" in stdout
    assert "extra CPU per extra image" in stdout and "goals (issue 12)" in stdout
    figures = json.loads(out.read_text())
    results = figures["results"]
    assert [(r["scenario"]["images"], r["review"]) for r in results] == [
        (1, "contact"), (1, "first"), (1, "later"), (2, "contact"), (2, "first"), (2, "later")]
    for result in results:
        assert result["requests"] == len(result["exchanges"]) > 0
        assert result["cpu_ms"] >= 5  # a signature verified in the worker, not just the supervisor's idling
        # The floor once the registry is known (tag, token, referrer index, manifest, blob) is a true lower bound.
        if result["review"] != "contact":
            assert result["seconds"] >= 5 * 0.020 * 0.98
    contact, first = results[0], results[1]
    assert contact["startup_requests"] == 0  # started without warm-up: this review is first contact
    assert contact["connections"] >= 2  # the registry's and the token server's, each with its delay
    assert {e["path"] for e in contact["exchanges"]} >= {"/token"}
    assert first["startup_requests"] > 0  # warm-up pinged the registry (and fetched a token) at start
    assert first["connections"] == 0  # so the first review found its connections open


def test_process_tree_finds_a_supervisors_workers() -> None:
    """The benchmark's CPU figure sums the server's whole tree: ``signet serve`` supervises forked workers."""
    script = ("import subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              "print(child.pid, flush=True)\n"
              "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert process_tree(parent.pid) == [parent.pid, child]
        assert process_tree(child) == [child]
    finally:
        os.kill(child, signal.SIGTERM)
        parent.terminate()
        parent.wait(10)
        parent.stdout.close()
