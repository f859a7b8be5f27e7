"""The decision engine: which policies apply to an image, and whether its signatures satisfy them.

Shared by the admission server and ``signet evaluate``. For each image (ARCHITECTURE.md §2):

  1. parse and normalise the reference; an invalid one is denied;
  2. select the policies whose globs match (and whose ``match`` covers the object under review);
     none → ``noMatchPolicy``; a policy that can only fail (``static: fail`` in enforce mode)
     decides without the registry;
  3. resolve the digest (a ``@sha256:`` reference needs no request) — cached 60 s; an image the
     registry says does not exist is a verdict, not an infrastructure failure;
  4. the verdict key: repository, digest, the revision of every selected policy (and TrustRoot it
     names), the trust-root fingerprints and what was read from the cluster (keys, CA certificates,
     signature-repository credentials, policy texts) — never the reference as written;
  5. discover and cryptographically verify its signatures (and, when an authority requires them,
     its attestations), once per authority lookup (trust root, key, evidence rules, ``source``) —
     cached 5 min; with ``multiArch: everyPlatform`` those of every manifest an index lists too;
  6. each authority's identity (or key, or static action) against those signatures, then (6b) its
     required attestations: signer, predicate type, CEL/Rego policy in the sandbox; (6c) a policy's
     ``spec.policy`` over the authorities that passed. Every matching policy must pass (AND), any
     one authority of a policy suffices (OR);
  7. the verdict, cached under the key of step 4: 1 h when allowed, 30 s otherwise.

Signature failures deny (or warn, for a policy in warn mode). Infrastructure failures — registry,
Rekor, the deadline — are a different reason and follow ``onError``, except that an image whose
every policy is in warn mode is only ever warned about. Nothing is ever allowed because something
went wrong: an unexpected error denies.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from webhook.admission.outcome import ImageOutcome
from webhook.decision.authorities import Context, evaluate_policy
from webhook.decision.caches import EngineCaches, VerdictKey, verdict_key, workload_fingerprint
from webhook.decision.clients import ClientPool
from webhook.decision.config_files import image_config_files
from webhook.decision.lookups import Lookup, RootDeriver
from webhook.decision.materials import Materials, PullSecretReader, SecretKeyReader
from webhook.decision.plans import ImagePlan, Planner
from webhook.decision.platforms import listed_manifests
from webhook.decision.policy_runner import PolicyServices
from webhook.decision.policy_sources import ConfigMapReader, RemotePolicies
from webhook.decision.reads import ClusterReads, Readers
from webhook.decision.settings import NOT_IN_TIME, EngineSettings, ImageDecision
from webhook.decision.verdicts import combine, infrastructure
from webhook.decision.workload import Workload, as_workload
from webhook.errors import InfrastructureError
from webhook.images import ImageSignatures, RekorLookup, check_image
from webhook.oci import CredentialStore, ImageReference, RegistryClient
from webhook.oci.errors import ImageNotFoundError
from webhook.oci.manifest import PlatformManifest
from webhook.policy.matching import MatchTarget, PolicySet
from webhook.policy.models import Policy
from webhook.policy.sandbox import Sandbox
from webhook.rekor import RekorClient, rekor_v1_url
from webhook.verify.keys import PublicKey, load_pem_public_key
from webhook.verify.trustroot import TrustedRoot
from webhook.verify.verifier import Requirements, Verifier

_logger = logging.getLogger(__name__)

__all__ = ["Engine", "SecretKeyReader"]

_MAX_VERIFIERS = 64
_MAX_INLINE_KEYS = 1024


@dataclass(frozen=True)
class _Snapshot:
    """What one call of ``decide`` works with: policies (through their planner), trust root, namespace, object."""

    planner: Planner
    root: TrustedRoot
    namespace: str | None
    workload: Workload | None = None
    _fingerprints: dict[frozenset[str], str] = field(default_factory=dict, compare=False)

    @property
    def target(self) -> MatchTarget | None:
        return self.workload.target if self.workload is not None else None

    @property
    def document(self) -> Mapping[str, Any] | None:
        return self.workload.document if self.workload is not None else None

    def fingerprint(self, parts: frozenset[str]) -> str:
        """The object's fingerprint for ``parts``, computed once per decision (not once per image)."""
        known = self._fingerprints.get(parts)
        if known is None:
            known = self._fingerprints[parts] = workload_fingerprint(self.document, parts)
        return known


