"""Steps 1–2 of a decision and what its verdict depends on, computed once per image and snapshot.

A plan says, for one image as written and one namespace: the canonical reference, the policies
that apply, and the *revision* of everything in those policies that can change a verdict (each
policy's spec, origin and dialect, and the spec of every TrustRoot they name). Together with the
digest, the trust-root fingerprints and the key material, the revision keys the verdict cache, so
a verdict is reused only for exactly what decided it — never for the reference as written.
Attestation requirements and their inline CEL/Rego are part of the spec; ConfigMap policy texts
are read like keys (``config_maps``), and so are CA certificates (``ca_secrets``) and the
credentials of signature repositories (``pull_secrets``); the parts of the workload a
``spec.policy`` sees (``workload_parts``) join the key too.

Which policies apply depends on the object under review only when some policy has ``spec.match``:
only then is the object's resource (and the labels selectors name) part of the plan's memo key,
so the warm path stays one dictionary lookup otherwise.

Some images are decided here without the registry: an invalid reference, an image no policy
covers, and an image a policy in enforce mode can only fail (every authority ``static: fail``).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from webhook.admission.outcome import ImageOutcome
from webhook.decision.policy_sources import ConfigMapKey, config_map_of
from webhook.decision.settings import ImageDecision, OnError
from webhook.decision.verdicts import Result, Verdict, combine, outcome
from webhook.errors import InputError
from webhook.oci import ImageReference, parse_reference
from webhook.policy.matching import MatchTarget, PolicySelection, PolicySet, RootRef, referring_group
from webhook.policy.models import ImagePolicy, Mode, NoMatchPolicy, Policy

_MAX_PLANS = 20_000


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A Secret holding a public key; ``namespace`` None is Signet's own namespace."""

    namespace: str | None
    name: str

    def describe(self) -> str:
        return f"Secret {self.namespace or '(signet namespace)'}/{self.name}"


@dataclass(frozen=True, slots=True)
class PullSecretsRef:
    """An authority's ``source.signaturePullSecrets``: Secrets of the workload's namespace (None: not known)."""

    namespace: str | None
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ImagePlan:
    image: str
    ref: ImageReference | None
    final: ImageDecision | None
    """Decided without the registry (invalid reference, no policy, a policy that can only fail)."""
    policies: tuple[Policy, ...] = ()
    revision: str = ""
    secrets: tuple[SecretRef, ...] = ()
    named_roots: tuple[RootRef, ...] = ()
    warn_only: bool = False
    """Every policy that applies is in warn mode: nothing about this image may deny."""
    needs_digest: bool = False
    """Which policies apply depends on the digest the tag names (digest globs): plan again once resolved."""
    attestations: bool = False
    """Some authority requires attestations: discovery also reads ``.att`` tags and attestation bundles."""
    config_maps: tuple[ConfigMapKey, ...] = ()
    workload_parts: frozenset[str] = frozenset()
    """What of the admitted object a ``spec.policy`` sees (``spec``, ``metadata``, ``typemeta``)."""
    ca_secrets: tuple[SecretRef, ...] = ()
    """Secrets holding ``keyless.caCert`` certificates."""
    pull_secrets: tuple[PullSecretsRef, ...] = ()
    """``source.signaturePullSecrets`` of the authorities, in the workload's namespace."""

    @property
    def reads_cluster(self) -> bool:
        """Something besides the digest must be read (or peeked) before the verdict key is known."""
        return bool(self.secrets or self.named_roots or self.config_maps or self.workload_parts or self.ca_secrets
                    or self.pull_secrets)


def secret_of(policy: Policy, namespace: str | None, name: str) -> SecretRef:
    """Where a ``key.secretRef`` points: an ImagePolicy only ever reads its own namespace."""
    if isinstance(policy, ImagePolicy):
        return SecretRef(policy.metadata.namespace, name)
    return SecretRef(namespace, name)


def _static_result(policy: Policy) -> Result | None:
    """The policy's answer when every authority is static (no signature can change it), else None."""
    authorities = policy.spec.authorities
    if not all(a.static is not None for a in authorities) or policy.spec.policy is not None:
        return None  # signatures to look at, or a spec.policy to evaluate over what passed
    failures: list[Result] = []
    for authority in authorities:
        assert authority.static is not None
        passed = authority.static.action == "pass"
        message = authority.static.message or ("static pass" if passed else "static fail")
        if passed:
            return Result(True, message, authority.name)
        failures.append(Result(False, message, authority.name))
    reason = "; ".join(f'authority "{r.authority}": {r.reason}' for r in failures) if len(failures) > 1 \
        else failures[0].reason
    return Result(False, reason, failures[0].authority)


