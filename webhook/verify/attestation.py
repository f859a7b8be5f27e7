"""Verifying attestations: in-toto statements in DSSE envelopes, signed like image signatures.

For one attestation (a cosign ``.att`` layer or a Sigstore bundle) and the image digest, in this
order (the step letters of ``verifier.py``):

  (0) structure: the layer's envelope and annotations, or the bundle, parse; one DSSE signature.
  (a) the signer: the caller's key (a certificate present must be for it), or the leaf certificate.
  (g) the DSSE signature over PAE(payloadType, payload).
  (h) payloadType is in-toto, the statement is in-toto v0.1 or v1, one of its subjects names the image
      digest (sha256 or sha512), and it names a predicate type other than cosign's sign predicate
      (a statement with that predicate is an image signature, never an attestation).
  (1) signing times: RFC 3161 timestamps and Rekor v1 SETs; only verified times count.
  (e) every log entry: SET and/or inclusion proof, and a body that records this very envelope
      (intoto 0.0.1 and 0.0.2 and dsse 0.0.1 on Rekor v1; hashedrekord over PAE on Rekor v2).
  (b)–(d), (f) keyless: the leaf chains to a Fulcio CA at every verified time, with a valid SCT.
  (i) identity (``policy``) — separate, so one verification serves many policies.
  (j) the predicate type a policy asks for (``predicate_type``), reported with the type found.

Any failure raises VerificationError naming its step; nothing else escapes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from cryptography import x509

from webhook.errors import VerificationError
from webhook.verify.bundle import Bundle
from webhook.verify.cosign import verify_layer_log_entry
from webhook.verify.cosign_attestation import CosignAttestation
from webhook.verify.dsse import COSIGN_SIGN_PREDICATE, DsseEnvelope, Statement
from webhook.verify.identity import Policy
from webhook.verify.keys import PublicKey, signing_key, spki_sha256
from webhook.verify.material import Digest, SignedContent
from webhook.verify.result import LogProof, SignerIdentity
from webhook.verify.timestamp import verify_timestamp
from webhook.verify.tlog import TlogEntry
from webhook.verify.verifier import Artifact, Verifier, check_envelope, digest_for_key

AttestationMaterial = CosignAttestation | Bundle
_IMAGE_DIGEST = re.compile(r"(sha256):([0-9a-f]{64})|(sha512):([0-9a-f]{128})")


@dataclass(frozen=True)
class VerifiedAttestation(SignerIdentity):
    """A cryptographically verified attestation of an image, before any identity policy is applied."""

    layout: Literal["bundle", "cosign"]
    """``bundle`` (Sigstore bundle) or ``cosign`` (legacy ``.att`` layer)."""
    statement: Statement
    envelope: DsseEnvelope
    certificate: x509.Certificate | None
    """The verified leaf (keyless); None when verified with a key."""
    key_fingerprint: str | None
    """``sha256:<hex>`` of the caller's key (SubjectPublicKeyInfo DER) when verified with a key."""
    signing_times: tuple[datetime, ...]
    log_proofs: tuple[LogProof, ...]
    _made: ClassVar[str] = "attestation"

    @property
    def predicate_type(self) -> str:
        return self.statement.predicate_type

    @property
    def predicate(self) -> Any:
        return self.statement.predicate

    @property
    def statement_json(self) -> Mapping[str, Any]:
        """The whole statement as parsed JSON; shared by every policy that reads it, so never mutate it."""
        return self.statement.raw

    @property
    def subjects(self) -> tuple[tuple[str, Mapping[str, str]], ...]:
        """(name, {algorithm: lowercase hex}) per subject."""
        return self.statement.subjects

    def check_predicate_type(self, expected: str) -> None:
        """(j) the statement's predicate type must be exactly ``expected``."""
        if self.predicate_type != expected:
            raise VerificationError(
                f"the attestation's predicate type is {self.predicate_type!r}, not {expected!r}",
                step="predicate type")


def parse_image_digest(image_digest: str) -> Digest:
    """``sha256:<64 hex>`` or ``sha512:<128 hex>`` as a Digest; anything else is a VerificationError."""
    match = _IMAGE_DIGEST.fullmatch(image_digest.lower()) if isinstance(image_digest, str) else None
    if match is None:
        raise VerificationError(f"{image_digest!r} is not a sha256 or sha512 image digest", step="artifact")
    algorithm, hex_digest = (match[1], match[2]) if match[1] else (match[3], match[4])
    return Digest(algorithm, bytes.fromhex(hex_digest))


