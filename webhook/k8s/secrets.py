"""Registry credentials from the workload's pull secrets, and public keys and CA certificates named by policies.

A workload's credentials are its own ``imagePullSecrets`` plus those of its service account
(``spec.serviceAccountName``, else ``default``); the pod's own win for a registry both name.
Secrets of type ``kubernetes.io/dockerconfigjson`` (``.dockerconfigjson``) and the legacy
``kubernetes.io/dockercfg`` (``.dockercfg``) are read on demand and cached for ``ttl`` seconds,
parsed (absent ones too, so a burst of admissions costs one read).

Nothing read from a Secret is ever logged or put in an error message: a missing or unusable
secret is reported by namespace and name only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

from kubernetes import client as k8s_client

from webhook.errors import InputError, SignetError
from webhook.k8s.client import api_error, raw_json
from webhook.oci.auth import CredentialStore

_logger = logging.getLogger(__name__)

DOCKER_CONFIG_KEYS: Final = {
    "kubernetes.io/dockerconfigjson": ".dockerconfigjson",
    "kubernetes.io/dockercfg": ".dockercfg",
}
PUBLIC_KEY_NAMES: Final = ("cosign.pub", "publicKey", "key.pub")
CA_CERTIFICATE_NAMES: Final = ("ca.crt", "ca-cert", "caCert")
HTTP_NOT_FOUND: Final = 404
READ_TIMEOUT: Final = (3.0, 5.0)
"""(connect, read) seconds for one Secret or ServiceAccount: admission waits on these reads."""

_T = TypeVar("_T")


MAX_PULL_SECRETS = 32
"""Pull secrets read for one workload (its own and its service account's); real workloads name a few."""


class SecretKeyError(InputError):
    """A Secret named by a policy's ``key.secretRef`` is missing or holds no usable public key."""


class PullSecrets:
    """Reads pull secrets and key secrets through the API, with a small TTL cache (thread-safe)."""

    def __init__(
        self,
        api_client: Any,
        *,
        ttl: float = 60.0,
        own_namespace: str = "default",
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._core: Any = k8s_client.CoreV1Api(api_client)
        self._ttl = ttl
        self._own_namespace = own_namespace
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str, str], tuple[float, Any]] = OrderedDict()

    # --- public ------------------------------------------------------------------------------

    def credentials_for(self, namespace: str, pod_spec: Mapping[str, Any]) -> CredentialStore:
        """Credentials for a workload in ``namespace`` whose pod spec is ``pod_spec`` (camelCase, as in the API)."""
        account = pod_spec.get("serviceAccountName") or pod_spec.get("serviceAccount") or "default"
        names = self._cached("serviceaccount", namespace, str(account), self._account_pull_secrets) or []
        wanted = list(dict.fromkeys([*names, *_reference_names(pod_spec.get("imagePullSecrets"))]))
        if len(wanted) > MAX_PULL_SECRETS:
            # One API read each, before the admission's deadline starts: a workload naming thousands
            # would hold a worker thread (and everything queued behind it) for minutes.
            _logger.warning("%s/%s names %d pull secrets; only the first %d are read", namespace, account,
                            len(wanted), MAX_PULL_SECRETS)
            wanted = wanted[:MAX_PULL_SECRETS]
        store = CredentialStore()
        for name in wanted:
            creds = self._cached("pull", namespace, name, self._pull_secret)
            if creds is not None:
                store = store.merged(creds)
        return store

    async def credentials_for_async(self, namespace: str, pod_spec: Mapping[str, Any]) -> CredentialStore:
        """:meth:`credentials_for` off the event loop (the client is synchronous)."""
        return await asyncio.to_thread(self.credentials_for, namespace, pod_spec)

    def public_key(self, namespace: str | None, name: str) -> str:
        """The PEM public key in Secret ``namespace/name`` (namespace None: Signet's own).

        The Secret must hold one entry, or one called ``cosign.pub`` (what ``cosign generate-key-pair
        k8s://`` writes), ``publicKey`` or ``key.pub``. Raises :class:`SecretKeyError`.
        """
        pem = self._cached("key", namespace or self._own_namespace, name, self._key_secret)
        if isinstance(pem, SecretKeyError):
            raise pem
        assert isinstance(pem, str)
        return pem

    async def public_key_async(self, namespace: str | None, name: str) -> str:
        """:meth:`public_key` off the event loop."""
        return await asyncio.to_thread(self.public_key, namespace, name)

    def ca_certificates(self, namespace: str | None, name: str) -> str:
        """The PEM CA certificates in Secret ``namespace/name`` (``keyless.caCert.secretRef``; None: Signet's own).

        The Secret must hold one entry, or one called ``ca.crt``, ``ca-cert`` or ``caCert``. Raises
        :class:`SecretKeyError`.
        """
        pem = self._cached("ca", namespace or self._own_namespace, name, self._ca_secret)
        if isinstance(pem, SecretKeyError):
            raise pem
        assert isinstance(pem, str)
        return pem

    async def ca_certificates_async(self, namespace: str | None, name: str) -> str:
        """:meth:`ca_certificates` off the event loop."""
        return await asyncio.to_thread(self.ca_certificates, namespace, name)

    def registry_credentials(self, namespace: str, names: Sequence[str]) -> CredentialStore:
        """Credentials of the docker-config Secrets ``names`` in ``namespace`` (``source.signaturePullSecrets``).

        As Kubernetes' keychain does, a Secret that does not exist or is not a docker config is skipped
        (logged); for a registry two Secrets name, the later one's credentials are used.
        """
        store = CredentialStore()
        for name in names:
            creds = self._cached("pull", namespace, name, self._pull_secret)
            if creds is not None:
                store = store.merged(creds)
        return store

    async def registry_credentials_async(self, namespace: str, names: Sequence[str]) -> CredentialStore:
        """:meth:`registry_credentials` off the event loop."""
        return await asyncio.to_thread(self.registry_credentials, namespace, names)

    def clear(self) -> None:
        """Forget everything cached."""
        with self._lock:
            self._cache.clear()

    # --- cache -------------------------------------------------------------------------------

    def _cached(self, what: str, namespace: str, name: str, fetch: Callable[[str, str], _T]) -> _T:
        key = (what, namespace, name)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                self._cache.move_to_end(key)
                value: _T = hit[1]
                return value
        value = fetch(namespace, name)  # outside the lock: one slow read must not stall the others
        with self._lock:
            self._cache[key] = (now + self._ttl, value)
            self._cache.move_to_end(key)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return value

    def _read(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        try:
            if kind == "serviceaccount":
                response = self._core.read_namespaced_service_account(name, namespace, _preload_content=False,
                                                                      _request_timeout=READ_TIMEOUT)
            else:
                response = self._core.read_namespaced_secret(name, namespace, _preload_content=False,
                                                            _request_timeout=READ_TIMEOUT)
            document = raw_json(response)
        except k8s_client.ApiException as exc:
            if exc.status == HTTP_NOT_FOUND:
                _logger.warning("%s %s/%s not found", kind, namespace, name)
            else:
                _logger.warning("cannot read %s %s/%s: %s", kind, namespace, name, api_error(exc))
            return None
        except Exception as exc:  # noqa: BLE001 - network and decoding failures: no credentials, said so
            _logger.warning("cannot read %s %s/%s: %s", kind, namespace, name, type(exc).__name__)
            return None
        return document if isinstance(document, Mapping) else None

    # --- fetchers (called on a cache miss) ---------------------------------------------------

    def _account_pull_secrets(self, namespace: str, name: str) -> list[str] | None:
        account = self._read("serviceaccount", namespace, name)
        return None if account is None else _reference_names(account.get("imagePullSecrets"))

    def _pull_secret(self, namespace: str, name: str) -> CredentialStore | None:
        secret = self._read("secret", namespace, name)
        if secret is None:
            return None
        data: Mapping[str, Any] = secret["data"] if isinstance(secret.get("data"), Mapping) else {}
        field = DOCKER_CONFIG_KEYS.get(str(secret.get("type")))
        encoded = data.get(field) if field else None
        if field is None or not isinstance(encoded, str):
            _logger.warning("secret %s/%s is not a docker config secret (type %s): ignored", namespace, name,
                            str(secret.get("type"))[:64])
            return None
        try:
            return CredentialStore.from_docker_config(base64.b64decode(encoded, validate=True))
        except (binascii.Error, SignetError):
            # The parser's messages name registry hosts at most, but a secret's content stays out of logs.
            _logger.warning("secret %s/%s: %s is not a valid docker config: ignored", namespace, name, field)
            return None

    def _key_secret(self, namespace: str, name: str) -> str | SecretKeyError:
        return self._pem_entry(namespace, name, "key.secretRef", what="public key", names=PUBLIC_KEY_NAMES,
                               marker="-----BEGIN PUBLIC KEY-----")

    def _ca_secret(self, namespace: str, name: str) -> str | SecretKeyError:
        return self._pem_entry(namespace, name, "keyless.caCert.secretRef", what="CA certificate",
                               names=CA_CERTIFICATE_NAMES, marker="-----BEGIN CERTIFICATE-----")

    def _pem_entry(self, namespace: str, name: str, field: str, *, what: str, names: tuple[str, ...],
                   marker: str) -> str | SecretKeyError:
        """The one PEM entry of a Secret (or the one of ``names``); the error names the Secret, never its content."""
        secret = self._read("secret", namespace, name)
        if secret is None:
            return SecretKeyError(f"secret {namespace}/{name} named by {field} cannot be read")
        data: Mapping[str, Any] = secret["data"] if isinstance(secret.get("data"), Mapping) else {}
        entries = {k: v for k, v in data.items() if isinstance(v, str)}
        chosen = next((entries[k] for k in names if k in entries), None)
        if chosen is None and len(entries) == 1:
            chosen = next(iter(entries.values()))
        if chosen is None:
            return SecretKeyError(f"secret {namespace}/{name} has no {what} entry "
                                  f"(one entry, or one of {', '.join(names)})")
        try:
            pem = base64.b64decode(chosen, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return SecretKeyError(f"secret {namespace}/{name}: the {what} entry is not valid base64 text")
        if marker not in pem:
            return SecretKeyError(f"secret {namespace}/{name}: the entry is not a PEM {what}")
        return pem


def _reference_names(references: Any) -> list[str]:
    """``[{name: x}, ...]`` → ``[x, ...]`` (entries without a name are skipped)."""
    if not isinstance(references, list):
        return []
    return [str(r["name"]) for r in references if isinstance(r, Mapping) and r.get("name")]
