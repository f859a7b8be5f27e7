"""Verifying one image: resolve, discover, verify every signature (ARCHITECTURE.md §2 steps 1–4).

Used by ``signet verify`` and the admission server. Two stages, so that one verification can be
held against many authorities:

* :func:`check_image` — registry and cryptography, independent of any identity policy: the digest,
  every signature found and, per signature, either a :class:`VerifiedSignature` or why it failed.
  The result (:class:`ImageSignatures`) depends only on the image, the trust root and the key.
* :meth:`ImageSignatures.evaluate` — the identity policy (or key) applied to the verified
  signatures; cheap, per authority.

:func:`verify_image` does both. Infrastructure failures (registry, Rekor) are kept apart from
"unsigned" and from "signed, but not by you".
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field

from webhook.errors import IdentityMismatchError, InfrastructureError, SignetError, VerificationError
from webhook.oci.client import RegistryClient
from webhook.oci.discovery import BundleSignature, DiscoveredSignatures, LegacySignature, discover_signatures
from webhook.oci.manifest import index_covers
from webhook.oci.reference import ImageReference
from webhook.rekor import RekorClient
from webhook.verify.bundle import Bundle
from webhook.verify.cosign import CosignSignature, verify_cosign_material
from webhook.verify.dsse import COSIGN_SIGN_PREDICATE
from webhook.verify.identity import Policy, Signer
from webhook.verify.keys import PublicKey
from webhook.verify.material import Digest
from webhook.verify.result import VerifiedSignature
from webhook.verify.verifier import Artifact, Verifier

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


# --- the policy-independent stage ----------------------------------------------------------------


async def _check_legacy(
    signature: LegacySignature, digest: str, *, verifier: Verifier, key: PublicKey | None,
    rekor: RekorLookup | None, errors: list[InfrastructureError],
) -> CheckedSignature:
    base = CheckedSignature(LAYOUT_LEGACY, signature.source, signature.manifest_digest, signature.layer_digest,
                            digest)
    try:
        parsed = CosignSignature.from_layer(signature.payload, signature.annotations)
        entry = None
        if parsed.rekor_bundle is None and key is None and parsed.certificate is not None and rekor is not None:
            # Keyless without log evidence: ask Rekor, as cosign does. Keyed signatures need no log entry.
            entry = await rekor.client.find_entry(rekor.base_url, parsed.signature, parsed.certificate,
                                                  hashlib.sha256(parsed.payload).digest())
        verified = verify_cosign_material(verifier, parsed, digest, key=key, log_entry=entry)
    except InfrastructureError as exc:
        errors.append(exc)
        return _replace(base, error=exc)
    except VerificationError as exc:
        return _replace(base, error=exc)
    return _replace(base, verified=verified)


def _check_bundle(signature: BundleSignature, digest: str, *, verifier: Verifier, key: PublicKey | None
                  ) -> CheckedSignature:
    base = CheckedSignature(LAYOUT_BUNDLE, signature.source, signature.manifest_digest, signature.layer_digest,
                            digest)
    try:
        algorithm, _, hex_digest = digest.partition(":")
        artifact = Artifact(Digest(algorithm, bytes.fromhex(hex_digest)))
        verified = verifier.verify_bundle_signature(Bundle.from_json(signature.bundle), artifact, key=key)
        _require_sign_predicate(verified)
    except VerificationError as exc:
        return _replace(base, error=exc)
    except ValueError as exc:  # a malformed digest; cannot normally happen after discovery
        return _replace(base, error=VerificationError(str(exc), step="artifact"))
    return _replace(base, verified=verified)


def _require_sign_predicate(verified: VerifiedSignature) -> None:
    """cosign v3 signature semantics: a DSSE in-toto statement with the cosign sign predicate."""
    statement = verified.statement
    if statement is None:
        raise VerificationError("the bundle signs a message, not a cosign image-signature statement",
                                step="statement")
    if statement.predicate_type != COSIGN_SIGN_PREDICATE:
        raise VerificationError(
            f"the statement's predicate type is {statement.predicate_type!r}, not {COSIGN_SIGN_PREDICATE!r}: "
            "an attestation, not a signature", step="statement")


def _replace(base: CheckedSignature, *, verified: VerifiedSignature | None = None,
             error: SignetError | None = None) -> CheckedSignature:
    return CheckedSignature(base.layout, base.source, base.manifest_digest, base.layer_digest, base.signed_digest,
                            verified, error)


async def _check_discovered(
    found: DiscoveredSignatures, digest: str, *, verifier: Verifier, key: PublicKey | None,
    rekor: RekorLookup | None, errors: list[InfrastructureError],
) -> list[CheckedSignature]:
    checked: list[CheckedSignature] = [
        _check_bundle(bundle, digest, verifier=verifier, key=key) for bundle in found.bundles
    ]
    checked.extend(await asyncio.gather(*(
        _check_legacy(legacy, digest, verifier=verifier, key=key, rekor=rekor, errors=errors)
        for legacy in found.legacy
    )))
    return checked


async def _discover(client: RegistryClient, ref: ImageReference, digest: str, result: ImageSignatures
                    ) -> DiscoveredSignatures | None:
    target = ImageReference(ref.registry, ref.repository, ref.tag, digest)
    try:
        found = await discover_signatures(client, target)
    except InfrastructureError as exc:
        result.errors.append(exc)
        result.notes.append(f"signature discovery for {digest} failed: {exc.reason}")
        return None
    result.errors.extend(found.errors)
    result.notes.extend(found.notes)
    return found


async def _covering_index(client: RegistryClient, ref: ImageReference, digest: str,
                          index_digest: str | None, result: ImageSignatures) -> str | None:
    """The index that lists ``digest``: the given one, or the one the reference's tag points to."""
    try:
        candidate = index_digest
        if candidate is None and ref.tag is not None:
            tagged = ImageReference(ref.registry, ref.repository, ref.tag, None)
            candidate = await client.resolve_digest(tagged)
        if candidate is None or candidate == digest:
            return None
        index = await client.get_manifest(ref, candidate)
    except InfrastructureError as exc:
        result.errors.append(exc)
        result.notes.append(f"covering index lookup failed: {exc.reason}")
        return None
    if not index_covers(index, digest):
        result.notes.append(f"{candidate} is not an index listing {digest}; its signatures do not apply")
        return None
    return candidate


