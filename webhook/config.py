"""The server's configuration: the one place that reads command-line flags and the environment.

``ServerConfig`` is frozen and built once, in ``signet serve``, from argparse arguments and a
snapshot of the environment; everything else (app, engine, TLS) is handed the object. Nothing
reads ``os.environ`` at import time or inside a request handler (STYLE.md: Connaisseur's
globals and per-request environment reads are what not to copy).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, TypeAlias

from webhook.errors import InputError
from webhook.policy.models import NoMatchPolicy

OnError: TypeAlias = Literal["deny", "warn", "allow"]
TrustSource: TypeAlias = Literal["tuf", "file", "env"]

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8443
DEFAULT_DEADLINE: Final = 8.0
DEFAULT_TLS_RELOAD_INTERVAL: Final = 5.0
# Bounds on what one client or one request can cost (issue 9): see each flag's help.
DEFAULT_MAX_IMAGES: Final = 256
DEFAULT_READ_TIMEOUT: Final = 10.0
DEFAULT_MAX_CONNECTIONS: Final = 1000
DEFAULT_KEEP_ALIVE_TIMEOUT: Final = 5
DEFAULT_SHUTDOWN_GRACE: Final = 10.0
DEFAULT_MAX_REGISTRY_REQUESTS: Final = 64
DEFAULT_IMAGES_IN_FLIGHT: Final = 32  # a 20-image Pod in one wave (bench/network.py, issue 12)
# Chosen with bench/network.py (issue 12): see each flag's help.
DEFAULT_REGISTRY_CONNECTIONS_PER_HOST: Final = 32
DEFAULT_WARM_UP_TIMEOUT: Final = 5.0
# cosign's variables (ARCHITECTURE.md §5); only these are kept from the environment.
SIGSTORE_ENV: Final = ("SIGSTORE_ROOT_FILE", "SIGSTORE_REKOR_PUBLIC_KEY", "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE")
_LOG_LEVELS: Final = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``signet serve`` was told; see ``add_serve_arguments`` for each field's flag."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_reload_interval: float = DEFAULT_TLS_RELOAD_INTERVAL
    policies_dir: Path | None = None  # None: no policies (noMatchPolicy decides every image)
    trust_source: TrustSource = "tuf"
    trusted_root: Path | None = None
    tuf_mirror: str | None = None  # None: Sigstore's production mirror
    tuf_root: Path | None = None
    sigstore_env: Mapping[str, str] = field(default_factory=dict)
    no_match_policy: NoMatchPolicy = NoMatchPolicy.DENY
    on_error: OnError = "deny"
    deadline: float = DEFAULT_DEADLINE
    allow_http_registry: bool = False
    registry_mirrors: Mapping[str, str] = field(default_factory=dict)
    # Cache TTLs in seconds; None: the engine's defaults (ARCHITECTURE.md §6).
    allow_ttl: float | None = None
    deny_ttl: float | None = None
    signatures_ttl: float | None = None
    digest_ttl: float | None = None
    workers: int = 1
    log_level: str = "info"
    prewarm: bool = False
    pull_secrets: bool = False
    watch_policy_controller: bool = False
    """Also watch policy-controller's ClusterImagePolicy and TrustRoot objects (policy.sigstore.dev)."""
    cluster: bool = False
    """Watch policy CRDs, record Events, and (when asked) read pull secrets through the Kubernetes API."""
    kubeconfig: Path | None = None
    max_images: int = DEFAULT_MAX_IMAGES
    max_registry_requests: int = DEFAULT_MAX_REGISTRY_REQUESTS
    images_in_flight: int = DEFAULT_IMAGES_IN_FLIGHT
    """Distinct images one review may name; a review with more is denied unverified."""
    read_timeout: float = DEFAULT_READ_TIMEOUT
    """Seconds a client has for its TLS handshake, then a request's headers, then its body."""
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    """Open connections per worker and port; past it the longest-waiting one is closed, or the new one refused."""
    keep_alive_timeout: int = DEFAULT_KEEP_ALIVE_TIMEOUT
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    """After SIGTERM: in-flight requests drain, and the process is gone within this many seconds."""
    client_ca: Path | None = None
    """Require a client certificate chaining to this CA (the API server's admission kubeconfig)."""
    metrics_port: int | None = None
    """Serve /metrics, /healthz and /readyz on this plain-HTTP port instead of the admission port."""
    registry_connections_per_host: int = DEFAULT_REGISTRY_CONNECTIONS_PER_HOST
    """Requests in flight to one registry that speaks only HTTP/1.1 (one connection each); HTTP/2 needs one."""
    warm_up_timeout: float = DEFAULT_WARM_UP_TIMEOUT
    """Seconds warm-up may hold readiness at start; 0 turns its network part off."""

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def cache_ttls(self) -> dict[str, float]:
        """The TTLs that were set, by ``EngineSettings`` field name."""
        ttls = {"allow_ttl": self.allow_ttl, "deny_ttl": self.deny_ttl, "signatures_ttl": self.signatures_ttl,
                "digest_ttl": self.digest_ttl}
        return {name: value for name, value in ttls.items() if value is not None}

    def policies_location(self) -> str:
        """Human description of where policies come from (logs, /readyz)."""
        return str(self.policies_dir) if self.policies_dir else "none (--policies not given)"