def _config_maps(policies: tuple[Policy, ...]) -> tuple[ConfigMapKey, ...]:
    refs: list[ConfigMapKey] = []
    for policy in policies:
        contents = [a.policy for authority in policy.spec.authorities for a in authority.attestations]
        refs.extend(config_map_of(policy, c.config_map_ref) for c in [*contents, policy.spec.policy]
                    if c is not None and c.config_map_ref is not None)
    return tuple(dict.fromkeys(refs))


def _cluster_reads(policies: tuple[Policy, ...], namespace: str | None
                   ) -> tuple[tuple[RootRef, ...], tuple[SecretRef, ...], tuple[PullSecretsRef, ...]]:
    """The TrustRoots, CA-certificate Secrets and signature pull secrets the policies' authorities name."""
    roots: list[RootRef] = []
    ca_secrets: list[SecretRef] = []
    pulls: list[PullSecretsRef] = []
    for policy in policies:
        group = referring_group(policy)
        for authority in policy.spec.authorities:
            roots.extend((group, name) for name in authority.trust_root_refs())
            ca_cert = authority.keyless.ca_cert if authority.keyless is not None else None
            if ca_cert is not None and ca_cert.secret_ref is not None:
                ca_secrets.append(secret_of(policy, ca_cert.secret_ref.namespace, ca_cert.secret_ref.name))
            source = authority.signature_source
            if source is not None and source.signature_pull_secrets:
                pulls.append(PullSecretsRef(namespace, tuple(s.name for s in source.signature_pull_secrets)))
    return tuple(dict.fromkeys(roots)), tuple(dict.fromkeys(ca_secrets)), tuple(dict.fromkeys(pulls))


def _workload_parts(policies: tuple[Policy, ...]) -> frozenset[str]:
    parts: set[str] = set()
    for policy in policies:
        level = policy.spec.policy
        if level is not None:
            parts.update(name for name, wanted in (("spec", level.include_spec),
                                                   ("metadata", level.include_object_meta),
                                                   ("typemeta", level.include_type_meta)) if wanted)
    return frozenset(parts)


