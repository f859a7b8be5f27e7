"""Step 6b of a decision: an authority's ``attestations`` against the image's verified attestations.

For each required attestation, in order (the first unmet one decides, and the denial names it):

  1. signed by this authority: verified (``webhook.images.attestations``), by one of its identities and
     extension claims or with its key, in a transparency log as its ``rekor`` rule asks, and in its
     ``signatureFormat`` (``.att`` layers or bundles) when it names one;
  2. of the required predicate type (the statement's own, never the registry's annotation);
  3. its policy, if any, says yes (CEL or Rego, in the sandbox): at least one such attestation must
     pass, as in policy-controller; otherwise the denial carries the policy's own message.

Nothing found while the registry or Rekor failed is an infrastructure failure, not "missing".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from webhook.decision.policy_runner import PolicyRunner
from webhook.decision.policy_sources import ConfigMapKey, PolicyText, RemotePolicies, resolve
from webhook.errors import IdentityMismatchError, VerificationError
from webhook.images import ImageSignatures
from webhook.images.attestations import CheckedAttestation
from webhook.policy.attestations import Attestation
from webhook.policy.expressions import PolicyDeniedError, attestation_document
from webhook.policy.models import Policy
from webhook.policy.policy_result import MatchedAttestation
from webhook.verify.attestation import VerifiedAttestation
from webhook.verify.identity import Policy as IdentityPolicy

MAX_SHOWN_TYPES = 8


@dataclass(frozen=True)
class SignerRule:
    """Who must have signed an attestation: the authority's identities (keyless) or its key, and its log rule."""

    identity: IdentityPolicy | None
    log_required: bool
    log_url: str | None
    signature_format: str | None = None


@dataclass(frozen=True)
class PolicyContext:
    """Where policies come from and where they run."""

    runner: PolicyRunner
    remote: RemotePolicies
    config_maps: Mapping[ConfigMapKey, PolicyText]
    owner: Policy


@dataclass
class AttestationOutcome:
    """The authority's attestations judged: ``ok``, or the first unmet requirement and why."""

    ok: bool
    reason: str = ""
    attestation: str | None = None
    predicate_type: str | None = None
    infrastructure: bool = False
    matched: dict[str, list[CheckedAttestation]] = field(default_factory=dict)


def signer_attributes(verified: VerifiedAttestation) -> dict[str, str]:
    """What a policy sees as ``signer``: subject, issuer and the Fulcio claims by name, or the key fingerprint."""
    if verified.certificate is None or verified.signer is None:
        return {"keyFingerprint": (verified.key_fingerprint or "").removeprefix("sha256:")}
    signer = verified.signer
    attributes = {name: value for name, value in signer.extensions.items() if name != "issuer"}
    attributes.update(subject=signer.subject, issuer=signer.issuer)
    return attributes


def matched_attestation(checked: CheckedAttestation, predicate_type: str) -> MatchedAttestation:
    """The ``authorityMatches`` entry of one attestation (policy-controller's Signature + predicateType)."""
    verified = checked.verified
    assert verified is not None
    signer = verified.signer
    return MatchedAttestation(id=checked.layer_digest.partition(":")[2], subject=signer.subject if signer else "",
                              issuer=signer.issuer if signer else "",
                              claims=dict(signer.extensions) if signer else {}, predicate_type=predicate_type)


def signed_by(checked: CheckedAttestation, rule: SignerRule, keyed: bool) -> str | None:
    """None when the authority signed it; else why not."""
    verified = checked.verified
    if verified is None:
        return checked.error.diagnostics() if checked.error is not None else "not verified"
    if rule.signature_format == "legacy" and not checked.legacy:
        return "a Sigstore bundle, but the authority counts cosign's .att layers only (signatureFormat: legacy)"
    if rule.signature_format == "bundle" and checked.legacy:
        return "a cosign .att layer, but the authority counts Sigstore bundles only (signatureFormat: bundle)"
    if not keyed:
        assert rule.identity is not None
        try:
            verified.check_identity(rule.identity)
        except IdentityMismatchError as exc:
            return exc.reason
        except VerificationError as exc:
            return exc.diagnostics()
    if rule.log_required and not any(rule.log_url is None or p.log_url.rstrip("/") == rule.log_url
                                      for p in verified.log_proofs):
        return f"not recorded in the Rekor log {rule.log_url}" if rule.log_url else "not recorded in a transparency log"
    return None