def _engine_defaults() -> dict[str, float]:
    """The engine's cache TTLs, for ``--help`` (the engine owns them; None in ServerConfig means these)."""
    from webhook.decision.settings import EngineSettings

    settings = EngineSettings()
    return {"allow": settings.allow_ttl, "deny": settings.deny_ttl, "signatures": settings.signatures_ttl,
            "digest": settings.digest_ttl}


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``signet serve`` (ARCHITECTURE.md §7, and those the Helm chart passes); help names every default."""
    ttl = _engine_defaults()
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--tls-cert", metavar="F",
                        help="PEM certificate chain; reloaded when the file changes (default: none, plain HTTP)")
    parser.add_argument("--tls-key", metavar="F", help="PEM private key of --tls-cert (default: none)")
    parser.add_argument("--client-ca", metavar="F",
                        help="require a client certificate issued by this PEM CA, e.g. the one the API server "
                             "presents through its admission kubeconfig (needs --tls-cert; default: none, any "
                             "client may connect)")
    parser.add_argument("--metrics-port", type=int, metavar="P",
                        help="serve /metrics, /healthz and /readyz over plain HTTP on this port, and only "
                             "/validate and /mutate on --port (default: none, all on --port)")
    parser.add_argument("--policies", metavar="DIR",
                        help="directory of policy YAML files (default: none, so noMatchPolicy decides every image)")
    parser.add_argument("--trusted-root", metavar="F",
                        help="a trusted_root.json to use instead of TUF (default: none, TUF)")
    parser.add_argument("--tuf-mirror", metavar="URL",
                        help="TUF mirror to refresh the trust root from (default: Sigstore's public mirror)")
    parser.add_argument("--tuf-root", metavar="F",
                        help="TUF root.json to start from, with --tuf-mirror (default: none)")
    parser.add_argument("--no-match-policy", choices=[m.value for m in NoMatchPolicy], default="deny",
                        help="images no policy matches: deny (default), warn or allow")
    parser.add_argument("--on-error", choices=("deny", "warn", "allow"), default="deny",
                        help="registry/Rekor/TUF failures and timeouts: deny (default), warn or allow")
    parser.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE, metavar="SECONDS",
                        help=f"per-request verification deadline (default {DEFAULT_DEADLINE:g})")
    parser.add_argument("--allow-http-registry", action="store_true",
                        help="reach registries on loopback over plain HTTP (default: off)")
    parser.add_argument("--registry-mirror", action="append", default=[], metavar="HOST=URL",
                        help="fetch HOST's images from URL (repeatable; default: none)")
    parser.add_argument("--allow-ttl", type=float, metavar="SECONDS",
                        help=f"how long an allow verdict is cached (default {ttl['allow']:g})")
    parser.add_argument("--deny-ttl", type=float, metavar="SECONDS",
                        help=f"how long a deny verdict is cached (default {ttl['deny']:g})")
    parser.add_argument("--signatures-ttl", type=float, metavar="SECONDS",
                        help=f"how long the signatures found for a digest are cached (default {ttl['signatures']:g})")
    parser.add_argument("--digest-ttl", type=float, metavar="SECONDS",
                        help=f"how long a tag's digest is cached (default {ttl['digest']:g})")
    parser.add_argument("--max-images", type=int, default=DEFAULT_MAX_IMAGES, metavar="N",
                        help="distinct images one admission review may name; a review naming more is denied "
                             f"without verifying any (default {DEFAULT_MAX_IMAGES})")
    parser.add_argument("--max-registry-requests", type=int, default=DEFAULT_MAX_REGISTRY_REQUESTS, metavar="N",
                        help="registry and Rekor requests in flight at once, for all reviews together "
                             f"(default {DEFAULT_MAX_REGISTRY_REQUESTS})")
    parser.add_argument("--images-in-flight", type=int, default=DEFAULT_IMAGES_IN_FLIGHT, metavar="N",
                        help="images of one review verified at once; the rest of a large review waits for its "
                             f"own share (default {DEFAULT_IMAGES_IN_FLIGHT})")
    parser.add_argument("--registry-connections-per-host", type=int, default=DEFAULT_REGISTRY_CONNECTIONS_PER_HOST,
                        metavar="N",
                        help="requests in flight to one registry that speaks only HTTP/1.1, each on its own "
                             "connection; a registry offering HTTP/2 gets one connection for all "
                             f"(default {DEFAULT_REGISTRY_CONNECTIONS_PER_HOST})")
    parser.add_argument("--warm-up-timeout", type=float, default=DEFAULT_WARM_UP_TIMEOUT, metavar="SECONDS",
                        help="at start, before reporting ready, open connections and fetch anonymous tokens for "
                             "the registries the policies name, and Rekor's; at most this long "
                             f"(0: none, only what needs no network; default {DEFAULT_WARM_UP_TIMEOUT:g})")
    parser.add_argument("--read-timeout", type=float, default=DEFAULT_READ_TIMEOUT, metavar="SECONDS",
                        help="time a client has for its TLS handshake, then for a request's headers, then for its "
                             "body; also how long a client may leave an answer unread "
                             f"(default {DEFAULT_READ_TIMEOUT:g})")
    parser.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS, metavar="N",
                        help="open connections per worker and port; a new one past this closes the one waiting "
                             "longest for a request (or the rest of one), or is refused when every connection has "
                             f"a request being decided (default {DEFAULT_MAX_CONNECTIONS})")
    parser.add_argument("--keep-alive-timeout", type=int, default=DEFAULT_KEEP_ALIVE_TIMEOUT, metavar="SECONDS",
                        help=f"close connections idle this long between requests (default {DEFAULT_KEEP_ALIVE_TIMEOUT})"
                        )
    parser.add_argument("--shutdown-grace", type=float, default=DEFAULT_SHUTDOWN_GRACE, metavar="SECONDS",
                        help="after SIGTERM, in-flight requests may finish; the process exits within this many "
                             f"seconds whatever is still running (default {DEFAULT_SHUTDOWN_GRACE:g})")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes sharing the port, under a supervising process (default 1)")
    parser.add_argument("--log-level", choices=_LOG_LEVELS, default="info", help="log level (default info)")
    parser.add_argument("--cluster", choices=("auto", "on", "off"), default="auto",
                        help="watch policy CRDs and record denial Events in the cluster "
                             "(default auto: when running in a pod or given --kubeconfig)")
    parser.add_argument("--kubeconfig", metavar="F", help="kubeconfig for the cluster (default: in-cluster)")
    parser.add_argument("--prewarm", action="store_true",
                        help="verify running pods' images at start (needs a cluster; default: off)")
    parser.add_argument("--watch-policy-controller", action="store_true",
                        help="also enforce sigstore/policy-controller's ClusterImagePolicy and TrustRoot objects "
                             "(policy.sigstore.dev) in the cluster, with the same meaning (needs a cluster; "
                             "default: off)")
    parser.add_argument("--pull-secrets", action="store_true",
                        help="use workloads' and service accounts' imagePullSecrets (needs a cluster; default: off)")


def parse_mirrors(values: list[str]) -> dict[str, str]:
    mirrors: dict[str, str] = {}
    for value in values:
        host, sep, url = value.partition("=")
        if not sep or not host or not url:
            raise InputError(f"--registry-mirror {value!r}: expected HOST=URL")
        mirrors[host] = url
    return mirrors


def _positive(value: float | None, flag: str) -> None:
    if value is not None and not value > 0:
        raise InputError(f"{flag} must be a positive number of seconds, not {value:g}")


def _at_least(value: int, minimum: int, flag: str) -> None:
    if value < minimum:
        raise InputError(f"{flag} must be at least {minimum}, not {value}")


def from_args(args: argparse.Namespace, env: Mapping[str, str]) -> ServerConfig:
    """Validate the flags (InputError names the bad one) and snapshot the cosign variables of ``env``."""
    if (args.tls_cert is None) != (args.tls_key is None):
        raise InputError("--tls-cert and --tls-key go together")
    if args.trusted_root and (args.tuf_mirror or args.tuf_root):
        raise InputError("--trusted-root excludes --tuf-mirror/--tuf-root")
    if args.tuf_root and not args.tuf_mirror:
        raise InputError("--tuf-root needs --tuf-mirror")
    if not 0 < args.port < 65536:
        raise InputError(f"--port {args.port} is not a TCP port")
    if args.workers < 1:
        raise InputError("--workers must be at least 1")
    if args.client_ca and not args.tls_cert:
        raise InputError("--client-ca needs --tls-cert/--tls-key: client certificates are checked in the TLS handshake")
    if args.metrics_port is not None and not (0 < args.metrics_port < 65536 and args.metrics_port != args.port):
        raise InputError(f"--metrics-port {args.metrics_port} must be a TCP port other than --port")
    _at_least(args.max_images, 1, "--max-images")
    _at_least(args.max_registry_requests, 1, "--max-registry-requests")
    _at_least(args.images_in_flight, 1, "--images-in-flight")
    _at_least(args.registry_connections_per_host, 1, "--registry-connections-per-host")
    if not args.warm_up_timeout >= 0:
        raise InputError(f"--warm-up-timeout must be 0 (off) or a number of seconds, not {args.warm_up_timeout:g}")
    # A handful of connections is always needed: probes, a scrape and the API server at once.
    _at_least(args.max_connections, 8, "--max-connections")
    _positive(args.read_timeout, "--read-timeout")
    _at_least(args.keep_alive_timeout, 1, "--keep-alive-timeout")
    _positive(args.shutdown_grace, "--shutdown-grace")
    _positive(args.deadline, "--deadline")
    _positive(args.allow_ttl, "--allow-ttl")
    _positive(args.deny_ttl, "--deny-ttl")
    _positive(args.signatures_ttl, "--signatures-ttl")
    _positive(args.digest_ttl, "--digest-ttl")
    sigstore_env = {k: env[k] for k in SIGSTORE_ENV if env.get(k)}
    # A pod always has KUBERNETES_SERVICE_HOST; elsewhere the cluster is opt-in through a kubeconfig.
    cluster = args.cluster == "on" or (args.cluster == "auto" and (bool(env.get("KUBERNETES_SERVICE_HOST"))
                                                                    or bool(args.kubeconfig)))
    if (args.pull_secrets or args.prewarm) and not cluster:
        raise InputError("--pull-secrets and --prewarm need the cluster (run in a pod, or give --kubeconfig)")
    if args.watch_policy_controller and not cluster:
        raise InputError("--watch-policy-controller needs the cluster (run in a pod, or give --kubeconfig)")
    trust_source: TrustSource = "tuf"
    if args.trusted_root:
        trust_source = "file"
    elif sigstore_env and not args.tuf_mirror:
        trust_source = "env"
    return ServerConfig(
        host=args.host,
        port=args.port,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        policies_dir=Path(args.policies) if args.policies else None,
        trust_source=trust_source,
        trusted_root=Path(args.trusted_root) if args.trusted_root else None,
        tuf_mirror=args.tuf_mirror,
        tuf_root=Path(args.tuf_root) if args.tuf_root else None,
        sigstore_env=sigstore_env,
        no_match_policy=NoMatchPolicy(args.no_match_policy),
        on_error=args.on_error,
        deadline=args.deadline,
        allow_http_registry=args.allow_http_registry,
        registry_mirrors=parse_mirrors(args.registry_mirror),
        allow_ttl=args.allow_ttl,
        deny_ttl=args.deny_ttl,
        signatures_ttl=args.signatures_ttl,
        digest_ttl=args.digest_ttl,
        workers=args.workers,
        log_level=args.log_level,
        prewarm=args.prewarm,
        pull_secrets=args.pull_secrets,
        watch_policy_controller=args.watch_policy_controller,
        cluster=cluster,
        kubeconfig=Path(args.kubeconfig) if args.kubeconfig else None,
        max_images=args.max_images,
        max_registry_requests=args.max_registry_requests,
        images_in_flight=args.images_in_flight,
        read_timeout=args.read_timeout,
        max_connections=args.max_connections,
        keep_alive_timeout=args.keep_alive_timeout,
        shutdown_grace=args.shutdown_grace,
        client_ca=Path(args.client_ca) if args.client_ca else None,
        metrics_port=args.metrics_port,
        registry_connections_per_host=args.registry_connections_per_host,
        warm_up_timeout=args.warm_up_timeout,
    )


def log_level_number(config: ServerConfig) -> int:
    return int(getattr(logging, config.log_level.upper()))
