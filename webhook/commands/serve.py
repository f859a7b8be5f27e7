"""``signet serve``: the admission webhook under uvicorn (uvloop + httptools when installed).

Everything that can be wrong with the flags, the policy directory, the trust-root file or the TLS
files is found before the server starts and reported as a one-line error (exit 2). The TUF
refresh happens in the trust provider's background thread; the cached or embedded root serves
immediately, so the server answers within a second or two even with no network.

``--workers N`` forks N processes sharing one listening socket (each has its own caches and TLS
watcher); the parent only forwards SIGTERM/SIGINT and waits.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import signal
import ssl
import sys
from types import FrameType

import uvicorn

from webhook.app import build_trust, create_app, load_policies
from webhook.audit import configure_audit_handler
from webhook.commands.common import EXIT_OK
from webhook.config import ServerConfig, add_serve_arguments, from_args, log_level_number
from webhook.errors import InputError
from webhook.tls import CertificateReloader

_logger = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    add_serve_arguments(parser)


def _tls(config: ServerConfig) -> CertificateReloader | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    try:
        return CertificateReloader(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise InputError(f"--tls-cert {config.tls_cert} / --tls-key {config.tls_key}: {exc}") from exc


def uvicorn_config(config: ServerConfig, app: object, tls: CertificateReloader | None) -> uvicorn.Config:
    """uvicorn settings: our SSLContext (so reloads reach new handshakes), no access log."""
    options: dict[str, object] = {}
    if tls is not None:
        context = tls.context
        options["ssl_context_factory"] = lambda _config, _default: context
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=config.host,
        port=config.port,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        lifespan="on",
        access_log=False,
        log_config=None,  # our logging setup stays in charge
        server_header=False,
        timeout_graceful_shutdown=10,
        **options,  # type: ignore[arg-type]
    )


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    config = from_args(args, os.environ)
    logging.getLogger().setLevel(log_level_number(config))
    if not args.verbose:
        logging.getLogger("webhook").setLevel(log_level_number(config))
    configure_audit_handler(sys.stdout)

    trust = build_trust(config)
    policies = load_policies(config)
    tls = _tls(config)
    if tls is None:
        print(f"signet: WARNING: no --tls-cert/--tls-key: serving plain HTTP on {config.host}:{config.port} "
              "(fine for local tests; the Kubernetes API server requires HTTPS)", file=sys.stderr, flush=True)
    app = create_app(config, trust=trust, policies=policies, tls=tls)
    server_config = uvicorn_config(config, app, tls)
    if config.workers == 1:
        uvicorn.Server(server_config).run()
        return EXIT_OK
    return _run_workers(server_config, config.workers)


def _run_workers(server_config: uvicorn.Config, workers: int) -> int:
    """Fork ``workers`` servers on one pre-bound socket; stop them all when one dies or on a signal."""
    sock = server_config.bind_socket()
    children: set[int] = set()
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child process
            code = 0
            try:
                uvicorn.Server(server_config).run(sockets=[sock])
            except BaseException:
                _logger.exception("worker %d failed", os.getpid())
                code = 1
            os._exit(code)
        children.add(pid)
    sock.close()
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            _kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    while children:
        try:
            pid, code = os.wait()
        except ChildProcessError:
            break
        children.discard(pid)
        if not stopping:
            _logger.error("worker %d exited (status %d); stopping the others", pid, code)
            status = 1
            stopping = True
            for child in children:
                _kill(child, signal.SIGTERM)
    return status


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)

