"""Step 6 of a decision: one policy's authorities against the image's verified signatures and attestations.

Inside a policy any authority suffices (OR); the first that passes is reported, else every
reason. An authority with ``attestations`` also needs each of them (``attested``; with
``requireSignature: false`` the attestations alone). With ``multiArch: everyPlatform`` an
authority passes only when every manifest an index lists passes too (``platforms``). A policy with
``spec.policy`` has every authority evaluated, and the policy-level policy then judges those that
passed (``spec_policy``). Key material, trust roots, CA certificates, signature-repository
credentials and ConfigMap policy texts arrive resolved (``Materials``): they are part of the
verdict's cache key, so what is evaluated here is exactly what the verdict is filed under. How
each authority's signatures are found and verified (trust root, evidence rules, ``source``) is
:mod:`webhook.decision.lookups`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.decision import spec_policy
from webhook.decision.attested import PolicyContext, SignerRule, check_attestations, matched_attestation
from webhook.decision.lookups import Lookup, RootDeriver, authority_lookup, log_rule
from webhook.decision.materials import Materials
from webhook.decision.platforms import every_platform
from webhook.decision.policy_runner import PolicyRunner
from webhook.decision.policy_sources import RemotePolicies
from webhook.decision.signed import verdict
from webhook.decision.verdicts import Result
from webhook.errors import InfrastructureError, SignetError, VerificationError
from webhook.images import ImageSignatures
from webhook.oci import ImageReference
from webhook.oci.manifest import PlatformManifest
from webhook.policy.authorities import Authority
from webhook.policy.models import MultiArch, Policy
from webhook.policy.policy_result import AuthorityMatch
from webhook.verify.identity import AllOf, AnyOf, ExtensionClaims
from webhook.verify.identity import Policy as IdentityPolicy
from webhook.verify.keys import PublicKey

_logger = logging.getLogger(__name__)

SignaturesFetcher = Callable[[ImageReference, Lookup, bool], Awaitable[ImageSignatures]]
"""(pinned image, lookup, whether a covering index's signatures may stand in) → its verified signatures."""
PlatformsFetcher = Callable[[ImageReference], Awaitable[list[PlatformManifest]]]


@dataclass(frozen=True)
class Context:
    materials: Materials
    signatures: SignaturesFetcher
    inline_key: Callable[[str], PublicKey]
    runner: PolicyRunner | None = None
    remote: RemotePolicies | None = None
    workload: Mapping[str, Any] | None = None
    """The admitted object, for ``spec.policy`` with ``include*`` (None: not known, e.g. prewarming)."""
    config_files: spec_policy.ConfigFiles | None = None
    platforms: PlatformsFetcher | None = None
    """The manifests an index lists (``multiArch: everyPlatform``)."""
    deriver: RootDeriver = field(default_factory=RootDeriver)
    namespace: str | None = None
    """The workload's namespace: where ``source.signaturePullSecrets`` are read."""

    def policies(self, owner: Policy) -> PolicyContext:
        """Where ``owner``'s CEL and Rego policies come from and run."""
        if self.runner is None or self.remote is None:
            raise VerificationError("this policy has CEL/Rego policies, but no policy sandbox is running",
                                    step="policy")
        return PolicyContext(self.runner, self.remote, self.materials.policy_texts, owner)


async def evaluate_policy(policy: Policy, ref: ImageReference, context: Context) -> Result:
    """OR across the policy's authorities: the first that passes, else every reason (see the module docstring)."""
    level = policy.spec.policy
    failures: list[Result] = []
    passed: list[Result] = []
    for authority in policy.spec.authorities:
        try:
            result = await _authority(authority, policy, ref, context)
        except InfrastructureError as exc:
            result = Result(False, exc.reason, authority.name, infrastructure=True)
        except SignetError as exc:
            result = Result(False, exc.diagnostics(), authority.name)
        if result.ok and level is None:
            return result
        (passed if result.ok else failures).append(result)
    if passed:
        assert level is not None
        try:
            return await spec_policy.judge(level, passed, context.policies(policy), workload=context.workload,
                                           config_files=context.config_files)
        except InfrastructureError as exc:
            return Result(False, f"spec.policy could not be evaluated: {exc.reason}", None, infrastructure=True)
        except SignetError as exc:
            return Result(False, f"spec.policy could not be evaluated: {exc.diagnostics()}", None)
    if len(failures) == 1:
        return failures[0]
    reason = "; ".join(f'authority "{r.authority}": {r.reason}' for r in failures)
    closest = next((r for r in failures if r.signer), failures[0])
    return Result(False, reason, closest.authority, infrastructure=any(r.infrastructure for r in failures),
                  signer=closest.signer, issuer=closest.issuer, log_index=closest.log_index)


async def _authority(authority: Authority, policy: Policy, ref: ImageReference, context: Context) -> Result:
    if authority.static is not None:
        passed = authority.static.action == "pass"
        message = authority.static.message or ("static pass" if passed else "static fail")
        return Result(passed, message, authority.name, match=AuthorityMatch(static=True) if passed else None)
    lookup = authority_lookup(authority, policy, context.materials, context.deriver, inline_key=context.inline_key,
                              namespace=context.namespace)
    identity = identity_policy(authority, policy) if authority.keyless is not None else None
    signatures = await context.signatures(ref, lookup, True)
    result = await _with_attestations(authority, policy, signatures, identity, context)
    if not result.ok or policy.spec.multi_arch is not MultiArch.EVERY_PLATFORM:
        return result
    return await _every_platform(result, authority, policy, ref, lookup=lookup, identity=identity, context=context)


async def _every_platform(passed: Result, authority: Authority, policy: Policy, ref: ImageReference, *,
                          lookup: Lookup, identity: IdentityPolicy | None, context: Context) -> Result:
    """The authority's check on every manifest an index lists (signatures; attestations when they stand alone)."""
    if context.platforms is None:
        raise VerificationError("multiArch everyPlatform needs the registry, which is not available here")
    children = await context.platforms(ref)

    async def check(child: PlatformManifest) -> Result:
        try:
            # The index's signature must not stand for its child: no covering-index fallback here.
            found = await context.signatures(ref.with_digest(child.digest), lookup, False)
            if authority.require_signature:
                required, url = log_rule(authority)
                return verdict(authority.name, found, identity, required, url,
                               signature_format=authority.signature_format.value if authority.signature_format
                               else None)
            return await _with_attestations(authority, policy, found, identity, context)
        except InfrastructureError as exc:
            return Result(False, exc.reason, authority.name, infrastructure=True)
        except SignetError as exc:
            return Result(False, exc.diagnostics(), authority.name)

    results = await asyncio.gather(*(check(child) for child in children))
    return every_platform(passed, children, results)


async def _with_attestations(authority: Authority, policy: Policy, signatures: ImageSignatures,
                             identity: IdentityPolicy | None, context: Context) -> Result:
    """The signature verdict and, when the authority lists attestations, theirs (6b)."""
    log_required, log_url = log_rule(authority)
    signed = verdict(authority.name, signatures, identity, log_required, log_url,
                     signature_format=authority.signature_format.value if authority.signature_format else None)
    if not authority.attestations or (authority.require_signature and not signed.ok):
        return signed
    rule = SignerRule(identity, log_required, log_url,
                      authority.signature_format.value if authority.signature_format is not None else None)
    attested = await check_attestations(authority.attestations, signatures, rule, context.policies(policy))
    if not attested.ok:
        return Result(False, attested.reason, authority.name, infrastructure=attested.infrastructure,
                      signer=signed.signer, issuer=signed.issuer, log_index=signed.log_index,
                      attestation=attested.attestation, predicate_type=attested.predicate_type)
    matched = {name: [matched_attestation(a, a.verified.predicate_type if a.verified else "") for a in found]
               for name, found in attested.matched.items()}
    names = ", ".join(matched)
    if authority.require_signature:
        match = AuthorityMatch(signed.match.signatures if signed.match else (), matched)
        return Result(True, f"{signed.reason}; attestations verified: {names}", authority.name, signer=signed.signer,
                      issuer=signed.issuer, log_index=signed.log_index, match=match)
    # Attestations alone (policy-controller's meaning): the first one stands for the signer in the audit.
    first = next(iter(attested.matched.values()))[0].verified
    assert first is not None
    signer = first.signer
    return Result(True, f"attestations verified: {names}", authority.name,
                  signer=signer.subject if signer else "(public key)", issuer=signer.issuer if signer else None,
                  log_index=first.log_index, match=AuthorityMatch((), matched))


def identity_policy(authority: Authority, policy: Policy) -> IdentityPolicy:
    """The keyless authority's identities (any one) and extension claims (all) as a verifier policy."""
    assert authority.keyless is not None
    # Regexps search in policy-controller documents and match in full in Signet's own (the loader knows which).
    identities: list[IdentityPolicy] = [i.to_policy(policy.regexp_mode) for i in authority.keyless.identities]
    combined: IdentityPolicy = identities[0] if len(identities) == 1 else AnyOf(identities)
    if authority.keyless.extensions:
        combined = AllOf([combined, ExtensionClaims(authority.keyless.extensions)])
    return combined
