"""``signet serve``: the admission webhook under uvicorn (uvloop + httptools), in supervised workers.

Anything wrong with the flags, policies, trust root or TLS files is found before the server
starts and reported as a one-line error (exit 2). The TUF refresh runs in the trust provider's
thread; the cached or embedded root serves at once, even with no network.

Connections get the limits uvicorn lacks (``GuardedHttp``; the body's deadline is the app's):
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

Processes: ``--workers N`` (1 by default) are forked on the shared sockets, each with its own
caches, TLS watcher and watchdog; the first process only supervises. On SIGTERM it passes the
signal on; a worker's uvicorn stops accepting, lets in-flight requests finish, cancels the rest
and closes its clients. Two deadlines make "exits within ``--shutdown-grace``" a promise: the
worker's ``faulthandler`` timer (a C thread needing no GIL, armed by the signal handler) prints
every stack to stderr and exits a second before the grace, and half a second before it the
supervisor SIGKILLs a worker stuck where no signal handler can run (a C call holding the GIL).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import functools
import gc
import importlib.util
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, Final, NoReturn

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from webhook.app import build_trust, create_app, load_policies, ops_app
from webhook.audit import configure_audit_handler
from webhook.commands.common import EXIT_OK
from webhook.commands.hints import diagnose_tls_files, readable_openssl
from webhook.config import ServerConfig, add_serve_arguments, from_args, log_level_number
from webhook.errors import InputError
from webhook.tls import CertificateReloader
from webhook.upstreams import DeferredObserver

_logger = logging.getLogger(__name__)

MAX_HEADER_BYTES: Final = 64 * 1024
LINGER: Final = 2.0
_STARTUP_FAILURE: Final = 3  # uvicorn's exit code when the lifespan fails
_LIFESPAN_SHUTDOWN: Final = 1.0  # kept after the drain for closing clients


@dataclass(frozen=True)
class ShutdownDeadlines:
    """Seconds after SIGTERM: uvicorn's drain ends, a worker's watchdog fires, the supervisor SIGKILLs."""

    drain: int
    watchdog: float
    kill: float

    @classmethod
    def within(cls, grace: float) -> ShutdownDeadlines:
        # A second, then half a second, of margin: a killed process takes a moment to be gone.
        watchdog = max(grace / 2, grace - 1.0)
        return cls(max(1, int(watchdog - _LIFESPAN_SHUTDOWN)), watchdog, max(grace * 0.75, grace - 0.5))


def configure(parser: argparse.ArgumentParser) -> None:
    add_serve_arguments(parser)


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


@dataclass(frozen=True)
class Listener:
    """One listening socket and what it serves."""

    sock: socket.socket
    config: uvicorn.Config
    ssl: ssl.SSLContext | None


class SignetServer(uvicorn.Server):
    """uvicorn's server on our listeners and protocol, with a handshake deadline and a shutdown watchdog."""

    def __init__(self, listeners: Sequence[Listener], limits: ConnectionLimits, grace: float) -> None:
        super().__init__(listeners[0].config)
        self.listeners = listeners
        self.limits = limits
        self.grace = grace

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(_STARTUP_FAILURE)
        # What start-up built lives as long as the worker: out of the collector's sight, a full
        # collection (triggered by a large review's allocations, holding the GIL) costs ~5 ms, not ~100.
        gc.freeze()
        loop = asyncio.get_running_loop()
        self.servers = []
        for listener in self.listeners:
            if not listener.config.loaded:
                listener.config.load()

            protocol = functools.partial(GuardedHttp, listener.config, self.server_state, self.lifespan.state,
                                         self.limits, set())
            handshake = self.limits.read_timeout if listener.ssl is not None else None
            self.servers.append(await loop.create_server(protocol, sock=listener.sock, ssl=listener.ssl,
                                                         backlog=listener.config.backlog,
                                                         ssl_handshake_timeout=handshake))
        self.started = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            # C timer thread: fires even if the interpreter never comes back to the event loop.
            faulthandler.dump_traceback_later(self.grace, exit=True)
        super().handle_exit(sig, frame)


def _tls(config: ServerConfig) -> CertificateReloader | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    try:
        return CertificateReloader(config.tls_cert, config.tls_key, client_ca=config.client_ca)
    except (OSError, ssl.SSLError) as exc:
        # OpenSSL says "[SSL] PEM lib (_ssl.c:3905)": read the files again to say which one, and what.
        diagnosis = diagnose_tls_files(config.tls_cert, config.tls_key, config.client_ca)
        files = f"--tls-cert {config.tls_cert} / --tls-key {config.tls_key}"
        if config.client_ca is not None:
            files += f" / --client-ca {config.client_ca}"
        raise InputError(diagnosis or f"{files}: {readable_openssl(str(exc))}") from exc