def _label(wanted: Attestation) -> str:
    return f'attestation "{wanted.name}" ({wanted.predicate_type})'


async def check_attestations(wanted: Sequence[Attestation], found: ImageSignatures, rule: SignerRule,
                             policies: PolicyContext) -> AttestationOutcome:
    """Every requirement of ``wanted`` against the attestations in ``found`` (see the module docstring)."""
    image = f"{found.reference.name}@{found.digest}"
    infrastructure = bool(found.errors) or any(a.infrastructure_failure for a in found.attestations)
    signed: list[CheckedAttestation] = []
    refused: list[str] = []
    for checked in found.attestations:
        why = signed_by(checked, rule, found.key_verified)
        if why is None:
            signed.append(checked)
        else:
            refused.append(f"{checked.describe()}: {why}")
    outcome = AttestationOutcome(True)
    for requirement in wanted:
        typed = [a for a in signed
                 if a.verified is not None and a.verified.predicate_type == requirement.predicate_type]
        if not typed:
            reason = _missing(requirement, image, signed, refused, found)
            return AttestationOutcome(False, reason, requirement.name, requirement.predicate_type,
                                      infrastructure=infrastructure)
        if requirement.policy is None:
            outcome.matched[requirement.name] = typed
            continue
        passed, failures = await _judge(requirement, typed, policies)
        if not passed:
            count = f" (all {len(typed)} refused; the first said)" if len(typed) > 1 else ""
            return AttestationOutcome(False, f"{_label(requirement)}: the policy denied it{count}: {failures[0]}",
                                      requirement.name, requirement.predicate_type)
        outcome.matched[requirement.name] = passed
    return outcome


def _missing(requirement: Attestation, image: str, signed: Sequence[CheckedAttestation], refused: Sequence[str],
             found: ImageSignatures) -> str:
    head = _label(requirement)
    if not found.attestations:
        if found.errors:
            return f"{head}: could not look for attestations of {image}: {found.errors[0].reason}"
        where = f" or its index {found.index_digest}" if found.index_digest else ""
        return f"{head}: no attestations found for {image}{where}"
    if signed:
        types = sorted({a.verified.predicate_type for a in signed if a.verified is not None})
        shown = ", ".join(types[:MAX_SHOWN_TYPES]) + (f" and {len(types) - MAX_SHOWN_TYPES} more"
                                                       if len(types) > MAX_SHOWN_TYPES else "")
        return f"{head}: none of that predicate type signed by this authority; its attestations are of type {shown}"
    return (f"{head}: none of the {len(found.attestations)} attestation(s) found is valid and signed by this "
            "authority: "
            f"{refused[0]}" + (f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""))


async def _judge(requirement: Attestation, typed: Sequence[CheckedAttestation], policies: PolicyContext
                 ) -> tuple[list[CheckedAttestation], list[str]]:
    """The attestations of the right type that pass the requirement's policy, and the refusals' messages."""
    assert requirement.policy is not None
    try:
        policy = await resolve(requirement.policy, policies.owner, remote=policies.remote,
                               config_maps=policies.config_maps)
    except VerificationError as exc:
        return [], [exc.reason]
    passed: list[CheckedAttestation] = []
    failures: list[str] = []
    for checked in typed:
        verified = checked.verified
        assert verified is not None
        try:
            document: dict[str, Any] = attestation_document(verified.statement_json, signer_attributes(verified))
        except PolicyDeniedError as exc:
            failures.append(exc.reason)
            continue
        verdict = await policies.runner.evaluate(policy, document)
        if verdict.ok:
            passed.append(checked)
        else:
            failures.append(verdict.message)
    return passed, failures