def verify_attestation(
    verifier: Verifier,
    material: AttestationMaterial,
    image_digest: str,
    *,
    policy: Policy | None = None,
    key: PublicKey | None = None,
    log_entry: TlogEntry | None = None,
    predicate_type: str | None = None,
) -> VerifiedAttestation:
    """Verify one attestation of ``image_digest`` with ``key`` (keyed) or ``policy`` (keyless identity).

    ``log_entry`` is a Rekor entry found online for a ``.att`` layer without a bundle annotation;
    ``predicate_type``, when given, must be the statement's exact predicate type.
    """
    if key is None and policy is None:
        raise VerificationError("neither a public key nor an identity policy was given", step="policy")
    if isinstance(material, Bundle):
        if log_entry is not None:
            raise VerificationError("a bundle carries its own log entries; none may be supplied", step="policy")
        result = verify_bundle_attestation(verifier, material, image_digest, key=key)
    else:
        result = verify_cosign_attestation(verifier, material, image_digest, key=key, log_entry=log_entry)
    if key is None and policy is not None:
        result.check_identity(policy)
    if predicate_type is not None:
        result.check_predicate_type(predicate_type)
    return result


def verify_bundle_attestation(
    verifier: Verifier, bundle: Bundle, image_digest: str, *, key: PublicKey | None = None
) -> VerifiedAttestation:
    """Steps (0)–(h) for a Sigstore bundle (cosign v3 ``attest``, ``gh attestation``): no identity policy."""
    digest = parse_image_digest(image_digest)
    if bundle.envelope is None:
        raise VerificationError("the bundle signs a message, not an in-toto statement: it is no attestation",
                                step="statement")
    verified = verifier.verify_bundle_signature(bundle, Artifact(digest), key=key)
    assert verified.statement is not None  # a DSSE bundle always yields its statement
    return VerifiedAttestation(
        layout="bundle",
        statement=_attestation_statement(verified.statement),
        envelope=bundle.envelope,
        certificate=verified.certificate,
        key_fingerprint=_fingerprint(key),
        signing_times=verified.signing_times,
        log_proofs=verified.log_proofs,
    )


def verify_cosign_attestation(
    verifier: Verifier,
    attestation: CosignAttestation,
    image_digest: str,
    *,
    key: PublicKey | None = None,
    log_entry: TlogEntry | None = None,
) -> VerifiedAttestation:
    """Steps (0)–(h) for a legacy ``.att`` layer: no identity policy, for caching across policies."""
    digest = parse_image_digest(image_digest)
    trusted_root = verifier.trusted_root
    leaf = attestation.certificate

    # (a) the signer.
    signer_key = signing_key(leaf, key, what="the attestation",
                             keyed="attestation carries no certificate; it was made with a key")

    # (g)+(h) the DSSE signature, payload type, statement type and the image among the subjects.
    envelope = attestation.envelope
    statement = check_envelope(envelope, signer_key, attestation.signature, Artifact(digest))

    # (1) signing times and (e) the log entry: from the bundle annotation or an online lookup.
    times = ([verify_timestamp(attestation.timestamp, attestation.timestamped, trusted_root)]
             if attestation.timestamp is not None else [])
    verifier.requirements.check_timestamped(len(times))
    content = SignedContent(
        attestation.signature, signer_key, digest_for_key(signer_key, envelope.pae),
        certificate=leaf if key is None else None, envelope=envelope, payload=envelope.payload,
        envelope_bytes=attestation.envelope_bytes,
    )
    proofs = verify_layer_log_entry(verifier, content, attestation.rekor_bundle, log_entry, keyless=key is None,
                                    what="attestation")
    times += [proof.integrated_time for proof in proofs if proof.integrated_time is not None]

    # (b)–(d), (f) the certificate at every verified time.
    if key is None:
        assert leaf is not None
        verifier.check_certificate(leaf, times)
    return VerifiedAttestation(
        layout="cosign",
        statement=_attestation_statement(statement),
        envelope=envelope,
        certificate=leaf if key is None else None,
        key_fingerprint=_fingerprint(key),
        signing_times=tuple(times),
        log_proofs=proofs,
    )


def _attestation_statement(statement: Statement) -> Statement:
    """(h) what makes a verified statement an attestation rather than a signature or nothing."""
    predicate_type = statement.raw.get("predicateType")
    if not isinstance(predicate_type, str) or not predicate_type:
        raise VerificationError("the in-toto statement names no predicate type", step="statement")
    if statement.is_cosign_signature:
        raise VerificationError(
            f"the statement's predicate type is {COSIGN_SIGN_PREDICATE!r}: a cosign image signature, "
            "not an attestation", step="statement")
    return statement


def _fingerprint(key: PublicKey | None) -> str | None:
    return f"sha256:{spki_sha256(key).hex()}" if key is not None else None