class Planner:
    """Plans for one policy snapshot; a new snapshot gets a new planner (and so new revisions)."""

    def __init__(self, policy_set: PolicySet, *, on_error: OnError, max_entries: int = _MAX_PLANS) -> None:
        self.policy_set = policy_set
        self._on_error = on_error
        self._max = max_entries
        self._plans: OrderedDict[tuple[str, str | None, str | None, object], ImagePlan] = OrderedDict()
        self._fingerprints: dict[int, str] = {}
        self._trust_root_keys: dict[RootRef, tuple[str, str] | None] = {}

    def plan(self, image: str, namespace: str | None, target: MatchTarget | None = None) -> ImagePlan:
        """The plan for ``image`` as written for the object ``target``; ``needs_digest`` plans are completed
        by :meth:`pinned`."""
        key = (image, namespace, None, self.policy_set.match_key(target))
        return self._memo(key, lambda: self._make(image, namespace, target))

    def _memo(self, key: tuple[str, str | None, str | None, object], make: Callable[[], ImagePlan]) -> ImagePlan:
        plan = self._plans.get(key)
        if plan is None:
            plan = make()
            if plan.ref is None:
                # An invalid reference is refused again cheaply, and whoever reaches the Service may send
                # megabytes of them: only valid ones (at most ~520 characters) are kept.
                return plan
            self._plans[key] = plan
            if len(self._plans) > self._max:
                self._plans.popitem(last=False)
        return plan

    def pinned(self, plan: ImagePlan, digest: str, namespace: str | None,
               target: MatchTarget | None = None) -> ImagePlan:
        """A ``needs_digest`` plan completed with the digest its tag resolved to."""
        assert plan.ref is not None
        ref = plan.ref.with_digest(digest)
        key = (plan.image, namespace, digest, self.policy_set.match_key(target))
        return self._memo(key, lambda: self._select(plan.image, ref, namespace, target))

    def _make(self, image: str, namespace: str | None, target: MatchTarget | None) -> ImagePlan:
        # 1. the reference, in its one canonical form
        try:
            ref = parse_reference(image)
        except InputError as exc:
            return ImagePlan(image, None, ImageDecision(image, ImageOutcome(
                image, None, "deny", None, None, f"invalid image reference: {exc.reason}")))
        pending = self.policy_set.digest_candidates(ref, namespace) if ref.digest is None else ()
        if pending:
            # A glob such as `ghcr.io/acme/app@sha256:*` may apply once the tag is resolved. The digest only
            # adds policies, so an enforcing policy that can only fail decides now; anything else waits.
            selection = self.policy_set.select(ref, namespace, target)
            before = selection.policies
            failed = self._failed_statically(image, ref, before)
            if failed is not None:
                return ImagePlan(image, ref, failed, before)
            # Until then, failures only warn if whatever the digest may select can only warn: every
            # policy that may join is in warn mode, and (no cluster policy yet) noMatchPolicy does not deny.
            warn_only = (bool(before) and all(p.spec.mode is Mode.WARN for p in (*before, *pending))
                         and (bool(selection.cluster) or self.policy_set.no_match_policy is not NoMatchPolicy.DENY))
            return ImagePlan(image, ref, None, before, warn_only=warn_only, needs_digest=True)
        return self._select(image, ref, namespace, target)

    def _select(self, image: str, ref: ImageReference, namespace: str | None,
                target: MatchTarget | None) -> ImagePlan:
        # 2. the policies
        selection = self.policy_set.select(ref, namespace, target)
        unmatched = selection.unmatched_action
        if unmatched is NoMatchPolicy.DENY or not selection.policies:
            return ImagePlan(image, ref, self._no_match(image, ref, unmatched or NoMatchPolicy.DENY))
        policies = selection.policies
        warn_only = all(p.spec.mode is Mode.WARN for p in policies)
        final = self._decided_statically(image, ref, policies)
        secrets = tuple(dict.fromkeys(
            secret_of(p, a.key.secret_ref.namespace, a.key.secret_ref.name)
            for p in policies for a in p.spec.authorities
            if a.key is not None and a.key.secret_ref is not None))
        named_roots, ca_secrets, pull_secrets = _cluster_reads(policies, namespace)
        return ImagePlan(image, ref, final, policies, self._revision(selection), secrets, named_roots, warn_only,
                         attestations=any(a.attestations for p in policies for a in p.spec.authorities),
                         config_maps=_config_maps(policies), workload_parts=_workload_parts(policies),
                         ca_secrets=ca_secrets, pull_secrets=pull_secrets)

    @staticmethod
    def _no_match(image: str, ref: ImageReference, action: NoMatchPolicy) -> ImageDecision:
        verdict: Verdict = "deny" if action is NoMatchPolicy.DENY else (
            "warn" if action is NoMatchPolicy.WARN else "allow")
        return ImageDecision(image, ImageOutcome(image, ref.digest, verdict, None, None,
                                                 f"no policy matches image {ref.name} (noMatchPolicy {action})"))

    @staticmethod
    def _failed_statically(image: str, ref: ImageReference, policies: tuple[Policy, ...]) -> ImageDecision | None:
        """The denial of the first policy in enforce mode that can only fail, if there is one."""
        for policy in policies:
            result = _static_result(policy) if policy.spec.mode is Mode.ENFORCE else None
            if result is not None and not result.ok:
                return outcome(image, ref.digest, "deny", policy, result)
        return None

    def _decided_statically(self, image: str, ref: ImageReference, policies: tuple[Policy, ...]
                            ) -> ImageDecision | None:
        """Without looking at signatures: a policy in enforce mode that can only fail, or all-static policies."""
        failed = self._failed_statically(image, ref, policies)
        if failed is not None:
            return failed
        results = [_static_result(p) for p in policies]
        if all(r is not None for r in results):
            return combine(image, ref.digest, policies, [r for r in results if r is not None],
                           on_error=self._on_error)
        return None

    def trust_root_key(self, ref: RootRef) -> tuple[str, str] | None:
        """(group/name, spec fingerprint) of the TrustRoot ``ref`` names: its cache key; None when it does not exist."""
        if ref not in self._trust_root_keys:
            group, name = ref
            crd = self.policy_set.trust_root(name, group)
            spec = crd.spec.model_dump(mode="json", by_alias=True, exclude_none=True) if crd is not None else None
            self._trust_root_keys[ref] = None if spec is None else (
                f"{group}/{name}", hashlib.sha256(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)).hexdigest())
        return self._trust_root_keys[ref]

    def _revision(self, selection: PolicySelection) -> str:
        parts = [self._fingerprint(p) for p in selection.policies]
        if selection.unmatched_action is not None:
            parts.append(f"noMatchPolicy={selection.unmatched_action}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def _fingerprint(self, policy: Policy) -> str:
        """Everything about one policy that can change a verdict: spec, where it came from, TrustRoots named."""
        known = self._fingerprints.get(id(policy))
        if known is not None:
            return known
        roots = {}
        group = referring_group(policy)
        for authority in policy.spec.authorities:
            for name in authority.trust_root_refs():
                root = self.policy_set.trust_root(name, group)
                roots[name] = root.spec.model_dump(mode="json", by_alias=True) if root is not None else None
        document = {"key": policy.key, "origin": policy.origin, "regexpMode": policy.regexp_mode,
                    "spec": policy.spec.model_dump(mode="json", by_alias=True), "trustRoots": roots}
        fingerprint = hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()
        self._fingerprints[id(policy)] = fingerprint
        return fingerprint
