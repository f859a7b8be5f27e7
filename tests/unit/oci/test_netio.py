"""The asyncio network backend under httpcore: bytes both ways, timeouts, closes, TLS, flow control."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpcore
import httpx
import pytest

from tests.unit.server.tls_certs import TestCA
from webhook.oci.netio import AsyncioBackend
from webhook.oci.pools import PoolTransport, pool_limits

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serving(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_bytes_go_both_ways_and_a_close_reads_as_the_end() -> None:
    async def echo_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(5))
        await writer.drain()
        writer.close()

    async with serving(echo_then_close) as port:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=2)
        await stream.write(b"hello", timeout=2)
        received = b""
        while len(received) < 5:
            received += await stream.read(3, timeout=2)  # never more than asked for
        assert received == b"hello"
        assert await stream.read(100, timeout=2) == b""
        assert stream.get_extra_info("is_readable") is True  # an idle connection the server closed
        assert stream.get_extra_info("server_addr")[1] == port
        await stream.aclose()


async def test_an_idle_open_connection_is_not_readable() -> None:
    done = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()
        writer.close()

    async with serving(hold) as port:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=2)
        await asyncio.sleep(0.02)
        assert stream.get_extra_info("is_readable") is False
        with pytest.raises(httpcore.ReadTimeout):
            await stream.read(10, timeout=0.05)
        done.set()
        await stream.aclose()


async def test_connecting_to_nothing_is_a_connect_error() -> None:
    async with serving(lambda r, w: asyncio.sleep(0)) as port:
        pass  # closed again: nothing listens on the port now
    with pytest.raises(httpcore.ConnectError):
        await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=2)


async def test_a_large_answer_is_read_whole_with_reading_paused_in_between() -> None:
    body = bytes(range(256)) * 8192  # 2 MiB: well past the high-water mark

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(body)
        await writer.drain()
        writer.close()

    async with serving(flood) as port:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=2)
        await asyncio.sleep(0.05)  # let the buffer fill up to the mark
        chunks = []
        while chunk := await stream.read(65536, timeout=2):
            chunks.append(chunk)
        assert b"".join(chunks) == body
        await stream.aclose()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting it) for 127.0.0.1."""
    work: Path = tmp_path_factory.mktemp("netio-tls")
    ca = TestCA()
    ca.issue(work / "s.crt", work / "s.key")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(work / "s.crt", work / "s.key")
    server.set_alpn_protocols(["h2", "http/1.1"])
    client = ssl.create_default_context(cafile=str(ca.write_ca(work / "ca.pem")))
    return server, client


async def test_tls_through_start_tls_and_alpn(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_context, client_context = tls

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(4))
        await writer.drain()
        writer.close()

    async with serving(echo, server_context) as port:
        plain = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=2)
        client_context.set_alpn_protocols(["h2", "http/1.1"])
        stream = await plain.start_tls(client_context, server_hostname="127.0.0.1", timeout=2)
        assert stream.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
        await stream.write(b"ping", timeout=2)
        assert await stream.read(10, timeout=2) == b"ping"
        await stream.aclose()


async def test_a_tls_handshake_with_an_untrusted_server_fails_as_a_connect_error(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_context, _ = tls
    async with serving(lambda r, w: asyncio.sleep(0.5), server_context) as port:
        plain = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=2)
        with pytest.raises(httpcore.ConnectError, match="TLS handshake"):
            await plain.start_tls(ssl.create_default_context(), server_hostname="127.0.0.1", timeout=2)


async def test_httpx_over_it_speaks_http2_when_offered(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    """The whole stack (httpcore pool, h2) over this backend, against a real HTTP/2 server (hypercorn-free: h2)."""
    import h2.config
    import h2.connection
    import h2.events

    server_context, client_context = tls

    async def h2_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    conn.send_headers(event.stream_id, [(":status", "200"), ("content-length", "2")])
                    conn.send_data(event.stream_id, b"ok", end_stream=True)
            writer.write(conn.data_to_send())
            await writer.drain()
        writer.close()

    async with serving(h2_server, server_context) as port:
        transport = PoolTransport(AsyncioBackend(), ssl_context=client_context, limits=pool_limits(4), http2=True)
        async with httpx.AsyncClient(transport=transport) as client:
            answers = await asyncio.gather(*(client.get(f"https://127.0.0.1:{port}/{n}") for n in range(10)))
        assert {a.http_version for a in answers} == {"HTTP/2"} and {a.text for a in answers} == {"ok"}
