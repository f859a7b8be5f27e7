"""The caches of ARCHITECTURE.md §6 that belong to decisions (registry tokens live in the registry client).

| cache            | key                                                                   | TTL                    |
|------------------|-----------------------------------------------------------------------|------------------------|
| digests          | canonical reference (tag)                                             | 60 s                   |
| signatures       | repository@digest, the authority's lookup (trust root, key, evidence  | 5 min (30 s if none)   |
|                  | rules, source, its credentials), index fallback, attestations         |                        |
| verdicts         | repository, digest, policy revision, materials (roots, keys, ...)     | 1 h allow, 30 s deny   |
| keys             | Secret namespace/name (``key.secretRef``)                             | 30 s                   |
| ca certs         | Secret namespace/name (``keyless.caCert.secretRef``)                  | 30 s (as keys)         |
| pull credentials | namespace and Secret names (``source.signaturePullSecrets``)          | 30 s (as keys)         |
| trust roots      | TrustRoot group/name and spec fingerprint                             | 1 h                    |
| policy texts     | ConfigMap namespace/name/key (``configMapRef``)                       | 30 s (as keys)         |
| policy results   | policy digest + SHA-256 of the document it judged                     | 1 h pass, 30 s refusal |

"Signatures" holds the verified attestations too when a plan asks for them (a separate entry: the
discovery also reads ``.att`` tags and attestation bundles).

Results reached through an infrastructure failure are never kept.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from webhook.decision.cache import AsyncCache
from webhook.decision.materials import CertificateMaterial, KeyMaterial, Materials, PullCredentials
from webhook.decision.plans import ImagePlan, PullSecretsRef, SecretRef
from webhook.decision.policy_runner import PolicyVerdict
from webhook.decision.policy_sources import ConfigMapKey, PolicyText
from webhook.decision.settings import EngineSettings, ImageDecision
from webhook.images import ImageSignatures
from webhook.verify.trustroot import TrustedRoot

VerdictKey = tuple[object, ...]


class EngineCaches:
    """All decision caches, sharing one clock (tests move it)."""

    def __init__(self, settings: EngineSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.digests: AsyncCache[str, str] = AsyncCache("digest", max_entries=10_000, ttl=settings.digest_ttl,
                                                        clock=clock)

        def signatures_ttl(found: ImageSignatures) -> float:
            # Only what verified is kept long; "nothing verified" is a deny and is re-checked as
            # often as a denial is, and a result marred by a registry or Rekor failure is not kept.
            if found.errors or any(c.infrastructure_failure for c in found.checked) or any(
                    a.infrastructure_failure for a in found.attestations):
                return 0.0
            verified = any(c.verified is not None for c in found.checked) or any(
                a.verified is not None for a in found.attestations)
            return settings.signatures_ttl if verified else settings.deny_ttl

        self.signatures: AsyncCache[tuple[object, ...], ImageSignatures] = AsyncCache(
            "signatures", max_entries=4_000, ttl=signatures_ttl, clock=clock)

        def verdict_ttl(decision: ImageDecision) -> float:
            if decision.infrastructure:
                return 0.0
            return settings.allow_ttl if decision.outcome.verdict == "allow" else settings.deny_ttl

        self.verdicts: AsyncCache[VerdictKey, ImageDecision] = AsyncCache(
            "verdicts", max_entries=20_000, ttl=verdict_ttl, clock=clock)
        self.keys: AsyncCache[SecretRef, KeyMaterial] = AsyncCache(
            "keys", max_entries=1_024, ttl=settings.key_ttl, clock=clock)
        self.ca_certs: AsyncCache[SecretRef, CertificateMaterial] = AsyncCache(
            "ca_certs", max_entries=256, ttl=settings.key_ttl, clock=clock)
        self.pull_credentials: AsyncCache[PullSecretsRef, PullCredentials] = AsyncCache(
            "pull_credentials", max_entries=1_024, ttl=settings.key_ttl, clock=clock)
        self.trust_roots: AsyncCache[tuple[str, str], TrustedRoot] = AsyncCache(
            "trust_roots", max_entries=64, ttl=3600.0, clock=clock)
        self.policy_texts: AsyncCache[ConfigMapKey, PolicyText] = AsyncCache(
            "policy_texts", max_entries=256, ttl=settings.key_ttl, clock=clock)
        self.policy_results: AsyncCache[tuple[str, str], PolicyVerdict] = AsyncCache(
            "policy_results", max_entries=20_000, ttl=lambda v: settings.allow_ttl if v.ok else settings.deny_ttl,
            clock=clock)

    def all(self) -> tuple[AsyncCache[object, object], ...]:
        return (self.digests, self.signatures, self.verdicts, self.keys, self.trust_roots,  # type: ignore[return-value]
                self.policy_texts, self.policy_results, self.ca_certs, self.pull_credentials)


def verdict_key(plan: ImagePlan, digest: str, materials: Materials,
                workload: Callable[[frozenset[str]], str] | None) -> VerdictKey:
    """Repository, digest, policy revision, trust-root/key/ConfigMap fingerprints (and the workload's parts).

    ``workload`` gives the fingerprint of the admitted object's parts (:func:`workload_fingerprint`, memoised
    by the caller: one object may be megabytes, and a review names it once for all its images).
    """
    assert plan.ref is not None
    key = (plan.ref.name, digest, plan.revision, *materials.fingerprint())
    if plan.workload_parts:
        # A spec.policy that sees the object decides per object: its parts join the key.
        key = (*key, workload(plan.workload_parts) if workload is not None else "workload:none")
    return key


def workload_fingerprint(workload: Mapping[str, Any] | None, parts: frozenset[str]) -> str:
    """SHA-256 of the parts of the admitted object a ``spec.policy`` sees."""
    if workload is None:
        return "workload:none"
    seen = {"spec": workload.get("spec"), "metadata": workload.get("metadata"),
            "typemeta": [workload.get("apiVersion"), workload.get("kind")]}
    try:
        encoded = orjson.dumps({part: seen[part] for part in sorted(parts)}, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return "workload:unencodable"  # the policy's input check refuses it the same way every time
    return "workload:" + hashlib.sha256(encoded).hexdigest()
