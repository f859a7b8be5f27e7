"""Trust roots an authority derives from another one: its own CA (``keyless.caCert``), another TrustRoot's TSAs.

Pure functions over :class:`~webhook.verify.trustroot.TrustedRoot`: the verifier is given the result
and needs to know nothing about where it came from.

- ``keyless.caCert`` (policy-controller's ``ca-cert``, bring-your-own PKI): signing certificates
  must be issued by one of the given CA certificates instead of the trust root's Fulcio CAs. As
  in policy-controller (a Go ``x509.CertPool`` of the PEM data), every certificate given is a trust
  anchor of its own, so an intermediate that issues the signing certificates must be listed itself.
  The transparency logs and CT logs stay those of the base trust root.
- ``rfc3161timestamp.trustRootRef``: RFC 3161 timestamps must come from that TrustRoot's TSAs.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from webhook.verify.trustroot import CertificateAuthority, TrustedRoot, ValidityWindow

_BEGIN = "-----BEGIN CERTIFICATE-----"
MAX_CA_CERTIFICATES = 32


def parse_ca_certificates(pem: str) -> tuple[x509.Certificate, ...]:
    """Every certificate of a PEM bundle; ValueError when it holds none or one does not parse.

    Lines are stripped first: Go's PEM decoder ignores indentation, and YAML block scalars often add it.
    """
    text = "\n".join(line.strip() for line in pem.splitlines()) + "\n"
    if _BEGIN not in text:
        raise ValueError("no PEM certificate (-----BEGIN CERTIFICATE-----) found")
    try:
        certificates = tuple(x509.load_pem_x509_certificates(text.encode()))
    except ValueError as exc:
        raise ValueError(f"not a valid PEM certificate: {exc}") from None
    if len(certificates) > MAX_CA_CERTIFICATES:
        raise ValueError(f"more than {MAX_CA_CERTIFICATES} certificates")
    return certificates


def _derived_fingerprint(base: TrustedRoot, what: str, certificates: tuple[x509.Certificate, ...]) -> str:
    digest = hashlib.sha256(f"{base.fingerprint}+{what}:".encode())
    for certificate in certificates:
        digest.update(certificate.public_bytes(Encoding.DER))
    return digest.hexdigest()


def with_certificate_authorities(base: TrustedRoot, pem: str) -> TrustedRoot:
    """``base`` whose Fulcio CAs are replaced by the CA certificates of ``pem`` (each one a trust anchor).

    Each anchor is valid over its own certificate's validity; the result has a fingerprint of its
    own (caches keyed by trust root never mix it with ``base``).
    """
    certificates = parse_ca_certificates(pem)
    authorities = tuple(
        CertificateAuthority(
            chain=(certificate,),
            valid_for=ValidityWindow(certificate.not_valid_before_utc.astimezone(UTC),
                                     certificate.not_valid_after_utc.astimezone(UTC)),
            subject=certificate.subject.rfc4514_string(),
        )
        for certificate in certificates
    )
    return replace(base, certificate_authorities=authorities,
                   fingerprint=_derived_fingerprint(base, "ca-cert", certificates))


def with_timestamp_authorities(base: TrustedRoot, tsa_root: TrustedRoot) -> TrustedRoot:
    """``base`` whose timestamp authorities are those of ``tsa_root`` (``rfc3161timestamp.trustRootRef``)."""
    certificates = tuple(c for tsa in tsa_root.timestamp_authorities for c in tsa.chain)
    return replace(base, timestamp_authorities=tsa_root.timestamp_authorities,
                   fingerprint=_derived_fingerprint(base, f"tsa:{tsa_root.fingerprint}", certificates))

