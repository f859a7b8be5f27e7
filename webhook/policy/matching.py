"""Which policies apply to an image: glob selection on the admission hot path.

All matching ClusterImagePolicies apply (AND); inside one policy any authority suffices (OR,
the verifier's job). ImagePolicies of the workload's namespace add requirements, never remove
any: an image that no *cluster* policy matches gets the ``noMatchPolicy`` action whatever the
namespace says, so a namespace cannot admit (with ``static: pass`` or its own key) an image that
the cluster would deny. With ``noMatchPolicy: warn|allow`` the namespaced policies still apply.

A policy with ``spec.match`` covers only the objects it names (resource and labels of the object
under review, :mod:`webhook.policy.resources`); when the object is not known (pre-warming, a bare
image), every policy whose globs match applies, so nothing is ever left out by not knowing.

A ``trustRootRef`` means the TrustRoot of the referring object's API group: policy-controller's
for a ``policy.sigstore.dev`` policy, Signet's for its own, so objects of one name in both groups
never stand for each other.

Images are selected by their canonical reference (:mod:`webhook.oci.reference`), so every spelling
of one location gets the same policies. A :class:`PolicySet` is immutable; globs are compiled when
the policies load. Globs whose answer depends on the repository name alone (nearly all) are
memoised per name, the others per reference (bounded LRUs), so the steady state is a dictionary
lookup or two per image. :class:`PolicyStore` keeps the current set for a watcher.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Generic, Literal, TypeVar

from webhook.oci.reference import ImageReference, name_spellings, parse_reference
from webhook.policy.globs import ImageGlob, candidates
from webhook.policy.loader import LoadResult, PolicyObject
from webhook.policy.models import GROUP, ClusterImagePolicy, ImagePolicy, NoMatchPolicy, Policy, TrustRoot
from webhook.policy.resources import policy_applies

DEFAULT_CACHE_SIZE = 8192
_logger = logging.getLogger(__name__)


RootRef = tuple[str, str]
"""A TrustRoot as a policy names it: (API group of the referring policy, name)."""


def referring_group(policy: Policy) -> str:
    """The API group whose TrustRoots ``policy``'s ``trustRootRef`` names (an ImagePolicy is always Signet's)."""
    return policy.api_group if isinstance(policy, ClusterImagePolicy) else GROUP


@dataclass(frozen=True)
class MatchTarget:
    """The object under review as ``spec.match`` sees it: the request's resource and the object's own labels."""

    group: str
    version: str
    resource: str
    labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, group: str, version: str, resource: str, metadata: Any) -> MatchTarget:
        """From a resource and the object's ``metadata`` (labels that are not strings are not labels)."""
        labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
        pairs = sorted((k, v) for k, v in labels.items() if isinstance(k, str) and isinstance(v, str)) \
            if isinstance(labels, Mapping) else []
        return cls(group, version, resource, tuple(pairs))

    @cached_property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


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


class _Index(Generic[_P]):
    """The globs of some policies (name-only ones or the others), by literal registry.

    An image then meets only the globs that can match it: those of its registry and those whose
    registry has a wildcard. ``match`` returns the positions of the matching policies.
    """

    def __init__(self, policies: tuple[_P, ...], *, name_only: bool) -> None:
        by_registry: dict[str, list[tuple[int, ImageGlob]]] = {}
        anywhere: list[tuple[int, ImageGlob]] = []
        for position, policy in enumerate(policies):
            for image in policy.spec.images:
                glob = image.compiled
                if glob.name_only is name_only:
                    bucket = anywhere if glob.registry is None else by_registry.setdefault(glob.registry, [])
                    bucket.append((position, glob))
        self._by_registry: dict[str, tuple[tuple[int, ImageGlob], ...]] = {
            registry: tuple(globs) for registry, globs in by_registry.items()}
        self._anywhere: tuple[tuple[int, ImageGlob], ...] = tuple(anywhere)
        self.globs: tuple[ImageGlob, ...] = tuple(g for _, g in anywhere) + tuple(
            g for gs in by_registry.values() for _, g in gs)

    def match(self, texts: tuple[str, ...]) -> frozenset[int]:
        hits: set[int] = set()
        for text in texts:
            head: str = text.partition("/")[0]
            for position, glob in (*self._by_registry.get(head, ()), *self._anywhere):
                if position not in hits and glob.matches_text(text):
                    hits.add(position)
        return frozenset(hits)


