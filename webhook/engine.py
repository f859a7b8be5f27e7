"""The decision engine: which policies apply to an image, and whether its signatures satisfy them.

Shared by the admission server and ``signet evaluate``. For each image (ARCHITECTURE.md §2):

  1. parse and normalise the reference; an invalid one is denied;
  2. select the policies whose globs match; none → ``noMatchPolicy``;
  3. resolve the digest (a ``@sha256:`` reference needs no request) — cached 60 s;
  4. discover and cryptographically verify its signatures, once per trust root or key — cached 5 min;
  5. each authority's identity (or key, or static action) against those signatures:
     every matching policy must pass (AND), any one authority of a policy suffices (OR);
  6. the verdict, cached 1 h when allowed, 30 s otherwise.

Signature failures deny (or warn, for a policy in warn mode). Infrastructure failures — registry,
Rekor, the deadline — are a different reason and follow ``onError``. Nothing is ever allowed
because something went wrong: an unexpected error denies.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from webhook.admission.outcome import ImageOutcome
from webhook.cache import AsyncCache
from webhook.errors import InfrastructureError, InputError, SignetError, VerificationError
from webhook.imageverify import ImageSignatures, RekorLookup, check_image
from webhook.oci import CredentialStore, ImageReference, RegistryClient, parse_reference
from webhook.policy.matching import PolicySet
from webhook.policy.models import Authority, Mode, MultiArch, NoMatchPolicy, Policy
from webhook.rekor import RekorClient, rekor_v1_url
from webhook.trust.crd_roots import trusted_root_from_spec
from webhook.verify.identity import AllOf, AnyOf, ExtensionClaims, Identity
from webhook.verify.identity import Policy as IdentityPolicy
from webhook.verify.keys import PublicKey, load_pem_public_key, spki_sha256
from webhook.verify.result import VerifiedSignature
from webhook.verify.trustroot import TrustedRoot
from webhook.verify.verifier import Verifier

_logger = logging.getLogger(__name__)

OnError = Literal["deny", "warn", "allow"]
_MAX_CREDENTIALED_CLIENTS = 64
NOT_IN_TIME = "not verified in time"


@dataclass(frozen=True)
class EngineSettings:
    on_error: OnError = "deny"
    deadline: float = 8.0
    include_index_signatures: bool = False
    digest_ttl: float = 60.0
    signatures_ttl: float = 300.0
    allow_ttl: float = 3600.0
    deny_ttl: float = 30.0


@dataclass(frozen=True)
class ImageDecision:
    image: str
    """The image exactly as the workload wrote it."""
    outcome: ImageOutcome
    pin_digest: bool = False
    """A matching policy asks for the tag to be pinned to the verified digest."""
    infrastructure: bool = False
    """Decided by onError because something we depend on failed: never cached, always retried."""


@dataclass(frozen=True)
class _Result:
    """One authority's (or one policy's) answer for one image."""

    ok: bool
    reason: str
    authority: str | None = None
    infrastructure: bool = False
    signer: str | None = None
    issuer: str | None = None
    log_index: int | None = None


@dataclass(frozen=True)
class _Context:
    """What one decision works with: the policy snapshot, default trust root and registry client."""

    policy_set: PolicySet
    root: TrustedRoot
    registry: RegistryClient


class EngineCaches:
    """The caches of §6 that belong to decisions (registry tokens live in the registry client)."""

    def __init__(self, settings: EngineSettings) -> None:
        self.digests: AsyncCache[str, str] = AsyncCache("digest", max_entries=10_000, ttl=settings.digest_ttl)
        def signatures_ttl(found: ImageSignatures) -> float:
            # Only what verified is kept long; "nothing verified" is a deny and is re-checked as
            # often as a denial is, and a result marred by a registry or Rekor failure is not kept.
            if found.errors or any(c.infrastructure_failure for c in found.checked):
                return 0.0
            verified = any(c.verified is not None for c in found.checked)
            return settings.signatures_ttl if verified else settings.deny_ttl

        self.signatures: AsyncCache[tuple[str, str, bytes | None], ImageSignatures] = AsyncCache(
            "signatures", max_entries=4_000, ttl=signatures_ttl)

        def verdict_ttl(decision: ImageDecision) -> float:
            if decision.infrastructure:
                return 0.0
            return settings.allow_ttl if decision.outcome.verdict == "allow" else settings.deny_ttl

        self.verdicts: AsyncCache[tuple[object, ...], ImageDecision] = AsyncCache(
            "verdicts", max_entries=20_000, ttl=verdict_ttl)
        self.trust_roots: AsyncCache[tuple[str, str], TrustedRoot] = AsyncCache(
            "trust_roots", max_entries=64, ttl=3600.0)

    def all(self) -> tuple[AsyncCache[object, object], ...]:
        return (self.digests, self.signatures, self.verdicts, self.trust_roots)  # type: ignore[return-value]


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
        secret_key: Callable[[str | None, str], Awaitable[str]] | None = None,
    ) -> None:
        """``registry_for`` makes a client for a workload's pull-secret credentials (see ``decide``)."""
        self._policies = policies
        self._trust_root = trust_root
        self._registry = registry
        self._rekor = rekor
        self.settings = settings or EngineSettings()
        self.caches = caches or EngineCaches(self.settings)
        self._verifiers: dict[str, Verifier] = {}
        self._keys: dict[str, PublicKey] = {}
        self._background: set[asyncio.Task[object]] = set()
        self._registry_for = registry_for
        self._secret_key = secret_key
        # One client per distinct credential set: tokens got with one set must never serve another.
        self._credentialed: OrderedDict[str, RegistryClient] = OrderedDict()

    # -- public -----------------------------------------------------------------------------------

    async def decide(self, images: Sequence[str], namespace: str | None,
                     credentials: CredentialStore | None = None) -> list[ImageDecision]:
        """One decision per distinct image, in first-seen order, within ``settings.deadline``.

        ``credentials`` (the workload's pull secrets) are used for registry requests this decision
        makes. Verdicts are shared across namespaces: a signature's validity does not depend on who
        fetched it, and the kubelet still enforces who may pull.
        """
        policy_set, root = self._policies(), self._trust_root()
        distinct = list(dict.fromkeys(images))
        keys = {image: (image, namespace, policy_set, root.fingerprint) for image in distinct}
        # The warm path: cached verdicts are answered without creating a task.
        known = {image: self.caches.verdicts.peek(key) for image, key in keys.items()}
        missing = [image for image, decision in known.items() if decision is None]
        if not missing:
            return [known[image] for image in distinct]  # type: ignore[misc]
        registry = self._client_for(credentials)
        tasks = {
            image: asyncio.ensure_future(self.caches.verdicts.get(
                keys[image], functools.partial(self._decide_one, image, namespace, policy_set, root, registry)))
            for image in missing
        }
        done, _pending = await asyncio.wait(tasks.values(), timeout=self.settings.deadline)
        decisions = []
        for image in distinct:
            decision = known[image]
            if decision is not None:
                decisions.append(decision)
                continue
            task = tasks[image]
            if task in done:
                decisions.append(self._finished(image, task))
            else:
                # The computation itself is shielded inside the cache and keeps going: a retry of
                # this admission finds it finished or joins it. Only our wait is abandoned.
                task.cancel()
                decisions.append(self._infrastructure(image, None, None, None, NOT_IN_TIME))
        return decisions

    def invalidate(self) -> None:
        """Forget verdicts and verified signatures (policies or trust root changed)."""
        self.caches.verdicts.clear()
        self.caches.signatures.clear()

    def cache_stats(self) -> dict[str, dict[str, int]]:
        return {cache.name: cache.stats_dict() for cache in self.caches.all()}

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()
        for client in self._credentialed.values():
            await client.aclose()
        self._credentialed.clear()

    def _client_for(self, credentials: CredentialStore | None) -> RegistryClient:
        if credentials is None or not credentials.hosts() or self._registry_for is None:
            return self._registry
        fingerprint = hashlib.sha256(repr(sorted(
            (host, c.username, c.password) for host in credentials.hosts()
            if (c := credentials.lookup(host)) is not None)).encode()).hexdigest()
        client = self._credentialed.get(fingerprint)
        if client is None:
            client = self._credentialed[fingerprint] = self._registry_for(credentials)
            while len(self._credentialed) > _MAX_CREDENTIALED_CLIENTS:
                _, old = self._credentialed.popitem(last=False)
                task = asyncio.ensure_future(old.aclose())
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        self._credentialed.move_to_end(fingerprint)
        return client

    # -- one image --------------------------------------------------------------------------------

    def _finished(self, image: str, task: asyncio.Task[ImageDecision]) -> ImageDecision:
        if task.cancelled():
            return self._infrastructure(image, None, None, None, NOT_IN_TIME)
        error = task.exception()
        if error is None:
            return task.result()
        _logger.error("deciding image %s failed unexpectedly", image, exc_info=error)
        return ImageDecision(image, ImageOutcome(image, None, "deny", None, None,
                                                 f"internal error while verifying: {type(error).__name__}"))

    async def _decide_one(self, image: str, namespace: str | None, policy_set: PolicySet,
                          root: TrustedRoot, registry: RegistryClient) -> ImageDecision:
        # 1. the reference
        try:
            ref = parse_reference(image)
        except InputError as exc:
            return ImageDecision(image, ImageOutcome(image, None, "deny", None, None,
                                                     f"invalid image reference: {exc.reason}"))
        # 2. the policies
        selection = policy_set.select(str(ref), namespace)
        unmatched = selection.unmatched_action
        if unmatched is NoMatchPolicy.DENY or not selection.policies:
            action = unmatched or NoMatchPolicy.DENY
            verdict: Literal["allow", "deny", "warn"] = "deny" if action is NoMatchPolicy.DENY else (
                "warn" if action is NoMatchPolicy.WARN else "allow")
            return ImageDecision(image, ImageOutcome(image, ref.digest, verdict, None, None,
                                                     f"no policy matches image {ref.name} (noMatchPolicy {action})"))
        # 3. the digest
        try:
            digest = await self._digest(ref, registry)
        except InfrastructureError as exc:
            return self._infrastructure(image, None, None, None, f"registry unreachable: {exc.reason}")
        pinned = ref.with_digest(digest)

        # 4-5. every policy, concurrently; each caches its signature checks per trust root and key.
        context = _Context(policy_set, root, registry)
        results = await asyncio.gather(*(self._policy(p, pinned, context) for p in selection.policies))
        return self._combine(image, digest, selection.policies, results)

    def _combine(self, image: str, digest: str, policies: Sequence[Policy],
                 results: Sequence[_Result]) -> ImageDecision:
        failed = [(p, r) for p, r in zip(policies, results, strict=True) if not r.ok]
        enforced = [(p, r) for p, r in failed if p.spec.mode is Mode.ENFORCE]
        for policy, result in enforced:
            if not result.infrastructure:
                return self._outcome(image, digest, "deny", policy, result)
        if enforced:
            policy, result = enforced[0]
            return self._infrastructure(image, digest, policy.name, result.authority, result.reason)
        if failed:
            policy, result = failed[0]
            return self._outcome(image, digest, "warn", policy, result)
        policy, result = policies[0], results[0]
        pin = any(p.spec.mutate.pin_digest for p in policies)
        return self._outcome(image, digest, "allow", policy, result, pin=pin)

    def _outcome(self, image: str, digest: str, verdict: Literal["allow", "deny", "warn"], policy: Policy,
                 result: _Result, *, pin: bool = False) -> ImageDecision:
        return ImageDecision(image, ImageOutcome(image, digest, verdict, policy.name, result.authority, result.reason,
                                                 result.signer, result.issuer, result.log_index), pin)

    def _infrastructure(self, image: str, digest: str | None, policy: str | None, authority: str | None,
                        reason: str) -> ImageDecision:
        """An infrastructure failure: onError decides, and the reason says it was not a signature verdict."""
        action = self.settings.on_error
        verdict: Literal["allow", "deny", "warn"] = "deny" if action == "deny" else action
        return ImageDecision(image, ImageOutcome(image, digest, verdict, policy, authority,
                                                 f"{reason} (infrastructure failure; onError: {action})"),
                             infrastructure=True)

    # -- caches -----------------------------------------------------------------------------------

    async def _digest(self, ref: ImageReference, registry: RegistryClient) -> str:
        if ref.digest:
            return ref.digest
        return await self.caches.digests.get(str(ref), lambda: registry.resolve_digest(ref))

    async def _signatures(self, ref: ImageReference, root: TrustedRoot, key: PublicKey | None,
                          registry: RegistryClient) -> ImageSignatures:
        assert ref.digest is not None
        key_id = spki_sha256(key) if key is not None else None
        return await self.caches.signatures.get(
            (ref.name + "@" + ref.digest, root.fingerprint, key_id),
            lambda: check_image(ref, registry_client=registry, verifier=self._verifier(root), key=key,
                                rekor=self._rekor_lookup(root),
                                include_index_signatures=self.settings.include_index_signatures))

    def _verifier(self, root: TrustedRoot) -> Verifier:
        verifier = self._verifiers.get(root.fingerprint)
        if verifier is None:
            verifier = self._verifiers[root.fingerprint] = Verifier(root)
        return verifier

    def _rekor_lookup(self, root: TrustedRoot) -> RekorLookup | None:
        url = rekor_v1_url(root) if self._rekor is not None else None
        return RekorLookup(self._rekor, url) if self._rekor is not None and url else None

    async def _named_trust_root(self, name: str, policy_set: PolicySet) -> TrustedRoot:
        crd = policy_set.trust_root(name)
        if crd is None:
            raise VerificationError(f"TrustRoot {name!r} does not exist", step="trust root")
        spec = crd.spec.model_dump(by_alias=True, exclude_none=True)
        fingerprint = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        # TUF is synchronous and may touch the network (remote mirrors): never on the event loop.
        return await self.caches.trust_roots.get(
            (name, fingerprint), lambda: asyncio.to_thread(trusted_root_from_spec, name, spec))

    # -- policies and authorities -----------------------------------------------------------------

    async def _policy(self, policy: Policy, ref: ImageReference, context: _Context) -> _Result:
        """OR across the policy's authorities: the first that passes, else every reason."""
        if policy.spec.multi_arch is MultiArch.EVERY_PLATFORM:
            # Checking only the referenced digest would admit what this policy means to refuse.
            return _Result(False, f"multiArch {MultiArch.EVERY_PLATFORM} {_UNSUPPORTED}", None)
        failures: list[_Result] = []
        for authority in policy.spec.authorities:
            try:
                result = await self._authority(authority, policy, ref, context)
            except InfrastructureError as exc:
                result = _Result(False, exc.reason, authority.name, infrastructure=True)
            except SignetError as exc:
                result = _Result(False, exc.diagnostics(), authority.name)
            if result.ok:
                return result
            failures.append(result)
        reason = "; ".join(f"authority {r.authority!r}: {r.reason}" for r in failures)
        closest = next((r for r in failures if r.signer), failures[0])
        return _Result(False, reason, closest.authority, infrastructure=any(r.infrastructure for r in failures),
                       signer=closest.signer, issuer=closest.issuer, log_index=closest.log_index)

    async def _authority(self, authority: Authority, policy: Policy, ref: ImageReference,
                         context: _Context) -> _Result:
        if authority.static is not None:
            passed = authority.static.action == "pass"
            message = authority.static.message or ("static pass" if passed else "static fail")
            return _Result(passed, message, authority.name)
        unsupported = _unsupported_requirement(authority)
        if unsupported:
            return _Result(False, f"{unsupported} {_UNSUPPORTED}", authority.name)
        if authority.key is not None:
            key = self._key(authority.key.data if authority.key.data is not None
                            else await self._key_from_secret(authority, policy.metadata.namespace))
            signatures = await self._signatures(ref, context.root, key, context.registry)
            return _verdict(authority.name, signatures, None, *_log_requirement(authority))
        assert authority.keyless is not None
        keyless = authority.keyless
        keyless_root = await self._named_trust_root(keyless.trust_root_ref, context.policy_set) \
            if keyless.trust_root_ref else context.root
        signatures = await self._signatures(ref, keyless_root, None, context.registry)
        return _verdict(authority.name, signatures, _identity_policy(authority), *_log_requirement(authority))

    async def _key_from_secret(self, authority: Authority, policy_namespace: str | None) -> str:
        """The PEM in the authority's ``key.secretRef``; a Secret that cannot be read fails closed."""
        assert authority.key is not None and authority.key.secret_ref is not None
        ref = authority.key.secret_ref
        namespace = ref.namespace or policy_namespace  # None: Signet's own namespace
        where = f"Secret {namespace or '(signet namespace)'}/{ref.name}"
        if self._secret_key is None:
            raise VerificationError(f"the key in {where} needs the cluster integration, which is not running",
                                    step="policy")
        try:
            return await self._secret_key(namespace, ref.name)
        except Exception as exc:  # never the secret's content: readers raise with names only
            raise VerificationError(f"cannot read the public key in {where}: {exc}", step="policy") from exc

    def _key(self, pem: str) -> PublicKey:
        key = self._keys.get(pem)
        if key is None:
            key = self._keys[pem] = load_pem_public_key(pem.encode(), "authority key")
        return key