def uvicorn_config(config: ServerConfig, app: object, tls: CertificateReloader | None, *,
                   port: int | None = None) -> uvicorn.Config:
    """uvicorn settings: our SSLContext (so reloads reach new handshakes), no access log."""
    options: dict[str, object] = {}
    if tls is not None:
        context = tls.context
        options["ssl_context_factory"] = lambda _config, _default: context
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=config.host,
        port=config.port if port is None else port,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools",
        lifespan="on" if port is None else "off",
        access_log=False,
        log_config=None,  # our logging setup stays in charge
        server_header=False,
        timeout_keep_alive=config.keep_alive_timeout,
        timeout_graceful_shutdown=ShutdownDeadlines.within(config.shutdown_grace).drain,
        **options,  # type: ignore[arg-type]
    )


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def listeners(config: ServerConfig, app: FastAPI, tls: CertificateReloader | None) -> list[Listener]:
    """The admission socket, and the plain-HTTP ``--metrics-port`` one when asked for."""
    main = Listener(_bind(config.host, config.port), uvicorn_config(config, app, tls),
                    tls.context if tls is not None else None)
    ops = ops_app(app)
    if ops is None or config.metrics_port is None:
        return [main]
    return [main, Listener(_bind(config.host, config.metrics_port),
                           uvicorn_config(config, ops, None, port=config.metrics_port), None)]


class UpstreamAtDebug(logging.Filter):
    """httpx logs every request at INFO: they are upstream details, shown only at debug level."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return record.levelno >= logging.getLogger().getEffectiveLevel()


def configure_logging(level: int) -> None:
    """The server's log: at info one line per decision (the audit line) plus lifecycle; upstream requests at debug."""
    logging.getLogger().setLevel(level)
    logging.getLogger("webhook").setLevel(level)
    for name in ("httpx", "httpcore"):
        upstream = logging.getLogger(name)
        if not any(isinstance(f, UpstreamAtDebug) for f in upstream.filters):
            upstream.addFilter(UpstreamAtDebug())


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    config = from_args(args, os.environ)
    configure_logging(logging.DEBUG if args.verbose else log_level_number(config))
    configure_audit_handler(sys.stdout)

    # The trust root is built before the app whose /metrics its TUF requests belong to.
    observer = DeferredObserver()
    trust = build_trust(config, observer)
    policies = load_policies(config)
    tls = _tls(config)
    if tls is None:
        print(f"signet: WARNING: no --tls-cert/--tls-key: serving plain HTTP on {config.host}:{config.port} "
              "(fine for local tests; the Kubernetes API server requires HTTPS)", file=sys.stderr, flush=True)
    app = create_app(config, trust=trust, policies=policies, tls=tls)
    observer.target = app.state.signet.metrics.upstreams
    return serve_app(config, app, tls)


def serve_app(config: ServerConfig, app: FastAPI, tls: CertificateReloader | None) -> int:
    """Serve ``app`` from ``config.workers`` forked workers, this process supervising them (module docstring)."""
    bound = listeners(config, app, tls)
    limits = ConnectionLimits(config.read_timeout, config.max_connections)
    workers: set[int] = set()
    stop = _Stop(workers)
    # Before forking: a SIGTERM arriving meanwhile must stop the workers, not orphan them.
    signal.signal(signal.SIGTERM, stop.handle)
    signal.signal(signal.SIGINT, stop.handle)
    for _ in range(config.workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - worker process
            _work(bound, limits, config.shutdown_grace)
        workers.add(pid)
    for listener in bound:
        listener.sock.close()
    return _supervise(workers, stop, config.shutdown_grace)


def _work(bound: Sequence[Listener], limits: ConnectionLimits, grace: float) -> NoReturn:  # pragma: no cover
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # until uvicorn installs its own
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    code = 0
    try:
        watchdog = ShutdownDeadlines.within(grace).watchdog
        SignetServer(bound, limits, watchdog).run(sockets=[listener.sock for listener in bound])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        _logger.exception("worker %d failed", os.getpid())
        code = 1
    os._exit(code)


class _Stop:
    """The supervisor's SIGTERM/SIGINT handler: pass a SIGTERM on to every worker, once, and note when."""

    def __init__(self, workers: set[int]) -> None:
        self.workers = workers
        self.since: float | None = None

    def handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.now()

    def now(self) -> None:
        if self.since is None:
            self.since = time.monotonic()
            # SIGTERM even for SIGINT: a terminal's Ctrl+C reaches the workers too, and a second SIGINT
            # would make uvicorn skip the drain.
            for pid in self.workers:
                _kill(pid, signal.SIGTERM)


def _supervise(workers: set[int], stop: _Stop, grace: float) -> int:
    """Wait for the workers; once stopping (a signal, or a worker died) SIGKILL any still alive at the grace."""
    status = EXIT_OK
    kill = ShutdownDeadlines.within(grace).kill
    while workers:
        try:
            pid, code = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            # A worker's own watchdog fires first; this covers one stuck in C code, where no handler runs.
            if stop.since is not None and time.monotonic() - stop.since >= kill:
                _logger.error("worker(s) %s still running %g s after the stop; killing them", sorted(workers), grace)
                for worker in workers:
                    _kill(worker, signal.SIGKILL)
            time.sleep(0.05)
            continue
        workers.discard(pid)
        if stop.since is None:
            _logger.error("worker %d exited (status %d); stopping the others", pid, code)
            status = 1
            stop.now()
    return status


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