def _pick(policies: tuple[_P, ...], positions: frozenset[int]) -> tuple[_P, ...]:
    return tuple(p for i, p in enumerate(policies) if i in positions) if positions else ()


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
        self._trust_roots: dict[RootRef, TrustRoot] = {(t.api_group, t.name): t for t in trust_roots}
        self.no_match_policy = no_match_policy
        every: tuple[Policy, ...] = (*self._cluster, *self._namespaced)
        self.uses_match = any(p.spec.match for p in every)
        """Some policy has ``spec.match``: which policies apply depends on the object under review."""
        self._label_keys = tuple(sorted({
            key for p in every for entry in p.spec.match if entry.selector is not None
            for key in (*entry.selector.match_labels, *(t.key for t in entry.selector.match_expressions))}))
        by_namespace: dict[str, list[ImagePolicy]] = {}
        for policy in self._namespaced:
            by_namespace.setdefault(policy.metadata.namespace or "", []).append(policy)
        self._ns_policies = {ns: tuple(policies) for ns, policies in by_namespace.items()}
        self._cluster_names = _Index(self._cluster, name_only=True)
        self._cluster_refs = _Index(self._cluster, name_only=False)
        self._ns_names = {ns: _Index(ps, name_only=True) for ns, ps in self._ns_policies.items()}
        self._ns_refs = {ns: _Index(ps, name_only=False) for ns, ps in self._ns_policies.items()}
        qualified = (*self._cluster_refs.globs, *(g for index in self._ns_refs.values() for g in index.globs))
        self._has_qualified = bool(qualified)
        self.digest_sensitive = any(g.digest_sensitive for g in qualified)
        """Some glob may select differently once the tag is resolved: select again with the digest."""
        self._cluster_by_digest = _digest_globs(self._cluster)
        self._ns_by_digest = {ns: _digest_globs(ps) for ns, ps in self._ns_policies.items()}
        # lru_cache is thread-safe and bounded; it lives and dies with this immutable snapshot.
        self._cluster_by_name = lru_cache(maxsize=cache_size)(self._cluster_match)
        self._ns_by_name = lru_cache(maxsize=cache_size)(self._ns_match)
        self._cluster_by_ref = lru_cache(maxsize=cache_size)(self._cluster_qualified)
        self._ns_by_ref = lru_cache(maxsize=cache_size)(self._ns_qualified)

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

    def trust_root(self, name: str, group: str = GROUP) -> TrustRoot | None:
        """The TrustRoot of API group ``group`` called ``name``; None means the referring authority must fail closed."""
        return self._trust_roots.get((group, name))

    def missing_trust_roots(self) -> dict[str, tuple[str, ...]]:
        """``trustRootRef`` names that no TrustRoot (of the referring policy's group) defines → policy keys."""
        missing: dict[str, list[str]] = {}
        policies: tuple[Policy, ...] = (*self._cluster, *self._namespaced)
        for policy in policies:
            group = referring_group(policy)
            for authority in policy.spec.authorities:
                for ref in authority.trust_root_refs():
                    if (group, ref) not in self._trust_roots:
                        missing.setdefault(ref, []).append(policy.key)
        return {ref: tuple(dict.fromkeys(keys)) for ref, keys in missing.items()}

    def digest_candidates(self, ref: ImageReference, namespace: str | None = None) -> tuple[Policy, ...]:
        """Policies that may apply to ``ref`` (a tag) once its digest is known, through a digest-sensitive glob.

        An over-approximation (``match`` is not applied, globs are compared by their literal start), so
        that a tag whose resolution fails is never treated as if nothing more could apply. Only the
        cluster's and ``namespace``'s policies count: one namespace's globs never make another wait.
        """
        pairs: tuple[tuple[Policy, ImageGlob], ...] = (*self._cluster_by_digest,
                                                       *self._ns_by_digest.get(namespace or "", ()))
        if not pairs:
            return ()
        spellings = name_spellings(ref.name)
        found: dict[int, Policy] = {}
        for policy, glob in pairs:
            if id(policy) not in found and any(glob.may_extend(spelling) for spelling in spellings):
                found[id(policy)] = policy
        return tuple(found.values())

    def match_key(self, target: MatchTarget | None) -> object:
        """What of ``target`` can change a selection: None when no policy has ``match`` (plans then ignore it).

        Only the labels some selector names count, so objects differing in other labels share plans.
        """
        if not self.uses_match:
            return None
        if target is None:
            return ("unknown",)
        labels = target.label_map
        return (target.group, target.version, target.resource,
                tuple(_label_key(labels.get(k)) for k in self._label_keys))

    def _cluster_match(self, name: str) -> tuple[ClusterImagePolicy, ...]:
        return _pick(self._cluster, self._cluster_names.match(name_spellings(name)))

    def _ns_match(self, name: str, namespace: str) -> tuple[ImagePolicy, ...]:
        return _pick(self._ns_policies[namespace], self._ns_names[namespace].match(name_spellings(name)))

    def _cluster_qualified(self, ref: ImageReference) -> frozenset[int]:
        return self._cluster_refs.match(candidates(ref))

    def _ns_qualified(self, ref: ImageReference, namespace: str) -> frozenset[int]:
        return self._ns_refs[namespace].match(candidates(ref))

    def select(self, image: str | ImageReference, namespace: str | None = None,
               target: MatchTarget | None = None) -> PolicySelection:
        """Policies for ``image`` in ``namespace`` for the object ``target``; a string is parsed (InputError if bad).

        Pass the reference as the Pod spec wrote it, tag and digest included (tag and digest globs
        match on them). ``selection.image`` is the canonical reference. Without ``target``, ``match``
        is not applied (every policy whose globs match is selected).
        """
        ref = image if isinstance(image, ImageReference) else parse_reference(image)
        name = ref.name
        cluster = self._cluster_by_name(name)
        in_namespace = bool(namespace) and namespace in self._ns_policies
        namespaced = self._ns_by_name(name, namespace) if in_namespace and namespace is not None else ()
        if self._has_qualified:
            extra = self._cluster_by_ref(ref)
            if extra:
                cluster = _union(self._cluster, cluster, extra)
            if in_namespace and namespace is not None:
                extra = self._ns_by_ref(ref, namespace)
                if extra:
                    namespaced = _union(self._ns_policies[namespace], namespaced, extra)
        if target is not None and self.uses_match:
            cluster = _applying(cluster, target)
            namespaced = _applying(namespaced, target)
        return PolicySelection(str(ref), cluster, namespaced, self.no_match_policy)

    def policies_for(self, image: str | ImageReference, namespace: str | None = None) -> list[Policy]:
        """All policies that must pass for ``image`` in ``namespace`` (see :meth:`select`)."""
        return list(self.select(image, namespace).policies)