_UNSUPPORTED = "is not supported by this version of signet; the requirement fails closed"


def _unsupported_requirement(authority: Authority) -> str | None:
    """A requirement the engine cannot enforce yet: ignoring it would accept more than asked."""
    keyless = authority.keyless
    if keyless is not None and keyless.ctlog is not None:
        return "selecting a certificate transparency log (keyless.ctlog)"
    rekor = keyless.rekor if keyless is not None else (authority.key.rekor if authority.key is not None else None)
    own_root = keyless.trust_root_ref if keyless is not None else None
    if rekor is not None and rekor.trust_root_ref is not None and rekor.trust_root_ref != own_root:
        return "a Rekor trustRootRef different from the authority's"
    return None


def _log_requirement(authority: Authority) -> tuple[bool, str | None]:
    """(a log entry is required, from this Rekor URL or any of the trust root's logs)."""
    rekor = authority.keyless.rekor if authority.keyless is not None else (
        authority.key.rekor if authority.key is not None else None)
    if rekor is None:
        return authority.keyless is not None, None  # keyless signatures are always logged
    return True, rekor.url.rstrip("/") if rekor.url else None


def _logged_as_required(verified: VerifiedSignature, required: bool, url: str | None) -> bool:
    if not required:
        return True
    return any(url is None or proof.log_url.rstrip("/") == url for proof in verified.log_proofs)


