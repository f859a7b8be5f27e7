"""An httpcore network backend on the running asyncio loop's own transports (uvloop's, in the server).

httpcore's default backend goes through anyio: a cancel scope per read and write and a stream
layer over the loop's transport, which costs a sizeable share of each registry request's CPU, and
its TLS runs in Python over memory BIOs while the loop's ``start_tls`` (uvloop) does it natively.
This backend talks to the transport directly: a protocol buffers what arrives (reading pauses
past ``_HIGH_WATER`` until it is consumed), writes wait only when the transport asks for it, and
every wait has the timeout httpcore gives, raising httpcore's own exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable
from typing import Any, cast

import httpcore

_HIGH_WATER = 256 * 1024


class _Protocol(asyncio.Protocol):
    """Buffers received bytes for one reader; remembers end of stream and the reason a connection died."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.eof = False
        self.lost: BaseException | None = None
        self.closed = False
        self.transport: asyncio.Transport | None = None
        self._reader: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self.paused = False
        self._reading_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _HIGH_WATER and self.transport is not None and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost = exc
        self._wake_reader()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _wake_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    def take(self, max_bytes: int) -> bytes:
        if len(self.buffer) <= max_bytes:
            data = bytes(self.buffer)
            self.buffer.clear()
        else:
            data = bytes(self.buffer[:max_bytes])
            del self.buffer[:max_bytes]
        if self._reading_paused and len(self.buffer) <= _HIGH_WATER // 2 and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    async def wait_readable(self) -> None:
        self._reader = asyncio.get_running_loop().create_future()
        try:
            await self._reader
        finally:
            self._reader = None

    async def wait_drained(self) -> None:
        if not self.paused or self.closed:
            return
        self._drained = asyncio.get_running_loop().create_future()
        try:
            await self._drained
        finally:
            self._drained = None


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection over an asyncio transport (plain, or TLS after ``start_tls``)."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.buffer and not (protocol.eof or protocol.closed):
            try:
                async with asyncio.timeout(timeout):  # only when there is something to wait for
                    while not (protocol.buffer or protocol.eof or protocol.closed):
                        await protocol.wait_readable()
            except TimeoutError as exc:
                raise httpcore.ReadTimeout(f"no data within {timeout} s") from exc
        if not protocol.buffer:
            if protocol.lost is not None:
                raise httpcore.ReadError(str(protocol.lost)) from protocol.lost
            return b""
        return protocol.take(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._protocol.closed or self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        if self._protocol.paused:
            try:
                async with asyncio.timeout(timeout):
                    await self._protocol.wait_drained()
            except TimeoutError as exc:
                raise httpcore.WriteTimeout(f"could not send within {timeout} s") from exc
        if self._protocol.lost is not None:
            raise httpcore.WriteError(str(self._protocol.lost)) from self._protocol.lost

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                tls = await loop.start_tls(self._transport, self._protocol, ssl_context,
                                           server_hostname=server_hostname, ssl_handshake_timeout=timeout)
        except TimeoutError as exc:
            self._transport.close()
            raise httpcore.ConnectTimeout(f"TLS handshake with {server_hostname} timed out") from exc
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(f"TLS handshake with {server_hostname} failed: {exc}") from exc
        if tls is None:  # the peer closed during the handshake
            raise httpcore.ConnectError(f"TLS handshake with {server_hostname} failed: connection closed")
        self._protocol.transport = tls  # flow control (pause and resume reading) is the TLS transport's now
        return AsyncioStream(tls, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # The transport reads eagerly: an idle connection with bytes or an end of stream waiting
            # was closed (or sent what nobody asked for) by the server.
            protocol = self._protocol
            return bool(protocol.buffer) or protocol.eof or protocol.closed
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """TCP connections as asyncio transports of the running loop."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(_Protocol, host, port, local_addr=local)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(*option)
        return AsyncioStream(transport, protocol)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not an upstream address")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
