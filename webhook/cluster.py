"""The server's Kubernetes side, in one place: policy CRD watch, Secrets and ConfigMaps, denial Events, pre-warm.

Active when Signet runs in a cluster (or is given a kubeconfig). Everything here uses the
synchronous official client from daemon threads or ``asyncio.to_thread``, never on the event loop,
and nothing here can make an admission fail: a broken Event or secret read is logged and the
decision stands.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from webhook.admission import AdmissionReview, ImageOutcome
from webhook.admission.workload import pod_spec_path
from webhook.k8s import KINDS, EventRecorder, PolicyWatcher, PullSecrets, load_api_client, prewarm
from webhook.k8s.configmaps import ConfigMaps
from webhook.k8s.watch import POLICY_CONTROLLER_KINDS
from webhook.oci import CredentialStore
from webhook.policy.matching import PolicyStore

_logger = logging.getLogger(__name__)

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def own_namespace() -> str:
    """The namespace this pod runs in (Events about cluster-scoped objects go there)."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def _pod_spec(review: AdmissionReview) -> Mapping[str, Any] | None:
    path = pod_spec_path(review.kind)
    node: Any = review.obj
    for part in path or ():
        node = node.get(part) if isinstance(node, Mapping) else None
    return node if path is not None and isinstance(node, Mapping) else None


class ClusterIntegration:
    """Watches policies into ``store``; optionally resolves pull secrets and pre-warms caches.

    ``policy_controller``: policy-controller's objects (policy.sigstore.dev) are watched too.
    """

    def __init__(self, api_client: Any, store: PolicyStore, *, pull_secrets: bool, prewarm_images: bool,
                 namespace: str, policy_controller: bool = False) -> None:
        self._api = api_client
        kinds = (*KINDS, *POLICY_CONTROLLER_KINDS) if policy_controller else KINDS
        # Signet's namespace is where policy.sigstore.dev objects may name Secrets (as in policy-controller).
        self._watcher = PolicyWatcher(api_client, store, on_change=lambda: None, kinds=kinds,
                                      system_namespace=namespace)
        # One reader for both uses; pull-secret credentials only when asked (the chart grants
        # reading secrets only then, and key.secretRef needs the same permission).
        self._secrets = PullSecrets(api_client, own_namespace=namespace)
        self._config_maps = ConfigMaps(api_client, own_namespace=namespace)
        self._pull_secrets = pull_secrets
        self._events = EventRecorder(api_client, namespace_default=namespace)
        self._prewarm = prewarm_images
        self._task: asyncio.Task[object] | None = None

    @classmethod
    def connect(cls, store: PolicyStore, *, kubeconfig: Path | None, pull_secrets: bool,
                prewarm_images: bool, policy_controller: bool = False) -> ClusterIntegration:
        """Load in-cluster config (or ``kubeconfig``); InputError when neither is available."""
        api = load_api_client(str(kubeconfig) if kubeconfig else None)
        return cls(api, store, pull_secrets=pull_secrets, prewarm_images=prewarm_images, namespace=own_namespace(),
                   policy_controller=policy_controller)

    @property
    def ready(self) -> bool:
        """The first list of every policy kind is in (until then, cluster policies may be missing)."""
        return self._watcher.ready

    def start(self, decide: Callable[[list[str], str], Awaitable[object]]) -> None:
        self._watcher.start()
        if self._prewarm:
            self._task = asyncio.ensure_future(self._run_prewarm(decide))

    async def _run_prewarm(self, decide: Callable[[list[str], str], Awaitable[object]]) -> None:
        await asyncio.to_thread(self._watcher.wait_ready, 30.0)
        result = await prewarm(self._api, decide)
        _logger.info("pre-warmed %d images in %d namespaces (%d failures)", result.images, result.namespaces,
                     result.failures)

    async def credentials(self, review: AdmissionReview) -> CredentialStore | None:
        """The workload's pull-secret credentials, or None (feature off, no pod spec, or a read failure)."""
        spec = _pod_spec(review)
        if not self._pull_secrets or spec is None or not review.namespace:
            return None
        try:
            return await self._secrets.credentials_for_async(review.namespace, spec)
        except Exception:  # a secret we cannot read must not stop the decision: it proceeds anonymously
            _logger.exception("cannot read pull secrets for %s/%s", review.namespace, review.name)
            return None

    async def public_key(self, namespace: str | None, name: str) -> str:
        """The PEM public key a ``key.secretRef`` names (namespace None: Signet's own)."""
        return await self._secrets.public_key_async(namespace, name)

    async def ca_certificates(self, namespace: str | None, name: str) -> str:
        """The PEM CA certificates a ``keyless.caCert.secretRef`` names (namespace None: Signet's own)."""
        return await self._secrets.ca_certificates_async(namespace, name)

    async def registry_credentials(self, namespace: str, names: Sequence[str]) -> CredentialStore:
        """The credentials of ``source.signaturePullSecrets`` (Secrets of the workload's namespace).

        Read whatever ``--pull-secrets`` says: the policy names them, and reading fails closed without RBAC.
        """
        return await self._secrets.registry_credentials_async(namespace, names)

    async def config_map(self, namespace: str | None, name: str, key: str) -> str:
        """The policy text a ``configMapRef`` names (namespace None: Signet's own)."""
        return await self._config_maps.text_async(namespace, name, key)

    def record_denial(self, review: AdmissionReview, message: str, outcomes: Sequence[ImageOutcome]) -> None:
        """An ``ImageDenied`` Event on the object, queued off the admission path."""
        metadata = review.obj.get("metadata") if isinstance(review.obj, Mapping) else None
        uid = metadata.get("uid") if isinstance(metadata, Mapping) else None
        api_version = review.obj.get("apiVersion") if isinstance(review.obj, Mapping) else None
        self._events.denied(review.kind.kind, review.object_name, review.namespace or None,
                            uid if isinstance(uid, str) else None, message,
                            api_version=api_version if isinstance(api_version, str) else None,
                            user=review.user.username, images=outcomes)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.to_thread(self._watcher.stop)
        await asyncio.to_thread(self._events.stop)


class ClusterReaders:
    """The engine's readers of the cluster, bound to an integration that may connect after the engine is built.

    Each read raises while there is no integration: what needs it then fails closed, said so.
    """

    def __init__(self, integration: Callable[[], ClusterIntegration | None]) -> None:
        self._integration = integration

    def _connected(self) -> ClusterIntegration:
        cluster = self._integration()
        if cluster is None:
            raise RuntimeError("not connected to a cluster (run in a pod, or give --kubeconfig)")
        return cluster

    async def public_key(self, namespace: str | None, name: str) -> str:
        return await self._connected().public_key(namespace, name)

    async def ca_certificates(self, namespace: str | None, name: str) -> str:
        return await self._connected().ca_certificates(namespace, name)

    async def registry_credentials(self, namespace: str, names: Sequence[str]) -> CredentialStore:
        return await self._connected().registry_credentials(namespace, names)

    async def config_map(self, namespace: str | None, name: str, key: str) -> str:
        return await self._connected().config_map(namespace, name, key)