def _identity_policy(authority: Authority) -> IdentityPolicy:
    assert authority.keyless is not None
    identities: list[IdentityPolicy] = [
        Identity(issuer=i.issuer, issuer_regexp=i.issuer_reg_exp, subject=i.subject, subject_regexp=i.subject_reg_exp)
        for i in authority.keyless.identities
    ]
    policy: IdentityPolicy = identities[0] if len(identities) == 1 else AnyOf(identities)
    if authority.keyless.extensions:
        policy = AllOf([policy, ExtensionClaims(authority.keyless.extensions)])
    return policy


def _verdict(name: str, signatures: ImageSignatures, policy: IdentityPolicy | None, log_required: bool = False,
             log_url: str | None = None) -> _Result:
    verification = signatures.evaluate(policy)
    accepted = [v for v in verification.satisfied if _logged_as_required(v, log_required, log_url)]
    if verification.ok and not accepted:
        signer = verification.satisfied[0].signer
        where = f"in the Rekor log {log_url}" if log_url else "in a transparency log"
        return _Result(False, f"signed as required but not recorded {where}", name,
                       signer=signer.subject if signer else None, issuer=signer.issuer if signer else None)
    if accepted:
        verified = accepted[0]
        signer = verified.signer
        return _Result(True, "verified", name, signer=signer.subject if signer else "(public key)",
                       issuer=signer.issuer if signer else None, log_index=verified.log_index)
    closest = next((o for o in verification.signatures if o.signer is not None), None)
    return _Result(False, verification.explain().replace("\n", "; "), name,
                   infrastructure=verification.infrastructure_failure,
                   signer=closest.signer.subject if closest and closest.signer else None,
                   issuer=closest.signer.issuer if closest and closest.signer else None,
                   log_index=closest.log_index if closest else None)

