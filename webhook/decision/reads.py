"""Step 4 of a decision: what a plan needs read before its verdict key is known, from caches or read.

Keys, CA certificates, signature-repository credentials, ConfigMap policy texts and named
TrustRoots (:mod:`webhook.decision.materials`). The warm path (:meth:`ClusterReads.peek`) answers
from the caches alone or not at all; the cold path (:meth:`ClusterReads.read`) fills them. Both
build the same ``Materials``, so a verdict found warm is the one a cold read would file.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from webhook.decision.cache import AsyncCache
from webhook.decision.caches import EngineCaches
from webhook.decision.materials import (
    Materials,
    PullSecretReader,
    SecretKeyReader,
    read_ca_certificates,
    read_key,
    read_pull_credentials,
)
from webhook.decision.plans import ImagePlan, Planner
from webhook.decision.policy_sources import ConfigMapReader, read_config_map
from webhook.errors import SignetError, VerificationError
from webhook.policy.matching import RootRef
from webhook.trust.crd_roots import trusted_root_from_spec
from webhook.verify.trustroot import TrustedRoot

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


def _peek_all(cache: AsyncCache[_K, _V], keys: Iterable[_K]) -> dict[_K, _V] | None:
    """Every key's cached value, or None as soon as one is missing (it must be read first)."""
    found: dict[_K, _V] = {}
    for key in keys:
        value = cache.peek(key)
        if value is None:
            return None
        found[key] = value
    return found


def missing_trust_root(name: str) -> VerificationError:
    return VerificationError(f"TrustRoot {name!r} does not exist", step="trust root")


@dataclass(frozen=True)
class Readers:
    """How the engine reads the cluster (None: no cluster integration; what needs it fails closed)."""

    secret_key: SecretKeyReader | None = None
    config_map: ConfigMapReader | None = None
    ca_certificates: SecretKeyReader | None = None
    pull_secrets: PullSecretReader | None = None


class ClusterReads:
    """The materials of a plan, through the engine's caches."""

    def __init__(self, caches: EngineCaches, readers: Readers) -> None:
        self._caches = caches
        self._readers = readers

    def peek(self, plan: ImagePlan, planner: Planner, root: TrustedRoot) -> Materials | None:
        """The plan's materials from the caches alone; None when something must be read first."""
        caches = self._caches
        texts = _peek_all(caches.policy_texts, plan.config_maps)
        keys = _peek_all(caches.keys, plan.secrets)
        certs = _peek_all(caches.ca_certs, plan.ca_secrets)
        credentials = _peek_all(caches.pull_credentials, plan.pull_secrets)
        if texts is None or keys is None or certs is None or credentials is None:
            return None
        roots: dict[RootRef, TrustedRoot | SignetError] = {}
        for ref in plan.named_roots:
            spec_key = planner.trust_root_key(ref)
            if spec_key is None:
                roots[ref] = missing_trust_root(ref[1])
                continue
            named = caches.trust_roots.peek(spec_key)
            if named is None:
                return None
            roots[ref] = named
        return Materials(root, keys, roots, texts, certs, credentials)

    async def read(self, plan: ImagePlan, planner: Planner, root: TrustedRoot) -> Materials:
        """The plan's materials, read where the caches do not have them."""
        caches, readers = self._caches, self._readers
        keys = {secret: await caches.keys.get(secret, functools.partial(read_key, readers.secret_key, secret))
                for secret in plan.secrets}
        texts = {key: await caches.policy_texts.get(key, functools.partial(read_config_map, readers.config_map, key))
                 for key in plan.config_maps}
        certs = {secret: await caches.ca_certs.get(
            secret, functools.partial(read_ca_certificates, readers.ca_certificates, secret))
            for secret in plan.ca_secrets}
        credentials = {pull: await caches.pull_credentials.get(
            pull, functools.partial(read_pull_credentials, readers.pull_secrets, pull))
            for pull in plan.pull_secrets}
        roots: dict[RootRef, TrustedRoot | SignetError] = {}
        for ref in plan.named_roots:
            try:
                roots[ref] = await self.named_trust_root(ref, planner)
            except SignetError as exc:
                roots[ref] = exc
        return Materials(root, keys, roots, texts, certs, credentials)

    async def named_trust_root(self, ref: RootRef, planner: Planner) -> TrustedRoot:
        group, name = ref
        spec_key = planner.trust_root_key(ref)
        crd = planner.policy_set.trust_root(name, group)
        if spec_key is None or crd is None:
            raise missing_trust_root(name)
        spec = crd.spec.model_dump(by_alias=True, exclude_none=True)
        # TUF is synchronous and may touch the network (remote mirrors): never on the event loop.
        return await self._caches.trust_roots.get(
            spec_key, lambda: asyncio.to_thread(trusted_root_from_spec, name, spec))