async def check_image(
    ref: ImageReference,
    *,
    registry_client: RegistryClient,
    verifier: Verifier,
    key: PublicKey | None = None,
    rekor: RekorLookup | None = None,
    include_index_signatures: bool = False,
    index_digest: str | None = None,
) -> ImageSignatures:
    """Resolve ``ref``, discover and cryptographically verify every signature; no identity policy.

    ``include_index_signatures``: when the digest is a platform manifest, also accept signatures on
    the multi-arch index that lists it (``index_digest``, else the index the reference's tag names).
    The default, like cosign, verifies only the digest the workload names.
    A registry failure to resolve the digest raises (RegistryError); later failures are collected.
    """
    digest = await registry_client.resolve_digest(ref)
    result = ImageSignatures(ref, digest, key_verified=key is not None)
    found = await _discover(registry_client, ref, digest, result)
    if found is not None:
        result.checked.extend(await _check_discovered(found, digest, verifier=verifier, key=key, rekor=rekor,
                                                      errors=result.errors))
    if include_index_signatures and not any(c.verified is not None for c in result.checked):
        index = await _covering_index(registry_client, ref, digest, index_digest, result)
        if index is not None:
            result.index_digest = index
            on_index = await _discover(registry_client, ref, index, result)
            if on_index is not None:
                result.checked.extend(await _check_discovered(on_index, index, verifier=verifier, key=key,
                                                              rekor=rekor, errors=result.errors))
    return result


async def verify_image(
    ref: ImageReference,
    *,
    registry_client: RegistryClient,
    verifier: Verifier,
    policy: Policy | None = None,
    key: PublicKey | None = None,
    rekor: RekorLookup | None = None,
    include_index_signatures: bool = False,
    index_digest: str | None = None,
) -> ImageVerification:
    """:func:`check_image`, then the identity ``policy`` (keyless) or ``key`` applied."""
    if policy is None and key is None:
        raise VerificationError("neither a public key nor an identity policy was given", step="policy")
    checked = await check_image(ref, registry_client=registry_client, verifier=verifier, key=key, rekor=rekor,
                                include_index_signatures=include_index_signatures, index_digest=index_digest)
    return checked.evaluate(policy)
