"""RFC 3161 signed timestamps from a timestamp authority (ARCHITECTURE.md §2 step f; SIGSTORE.md §6.5).

A TSA timestamp proves that the signature existed at ``genTime``; Rekor v2 entries have no
integrated time, so for them it is the only trusted time. The CMS parsing, the signature over the
signed attributes and the path validation of the TSA certificate at ``genTime`` (not now: an
expired TSA chain still vouches for what it signed while it was valid) are left to
``rfc3161-client``. Around it we check what it does not know: which TSAs the trust root trusts,
each TSA's ``validFor`` window (inclusive), and the shape of the TSA chain.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from rfc3161_client import (
    TimeStampResponse,
    VerifierBuilder,
    decode_timestamp_response,
)
from rfc3161_client import (
    VerificationError as TimestampLibraryError,
)

from webhook.errors import VerificationError
from webhook.verify.trustroot import CertificateAuthority, TrustedRoot

_logger = logging.getLogger(__name__)

STEP = "timestamp"

# SHA-1 imprints are refused: a collision would let one timestamp vouch for two signatures.
_IMPRINT_HASHES = {
    x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1"): hashlib.sha256,
    x509.ObjectIdentifier("2.16.840.1.101.3.4.2.2"): hashlib.sha384,
    x509.ObjectIdentifier("2.16.840.1.101.3.4.2.3"): hashlib.sha512,
}


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _check_intermediates(chain: tuple[x509.Certificate, ...]) -> None:
    """Certificates between the TSA leaf and the root may not restrict usage to something else."""
    for cert in chain:
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            continue
        if ExtendedKeyUsageOID.TIME_STAMPING not in eku:
            raise ValueError(f"TSA chain certificate {cert.subject.rfc4514_string()} excludes timeStamping")


def _embedded_signer(response: TimeStampResponse) -> x509.Certificate | None:
    """The embedded certificate named by the SignerInfo's issuer and serial (covered by the signature)."""
    signer_infos = list(response.signed_data.signer_infos)
    if len(signer_infos) != 1:
        raise ValueError(f"expected exactly one SignerInfo, found {len(signer_infos)}")
    signer = signer_infos[0]
    for der in response.signed_data.certificates:
        cert = x509.load_der_x509_certificate(der)
        if cert.issuer == signer.issuer and cert.serial_number == signer.serial_number:
            return cert
    return None


def _check_with(response: TimeStampResponse, signature: bytes, tsa: CertificateAuthority) -> None:
    """Verify ``response`` against one TSA of the trust root; raise ValueError or library errors."""
    chain = tsa.chain
    # Trust roots usually list the TSA leaf first; a chain that starts with a CA certificate means
    # the leaf must come embedded in the response and chain up to it.
    leaf = None if _is_ca(chain[0]) else chain[0]
    intermediates = chain[1:-1] if leaf is not None else chain[:-1]
    _check_intermediates(intermediates)
    if leaf is None:
        leaf = _embedded_signer(response)
        if leaf is None:
            raise ValueError("the response embeds no signer certificate and the trust root lists none")
    if _is_ca(leaf):
        raise ValueError("the TSA signing certificate is a CA certificate")
    # The library checks: PKIStatus granted, the CMS signature, the TSA chain at genTime, an
    # embedded signer equal to ``tsa_certificate``, EKU timeStamping critical, and the imprint.
    verifier = VerifierBuilder(
        tsa_certificate=leaf if leaf is chain[0] else None,
        intermediates=list(intermediates),
        roots=[chain[-1]],
    ).build()
    verifier.verify_message(response, signature)
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    if not eku.critical or list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise ValueError("the TSA certificate's ExtendedKeyUsage must be exactly timeStamping, critical")


def _check_imprint(response: TimeStampResponse, signature: bytes) -> None:
    """Say plainly when the timestamp covers other bytes, before trying any TSA."""
    imprint = response.tst_info.message_imprint
    hasher = _IMPRINT_HASHES.get(imprint.hash_algorithm)
    if hasher is None:
        raise VerificationError(
            f"timestamp message imprint uses unsupported hash {imprint.hash_algorithm.dotted_string}",
            step=STEP,
        )
    if imprint.message != hasher(signature).digest():
        raise VerificationError(
            "timestamp does not cover this signature (message imprint mismatch)", step=STEP
        )


def verify_timestamp(tsr_der: bytes, signature: bytes, trusted_root: TrustedRoot) -> datetime:
    """Verify an RFC 3161 TimeStampResp over ``signature`` against the trust root's TSAs.

    Returns the verified ``genTime`` as an aware UTC datetime. Raises VerificationError (step
    "timestamp") when no TSA of the trust root vouches for it.
    """
    try:
        response = decode_timestamp_response(tsr_der)
        gen_time = response.tst_info.gen_time
        _check_imprint(response, signature)
    except ValueError as exc:
        raise VerificationError(f"timestamp response is malformed: {exc}", step=STEP) from exc
    gen_time = gen_time.replace(tzinfo=UTC) if gen_time.tzinfo is None else gen_time.astimezone(UTC)
    if not trusted_root.timestamp_authorities:
        raise VerificationError("the trust root has no timestamp authorities", step=STEP)
    reasons: list[str] = []
    for index, tsa in enumerate(trusted_root.timestamp_authorities):
        label = tsa.uri or tsa.subject or f"timestampAuthorities[{index}]"
        try:
            _check_with(response, signature, tsa)
        except (ValueError, TimestampLibraryError, x509.ExtensionNotFound) as exc:
            _logger.debug("timestamp not verified by %s: %s", label, exc)
            reasons.append(f"{label}: {exc}")
            continue
        if not tsa.valid_for.contains(gen_time):
            reasons.append(f"{label}: time {gen_time.isoformat()} is outside the TSA's validity "
                           f"in the trust root ({tsa.valid_for.describe()})")
            continue
        return gen_time
    raise VerificationError(
        "no timestamp authority of the trust root verified the timestamp: " + "; ".join(reasons), step=STEP
    )
