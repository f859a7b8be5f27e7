"""``signet serve``: the admission webhook (``webhook.app``) served by ``webhook.server``.

Anything wrong with the flags, policies, trust root or TLS files is found before the server
starts and reported as a one-line error (exit 2). The TUF refresh runs in the trust provider's
thread; the cached or embedded root serves at once, even with no network.

The connection limits are ``webhook.server.connections``'s; the worker processes, their supervisor
and the shutdown deadlines are ``webhook.server.workers``'s.
"""

from __future__ import annotations

import argparse
import logging
import os
import ssl
import sys

from webhook.app import create_app
from webhook.audit import AuditLog
from webhook.commands.hints import diagnose_tls_files, readable_openssl
from webhook.config import ServerConfig, add_serve_arguments, from_args, log_level_number
from webhook.errors import InputError
from webhook.server.setup import build_trust, load_policies
from webhook.server.workers import serve_app
from webhook.tls import CertificateReloader
from webhook.upstreams import DeferredObserver


def configure(parser: argparse.ArgumentParser) -> None:
    add_serve_arguments(parser)


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
    # The trust root is built before the app whose /metrics its TUF requests belong to.
    observer = DeferredObserver()
    trust = build_trust(config, observer)
    policies = load_policies(config)
    tls = _tls(config)
    if tls is None:
        print(f"signet: WARNING: no --tls-cert/--tls-key: serving plain HTTP on {config.host}:{config.port} "
              "(fine for local tests; the Kubernetes API server requires HTTPS)", file=sys.stderr, flush=True)
    # One JSON line per decision on stdout, written directly: the logging machinery costs more than the line.
    app = create_app(config, trust=trust, policies=policies, tls=tls, audit=AuditLog(stream=sys.stdout))
    observer.target = app.state.signet.metrics.upstreams
    return serve_app(config, app, tls)
