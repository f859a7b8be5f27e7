"""The connection limits uvicorn lacks (``GuardedHttp``; the body's deadline is the app's).

- the TLS handshake, then each request's headers, must complete within ``--read-timeout``
  (uvicorn waits for headers forever: one byte every few seconds held a connection for good);
- headers are at most about ``MAX_HEADER_BYTES`` (httptools sets no limit), else 431;
- an answer left unread for ``--read-timeout`` drops the connection;
- an answer sent before the request's body was read (413, 408) ends the connection: what still
  arrives is discarded unparsed for ``LINGER`` seconds, so the client can read the answer first
  (closing a socket with unread data resets it, and the answer is lost);
- past ``--max-connections`` (per listening port: the probes' port has its own) a new connection
  closes the one that has waited longest for a request or for the rest of one, and is refused
  with 503 only when every connection has a whole request being decided. The API server's
  requests arrive whole, so idle and slow clients cannot crowd it out. (uvicorn's
  ``limit_concurrency`` answers 503 to new requests while slow clients stay: not used.)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

MAX_HEADER_BYTES: Final = 64 * 1024
LINGER: Final = 2.0


@dataclass(frozen=True)
class ConnectionLimits:
    """What one connection may take: time to send its request, and a share of ``max_connections``."""

    read_timeout: float
    max_connections: int
    max_header_bytes: int = MAX_HEADER_BYTES


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines, a header limit and a connection cap (module docstring)."""

    def __init__(self, config: uvicorn.Config, server_state: ServerState, app_state: dict[str, Any],
                 limits: ConnectionLimits, peers: set[GuardedHttp]) -> None:
        super().__init__(config, server_state, app_state)
        self.limits = limits
        self.peers = peers  # the open connections of this listening port
        self._awaiting_request = True  # from the connection or the last request's end, to the next headers
        self._in_body = False
        self._lingering = False
        self._header_bytes = 0
        self._waiting_since = 0.0  # for a request (idle) or for the rest of one (body)
        self._deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.peers.add(self)
        self._expect_request()
        if len(self.peers) > self.limits.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self.peers.discard(self)
        self._cancel(self._deadline)
        self._cancel(self._write_deadline)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        if self._awaiting_request:
            self._header_bytes += len(data)
        super().data_received(data)
        if (self._awaiting_request and self._header_bytes > self.limits.max_header_bytes
                and not self.transport.is_closing()):
            self._refuse(431, b"Request Header Fields Too Large")

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_deadline is None:
            self._write_deadline = self.loop.call_later(self.limits.read_timeout, self._unread)

    def resume_writing(self) -> None:
        self._cancel(self._write_deadline)
        self._write_deadline = None
        super().resume_writing()

    # -- httptools parser callbacks ------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self._awaiting_request, self._in_body, self._header_bytes = False, True, 0
        self._waiting_since = self.loop.time()
        self._cancel(self._deadline)
        self._deadline = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._awaiting_request, self._in_body, self._header_bytes = True, False, 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._in_body:  # answered before the body was read: the rest is not wanted
            self._linger()
            return
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._expect_request()

    # -- limits --------------------------------------------------------------------------------------

    def _expect_request(self) -> None:
        self._waiting_since = self.loop.time()
        self._cancel(self._deadline)
        self._deadline = self.loop.call_later(self.limits.read_timeout, self._headers_overdue)

    def _idle(self) -> bool:
        """Waiting for a request, with none in progress."""
        return (self._awaiting_request and not self.pipeline and not self.transport.is_closing()
                and (self.cycle is None or self.cycle.response_complete))

    def _evictable(self) -> bool:
        """Idle, still receiving its request, or discarding a refused one: what goes first when full."""
        return self._lingering or self._in_body or self._idle()

    def _headers_overdue(self) -> None:
        self._deadline = None
        if self._idle():
            if self._header_bytes:
                self._refuse(408, b"Request Timeout")
            else:
                self.transport.close()

    def _linger(self) -> None:
        self._lingering = True
        self._cancel(self._deadline)
        self._deadline = None
        if self.transport.can_write_eof():
            self.transport.write_eof()  # plain TCP: the client sees the end right after the answer
        self.flow.resume_reading()
        self.loop.call_later(LINGER, self.transport.close)

    def _unread(self) -> None:
        """The client has not read our answer for ``read_timeout``: drop it (a graceful close would wait)."""
        self._write_deadline = None
        self.transport.abort()

    def _make_room(self) -> None:
        waiting = [c for c in self.peers if c is not self and c._evictable()]
        if waiting:
            min(waiting, key=lambda c: c._waiting_since).transport.abort()
        else:
            self._refuse(503, b"Service Unavailable")

    def _refuse(self, status: int, phrase: bytes) -> None:
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\nconnection: close\r\n\r\n" % (status, phrase))
        self.transport.close()

    @staticmethod
    def _cancel(timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()
