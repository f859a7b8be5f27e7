"""The server's processes: uvicorn (uvloop + httptools) on our listeners, in supervised workers.

``--workers N`` (1 by default) are forked on the shared sockets, each with its own caches, TLS
watcher and watchdog; the first process only supervises. On SIGTERM it passes the signal on; a
worker's uvicorn stops accepting, lets in-flight requests finish, cancels the rest and closes its
clients. Two deadlines make "exits within ``--shutdown-grace``" a promise: the worker's
``faulthandler`` timer (a C thread needing no GIL, armed by the signal handler) prints every stack
to stderr and exits a second before the grace, and half a second before it the supervisor
SIGKILLs a worker stuck where no signal handler can run (a C call holding the GIL).
"""

from __future__ import annotations

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
from typing import Final, NoReturn

import uvicorn
from fastapi import FastAPI

from webhook.app import ops_app
from webhook.commands.console import EXIT_OK
from webhook.config import ServerConfig
from webhook.errors import InputError
from webhook.server.connections import ConnectionLimits, GuardedHttp
from webhook.tls import CertificateReloader

_logger = logging.getLogger(__name__)

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