def _label_key(value: str | None) -> str | None:
    # Plans are memoised under this: a value longer than any label value the API server accepts (63)
    # is kept as its digest (71 characters, so it never equals a real value), not as sent.
    if value is None or len(value) <= 63:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _digest_globs(policies: tuple[_P, ...]) -> tuple[tuple[_P, ImageGlob], ...]:
    return tuple((p, image.compiled) for p in policies for image in p.spec.images if image.compiled.digest_sensitive)


def _applying(policies: tuple[_P, ...], target: MatchTarget) -> tuple[_P, ...]:
    labels = target.label_map
    return tuple(p for p in policies
                 if policy_applies(p.spec.match, target.group, target.version, target.resource, labels))


def _union(policies: tuple[_P, ...], by_name: tuple[_P, ...], positions: frozenset[int]) -> tuple[_P, ...]:
    # Identities, not the models: comparing pydantic models field by field would be slow and wrong.
    chosen = {id(p) for p in by_name}
    return tuple(p for i, p in enumerate(policies) if i in positions or id(p) in chosen)


Source = Literal["file", "cluster"]


class PolicyStore:
    """The current :class:`PolicySet`, updated object by object (e.g. from a Kubernetes watch).

    Objects are keyed by where they came from as well as by kind, namespace and name: an object
    created in the cluster can never replace (or, deleted, remove) one loaded from ``--policies``,
    so a tenant's ImagePolicy named like an administrator's file only ever adds requirements.
    Readers take :attr:`current` (a consistent immutable snapshot) without locking; writers
    rebuild a new snapshot under a lock and swap it in, which also discards the match caches.
    """

    def __init__(self, objects: Iterable[PolicyObject] = (), *,
                 no_match_policy: NoMatchPolicy = NoMatchPolicy.DENY, source: Source = "file") -> None:
        self._lock = threading.Lock()
        self._objects: dict[tuple[Source, str], PolicyObject] = {(source, o.key): o for o in objects}
        self._no_match_policy = no_match_policy
        self._current = self._build()

    @property
    def current(self) -> PolicySet:
        """The snapshot to use for one admission request."""
        return self._current

    def _build(self) -> PolicySet:
        objects = list(self._objects.values())
        roots: dict[RootRef, TrustRoot] = {}
        # Files first: a TrustRoot (of one API group) that both define means the administrator's file.
        for _where, obj in sorted(self._objects.items(), key=lambda item: item[0][0] != "file"):
            if isinstance(obj, TrustRoot):
                if (obj.api_group, obj.name) in roots:
                    _logger.error("TrustRoot %s is defined in the cluster and in --policies; the file's is used",
                                  obj.key)
                    continue
                roots[(obj.api_group, obj.name)] = obj
        return PolicySet(
            [o for o in objects if isinstance(o, ClusterImagePolicy)],
            [o for o in objects if isinstance(o, ImagePolicy)],
            roots.values(),
            no_match_policy=self._no_match_policy,
        )

    def put(self, obj: PolicyObject, source: Source = "cluster") -> PolicySet:
        """Add or replace one object of ``source`` (same kind, namespace and name); returns the new snapshot."""
        with self._lock:
            self._objects[(source, obj.key)] = obj
            self._current = self._build()
            return self._current

    def remove(self, key: str, source: Source = "cluster") -> PolicySet:
        """Remove the object of ``source`` with this ``key`` (e.g. ``ClusterImagePolicy/release``), if present."""
        with self._lock:
            self._objects.pop((source, key), None)
            self._current = self._build()
            return self._current

    def replace_all(self, objects: Iterable[PolicyObject], source: Source = "file") -> PolicySet:
        """Replace every object of ``source`` (a full re-list, or a directory reload)."""
        with self._lock:
            self._objects = {k: v for k, v in self._objects.items() if k[0] != source}
            self._objects.update({(source, o.key): o for o in objects})
            self._current = self._build()
            return self._current
