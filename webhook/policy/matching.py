"""Which policies apply to an image: glob selection on the admission hot path.

All matching ClusterImagePolicies apply (AND); inside one policy any authority suffices (OR,
the verifier's job). ImagePolicies of the workload's namespace add requirements, never remove
any: an image that no *cluster* policy matches gets the ``noMatchPolicy`` action whatever the
namespace says, so a namespace cannot admit (with ``static: pass`` or its own key) an image that
the cluster would deny. With ``noMatchPolicy: warn|allow`` the namespaced policies still apply.

A :class:`PolicySet` is immutable; globs are compiled when the policies load, and selections are
cached per image name (bounded LRU), so the steady state is one dictionary lookup per image.
:class:`PolicyStore` keeps the current set for a watcher that adds and removes objects.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Generic, TypeVar

from webhook.policy.globs import ImageGlob, normalize_name, split_reference
from webhook.policy.loader import LoadResult, PolicyObject
from webhook.policy.models import ClusterImagePolicy, ImagePolicy, NoMatchPolicy, Policy, TrustRoot

DEFAULT_CACHE_SIZE = 8192


@dataclass(frozen=True)
class PolicySelection:
    """The policies that apply to one image in one namespace, and what to do if none does."""

    image: str
    cluster: tuple[ClusterImagePolicy, ...]
    namespaced: tuple[ImagePolicy, ...]
    no_match_policy: NoMatchPolicy

    @property
    def policies(self) -> tuple[Policy, ...]:
        """Every policy that must pass: cluster ones first, then the namespace's."""
        return (*self.cluster, *self.namespaced)

    @property
    def unmatched_action(self) -> NoMatchPolicy | None:
        """``noMatchPolicy`` when no cluster policy matched (``deny`` ends it there); else None."""
        return None if self.cluster else self.no_match_policy


_P = TypeVar("_P", ClusterImagePolicy, ImagePolicy)


@dataclass(frozen=True)
class _Entry(Generic[_P]):
    """A policy with its globs split: name-only globs are cacheable, tag/digest globs are not."""

    policy: _P
    by_name: tuple[ImageGlob, ...]
    qualified: tuple[ImageGlob, ...]


def _entry(policy: _P) -> _Entry[_P]:
    globs = [image.compiled for image in policy.spec.images]
    return _Entry(policy, tuple(g for g in globs if g.matches_any_tag),
                  tuple(g for g in globs if not g.matches_any_tag))


def _match_name(entries: tuple[_Entry[_P], ...], name: str) -> tuple[_P, ...]:
    return tuple(e.policy for e in entries if any(g.matches_name(name) for g in e.by_name))


def _add_qualified(entries: tuple[_Entry[_P], ...], by_name: tuple[_P, ...], name: str, tag: str | None,
                   digest: str | None) -> tuple[_P, ...]:
    # Identity, not equality: comparing pydantic models field by field would be slow and wrong.
    seen = {id(p) for p in by_name}
    return tuple(e.policy for e in entries
                 if id(e.policy) in seen or any(g.matches(name, tag, digest) for g in e.qualified))


