"""Connection pools: the per-host gate for HTTP/1.1 origins, and connections reported as they open and close."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from webhook.oci.netio import AsyncioBackend
from webhook.oci.pools import HostGate, HostGates, TrackingBackend

pytestmark = pytest.mark.anyio


async def test_the_gate_holds_requests_past_the_limit_in_arrival_order() -> None:
    gate = HostGate(2)
    order: list[int] = []

    async def request(n: int, hold: asyncio.Event) -> None:
        await gate.acquire()
        order.append(n)
        await hold.wait()
        gate.release()

    holds = [asyncio.Event() for _ in range(4)]
    tasks = [asyncio.ensure_future(request(n, holds[n])) for n in range(4)]
    await asyncio.sleep(0.01)
    assert order == [0, 1] and gate.active == 2
    holds[0].set()
    await asyncio.sleep(0.01)
    assert order == [0, 1, 2]
    for hold in holds:
        hold.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3] and gate.idle


async def test_an_origin_that_speaks_http2_is_not_gated_any_more() -> None:
    gates = HostGates(1)
    gate = gates.gate("registry.test:443")
    await gate.acquire()
    waiting = asyncio.ensure_future(gate.acquire())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    gates.multiplexed("registry.test:443")  # ALPN chose h2 on a connection to it
    await asyncio.wait_for(waiting, 1)
    await asyncio.wait_for(gate.acquire(), 1)
    assert gates.speaks_h2("registry.test:443") and gate.active == 3
    assert gates.gate("other.test:443").multiplexed is False


async def test_a_waiter_cancelled_as_it_is_woken_passes_its_turn_on() -> None:
    gate = HostGate(1)
    await gate.acquire()
    first = asyncio.ensure_future(gate.acquire())
    second = asyncio.ensure_future(gate.acquire())
    await asyncio.sleep(0.01)
    gate.release()  # wakes `first`...
    first.cancel()  # ...which gives up before it runs
    await asyncio.wait_for(second, 1)
    assert gate.active == 1


async def test_forgotten_gates_are_only_idle_ones() -> None:
    gates = HostGates(1)
    busy = gates.gate("busy.test:443")
    await busy.acquire()
    for n in range(HostGates.MAX_IDLE + 5):
        gates.gate(f"h{n}.test:443")
    assert gates.gate("busy.test:443") is busy


@dataclass
class Connections:
    opened: list[tuple[str, str, str]] = field(default_factory=list)
    closed: list[tuple[str, str]] = field(default_factory=list)

    def request_done(self, upstream: str, host: str, seconds: float, outcome: str) -> None:
        return None

    def connection_opened(self, upstream: str, host: str, protocol: str) -> None:
        self.opened.append((upstream, host, protocol))

    def connection_closed(self, upstream: str, host: str) -> None:
        self.closed.append((upstream, host))


async def test_a_connection_is_reported_once_opened_and_once_closed() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    seen = Connections()
    gates = HostGates(4)
    backend = TrackingBackend(AsyncioBackend(), "registry", seen, gates)
    async with server:
        stream = await backend.connect_tcp("127.0.0.1", port, timeout=2)
        assert seen.opened == []  # a connection counts once it carries bytes (TLS may still fail before)
        await stream.write(b"ping", timeout=2)
        assert await stream.read(100, timeout=2) == b"ping"
        await stream.aclose()
        await stream.aclose()
    assert seen.opened == [("registry", f"127.0.0.1:{port}", "http/1.1")]
    assert seen.closed == [("registry", f"127.0.0.1:{port}")]
    assert not gates.speaks_h2(f"127.0.0.1:{port}")
