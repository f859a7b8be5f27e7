"""The client-facing side of the delay proxy: HTTP/1.1 (h11, keep-alive) and HTTP/2 (h2) servers.

Both parse requests off a byte stream, hand each complete request to a ``Forward`` callback and
write its ``Reply`` back. HTTP/1.1 answers one request at a time per connection (as the protocol
does); HTTP/2 answers every stream concurrently, with flow control, so a client that multiplexes
pays the per-request delay once for all its streams, not once per stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h11

# Never forwarded in either direction: they describe one hop, not the exchange.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host",
    "content-length", "http2-settings",
})
MAX_REQUEST_BODY = 64 * 1024 * 1024


@dataclass(frozen=True)
class Reply:
    """A complete upstream answer; ``headers`` exclude framing (the serving side sets Content-Length)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    content_length: str | None = None  # upstream's, kept for HEAD and bodiless answers


@dataclass(frozen=True)
class ProxiedRequest:
    """A complete client request; ``headers`` as the client sent them (pseudo-headers removed)."""

    protocol: str
    method: str
    target: str
    authority: str
    headers: list[tuple[str, str]]
    body: bytes


Forward = Callable[[ProxiedRequest], Awaitable[Reply]]


class ByteStream(Protocol):
    async def read(self) -> bytes: ...
    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...


def end_to_end(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in headers if name.lower() not in HOP_BY_HOP]


def bodiless(method: str, status: int) -> bool:
    return method == "HEAD" or status in (204, 304) or 100 <= status < 200


def framing(method: str, reply: Reply) -> tuple[bytes, str | None]:
    """The body to send and the Content-Length to announce (None: no header)."""
    if bodiless(method, reply.status):
        return b"", None if reply.status == 204 else reply.content_length
    return reply.body, str(len(reply.body))


# --- HTTP/1.1 -------------------------------------------------------------------------------


async def _next_request(conn: h11.Connection, stream: ByteStream) -> tuple[h11.Request, bytes] | None:
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.read())  # b"" tells h11 the peer closed
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_REQUEST_BODY:
                raise h11.RemoteProtocolError("request body too large", error_status_hint=413)
        elif isinstance(event, h11.EndOfMessage) and request is not None:
            return request, bytes(body)
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None


async def serve_http1(stream: ByteStream, forward: Forward) -> None:
    """Answer requests in order on one keep-alive connection until either side closes it."""
    conn = h11.Connection(h11.SERVER)
    while True:
        try:
            received = await _next_request(conn, stream)
        except h11.RemoteProtocolError as exc:
            with contextlib.suppress(h11.LocalProtocolError):
                stream.write(conn.send(h11.Response(status_code=exc.error_status_hint,
                                                    headers=[("Content-Length", "0"), ("Connection", "close")])))
                stream.write(conn.send(h11.EndOfMessage()))
                await stream.drain()
            return
        if received is None:
            return
        request, body = received
        method = request.method.decode("ascii")
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers]
        authority = next((v for n, v in headers if n.lower() == "host"), "")
        reply = await forward(ProxiedRequest("HTTP/1.1", method, request.target.decode("latin-1"), authority,
                                             headers, body))
        payload, length = framing(method, reply)
        out = end_to_end(reply.headers) + ([("Content-Length", length)] if length is not None else [])
        # One write per answer: split writes meet Nagle and delayed ACKs (40 ms stalls on loopback).
        answer = conn.send(h11.Response(status_code=reply.status, headers=out))
        if payload:
            answer += conn.send(h11.Data(data=payload))
        stream.write(answer + conn.send(h11.EndOfMessage()))
        await stream.drain()
        if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return
        conn.start_next_cycle()


# --- HTTP/2 ---------------------------------------------------------------------------------


class _H2Session:
    """One HTTP/2 connection: a reader loop feeding h2, one task per complete request stream."""

    def __init__(self, stream: ByteStream, forward: Forward) -> None:
        self.stream, self.forward = stream, forward
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.partial: dict[int, tuple[list[tuple[bytes, bytes]], bytearray]] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}
        # Set (and replaced) whenever the peer may have opened a flow-control window.
        self.window_changed = asyncio.Event()

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.stream.write(data)
            await self.stream.drain()

    async def run(self) -> None:
        self.conn.initiate_connection()
        await self.flush()
        try:
            while data := await self.stream.read():
                try:
                    events = self.conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    await self.flush()  # h2 queued a GOAWAY
                    return
                for event in events:
                    if not self.handle(event):
                        await self.flush()
                        return
                await self.flush()
        finally:
            for task in self.tasks.values():
                task.cancel()
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    def handle(self, event: h2.events.Event) -> bool:
        """Apply one event; False when the peer ended the connection."""
        if isinstance(event, h2.events.RequestReceived) and event.stream_id is not None:
            self.partial[event.stream_id] = ([(bytes(k), bytes(v)) for k, v in event.headers or []], bytearray())
        elif isinstance(event, h2.events.DataReceived) and event.stream_id is not None:
            if event.stream_id in self.partial:
                self.partial[event.stream_id][1].extend(event.data or b"")
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.conn.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded) and event.stream_id in self.partial:
            stream_id = event.stream_id
            headers, body = self.partial.pop(stream_id)
            task = asyncio.create_task(self.respond(stream_id, headers, bytes(body)))
            self.tasks[stream_id] = task
            task.add_done_callback(lambda _task: self.tasks.pop(stream_id, None))
        elif isinstance(event, h2.events.StreamReset) and event.stream_id is not None:
            self.partial.pop(event.stream_id, None)
            if (cancelled := self.tasks.pop(event.stream_id, None)) is not None:
                cancelled.cancel()
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self.window_changed.set()
            self.window_changed = asyncio.Event()
        elif isinstance(event, h2.events.ConnectionTerminated):
            return False
        return True

    async def respond(self, stream_id: int, raw: list[tuple[bytes, bytes]], body: bytes) -> None:
        pseudo = {name: value.decode("latin-1") for name, value in raw if name.startswith(b":")}
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw if not n.startswith(b":")]
        method = pseudo.get(b":method", "GET")
        authority = pseudo.get(b":authority") or next((v for n, v in headers if n == "host"), "")
        reply = await self.forward(ProxiedRequest("HTTP/2", method, pseudo.get(b":path", "/"), authority,
                                                  headers, body))
        payload, length = framing(method, reply)
        out = [(":status", str(reply.status))]
        out += [(name.lower(), value) for name, value in end_to_end(reply.headers)]
        out += [("content-length", length)] if length is not None else []
        try:
            self.conn.send_headers(stream_id, out, end_stream=not payload)
            await self._send_body(stream_id, payload)  # flushes the headers with the first DATA frame
            await self.flush()
        except h2.exceptions.StreamClosedError:
            return  # the client reset the stream meanwhile

    async def _send_body(self, stream_id: int, payload: bytes) -> None:
        view, offset = memoryview(payload), 0
        while offset < len(payload):
            while self.conn.local_flow_control_window(stream_id) <= 0:
                await self.window_changed.wait()
            size = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size,
                       len(payload) - offset)
            self.conn.send_data(stream_id, view[offset:offset + size], end_stream=offset + size == len(payload))
            offset += size
            await self.flush()


async def serve_http2(stream: ByteStream, forward: Forward) -> None:
    """Serve one HTTP/2 connection (after ALPN chose h2) until the peer closes it."""
    await _H2Session(stream, forward).run()

