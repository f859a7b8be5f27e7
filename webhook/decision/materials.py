"""What a verdict is computed with besides the policies: trust roots and what is read from the cluster.

Everything here is read before the verdict key is computed, and its fingerprint is part of the key:
public keys (``key.secretRef``), CA certificates (``keyless.caCert.secretRef``), registry
credentials for an authority's signature repository (``source.signaturePullSecrets``, read in the
workload's namespace), ConfigMap policy texts and named TrustRoots. A warm engine therefore never
answers with a verdict computed from material that has since changed (within the read's TTL).

Why something cannot be used goes to the log; a denial says only that it is not available.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from webhook.decision.plans import PullSecretsRef, SecretRef
from webhook.decision.policy_sources import ConfigMapKey, PolicyText
from webhook.errors import SignetError
from webhook.oci import CredentialStore
from webhook.policy.custom_roots import parse_ca_certificates
from webhook.policy.matching import RootRef
from webhook.verify.keys import PublicKey, load_pem_public_key, spki_sha256
from webhook.verify.trustroot import TrustedRoot

_logger = logging.getLogger(__name__)

SecretKeyReader = Callable[[str | None, str], Awaitable[str]]
"""(namespace or None for Signet's own, name) → the PEM text the Secret holds; raises when it cannot."""
PullSecretReader = Callable[[str, Sequence[str]], Awaitable[CredentialStore]]
"""(workload namespace, Secret names) → the registry credentials those Secrets hold."""

NO_CLUSTER = "needs the cluster integration, which is not running (run in a pod, or give --kubeconfig)"


@dataclass(frozen=True)
class KeyMaterial:
    """A public key read from a Secret, or None when it cannot be used (logged, never told to tenants)."""

    fingerprint: str
    key: PublicKey | None
    shown: str | None = None
    """A reason safe to show whoever submitted the workload (it says nothing about the Secret)."""


@dataclass(frozen=True)
class CertificateMaterial:
    """CA certificates (PEM) read from a Secret for ``keyless.caCert``, or None and a reason safe to show."""

    fingerprint: str
    pem: str | None
    shown: str = ""


@dataclass(frozen=True)
class PullCredentials:
    """The credentials ``signaturePullSecrets`` hold (``store`` None: they cannot be read, ``shown`` says so)."""

    fingerprint: str
    store: CredentialStore | None
    shown: str = ""


@dataclass(frozen=True)
class Materials:
    """What a verdict was computed with, besides the policies."""

    root: TrustedRoot
    keys: Mapping[SecretRef, KeyMaterial]
    roots: Mapping[RootRef, TrustedRoot | SignetError]
    policy_texts: Mapping[ConfigMapKey, PolicyText] = field(default_factory=dict)
    """Policies read from ConfigMaps (``configMapRef``)."""
    ca_certs: Mapping[SecretRef, CertificateMaterial] = field(default_factory=dict)
    credentials: Mapping[PullSecretsRef, PullCredentials] = field(default_factory=dict)

    def fingerprint(self) -> tuple[str, ...]:
        """The part of the verdict key that changes when a root, key, certificate, credential or text changes."""
        named = (f"{g}/{n}=" + (r.fingerprint if isinstance(r, TrustedRoot) else f"error:{type(r).__name__}")
                 for (g, n), r in self.roots.items())
        texts = (f"{k}={t.fingerprint}" for k, t in self.policy_texts.items())
        certs = (f"ca:{k}={c.fingerprint}" for k, c in self.ca_certs.items())
        creds = (f"pull:{k}={c.fingerprint}" for k, c in self.credentials.items())
        return (self.root.fingerprint, *(f"{k}={m.fingerprint}" for k, m in self.keys.items()), *named, *texts,
                *certs, *creds)


def credentials_fingerprint(store: CredentialStore) -> str:
    """SHA-256 over the credentials, host by host (never logged; it only tells sets apart)."""
    entries = sorted((host, c.username, c.password) for host in store.hosts()
                     if (c := store.lookup(host)) is not None)
    return hashlib.sha256(repr(entries).encode()).hexdigest()


async def read_key(reader: SecretKeyReader | None, secret: SecretRef) -> KeyMaterial:
    """The public key in a Secret; why it cannot be used goes to the log, never into a denial."""
    if reader is None:
        _logger.error("the key in %s needs the cluster integration, which is not running", secret.describe())
        return KeyMaterial("unavailable:no cluster", None, f"the public key named by key.secretRef {NO_CLUSTER}")
    try:
        pem = await reader(secret.namespace, secret.name)
        key = load_pem_public_key(pem.encode(), f"the public key in {secret.describe()}")
    except Exception as exc:  # noqa: BLE001 - readers raise with names only; any failure fails closed
        _logger.warning("the public key in %s cannot be used: %s", secret.describe(), exc)
        return KeyMaterial(f"unavailable:{type(exc).__name__}", None)
    return KeyMaterial(spki_sha256(key).hex(), key)


async def read_ca_certificates(reader: SecretKeyReader | None, secret: SecretRef) -> CertificateMaterial:
    """The PEM CA certificates in a Secret (``keyless.caCert.secretRef``), checked to parse."""
    unavailable = ("the CA certificates named by keyless.caCert.secretRef are not available, so no certificate "
                   "can be accepted as issued by them (signet's log has the reason)")
    if reader is None:
        _logger.error("the CA certificates in %s need the cluster integration, which is not running",
                      secret.describe())
        return CertificateMaterial("unavailable:no cluster", None, f"keyless.caCert.secretRef {NO_CLUSTER}")
    try:
        pem = await reader(secret.namespace, secret.name)
        parse_ca_certificates(pem)
    except Exception as exc:  # noqa: BLE001 - readers raise with names only; any failure fails closed
        _logger.warning("the CA certificates in %s cannot be used: %s", secret.describe(), exc)
        return CertificateMaterial(f"unavailable:{type(exc).__name__}", None, unavailable)
    return CertificateMaterial(hashlib.sha256(pem.encode()).hexdigest(), pem)


async def read_pull_credentials(reader: PullSecretReader | None, ref: PullSecretsRef) -> PullCredentials:
    """The registry credentials of ``signaturePullSecrets`` in the workload's namespace."""
    if ref.namespace is None:
        return PullCredentials("unavailable:no namespace", None, "source.signaturePullSecrets are read in the "
                               "workload's namespace, and this object has none")
    if reader is None:
        return PullCredentials("unavailable:no cluster", None, f"source.signaturePullSecrets {NO_CLUSTER}")
    try:
        store = await reader(ref.namespace, ref.names)
    except Exception as exc:  # noqa: BLE001 - readers raise with names only; any failure fails closed
        _logger.warning("signature pull secrets %s in namespace %s cannot be read: %s", ", ".join(ref.names),
                        ref.namespace, exc)
        return PullCredentials(f"unavailable:{type(exc).__name__}", None, "source.signaturePullSecrets cannot be "
                               "read (signet's log has the reason)")
    return PullCredentials(credentials_fingerprint(store), store)
