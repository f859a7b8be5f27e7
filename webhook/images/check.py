"""Checking one image: resolve, discover, verify every signature (ARCHITECTURE.md §2 steps 1–4).

Used by ``signet verify`` and the admission server. :func:`check_image` does the registry and the
cryptography, independent of any identity policy: the digest, every signature found and, per
signature, either a :class:`VerifiedSignature` or why it failed. With ``include_attestations`` the
same pass also finds and verifies the image's attestations (``.att`` layers and attestation
bundles, :mod:`webhook.images.attestations`); requirements on them are judged per authority by
``webhook.decision.attested``. With a ``location`` (an authority's ``source``) both are looked up in
another repository, through ``signature_client``. :func:`verify_image` also applies a policy.

Infrastructure failures (registry, Rekor) are kept apart from "unsigned" and from "signed, but not
by you"; the certificate paths and proofs run in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from webhook.errors import InfrastructureError, SignetError, VerificationError
from webhook.images.attestations import (
    CheckedAttestation,
    PreparedLayer,
    announced_as_attestation,
    bundle_attestation,
    prepare_layer,
    verify_layer,
)
from webhook.images.results import (
    LAYOUT_BUNDLE,
    LAYOUT_LEGACY,
    CheckedSignature,
    ImageSignatures,
    ImageVerification,
    RekorLookup,
)
from webhook.oci.client import RegistryClient
from webhook.oci.discovery import (
    BundleSignature,
    DiscoveredSignatures,
    LegacySignature,
    SignatureLocation,
    covering_index,
    discover_signatures,
)
from webhook.oci.limits import ImageBudget
from webhook.oci.reference import ImageReference
from webhook.verify.bundle import Bundle
from webhook.verify.cosign import CosignSignature, verify_cosign_material
from webhook.verify.dsse import COSIGN_SIGN_PREDICATE
from webhook.verify.identity import Policy
from webhook.verify.keys import PublicKey
from webhook.verify.material import Digest
from webhook.verify.result import VerifiedSignature
from webhook.verify.tlog import TlogEntry
from webhook.verify.verifier import Artifact, Verifier

_logger = logging.getLogger(__name__)



async def _legacy_log_entry(
    parsed: CosignSignature, *, key: PublicKey | None, rekor: RekorLookup | None,
) -> TlogEntry | None:
    """Keyless without log evidence: ask Rekor, as cosign does. Keyed signatures need no log entry.

    ``rekor`` is None when the authority uses no transparency log: nothing is looked up then.
    """
    if parsed.rekor_bundle is not None or key is not None or parsed.certificate is None or rekor is None:
        return None
    return await rekor.client.find_entry(rekor.base_url, parsed.signature, parsed.certificate,
                                         hashlib.sha256(parsed.payload).digest())


async def _prepare_legacy(
    signature: LegacySignature, digest: str, *, key: PublicKey | None, rekor: RekorLookup | None,
    errors: list[InfrastructureError],
) -> CheckedSignature | tuple[CheckedSignature, CosignSignature, TlogEntry | None]:
    """Parse one legacy layer and fetch its log entry: a finished check, or what the crypto needs."""
    base = CheckedSignature(LAYOUT_LEGACY, signature.source, signature.manifest_digest, signature.layer_digest,
                            digest)
    try:
        parsed = CosignSignature.from_layer(signature.payload, signature.annotations)
        entry = await _legacy_log_entry(parsed, key=key, rekor=rekor)
    except InfrastructureError as exc:
        errors.append(exc)
        return _replace(base, error=exc)
    except VerificationError as exc:
        return _replace(base, error=exc)
    return base, parsed, entry


def _verify_legacy(base: CheckedSignature, parsed: CosignSignature, entry: TlogEntry | None, *,
                   verifier: Verifier, key: PublicKey | None) -> CheckedSignature:
    try:
        verified = verify_cosign_material(verifier, parsed, base.signed_digest, key=key, log_entry=entry)
    except VerificationError as exc:
        return _replace(base, error=exc)
    return _replace(base, verified=verified)


def _check_bundle(signature: BundleSignature, digest: str, *, verifier: Verifier, key: PublicKey | None,
                  attestations: bool = False) -> CheckedSignature | CheckedAttestation:
    """One bundle, verified once; with ``attestations``, a DSSE statement other than cosign's sign predicate
    is an attestation rather than a failed signature."""
    base = CheckedSignature(LAYOUT_BUNDLE, signature.source, signature.manifest_digest, signature.layer_digest,
                            digest)
    try:
        algorithm, _, hex_digest = digest.partition(":")
        artifact = Artifact(Digest(algorithm, bytes.fromhex(hex_digest)))
        bundle = Bundle.from_json(signature.bundle)
        verified = verifier.verify_bundle_signature(bundle, artifact, key=key)
    except VerificationError as exc:
        if attestations and announced_as_attestation(signature):
            return bundle_attestation(signature, digest, error=exc)
        return _replace(base, error=exc)
    except ValueError as exc:  # a malformed digest; cannot normally happen after discovery
        return _replace(base, error=VerificationError(str(exc), step="artifact"))
    if attestations and verified.statement is not None and not verified.statement.is_cosign_signature:
        return bundle_attestation(signature, digest, verified=verified, bundle=bundle, key=key)
    try:
        _require_sign_predicate(verified)
    except VerificationError as exc:
        return _replace(base, error=exc)
    return _replace(base, verified=verified)


def _require_sign_predicate(verified: VerifiedSignature) -> None:
    """cosign v3 signature semantics: a DSSE in-toto statement with the cosign sign predicate."""
    statement = verified.statement
    if statement is None:
        raise VerificationError("the bundle signs a message, not a cosign image-signature statement",
                                step="statement")
    if not statement.is_cosign_signature:
        raise VerificationError(
            f"the statement's predicate type is {statement.predicate_type!r}, not {COSIGN_SIGN_PREDICATE!r}: "
            "an attestation, not a signature", step="statement")


def _replace(base: CheckedSignature, *, verified: VerifiedSignature | None = None,
             error: SignetError | None = None) -> CheckedSignature:
    return CheckedSignature(base.layout, base.source, base.manifest_digest, base.layer_digest, base.signed_digest,
                            verified, error)


async def _check_discovered(
    found: DiscoveredSignatures, digest: str, *, verifier: Verifier, key: PublicKey | None,
    rekor: RekorLookup | None, errors: list[InfrastructureError], attestations: bool = False,
) -> tuple[list[CheckedSignature], list[CheckedAttestation]]:
    """Signatures (and, with ``attestations``, attestations) of one discovery, verified against ``digest``."""
    if not verifier.requirements.transparency_log:
        rekor = None  # the authority uses no log: neither entries nor lookups count
    lookup = (rekor.client, rekor.base_url) if rekor is not None else None
    prepared, layers = await asyncio.gather(
        asyncio.gather(*(_prepare_legacy(legacy, digest, key=key, rekor=rekor, errors=errors)
                         for legacy in found.legacy)),
        asyncio.gather(*(prepare_layer(layer, digest, key=key, rekor=lookup, errors=errors)
                         for layer in (found.attestations if attestations else []))))

    def verify_all() -> tuple[list[CheckedSignature], list[CheckedAttestation]]:
        signatures: list[CheckedSignature] = []
        attested: list[CheckedAttestation] = []
        for bundle in found.bundles:
            checked = _check_bundle(bundle, digest, verifier=verifier, key=key, attestations=attestations)
            if isinstance(checked, CheckedAttestation):
                attested.append(checked)
            else:
                signatures.append(checked)
        signatures.extend(item if isinstance(item, CheckedSignature)
                          else _verify_legacy(*item, verifier=verifier, key=key) for item in prepared)
        attested.extend(verify_layer(item, verifier=verifier, key=key) if isinstance(item, PreparedLayer) else item
                        for item in layers)
        return signatures, attested

    if not found.bundles and not found.legacy and not layers:
        return [], []
    # Certificate paths, SCTs and log proofs cost a millisecond or more each: they must not hold the
    # event loop (health checks and other admissions would wait behind them), so they run in a thread.
    return await asyncio.to_thread(verify_all)


async def _discover(client: RegistryClient, ref: ImageReference, digest: str, result: ImageSignatures,
                    budget: ImageBudget, *, attestations: bool = False,
                    location: SignatureLocation | None = None) -> DiscoveredSignatures | None:
    target = ImageReference(ref.registry, ref.repository, ref.tag, digest)
    try:
        found = await discover_signatures(client, target, include_attestations=attestations, budget=budget,
                                          location=location)
    except InfrastructureError as exc:
        result.errors.append(exc)
        result.notes.append(f"signature discovery for {digest} failed: {exc.reason}")
        return None
    result.errors.extend(found.errors)
    result.notes.extend(found.notes)
    return found


async def check_image(
    ref: ImageReference,
    *,
    registry_client: RegistryClient,
    verifier: Verifier,
    key: PublicKey | None = None,
    rekor: RekorLookup | None = None,
    include_index_signatures: bool = False,
    index_digest: str | None = None,
    include_attestations: bool = False,
    location: SignatureLocation | None = None,
    signature_client: RegistryClient | None = None,
) -> ImageSignatures:
    """Resolve ``ref``, discover and cryptographically verify every signature; no identity policy.

    ``include_index_signatures``: when the digest is a platform manifest, also accept signatures on
    the multi-arch index that lists it (``index_digest``, else the index the reference's tag names).
    The default, like cosign, verifies only the digest the workload names.
    ``include_attestations``: attestations too (statements must name the digest, or that index).
    ``location``: signatures (and attestations) are stored there, read with ``signature_client``
    (default: ``registry_client``); the digest and any covering index are the image's own.
    A registry failure to resolve the digest raises (RegistryError); later failures are collected.
    """
    digest = await registry_client.resolve_digest(ref)
    result = ImageSignatures(ref, digest, key_verified=key is not None)
    # One budget for everything fetched for this image, its covering index's signatures included.
    budget = registry_client.budget(ref.with_digest(digest))
    signatures_from = signature_client or registry_client
    if location is not None:
        result.notes.append(f"signatures looked up in {location.describe()}")
    found = await _discover(signatures_from, ref, digest, result, budget, attestations=include_attestations,
                            location=location)
    if found is not None:
        signatures, attested = await _check_discovered(found, digest, verifier=verifier, key=key, rekor=rekor,
                                                       errors=result.errors, attestations=include_attestations)
        result.checked.extend(signatures)
        result.attestations.extend(attested)
    if not include_index_signatures:
        return result
    # The index is consulted for what the digest itself lacks, signatures and attestations apart.
    need_signatures = not any(c.verified is not None for c in result.checked)
    need_attestations = include_attestations and not any(a.verified is not None for a in result.attestations)
    if need_signatures or need_attestations:
        lookup = await covering_index(registry_client, ref, digest, index_digest)
        result.notes.extend(lookup.notes)
        result.errors.extend(lookup.errors)
        index = lookup.digest
        if index is not None:
            result.index_digest = index
            on_index = await _discover(signatures_from, ref, index, result, budget, attestations=need_attestations,
                                       location=location)
            if on_index is not None:
                signatures, attested = await _check_discovered(
                    on_index, index, verifier=verifier, key=key, rekor=rekor, errors=result.errors,
                    attestations=need_attestations)
                if need_signatures:
                    result.checked.extend(signatures)
                result.attestations.extend(attested)
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
