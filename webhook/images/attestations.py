"""An image's attestations, found and cryptographically verified, before any requirement is applied.

The attestation half of :func:`webhook.images.check_image` (which finds them in the same
registry pass as signatures, ARCHITECTURE.md §2 step 4):

* legacy ``sha256-<hex>.att`` layers (cosign < v3) and cosign's attestation referrers: DSSE
  envelopes with the certificate and Rekor bundle in annotations. A keyless layer without the
  bundle annotation is looked up in Rekor v1 (:func:`find_attestation_entry`), as cosign logged it:
  an ``intoto`` 0.0.1 entry (later 0.0.2, or ``dsse`` 0.0.1);
* Sigstore bundles with a DSSE envelope attached as OCI referrers (cosign v3 ``attest``, ``gh
  attestation``): one verification, then the statement says whether it is a signature (cosign's
  sign predicate) or an attestation (:func:`check_bundle`).

The result per attestation (:class:`CheckedAttestation`) depends only on the image, the trust root
and the key, so it is cached with the signatures; who signed it, its predicate type and its policy
are judged per authority (``webhook.decision.attested``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from webhook.errors import InfrastructureError, SignetError, TransparencyLogError, VerificationError
from webhook.oci.discovery import COSIGN_SIGN, BundleSignature, LegacyAttestation
from webhook.rekor import RETRIEVE_PATH, RekorClient
from webhook.verify.attestation import VerifiedAttestation, parse_image_digest, verify_cosign_attestation
from webhook.verify.bundle import Bundle
from webhook.verify.cosign_attestation import CosignAttestation
from webhook.verify.keys import PublicKey, spki_sha256
from webhook.verify.result import VerifiedSignature
from webhook.verify.tlog import TlogEntry
from webhook.verify.verifier import Artifact, Verifier

LAYOUT_LEGACY_ATTESTATION = "legacy .att layer"
LAYOUT_ATTESTATION_REFERRER = "cosign attestation referrer"
LAYOUT_BUNDLE_ATTESTATION = "attestation bundle"


@dataclass(frozen=True)
class CheckedAttestation:
    """One attestation after the policy-independent checks: ``verified`` or ``error``, never both."""

    layout: str
    source: str
    manifest_digest: str
    layer_digest: str
    subject_digest: str
    """The digest the statement had to name: the image, or the index covering it."""
    predicate_type_hint: str | None = None
    """The registry's unauthenticated annotation; only ever shown, never trusted."""
    verified: VerifiedAttestation | None = None
    error: SignetError | None = None

    @property
    def infrastructure_failure(self) -> bool:
        return isinstance(self.error, InfrastructureError)

    @property
    def legacy(self) -> bool:
        """A cosign ``.att``-style layer rather than a Sigstore bundle (``signatureFormat``)."""
        return self.layout != LAYOUT_BUNDLE_ATTESTATION

    def describe(self) -> str:
        """``attestation bundle https://slsa.dev/provenance/v1 (sha256:ab12…)``, for messages."""
        kind = self.verified.predicate_type if self.verified is not None else (self.predicate_type_hint or "?")
        return f"{self.layout} {kind} ({self.layer_digest[:19]}…)"


# --- bundles: one verification, then signature or attestation -------------------------------------------


def attestation_of(verified: VerifiedSignature, bundle: Bundle, key: PublicKey | None) -> VerifiedAttestation:
    """A verified DSSE bundle whose statement is not cosign's sign predicate, as an attestation.

    The same result as ``verify_bundle_attestation`` without verifying the bundle a second time.
    """
    statement = verified.statement
    if statement is None or bundle.envelope is None:
        raise VerificationError("the bundle signs a message, not an in-toto statement", step="statement")
    if not isinstance(statement.raw.get("predicateType"), str) or not statement.predicate_type:
        raise VerificationError("the in-toto statement names no predicate type", step="statement")
    return VerifiedAttestation(
        layout="bundle", statement=statement, envelope=bundle.envelope, certificate=verified.certificate,
        key_fingerprint=f"sha256:{spki_sha256(key).hex()}" if key is not None else None,
        signing_times=verified.signing_times, log_proofs=verified.log_proofs)


def bundle_attestation(found: BundleSignature, digest: str, *, verified: VerifiedSignature | None = None,
                       bundle: Bundle | None = None, key: PublicKey | None = None,
                       error: SignetError | None = None) -> CheckedAttestation:
    """The attestation a referrer bundle turned out to be (or, with ``error``, was announced as)."""
    base = CheckedAttestation(LAYOUT_BUNDLE_ATTESTATION, found.source, found.manifest_digest, found.layer_digest,
                              digest, found.predicate_type)
    if error is not None:
        return replace(base, error=error)
    assert verified is not None and bundle is not None
    try:
        return replace(base, verified=attestation_of(verified, bundle, key))
    except VerificationError as exc:
        return replace(base, error=exc)


def announced_as_attestation(found: BundleSignature) -> bool:
    """A bundle that failed verification is reported where its (unauthenticated) annotation says it belongs."""
    return found.predicate_type is not None and found.predicate_type != COSIGN_SIGN


