"""The server's parts, built from its config: trust root, policies, decision engine, cluster integration.

Nothing here runs at import: ``webhook.app``'s lifespan (or ``signet serve``, before the app
exists) calls these, and the decision package loads only with the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from webhook.cluster import ClusterIntegration, ClusterReaders
from webhook.config import ServerConfig
from webhook.errors import InputError, TrustError
from webhook.policy.loader import LoadResult, load_directory
from webhook.policy.matching import PolicySet, PolicyStore
from webhook.trust.provider import TrustRootProvider
from webhook.upstreams import UpstreamObserver

if TYPE_CHECKING:
    from webhook.decision import Engine
    from webhook.decision.clients import UpstreamClients

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedPolicies:
    """A policy snapshot and what loading it reported (``problems`` are invalid documents)."""

    policy_set: PolicySet
    result: LoadResult
    source: str


def load_policies(config: ServerConfig) -> LoadedPolicies:
    """``--policies DIR``, or none at all (every image is then denied, by noMatchPolicy).

    A document that is invalid or cannot be enforced stays in force as a fail-closed stand-in
    that denies its images, and keeps the server from reporting ready. Raises ``PolicyError``
    (an InputError) when the directory does not exist.
    """
    if config.policies_dir is None:
        _logger.warning("no --policies given: no policies are loaded, so every image is handled by "
                        "noMatchPolicy (%s)", config.no_match_policy)
        result = LoadResult()
    else:
        result = load_directory(config.policies_dir)
    for problem in result.problems:
        _logger.error("policy problem: %s", problem)
    for key in result.fail_closed:
        _logger.error("%s cannot be enforced as written: every image it covers is denied until it is fixed", key)
    for warning in result.warnings:
        _logger.warning("policy: %s", warning)
    policy_set = PolicySet.from_load_result(result, no_match_policy=config.no_match_policy)
    return LoadedPolicies(policy_set, result, config.policies_location())


def build_trust(config: ServerConfig, observer: UpstreamObserver | None = None) -> TrustRootProvider:
    """The trust-root provider the config asks for (InputError for an unusable file).

    ``observer`` is told about every TUF request (``/metrics``).
    """
    from webhook.trust.fetchers import HttpxFetcher
    from webhook.trust.tuf_client import TufClient
    from webhook.upstreams import observed_tuf_client

    if config.trust_source == "file":
        assert config.trusted_root is not None
        try:
            return TrustRootProvider.from_file(config.trusted_root)
        except TrustError as exc:
            raise InputError(f"--trusted-root {config.trusted_root}: {exc.reason}") from exc
    if config.trust_source == "env":
        from webhook.trust.embedded import production_trusted_root_json

        try:
            provider = TrustRootProvider.from_env(config.sigstore_env, base=production_trusted_root_json())
        except TrustError as exc:
            raise InputError(f"SIGSTORE_* variables: {exc.reason}") from exc
        assert provider is not None
        return provider
    bootstrap = None
    if config.tuf_root is not None:
        try:
            bootstrap = config.tuf_root.read_bytes()
        except OSError as exc:
            raise InputError(f"--tuf-root {config.tuf_root}: {exc.strerror or exc}") from exc
    fetcher = HttpxFetcher(client=observed_tuf_client(observer)) if observer is not None else None
    client = (TufClient(config.tuf_mirror, bootstrap_root=bootstrap, fetcher=fetcher) if config.tuf_mirror
              else TufClient(fetcher=fetcher))
    return TrustRootProvider.from_tuf(client)


def build_engine(config: ServerConfig, trust: TrustRootProvider, policies: LoadedPolicies, *,
                 current: Callable[[], PolicySet], cluster: Callable[[], ClusterIntegration | None],
                 observer: UpstreamObserver) -> tuple[Engine, UpstreamClients]:
    """The decision engine and the registry and Rekor clients it shares (the caller closes both).

    ``current`` gives the policies in force at each decision; ``cluster`` the integration, which
    connects after the engine is built.
    """
    from webhook.decision import Engine, EngineSettings
    from webhook.decision.clients import build_upstream_clients

    settings = EngineSettings(on_error=config.on_error, deadline=config.deadline,
                              images_in_flight=config.images_in_flight,
                              **config.cache_ttls())  # type: ignore[arg-type]
    # One bound on requests in flight, one guarded connection pool (HTTP/2 where offered) and one
    # memory of what each registry supports for every client: reviews with different pull secrets
    # share them, and egress rules apply to every connection.
    clients = build_upstream_clients(max_in_flight=config.max_registry_requests,
                                     max_per_host=config.registry_connections_per_host,
                                     allow_http=config.allow_http_registry, mirrors=config.registry_mirrors,
                                     observer=observer, trust_root=trust.get)
    # Secrets and ConfigMaps are read through the cluster integration, connected after the engine is built.
    reads = ClusterReaders(cluster)
    engine = Engine(policies=current, trust_root=lambda: trust.current, registry=clients.registry,
                    rekor=clients.rekor, settings=settings, registry_for=clients.client_for,
                    secret_key=reads.public_key, config_map=reads.config_map,
                    ca_certificates=reads.ca_certificates, pull_secrets=reads.registry_credentials)
    engine.start_sandbox(policies.result.policies)
    return engine, clients


def connect_cluster(config: ServerConfig, result: LoadResult) -> tuple[PolicyStore, ClusterIntegration]:
    """``--cluster``: the store of directory and cluster policies together, and the integration that fills it."""
    store = PolicyStore([*result.cluster_policies, *result.image_policies, *result.trust_roots],
                        no_match_policy=config.no_match_policy)
    cluster = ClusterIntegration.connect(store, kubeconfig=config.kubeconfig, pull_secrets=config.pull_secrets,
                                         prewarm_images=config.prewarm,
                                         policy_controller=config.watch_policy_controller)
    return store, cluster
