"""Turning per-policy results into one image's decision (ARCHITECTURE.md §2: AND across policies).

Pure: no I/O, no caches. Signature failures deny (or warn, for a policy in warn mode); failures of
something Signet depends on (registry, Rekor, the deadline) follow ``onError`` unless every policy
that applies is in warn mode, in which case they can only warn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from webhook.admission.outcome import ImageOutcome
from webhook.decision.settings import ImageDecision, OnError
from webhook.policy.models import Mode, Policy

if TYPE_CHECKING:
    from webhook.policy.policy_result import AuthorityMatch

Verdict = Literal["allow", "deny", "warn"]


@dataclass(frozen=True)
class Result:
    """One authority's (or one policy's) answer for one image."""

    ok: bool
    reason: str
    authority: str | None = None
    infrastructure: bool = False
    signer: str | None = None
    issuer: str | None = None
    log_index: int | None = None
    attestation: str | None = None
    """The attestation requirement that decided (missing, other predicate type, or its policy said no)."""
    predicate_type: str | None = None
    match: AuthorityMatch | None = None
    """What made the authority pass (its signatures and attestations), for ``spec.policy``."""


def outcome(image: str, digest: str | None, verdict: Verdict, policy: Policy | None, result: Result,
            *, pin: bool = False, infrastructure: bool = False) -> ImageDecision:
    return ImageDecision(image, ImageOutcome(image, digest, verdict, policy.name if policy else None,
                                             result.authority, result.reason, result.signer, result.issuer,
                                             result.log_index, result.attestation, result.predicate_type),
                         pin, infrastructure)


def infrastructure(image: str, digest: str | None, policy: str | None, authority: str | None, reason: str,
                   *, on_error: OnError, warn_only: bool) -> ImageDecision:
    """A failure of something we depend on: never a statement about the signature.

    ``warn_only``: every policy that applies is in warn mode, so nothing may be denied.
    """
    if warn_only:
        verdict: Verdict = "warn"
        why = f"{reason} (infrastructure failure; every matching policy is in warn mode)"
    else:
        verdict = "deny" if on_error == "deny" else on_error
        why = f"{reason} (infrastructure failure; onError: {on_error})"
    return ImageDecision(image, ImageOutcome(image, digest, verdict, policy, authority, why), infrastructure=True)


def combine(image: str, digest: str | None, policies: Sequence[Policy], results: Sequence[Result], *,
            on_error: OnError) -> ImageDecision:
    """Every policy must pass; the first enforced signature failure decides, then infrastructure."""
    failed = [(p, r) for p, r in zip(policies, results, strict=True) if not r.ok]
    enforced = [(p, r) for p, r in failed if p.spec.mode is Mode.ENFORCE]
    for policy, result in enforced:
        if not result.infrastructure:
            return outcome(image, digest, "deny", policy, result)
    if enforced:
        policy, result = enforced[0]
        return infrastructure(image, digest, policy.name, result.authority, result.reason, on_error=on_error,
                              warn_only=False)
    if failed:
        policy, result = failed[0]
        return outcome(image, digest, "warn", policy, result, infrastructure=result.infrastructure)
    pin = any(p.spec.mutate.pin_digest for p in policies)
    return outcome(image, digest, "allow", policies[0], results[0], pin=pin)