# --- legacy layers ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedLayer:
    """A parsed ``.att`` layer and the log entry found for it online, ready for the cryptography."""

    base: CheckedAttestation
    material: CosignAttestation
    entry: TlogEntry | None


async def prepare_layer(found: LegacyAttestation, digest: str, *, key: PublicKey | None,
                        rekor: tuple[RekorClient, str] | None, errors: list[InfrastructureError]
                        ) -> CheckedAttestation | PreparedLayer:
    """Parse one layer and, keyless without a bundle annotation, find its Rekor entry (network, no crypto)."""
    layout = LAYOUT_LEGACY_ATTESTATION if found.source == "legacy-tag" else LAYOUT_ATTESTATION_REFERRER
    base = CheckedAttestation(layout, found.source, found.manifest_digest, found.layer_digest, digest,
                              found.predicate_type)
    try:
        material = CosignAttestation.from_layer(found.envelope, found.annotations)
        entry = None
        if material.rekor_bundle is None and key is None and material.certificate is not None and rekor:
            entry = await find_attestation_entry(rekor[0], rekor[1], material)
    except InfrastructureError as exc:
        errors.append(exc)
        return replace(base, error=exc)
    except VerificationError as exc:
        return replace(base, error=exc)
    return PreparedLayer(base, material, entry)


def verify_layer(prepared: PreparedLayer, *, verifier: Verifier, key: PublicKey | None) -> CheckedAttestation:
    """The cryptography of one prepared layer (milliseconds: run it off the event loop)."""
    try:
        verified = verify_cosign_attestation(verifier, prepared.material, prepared.base.subject_digest, key=key,
                                             log_entry=prepared.entry)
    except VerificationError as exc:
        return replace(prepared.base, error=exc)
    return replace(prepared.base, verified=verified)


def bundle_artifact(digest: str) -> Artifact:
    """The artifact a bundle about image ``digest`` must name (sha256 or sha512)."""
    return Artifact(parse_image_digest(digest))


# --- Rekor v1 lookup of .att layers without a bundle annotation ---------------------------------------------


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def proposed_attestation_entries(envelope_bytes: bytes, certificate: x509.Certificate) -> list[dict[str, Any]]:
    """The Rekor v1 entries cosign may have logged for this layer, as proposals Rekor canonicalizes.

    Rekor's search by proposed entry (``POST /api/v1/log/entries/retrieve``) rebuilds the canonical
    body and looks up its leaf hash: ``intoto`` 0.0.1 (the envelope as submitted and the signer),
    ``intoto`` 0.0.2 (envelope fields, base64 of their base64 text, as Rekor's types build them),
    ``dsse`` 0.0.1 (envelope and verifiers).
    """
    pem = _b64(_pem(certificate))
    envelope_text = envelope_bytes.decode("utf-8")
    proposals: list[dict[str, Any]] = [
        {"apiVersion": "0.0.1", "kind": "intoto", "spec": {"content": {"envelope": envelope_text}, "publicKey": pem}},
        {"apiVersion": "0.0.1", "kind": "dsse",
         "spec": {"proposedContent": {"envelope": envelope_text, "verifiers": [pem]}}},
    ]
    try:
        raw = json.loads(envelope_bytes)
        signatures = [{**({"keyid": s["keyid"]} if s.get("keyid") else {}), "sig": _b64(s["sig"].encode()),
                       "publicKey": pem} for s in raw["signatures"]]
        content = {"payloadType": raw["payloadType"], "payload": _b64(raw["payload"].encode()),
                   "signatures": signatures}
    except (ValueError, KeyError, TypeError, AttributeError):
        return proposals  # the envelope already parsed once; a shape this odd was not logged as 0.0.2
    proposals.insert(1, {"apiVersion": "0.0.2", "kind": "intoto", "spec": {"content": {"envelope": content}}})
    return proposals


async def find_attestation_entry(client: RekorClient, base_url: str, attestation: CosignAttestation
                                 ) -> TlogEntry | None:
    """The Rekor v1 entry logging this ``.att`` layer, or None; parsed, not verified (the verifier does that).

    Shares the client's cache, single-flight and request limit with signature lookups.
    """
    certificate = attestation.certificate
    if certificate is None:
        return None
    base = base_url.rstrip("/")
    key = ("retrieve-attestation", base, hashlib.sha256(attestation.envelope_bytes).hexdigest(),
           hashlib.sha256(_pem(certificate)).hexdigest())
    try:
        proposals = proposed_attestation_entries(attestation.envelope_bytes, certificate)
    except UnicodeDecodeError:
        return None  # not JSON text: cosign cannot have submitted it

    async def retrieve() -> TlogEntry | None:
        # The client's own request path, cache and limiter (RekorClient offers no public call for this yet).
        data = await client._call(base, "POST", RETRIEVE_PATH, {"entries": proposals})
        if data is None:
            return None
        if not isinstance(data, list):
            raise TransparencyLogError(f"Rekor at {base} answered the search with a {type(data).__name__}, "
                                       "not a list of entries")
        entries = client._parse_entries(base, data)
        return next((e for e in entries if e.body_json.get("kind") in ("intoto", "dsse")), None)

    return await client._single_flight(key, retrieve)