@dataclass(frozen=True)
class _Work:
    """The cold part of one ``decide``: its registry client and its share of images in flight."""

    snapshot: _Snapshot
    registry: RegistryClient
    gate: asyncio.Semaphore


class Engine:
    """Decides images against the current policies and trust root; see the module docstring."""

    def __init__(
        self,
        *,
        policies: Callable[[], PolicySet],
        trust_root: Callable[[], TrustedRoot],
        registry: RegistryClient,
        rekor: RekorClient | None = None,
        settings: EngineSettings | None = None,
        caches: EngineCaches | None = None,
        registry_for: Callable[[CredentialStore], RegistryClient] | None = None,
        secret_key: SecretKeyReader | None = None,
        sandbox: Sandbox | None = None,
        config_map: ConfigMapReader | None = None,
        remote_policies: RemotePolicies | None = None,
        ca_certificates: SecretKeyReader | None = None,
        pull_secrets: PullSecretReader | None = None,
    ) -> None:
        """``registry_for`` makes a client for a workload's pull-secret credentials (see ``decide``).

        ``sandbox`` runs CEL/Rego policies (default: one of two workers, started on first use or by
        :meth:`start`); ``config_map`` reads ``configMapRef`` policies; ``remote_policies`` fetches pinned ones;
        ``secret_key``/``ca_certificates`` read PEM from Secrets; ``pull_secrets`` reads ``signaturePullSecrets``.
        """
        self._policies = policies
        self._trust_root = trust_root
        self._rekor = rekor
        self.settings = settings or EngineSettings()
        self.caches = caches or EngineCaches(self.settings)
        self._clients = ClientPool(registry, registry_for)
        self._reads = ClusterReads(self.caches, Readers(secret_key, config_map, ca_certificates, pull_secrets))
        self._verifiers: OrderedDict[tuple[str, Requirements], Verifier] = OrderedDict()
        self._inline_keys: OrderedDict[str, PublicKey] = OrderedDict()
        self._roots = RootDeriver()
        self._planner: Planner | None = None
        self.policy_services = PolicyServices(self.caches.policy_results, sandbox=sandbox, remote=remote_policies)

    # -- public -----------------------------------------------------------------------------------

    async def decide(self, images: Sequence[str], namespace: str | None,
                     credentials: CredentialStore | None = None,
                     workload: Workload | Mapping[str, Any] | None = None) -> list[ImageDecision]:
        """One decision per distinct image, in first-seen order, within ``settings.deadline``.

        ``credentials`` (the workload's pull secrets) are used for registry requests this decision
        makes. Verdicts are shared across namespaces when the same policies apply: a signature's
        validity does not depend on who fetched it, and the kubelet still enforces who may pull.
        ``workload`` is the object under review (its resource for ``spec.match``, its document for a
        ``spec.policy`` with ``include*``); a bare document has its resource derived from its kind.
        """
        policy_set, root = self._policies(), self._trust_root()
        planner = self._planner_for(policy_set)
        snapshot = _Snapshot(planner, root, namespace, as_workload(workload))
        target = snapshot.target
        distinct = list(dict.fromkeys(images))
        answers: dict[str, ImageDecision] = {}
        cold: list[ImagePlan] = []
        # The warm path: plans are memoised and cached verdicts are answered without a task.
        for image in distinct:
            plan = planner.plan(image, namespace, target)
            if plan.needs_digest:
                assert plan.ref is not None
                digest = self.caches.digests.peek(str(plan.ref))
                if digest is None:
                    cold.append(plan)
                    continue
                plan = planner.pinned(plan, digest, namespace, target)
            if plan.final is not None:
                answers[image] = plan.final
                continue
            key = self._warm_key(plan, planner, root, snapshot)
            cached = self.caches.verdicts.peek(key) if key is not None else None
            if cached is not None:
                answers[image] = cached.for_image(image)
            else:
                cold.append(plan)
        if cold:
            await self._decide_cold(cold, snapshot, credentials, answers)
        return [answers[image] for image in distinct]

    def warm(self) -> None:
        """Do the lazy work of a first decision now (at start): the plan memo and the default verifier."""
        self._planner_for(self._policies())
        self._verifier(Lookup(self._trust_root()))

    def invalidate(self) -> None:
        """Forget verdicts and verified signatures (they are keyed by what decided them; this is for tests)."""
        self.caches.verdicts.clear()
        self.caches.signatures.clear()
        self.caches.policy_results.clear()

    def start_sandbox(self, policies: Iterable[Policy]) -> None:
        """Start the policy sandbox in the background when ``policies`` have CEL/Rego, else on first use."""
        self.policy_services.start_in_background(policies)

    def cache_stats(self) -> dict[str, dict[str, int]]:
        return {cache.name: cache.stats_dict() for cache in self.caches.all()}

    async def aclose(self) -> None:
        await self._clients.aclose()
        await self.policy_services.aclose()

    # -- cold path --------------------------------------------------------------------------------

    def _planner_for(self, policy_set: PolicySet) -> Planner:
        if self._planner is None or self._planner.policy_set is not policy_set:
            self._planner = Planner(policy_set, on_error=self.settings.on_error)
        return self._planner

    async def _decide_cold(self, plans: list[ImagePlan], snapshot: _Snapshot,
                           credentials: CredentialStore | None, answers: dict[str, ImageDecision]) -> None:
        registry = self._clients.client_for(credentials)
        # A review's images go through their own gate: a Pod with hundreds of images waits for its
        # own share of the registry and the CPU, and other reviews keep theirs.
        work = _Work(snapshot, registry, asyncio.Semaphore(self.settings.images_in_flight))
        async with self._clients.lease(registry):
            tasks = {plan.image: asyncio.ensure_future(self._decide_one(plan, work)) for plan in plans}
            done, _pending = await asyncio.wait(tasks.values(), timeout=self.settings.deadline)
        for plan in plans:
            task = tasks[plan.image]
            if task in done:
                answers[plan.image] = self._finished(plan, task)
            else:
                # The computations are shielded inside the caches and keep going: a retry of this
                # admission finds them finished or joins them. Only our wait is abandoned.
                task.cancel()
                answers[plan.image] = infrastructure(plan.image, None, None, None, NOT_IN_TIME,
                                                     on_error=self.settings.on_error, warn_only=plan.warn_only)

    def _finished(self, plan: ImagePlan, task: asyncio.Task[ImageDecision]) -> ImageDecision:
        if task.cancelled():
            return infrastructure(plan.image, None, None, None, NOT_IN_TIME, on_error=self.settings.on_error,
                                  warn_only=plan.warn_only)
        error = task.exception()
        if error is None:
            return task.result()
        _logger.error("deciding image %s failed unexpectedly", plan.image, exc_info=error)
        return ImageDecision(plan.image, ImageOutcome(plan.image, None, "deny", None, None,
                                                      f"internal error while verifying: {type(error).__name__}"))

    async def _decide_one(self, plan: ImagePlan, work: _Work) -> ImageDecision:
        snapshot, registry = work.snapshot, work.registry
        assert plan.ref is not None
        async with work.gate:
            # 3. the digest
            try:
                digest = await self._digest(plan.ref, registry)
            except ImageNotFoundError as exc:
                # The registry answered: this is a verdict about the reference, not an outage.
                return ImageDecision(plan.image, ImageOutcome(
                    plan.image, None, "warn" if plan.warn_only else "deny",
                    plan.policies[0].name if plan.policies else None, None, exc.reason))
            except InfrastructureError as exc:
                return infrastructure(plan.image, None, None, None, f"registry unreachable: {exc.reason}",
                                      on_error=self.settings.on_error, warn_only=plan.warn_only)
            if plan.needs_digest:
                plan = snapshot.planner.pinned(plan, digest, snapshot.namespace, snapshot.target)
                if plan.final is not None:
                    return plan.final
            # 4. what the verdict depends on, then 5-7 once per key
            materials = await self._reads.read(plan, snapshot.planner, snapshot.root)
            key = verdict_key(plan, digest, materials, snapshot.fingerprint)
            assert plan.ref is not None
            pinned = plan.ref.with_digest(digest)
            decision = await self.caches.verdicts.get(
                key, functools.partial(self._evaluate, plan, pinned, materials, registry, snapshot))
            return decision.for_image(plan.image)

    async def _evaluate(self, plan: ImagePlan, pinned: ImageReference, materials: Materials,
                        registry: RegistryClient, snapshot: _Snapshot) -> ImageDecision:
        assert pinned.digest is not None

        def signatures(ref: ImageReference, lookup: Lookup, index_fallback: bool) -> Awaitable[ImageSignatures]:
            return self._signatures(ref, lookup, registry, attestations=plan.attestations,
                                    index_fallback=index_fallback)

        async def config_files() -> dict[str, Any]:
            async with self._clients.lease(registry):
                return await image_config_files(registry, pinned)

        listed: dict[str, asyncio.Future[list[PlatformManifest]]] = {}

        def platforms(ref: ImageReference) -> Awaitable[list[PlatformManifest]]:
            # Once per evaluation, however many authorities ask.
            key = str(ref)
            if key not in listed:
                listed[key] = asyncio.ensure_future(self._platforms(ref, registry))
            return asyncio.shield(listed[key])

        services = self.policy_services
        context = Context(materials, signatures, self._inline_key, services.runner, services.remote(),
                          snapshot.document if plan.workload_parts else None, config_files, platforms,
                          self._roots, snapshot.namespace)
        try:
            results = await asyncio.gather(*(evaluate_policy(p, pinned, context) for p in plan.policies))
        finally:
            for future in listed.values():
                future.cancel()
        return combine(plan.image, pinned.digest, plan.policies, results, on_error=self.settings.on_error)

    # -- keys ---------------------------------------------------------------------------------------

    def _warm_key(self, plan: ImagePlan, planner: Planner, root: TrustedRoot,
                  snapshot: _Snapshot) -> VerdictKey | None:
        """The verdict key from caches alone, or None when something must be fetched first."""
        assert plan.ref is not None
        digest = plan.ref.digest or self.caches.digests.peek(str(plan.ref))
        if digest is None:
            return None
        if not plan.reads_cluster:
            return (plan.ref.name, digest, plan.revision, root.fingerprint)
        materials = self._reads.peek(plan, planner, root)
        return verdict_key(plan, digest, materials, snapshot.fingerprint) if materials is not None else None

    # -- caches -----------------------------------------------------------------------------------

    async def _digest(self, ref: ImageReference, registry: RegistryClient) -> str:
        if ref.digest:
            return ref.digest

        async def resolve() -> str:
            async with self._clients.lease(registry):
                return await registry.resolve_digest(ref)

        return await self.caches.digests.get(str(ref), resolve)

    async def _signatures(self, ref: ImageReference, lookup: Lookup, registry: RegistryClient, *,
                          attestations: bool, index_fallback: bool) -> ImageSignatures:
        assert ref.digest is not None
        fallback = index_fallback and self.settings.include_index_signatures
        credentials = lookup.credentials
        # signaturePullSecrets replace the workload's credentials for the signature repository.
        source_client = self._clients.client_for(credentials.store) if credentials is not None else registry

        async def check() -> ImageSignatures:
            async with self._clients.lease(registry), self._clients.lease(source_client):
                return await check_image(ref, registry_client=registry, verifier=self._verifier(lookup),
                                         key=lookup.key, rekor=self._rekor_lookup(lookup.root),
                                         include_index_signatures=fallback, include_attestations=attestations,
                                         location=lookup.location, signature_client=source_client)

        cache_key = (f"{ref.name}@{ref.digest}", *lookup.cache_key(), fallback, attestations)
        return await self.caches.signatures.get(cache_key, check)

    async def _platforms(self, ref: ImageReference, registry: RegistryClient) -> list[PlatformManifest]:
        async with self._clients.lease(registry):
            return await listed_manifests(registry, ref, registry.budget(ref))

    def _verifier(self, lookup: Lookup) -> Verifier:
        key = (lookup.root.fingerprint, lookup.requirements)
        verifier = self._verifiers.get(key)
        if verifier is None:
            verifier = self._verifiers[key] = Verifier(lookup.root, lookup.requirements)
            if len(self._verifiers) > _MAX_VERIFIERS:
                self._verifiers.popitem(last=False)
        self._verifiers.move_to_end(key)
        return verifier

    def _inline_key(self, pem: str) -> PublicKey:
        key = self._inline_keys.get(pem)
        if key is None:
            key = self._inline_keys[pem] = load_pem_public_key(pem.encode(), "authority key")
            if len(self._inline_keys) > _MAX_INLINE_KEYS:  # policies come and go: keep what is in use
                self._inline_keys.popitem(last=False)
        self._inline_keys.move_to_end(pem)
        return key

    def _rekor_lookup(self, root: TrustedRoot) -> RekorLookup | None:
        url = rekor_v1_url(root) if self._rekor is not None else None
        return RekorLookup(self._rekor, url) if self._rekor is not None and url else None
