"""cosign's legacy attestations: the DSSE envelope layers of a ``sha256-<hex>.att`` manifest (cosign < v3).

The layer blob is the envelope exactly as cosign submitted it to Rekor, which is what lets an
``intoto`` 0.0.1 entry (hashes only) be bound to it. The annotations are those of a signature layer
(certificate, chain, Rekor bundle, RFC 3161 timestamp) with an empty signature annotation, plus a
``predicateType`` hint that is unauthenticated and never decides anything (SIGSTORE.md §1.2).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509

from webhook.errors import VerificationError
from webhook.verify.cosign import (
    BUNDLE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    SIGNATURE_ANNOTATION,
    TIMESTAMP_ANNOTATION,
    parse_certificate_annotation,
    parse_timestamp_annotation,
)
from webhook.verify.dsse import DsseEnvelope
from webhook.verify.tlog import TlogEntry

DSSE_ENVELOPE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
# cosign writes the first; the second is how some tools and docs spell it.
PREDICATE_TYPE_ANNOTATIONS = ("predicateType", "dev.cosignproject.cosign/predicateType")


@dataclass(frozen=True)
class CosignAttestation:
    """One ``.att`` layer as found in the registry, parsed but not verified."""

    envelope_bytes: bytes
    """The layer blob: the DSSE envelope as stored and as logged."""
    envelope: DsseEnvelope
    signature: bytes
    """The envelope's one signature."""
    certificate: x509.Certificate | None
    rekor_bundle: TlogEntry | None
    timestamp: bytes | None
    """A DER TimeStampResp from the rfc3161timestamp annotation."""
    timestamped: bytes
    """What cosign timestamps: the envelope bytes, or the raw signature when the annotation carries one."""
    predicate_type_hint: str | None

    @classmethod
    def from_layer(cls, envelope: bytes, annotations: Mapping[str, str]) -> CosignAttestation:
        """Parse the layer blob and its annotations; malformed material is a VerificationError."""
        parsed = DsseEnvelope.from_json(envelope)
        signature = parsed.single_signature()
        timestamped = envelope
        raw_sig = annotations.get(SIGNATURE_ANNOTATION)
        if raw_sig:
            # cosign leaves it empty on attestations; one that is set must be this envelope's
            # signature, and then (as cosign does) the timestamp is over it rather than the envelope.
            if _b64(raw_sig) != signature:
                raise VerificationError("the layer's signature annotation is not the envelope's signature",
                                        step="envelope")
            timestamped = signature
        rekor = annotations.get(BUNDLE_ANNOTATION)
        raw_ts = annotations.get(TIMESTAMP_ANNOTATION)
        hint = next((annotations[k] for k in PREDICATE_TYPE_ANNOTATIONS if annotations.get(k)), None)
        return cls(
            envelope_bytes=envelope,
            envelope=parsed,
            signature=signature,
            certificate=parse_certificate_annotation(annotations.get(CERTIFICATE_ANNOTATION)),
            rekor_bundle=TlogEntry.from_cosign_bundle(rekor) if rekor else None,
            timestamp=parse_timestamp_annotation(raw_ts) if raw_ts else None,
            timestamped=timestamped,
            predicate_type_hint=hint,
        )


def _b64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError("signature annotation is not valid base64", step="envelope") from exc
