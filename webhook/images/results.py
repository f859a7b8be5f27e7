"""What checking one image's signatures established, and those signatures judged against a policy.

:class:`ImageSignatures` is the policy-independent result of :func:`webhook.images.check_image`
(it depends only on the image, the trust root and the key, so it is cached and shared);
:meth:`ImageSignatures.evaluate` applies one identity policy (or key) to it, cheaply, per authority.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from webhook.errors import IdentityMismatchError, InfrastructureError, SignetError, VerificationError
from webhook.images.attestations import (
    CheckedAttestation,
)
from webhook.oci.reference import ImageReference
from webhook.rekor import RekorClient
from webhook.verify.identity import Policy, Signer
from webhook.verify.result import VerifiedSignature

_logger = logging.getLogger(__name__)

LAYOUT_LEGACY = "legacy .sig layer"
LAYOUT_BUNDLE = "cosign v3 bundle"


@dataclass(frozen=True)
class RekorLookup:
    """Where and how to look up legacy signatures that carry no Rekor bundle annotation."""

    client: RekorClient
    base_url: str


@dataclass(frozen=True)
class CheckedSignature:
    """One signature after the policy-independent checks: ``verified`` or ``error``, never both."""

    layout: str
    source: str
    manifest_digest: str
    layer_digest: str
    signed_digest: str
    """The digest the signature had to bind: the image, or the index covering it."""
    verified: VerifiedSignature | None = None
    error: SignetError | None = None

    @property
    def infrastructure_failure(self) -> bool:
        return isinstance(self.error, InfrastructureError)


@dataclass(frozen=True)
class SignatureOutcome:
    """One signature judged against a policy (or key): what was found and whether it satisfies."""

    index: int
    """1-based, in discovery order (bundles first, then legacy layers)."""
    checked: CheckedSignature
    satisfied: bool
    reason: str | None = None

    @property
    def layout(self) -> str:
        return self.checked.layout

    @property
    def verified(self) -> VerifiedSignature | None:
        return self.checked.verified

    @property
    def signer(self) -> Signer | None:
        return self.checked.verified.signer if self.checked.verified is not None else None

    @property
    def log_index(self) -> int | None:
        return self.checked.verified.log_index if self.checked.verified is not None else None

    def describe(self, image_digest: str | None = None) -> str:
        """``signature N (layout): verified`` or the reason it does not satisfy."""
        signed = self.checked.signed_digest
        via = f" on index {signed}" if image_digest not in (None, signed) else ""
        status = "verified" if self.satisfied else (self.reason or "not satisfied")
        return f"signature {self.index} ({self.layout}{via}): {status}"


@dataclass
class ImageSignatures:
    """Everything :func:`check_image` established, before any identity policy."""

    reference: ImageReference
    digest: str
    checked: list[CheckedSignature] = field(default_factory=list)
    errors: list[InfrastructureError] = field(default_factory=list)
    """Failures that did not stop the run (a discovery layout, a Rekor lookup)."""
    notes: list[str] = field(default_factory=list)
    index_digest: str | None = None
    """The index whose signatures were also considered (``include_index_signatures``)."""
    key_verified: bool = False
    attestations: list[CheckedAttestation] = field(default_factory=list)
    """With ``include_attestations``: every attestation found, verified or with why not."""

    def evaluate(self, policy: Policy | None = None) -> ImageVerification:
        """Apply ``policy`` (keyless) to the verified signatures; with a key, verified means satisfied."""
        outcomes: list[SignatureOutcome] = []
        for number, checked in enumerate(self.checked, start=1):
            outcomes.append(_judge(number, checked, policy, self.key_verified))
        return ImageVerification(self.reference, self.digest, outcomes, list(self.errors), list(self.notes),
                                 self.index_digest)


@dataclass
class ImageVerification:
    """The verdict for one image under one policy."""

    reference: ImageReference
    digest: str
    signatures: list[SignatureOutcome]
    errors: list[InfrastructureError]
    notes: list[str] = field(default_factory=list)
    index_digest: str | None = None

    @property
    def ok(self) -> bool:
        """At least one signature verified and satisfied the policy (or key)."""
        return any(outcome.satisfied for outcome in self.signatures)

    @property
    def satisfied(self) -> list[VerifiedSignature]:
        return [o.checked.verified for o in self.signatures if o.satisfied and o.checked.verified is not None]

    @property
    def infrastructure_failure(self) -> bool:
        """Nothing satisfied and something we depend on failed: the image may well be signed."""
        if self.ok:
            return False
        return bool(self.errors) or any(o.checked.infrastructure_failure for o in self.signatures)

    @property
    def image(self) -> str:
        return f"{self.reference.name}@{self.digest}"

    def explain(self) -> str:
        """Why nothing satisfied (or what did), one line per signature."""
        lines: list[str] = []
        if not self.signatures:
            if self.errors:
                lines.append(f"could not look for signatures of {self.image}: infrastructure error")
            else:
                lines.append(f"no signatures found for {self.image}")
        lines.extend(outcome.describe(self.digest) for outcome in self.signatures)
        lines.extend(f"infrastructure error: {error.reason}" for error in self.errors)
        return "\n".join(lines)


def _judge(number: int, checked: CheckedSignature, policy: Policy | None, key_verified: bool) -> SignatureOutcome:
    if checked.verified is None:
        error = checked.error
        reason = error.diagnostics() if error is not None else "not verified"
        if isinstance(error, InfrastructureError):
            reason = f"infrastructure error: {reason}"
        return SignatureOutcome(number, checked, False, reason)
    if key_verified or policy is None:
        # Keyed: the key was the check. No key and no policy: nothing to satisfy.
        ok = key_verified
        return SignatureOutcome(number, checked, ok, None if ok else "no identity policy or key given")
    try:
        checked.verified.check_identity(policy)
    except IdentityMismatchError as exc:
        return SignatureOutcome(number, checked, False, exc.reason)
    except VerificationError as exc:
        return SignatureOutcome(number, checked, False, exc.diagnostics())
    return SignatureOutcome(number, checked, True)
