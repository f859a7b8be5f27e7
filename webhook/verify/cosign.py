"""cosign's legacy image signatures: a simple-signing layer plus its registry annotations.

The same checklist as ``verifier.py`` applies, with cosign's particulars: the signature is ECDSA
(or the key's scheme) over SHA-256 of the payload bytes whatever the curve; the only log evidence
carried is a Rekor v1 SET (no inclusion proof) in ``dev.sigstore.cosign/bundle``; an RFC 3161
timestamp, if any, is over the raw signature bytes; the chain annotation is untrusted and ignored,
because intermediates come only from the trust root.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from webhook.errors import VerificationError
from webhook.verify.identity import Policy
from webhook.verify.keys import PublicKey, signing_key, verify_signature
from webhook.verify.material import Digest, SignedContent
from webhook.verify.result import LogProof, VerifiedSignature
from webhook.verify.simplesigning import SimpleSigningPayload
from webhook.verify.timestamp import verify_timestamp
from webhook.verify.tlog import TlogEntry, verify_entry
from webhook.verify.verifier import Verifier

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
TIMESTAMP_ANNOTATION = "dev.sigstore.cosign/rfc3161timestamp"


@dataclass(frozen=True)
class CosignSignature:
    """A legacy signature layer as found in the registry, parsed but not verified."""

    payload: bytes
    signature: bytes
    certificate: x509.Certificate | None
    rekor_bundle: TlogEntry | None
    timestamp: bytes | None

    @classmethod
    def from_layer(cls, payload: bytes, annotations: Mapping[str, str]) -> CosignSignature:
        """Parse the layer bytes and annotations; malformed material is a VerificationError."""
        raw_sig = annotations.get(SIGNATURE_ANNOTATION)
        if not raw_sig:
            raise VerificationError("signature layer has no signature annotation", step="signature")
        try:
            signature = base64.b64decode(raw_sig, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise VerificationError("signature annotation is not valid base64", step="signature") from exc
        certificate = parse_certificate_annotation(annotations.get(CERTIFICATE_ANNOTATION))
        rekor = annotations.get(BUNDLE_ANNOTATION)
        entry = TlogEntry.from_cosign_bundle(rekor) if rekor else None
        timestamp = None
        raw_ts = annotations.get(TIMESTAMP_ANNOTATION)
        if raw_ts:
            timestamp = parse_timestamp_annotation(raw_ts)
        return cls(payload=payload, signature=signature, certificate=certificate,
                   rekor_bundle=entry, timestamp=timestamp)


def parse_certificate_annotation(pem: str | None) -> x509.Certificate | None:
    """The leaf in ``dev.sigstore.cosign/certificate``, or None when the layer has none (keyed)."""
    if not pem:
        return None
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode())
        # cryptography decodes names lazily: a malformed one must fail here, not as a bare ValueError later.
        _ = (certificate.subject, certificate.issuer)
    except ValueError as exc:
        raise VerificationError("certificate annotation is not a PEM certificate", step="certificate") from exc
    return certificate


def parse_timestamp_annotation(raw: str) -> bytes:
    """The DER TimeStampResp inside ``dev.sigstore.cosign/rfc3161timestamp``."""
    try:
        data = json.loads(raw)
        return base64.b64decode(data["SignedRFC3161Timestamp"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error, RecursionError) as exc:
        raise VerificationError("rfc3161timestamp annotation is malformed", step="timestamp") from exc


def verify_cosign_signature(
    verifier: Verifier,
    sig: CosignSignature,
    image_digest: str,
    *,
    policy: Policy | None = None,
    key: PublicKey | None = None,
    log_entry: TlogEntry | None = None,
) -> VerifiedSignature:
    """Verify one legacy signature of ``image_digest`` (``sha256:<hex>``).

    ``log_entry`` is a Rekor entry found online for signatures that carry no bundle annotation;
    it is verified exactly as strictly (SET and, when present, inclusion proof).
    """
    if key is None and policy is None:
        raise VerificationError("neither a public key nor an identity policy was given", step="policy")
    result = verify_cosign_material(verifier, sig, image_digest, key=key, log_entry=log_entry)
    if key is None and policy is not None:
        result.check_identity(policy)
    return result


def verify_cosign_material(
    verifier: Verifier,
    sig: CosignSignature,
    image_digest: str,
    *,
    key: PublicKey | None = None,
    log_entry: TlogEntry | None = None,
) -> VerifiedSignature:
    """Everything but the identity policy, for caching across policies."""
    trusted_root = verifier.trusted_root
    # (a) the signer: the caller's key, or the certificate annotation.
    signer_key = signing_key(sig.certificate, key, what="the signature",
                             keyed="signature carries no certificate; it was made with a key")

    # (g) the signature over the payload bytes (always SHA-256 in cosign), (h) the payload binds the image.
    verify_signature(signer_key, sig.signature, sig.payload, hash_algorithm=hashes.SHA256(),
                     step="signature", what="image signature")
    payload = SimpleSigningPayload.parse(sig.payload)
    payload.check_image(image_digest)

    # (1) signing times and (e) the log entry: from the bundle annotation or an online lookup.
    times = [verify_timestamp(sig.timestamp, sig.signature, trusted_root)] if sig.timestamp else []
    verifier.requirements.check_timestamped(len(times))
    content = SignedContent(sig.signature, signer_key, Digest("sha256", hashlib.sha256(sig.payload).digest()),
                            certificate=sig.certificate if key is None else None, payload=sig.payload)
    proofs = verify_layer_log_entry(verifier, content, sig.rekor_bundle, log_entry, keyless=key is None,
                                    what="signature")
    times += [proof.integrated_time for proof in proofs if proof.integrated_time is not None]

    certificate = None
    if key is None:
        assert sig.certificate is not None
        verifier.check_certificate(sig.certificate, times)
        certificate = sig.certificate
    return VerifiedSignature(
        kind="cosign",
        certificate=certificate,
        signing_times=tuple(times),
        log_proofs=proofs,
        payload=sig.payload,
        key_verified=key is not None,
    )


def verify_layer_log_entry(verifier: Verifier, content: SignedContent, annotated: TlogEntry | None,
                           found: TlogEntry | None, *, keyless: bool, what: str) -> tuple[LogProof, ...]:
    """(e) a legacy layer's log entry: its bundle annotation, else ``found`` online; keyless ``what`` needs one."""
    logged = verifier.requirements.transparency_log
    entry = (annotated or found) if logged else None
    if entry is not None:
        checked = verify_entry(entry, verifier.trusted_root, content)
        return (LogProof(checked.log.base_url, entry.log_index, checked.integrated_time),)
    if keyless and logged:
        raise VerificationError(
            f"keyless {what} has no transparency log entry (no bundle annotation and none found in Rekor)",
            step="transparency log")
    return ()