class PolicySet:
    """An immutable snapshot of cluster policies, namespaced policies and trust roots."""

    def __init__(
        self,
        cluster_policies: Iterable[ClusterImagePolicy] = (),
        image_policies: Iterable[ImagePolicy] = (),
        trust_roots: Iterable[TrustRoot] = (),
        *,
        no_match_policy: NoMatchPolicy = NoMatchPolicy.DENY,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        # Sorted by name so that selections, messages and audit records are deterministic.
        self._cluster = tuple(sorted(cluster_policies, key=lambda p: p.name))
        self._namespaced = tuple(sorted(image_policies, key=lambda p: (p.metadata.namespace or "", p.name)))
        self._trust_roots = {t.name: t for t in trust_roots}
        self.no_match_policy = no_match_policy
        self._cluster_entries = tuple(_entry(p) for p in self._cluster)
        by_namespace: dict[str, list[_Entry[ImagePolicy]]] = {}
        for policy in self._namespaced:
            by_namespace.setdefault(policy.metadata.namespace or "", []).append(_entry(policy))
        self._ns_entries = {ns: tuple(entries) for ns, entries in by_namespace.items()}
        self._has_qualified = any(e.qualified for e in self._cluster_entries) or any(
            e.qualified for entries in self._ns_entries.values() for e in entries)
        # lru_cache is thread-safe and bounded; it lives and dies with this immutable snapshot.
        self._cluster_by_name = lru_cache(maxsize=cache_size)(self._cluster_match)
        self._ns_by_name = lru_cache(maxsize=cache_size)(self._ns_match)

    @classmethod
    def from_load_result(cls, result: LoadResult, *, no_match_policy: NoMatchPolicy = NoMatchPolicy.DENY
                         ) -> PolicySet:
        """The valid objects of a load (its problems are the caller's to report)."""
        return cls(result.cluster_policies, result.image_policies, result.trust_roots,
                   no_match_policy=no_match_policy)

    @property
    def cluster_policies(self) -> tuple[ClusterImagePolicy, ...]:
        """Cluster policies, sorted by name."""
        return self._cluster

    @property
    def image_policies(self) -> tuple[ImagePolicy, ...]:
        """Namespaced policies, sorted by namespace and name."""
        return self._namespaced

    @property
    def trust_roots(self) -> tuple[TrustRoot, ...]:
        """Named trust roots."""
        return tuple(self._trust_roots.values())

    def trust_root(self, name: str) -> TrustRoot | None:
        """The TrustRoot called ``name``; None means the referring authority must fail closed."""
        return self._trust_roots.get(name)

    def missing_trust_roots(self) -> dict[str, tuple[str, ...]]:
        """``trustRootRef`` names that no TrustRoot defines → keys of the policies naming them."""
        missing: dict[str, list[str]] = {}
        policies: tuple[Policy, ...] = (*self._cluster, *self._namespaced)
        for policy in policies:
            for authority in policy.spec.authorities:
                for ref in authority.trust_root_refs():
                    if ref not in self._trust_roots:
                        missing.setdefault(ref, []).append(policy.key)
        return {ref: tuple(dict.fromkeys(keys)) for ref, keys in missing.items()}

    def _cluster_match(self, name: str) -> tuple[ClusterImagePolicy, ...]:
        return _match_name(self._cluster_entries, name)

    def _ns_match(self, name: str, namespace: str) -> tuple[ImagePolicy, ...]:
        return _match_name(self._ns_entries.get(namespace, ()), name)

    def select(self, image: str, namespace: str | None = None) -> PolicySelection:
        """Policies for ``image`` (a normalised reference: name, optionally ``:tag``/``@digest``).

        Globs with a tag or digest only match references that carry one; pass the full reference
        (not just the repository name) when policies use them. Unnormalised names (``nginx``) are
        normalised here too, so either form works.
        """
        name, tag, digest = split_reference(image)
        name = normalize_name(name)
        cluster = self._cluster_by_name(name)
        ns_entries = self._ns_entries.get(namespace or "", ())
        namespaced = self._ns_by_name(name, namespace) if ns_entries and namespace else ()
        if self._has_qualified:
            cluster = _add_qualified(self._cluster_entries, cluster, name, tag, digest)
            namespaced = _add_qualified(ns_entries, namespaced, name, tag, digest)
        return PolicySelection(image, cluster, namespaced, self.no_match_policy)

    def policies_for(self, image_name: str, namespace: str | None = None) -> list[Policy]:
        """All policies that must pass for ``image_name`` in ``namespace`` (see :meth:`select`)."""
        return list(self.select(image_name, namespace).policies)


def _object_key(obj: PolicyObject) -> str:
    return obj.key


class PolicyStore:
    """The current :class:`PolicySet`, updated object by object (e.g. from a Kubernetes watch).

    Readers take :attr:`current` (a consistent immutable snapshot) without locking; writers
    rebuild a new snapshot under a lock and swap it in, which also discards the match caches.
    """

    def __init__(self, objects: Iterable[PolicyObject] = (), *,
                 no_match_policy: NoMatchPolicy = NoMatchPolicy.DENY) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, PolicyObject] = {_object_key(o): o for o in objects}
        self._no_match_policy = no_match_policy
        self._current = self._build()

    @property
    def current(self) -> PolicySet:
        """The snapshot to use for one admission request."""
        return self._current

    def _build(self) -> PolicySet:
        objects = list(self._objects.values())
        return PolicySet(
            [o for o in objects if isinstance(o, ClusterImagePolicy)],
            [o for o in objects if isinstance(o, ImagePolicy)],
            [o for o in objects if isinstance(o, TrustRoot)],
            no_match_policy=self._no_match_policy,
        )

    def put(self, obj: PolicyObject) -> PolicySet:
        """Add or replace one object (same kind, namespace and name); returns the new snapshot."""
        with self._lock:
            self._objects[_object_key(obj)] = obj
            self._current = self._build()
            return self._current

    def remove(self, key: str) -> PolicySet:
        """Remove the object with this ``key`` (e.g. ``ClusterImagePolicy/release``), if present."""
        with self._lock:
            self._objects.pop(key, None)
            self._current = self._build()
            return self._current

    def replace_all(self, objects: Iterable[PolicyObject]) -> PolicySet:
        """Replace everything (a full re-list, or a directory reload)."""
        with self._lock:
            self._objects = {_object_key(o): o for o in objects}
            self._current = self._build()
            return self._current
