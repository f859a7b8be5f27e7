"""The connect-time guard: which addresses a registry request may reach, judged where names become addresses."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpcore
import httpx
import pytest

from webhook.oci import AddressClass, EgressRefusedError, EgressTransport, address_class
from webhook.oci.egress import EGRESS, GuardedBackend, ip_literal

pytestmark = pytest.mark.anyio

LOOPBACK, PRIVATE, LINK_LOCAL = AddressClass.LOOPBACK, AddressClass.PRIVATE, AddressClass.LINK_LOCAL


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
        ("127.0.0.1", LOOPBACK),
        ("127.200.0.9", LOOPBACK),
        ("::1", LOOPBACK),
        ("169.254.169.254", LINK_LOCAL),
        ("fe80::1", LINK_LOCAL),
        ("10.1.2.3", PRIVATE),
        ("172.31.255.1", PRIVATE),
        ("192.168.0.10", PRIVATE),
        ("100.64.0.1", PRIVATE),
        ("fd00::1", PRIVATE),
        ("0.0.0.0", AddressClass.UNSPECIFIED),
        ("::", AddressClass.UNSPECIFIED),
        ("224.0.0.1", AddressClass.MULTICAST),
        ("ff02::1", AddressClass.MULTICAST),
        ("240.0.0.1", AddressClass.RESERVED),
        ("192.0.2.7", AddressClass.RESERVED),
        ("255.255.255.255", AddressClass.RESERVED),
        ("0.1.2.3", AddressClass.RESERVED),
        # IPv6 spellings of IPv4 hosts are judged by the IPv4 host they reach.
        ("::ffff:169.254.169.254", LINK_LOCAL),
        ("::ffff:10.0.0.1", PRIVATE),
        ("64:ff9b::a9fe:a9fe", LINK_LOCAL),
        ("2002:0a00:0001::1", PRIVATE),
        ("::127.0.0.1", LOOPBACK),
    ],
)
def test_address_classes(address: str, expected: AddressClass | None) -> None:
    assert address_class(ipaddress.ip_address(address)) == expected


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("registry.example", None),
    ],
)
def test_literal_spellings_are_the_address_the_resolver_would_use(host: str, address: str | None) -> None:
    literal = ip_literal(host)
    assert (str(literal) if literal is not None else None) == address


class SpyBackend(httpcore.AsyncNetworkBackend):
    """Records connection attempts; addresses in ``hang`` never connect, in ``fail`` are refused."""

    def __init__(self, *, hang: frozenset[str] = frozenset(), fail: frozenset[str] = frozenset()) -> None:
        self.attempts: list[str] = []
        self.cancelled: list[str] = []
        self.hang, self.fail = hang, fail

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        self.attempts.append(host)
        if host in self.fail:
            raise httpcore.ConnectError("connection refused")
        if host in self.hang:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled.append(host)
                raise
        return httpcore.AsyncMockStream([])

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def resolver(table: dict[str, list[str]]) -> Any:
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


async def test_a_name_pointing_inside_is_refused_before_any_connection() -> None:
    spy = SpyBackend()
    backend = GuardedBackend(frozenset(), resolver=resolver({"metadata.evil.test": ["169.254.169.254"]}), inner=spy)
    with pytest.raises(EgressRefusedError) as caught:
        await backend.connect_tcp("metadata.evil.test", 80, timeout=1)
    assert spy.attempts == []
    assert str(caught.value) == ("metadata.evil.test resolves to 169.254.169.254, which is a link-local address; "
                                 "only public addresses may be reached from here")
    assert caught.value.host == "metadata.evil.test"


async def test_one_inside_address_among_public_ones_refuses_the_name() -> None:
    spy = SpyBackend()
    backend = GuardedBackend(frozenset(), resolver=resolver({"mixed.test": ["93.184.216.34", "10.0.0.7"]}), inner=spy)
    with pytest.raises(EgressRefusedError, match=r"mixed.test resolves to 10.0.0.7, which is a private address"):
        await backend.connect_tcp("mixed.test", 443, timeout=1)
    assert spy.attempts == []


async def test_connects_to_the_checked_address_not_the_name() -> None:
    spy = SpyBackend()
    resolve = resolver({"cdn.test": ["93.184.216.34"]})
    backend = GuardedBackend(frozenset(), resolver=resolve, inner=spy)
    await backend.connect_tcp("cdn.test", 443, timeout=1)
    assert spy.attempts == ["93.184.216.34"]  # no second resolution that could answer differently
    assert resolve.calls == ["cdn.test"]


async def test_allowance_admits_its_classes_only() -> None:
    spy = SpyBackend()
    backend = GuardedBackend(frozenset({PRIVATE}), resolver=resolver({"harbor.corp": ["10.9.8.7"]}), inner=spy)
    await backend.connect_tcp("harbor.corp", 443, timeout=1)
    await backend.connect_tcp("10.1.1.1", 443, timeout=1)
    with pytest.raises(EgressRefusedError, match=r"^127.0.0.1 is a loopback address; only public or private"):
        await backend.connect_tcp("127.0.0.1", 443, timeout=1)
    assert spy.attempts == ["10.9.8.7", "10.1.1.1"]


async def test_literals_skip_the_resolver() -> None:
    resolve = resolver({})
    backend = GuardedBackend(frozenset(), resolver=resolve, inner=SpyBackend())
    with pytest.raises(EgressRefusedError, match=r"^2130706433 is a loopback address"):
        await backend.connect_tcp("2130706433", 80, timeout=1)
    assert resolve.calls == []


async def test_resolution_failure_is_a_connect_error() -> None:
    backend = GuardedBackend(frozenset(), resolver=resolver({}), inner=SpyBackend())
    with pytest.raises(httpcore.ConnectError, match=r"cannot resolve nowhere.test"):
        await backend.connect_tcp("nowhere.test", 443, timeout=1)


async def test_a_hanging_address_does_not_stall_the_next_one() -> None:
    spy = SpyBackend(hang=frozenset({"2606:4700::1111"}))
    table = {"dual.test": ["2606:4700::1111", "93.184.216.34"]}
    backend = GuardedBackend(frozenset(), resolver=resolver(table), inner=spy)
    started = time.monotonic()
    await backend.connect_tcp("dual.test", 443, timeout=3)
    assert time.monotonic() - started < 1.0
    assert spy.attempts == ["2606:4700::1111", "93.184.216.34"]
    assert spy.cancelled == ["2606:4700::1111"]


async def test_all_addresses_failing_is_a_connect_error() -> None:
    spy = SpyBackend(fail=frozenset({"93.184.216.34", "93.184.216.35"}))
    backend = GuardedBackend(frozenset(), resolver=resolver({"down.test": ["93.184.216.34", "93.184.216.35"]}),
                             inner=spy)
    with pytest.raises(httpcore.ConnectError, match=r"connection refused"):
        await backend.connect_tcp("down.test", 443, timeout=1)
    assert spy.attempts == ["93.184.216.34", "93.184.216.35"]


# --- the transport, over real loopback sockets --------------------------------------------------


@pytest.fixture
def listener() -> Iterator[tuple[int, list[int]]]:
    """A loopback socket that answers 200 to anything and counts accepted connections."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.1)
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            accepted.append(1)
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1], accepted
    stop.set()
    thread.join(2)
    sock.close()


async def test_transport_enforces_the_allowance_each_request_carries(listener: tuple[int, list[int]]) -> None:
    port, accepted = listener
    transport = EgressTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        for url in (f"http://127.0.0.1:{port}/", f"http://localhost:{port}/"):
            # No allowance: strictest (public only), so no connection is even attempted.
            with pytest.raises(EgressRefusedError, match=r"loopback address"):
                await client.get(url)
        assert accepted == []
        allowed = await client.get(f"http://127.0.0.1:{port}/", extensions={EGRESS: frozenset({LOOPBACK})})
        assert allowed.text == "ok" and len(accepted) == 1
        with pytest.raises(EgressRefusedError):
            await client.get(f"http://127.0.0.1:{port}/", extensions={EGRESS: frozenset({PRIVATE})})
        with pytest.raises(EgressRefusedError):
            await client.get(f"http://127.0.0.1:{port}/", extensions={EGRESS: "anything"})  # malformed: strictest
    assert len(accepted) == 1
