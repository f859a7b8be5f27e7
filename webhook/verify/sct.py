"""Embedded precertificate SCT verification (ARCHITECTURE.md §2 step d; SIGSTORE.md §4).

An SCT proves that Fulcio submitted the precertificate to a certificate transparency log, so a
mis-issued certificate cannot stay hidden. The signed structure is rebuilt byte for byte from
RFC 6962 §3.2: the log signed the precertificate TBS (the leaf without its SCT list) together with
a hash of the issuer's public key, which is why the issuer must come from the verified chain.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.certificate_transparency import (
    LogEntryType,
    SignedCertificateTimestamp,
    Version,
)

from webhook.errors import VerificationError
from webhook.verify.keys import verify_signature
from webhook.verify.trustroot import TrustedRoot

_logger = logging.getLogger(__name__)

STEP = "SCT"

# RFC 6962 §3.2 enumerations.
_SIGNATURE_TYPE_CERTIFICATE_TIMESTAMP = 0
_ENTRY_TYPE_PRECERT = 1
# EKU of a dedicated precertificate signing certificate (RFC 6962 §3.1); Fulcio does not use one.
_PRECERT_SIGNING_EKU = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.4")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _issuer_key_hash(issuer: x509.Certificate) -> bytes:
    try:
        eku = issuer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None and _PRECERT_SIGNING_EKU in eku:
        # The real issuer would be one level up; Fulcio never does this, so refuse rather than guess.
        raise VerificationError(
            "the leaf was issued through a precertificate signing certificate, which is not supported",
            step=STEP,
        )
    spki = issuer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def _timestamp_ms(sct: SignedCertificateTimestamp) -> int:
    # cryptography returns a naive UTC datetime with millisecond precision; integer arithmetic on
    # the timedelta keeps the value exact (float seconds could be off by one millisecond).
    return (sct.timestamp.replace(tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)


def signed_struct(sct: SignedCertificateTimestamp, issuer_key_hash: bytes, tbs_precert: bytes) -> bytes:
    """The ``digitally-signed`` body of a v1 precertificate SCT (RFC 6962 §3.2)."""
    extensions = sct.extension_bytes
    return b"".join(
        (
            struct.pack(
                ">BBQH", 0, _SIGNATURE_TYPE_CERTIFICATE_TIMESTAMP, _timestamp_ms(sct), _ENTRY_TYPE_PRECERT
            ),
            issuer_key_hash,
            len(tbs_precert).to_bytes(3, "big"),
            tbs_precert,
            struct.pack(">H", len(extensions)),
            extensions,
        )
    )


def _verify_one(
    sct: SignedCertificateTimestamp, issuer_key_hash: bytes, tbs_precert: bytes, trusted_root: TrustedRoot
) -> str | None:
    """Verify one SCT; return None on success, else why it does not count."""
    log_id = sct.log_id.hex()
    if sct.version != Version.v1:
        return f"SCT from log {log_id} has unsupported version {sct.version}"
    if sct.entry_type != LogEntryType.PRE_CERTIFICATE:
        return f"SCT from log {log_id} is not for a precertificate"
    if not isinstance(sct.signature_hash_algorithm, hashes.SHA256):
        return f"SCT from log {log_id} is not signed with SHA-256"
    logs = trusted_root.ctlogs_for(sct.log_id)
    if not logs:
        return f"SCT is from log {log_id}, which is not a CT log of the trust root"
    when = sct.timestamp.replace(tzinfo=UTC)
    message = signed_struct(sct, issuer_key_hash, tbs_precert)
    reasons: list[str] = []
    for log in logs:
        if not log.valid_for.contains(when):
            reasons.append(
                f"CT log {log.base_url or log_id} key was not valid at the SCT time {when.isoformat()} "
                f"(valid {log.valid_for.describe()})"
            )
            continue
        try:
            verify_signature(log.key, sct.signature, message, hash_algorithm=hashes.SHA256(), step=STEP,
                             what=f"SCT from CT log {log.base_url or log_id}")
        except VerificationError as exc:
            reasons.append(exc.reason)
            continue
        return None
    return "; ".join(reasons)


def verify_sct(leaf: x509.Certificate, issuer: x509.Certificate, trusted_root: TrustedRoot) -> None:
    """Require at least one embedded SCT on ``leaf`` signed by a CT log of the trust root.

    ``issuer`` is the certificate that signed ``leaf``, taken from the verified chain (element 1).
    Raises VerificationError (step "SCT") otherwise.
    """
    try:
        scts = list(
            leaf.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
        )
        tbs_precert = leaf.tbs_precertificate_bytes
        issuer_key_hash = _issuer_key_hash(issuer)
    except x509.ExtensionNotFound:
        raise VerificationError("certificate carries no embedded SCT", step=STEP) from None
    except ValueError as exc:
        raise VerificationError(f"certificate SCT material is malformed: {exc}", step=STEP) from exc
    if not scts:
        raise VerificationError("certificate carries an empty SCT list", step=STEP)
    reasons: list[str] = []
    for sct in scts:
        reason = _verify_one(sct, issuer_key_hash, tbs_precert, trusted_root)
        if reason is None:
            return
        _logger.debug("SCT rejected: %s", reason)
        reasons.append(reason)
    raise VerificationError("no SCT verified against a trusted CT log: " + "; ".join(reasons), step=STEP)
