"""Embedded SCTs: a private CT log signing real precertificate SCTs, and production leaves."""

from __future__ import annotations

import base64
import hashlib
import struct
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.unit.verify.test_certs import (
    T0,
    Pki,
    bundle_certificates,
    case_root,
    connaisseur_certificate,
    integrated_time,
    leaf_builder,
    load_bundle,
)
from webhook.errors import VerificationError
from webhook.verify.certs import CertificateVerifier
from webhook.verify.sct import verify_sct

SCT_LIST_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")


def _spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _octet_string(value: bytes) -> bytes:
    size = len(value)
    if size < 0x80:
        return bytes([0x04, size]) + value
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x04, 0x80 | len(length)]) + length + value


def ctlog_entry(
    key: ec.EllipticCurvePrivateKey, *, start: str = "2021-01-01T00:00:00Z", end: str | None = None
) -> dict[str, Any]:
    """A trusted_root.json ctlogs[] element for ``key``."""
    valid_for = {"start": start, **({"end": end} if end else {})}
    return {
        "baseUrl": "https://ct.signet.test",
        "hashAlgorithm": "SHA2_256",
        "publicKey": {
            "rawBytes": base64.b64encode(_spki(key)).decode(),
            "keyDetails": "PKIX_ECDSA_P256_SHA_256",
            "validFor": valid_for,
        },
        "logId": {"keyId": base64.b64encode(hashlib.sha256(_spki(key)).digest()).decode()},
    }


def leaf_with_scts(
    pki: Pki,
    logs: list[tuple[ec.EllipticCurvePrivateKey, datetime]],
    *,
    extensions: bytes = b"",
    encoded_extensions: bytes | None = None,
) -> x509.Certificate:
    """Issue a leaf whose embedded SCTs are really signed over its precertificate TBS.

    The SCT list is added as the last extension, so the TBS without it (what RFC 6962 logs sign)
    is exactly the TBS of the same certificate issued without it.
    """
    builder = leaf_builder(pki.inter, pki.inter_key, ec.generate_private_key(ec.SECP256R1()))
    tbs = builder.sign(pki.inter_key, hashes.SHA384()).tbs_certificate_bytes
    issuer_key_hash = hashlib.sha256(
        pki.inter.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).digest()
    scts = b""
    for key, when in logs:
        millis = int(when.timestamp() * 1000)
        signed = (
            struct.pack(">BBQH", 0, 0, millis, 1)
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + struct.pack(">H", len(extensions))
            + extensions
        )
        signature = key.sign(signed, ec.ECDSA(hashes.SHA256()))
        shown = extensions if encoded_extensions is None else encoded_extensions
        sct = (
            b"\x00"
            + hashlib.sha256(_spki(key)).digest()
            + struct.pack(">QH", millis, len(shown))
            + shown
            + b"\x04\x03"
            + struct.pack(">H", len(signature))
            + signature
        )
        scts += struct.pack(">H", len(sct)) + sct
    value = _octet_string(struct.pack(">H", len(scts)) + scts)
    leaf = builder.add_extension(x509.UnrecognizedExtension(SCT_LIST_OID, value), critical=False).sign(
        pki.inter_key, hashes.SHA384()
    )
    assert leaf.tbs_precertificate_bytes == tbs
    return leaf


def _fails(leaf: x509.Certificate, issuer: x509.Certificate, root: Any) -> str:
    with pytest.raises(VerificationError) as exc:
        verify_sct(leaf, issuer, root)
    assert exc.value.step == "SCT"
    return exc.value.reason


# ---- generated CT log ---------------------------------------------------------------------------


def test_sct_from_trusted_log_verifies() -> None:
    pki, ct = Pki(), ec.generate_private_key(ec.SECP256R1())
    leaf = leaf_with_scts(pki, [(ct, T0)])
    verify_sct(leaf, pki.inter, pki.trusted_root(ctlogs=[ctlog_entry(ct)]))


def test_sct_extension_bytes_are_signed() -> None:
    pki, ct = Pki(), ec.generate_private_key(ec.SECP256R1())
    trusted = pki.trusted_root(ctlogs=[ctlog_entry(ct)])
    verify_sct(
        leaf_with_scts(pki, [(ct, T0)], extensions=b"\x00\x00\x05\x00\x00\x00\x00\x2a"), pki.inter, trusted
    )
    tampered = leaf_with_scts(pki, [(ct, T0)], extensions=b"\x01", encoded_extensions=b"\x02")
    assert "does not verify" in _fails(tampered, pki.inter, trusted)


def test_issuer_key_hash_binds_the_issuing_certificate() -> None:
    pki, ct = Pki(), ec.generate_private_key(ec.SECP256R1())
    leaf = leaf_with_scts(pki, [(ct, T0)])
    assert "does not verify" in _fails(leaf, pki.root, pki.trusted_root(ctlogs=[ctlog_entry(ct)]))


def test_sct_from_unknown_log_is_rejected() -> None:
    pki, ct, other = Pki(), ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    leaf = leaf_with_scts(pki, [(ct, T0)])
    assert "not a CT log of the trust root" in _fails(
        leaf, pki.inter, pki.trusted_root(ctlogs=[ctlog_entry(other)])
    )


def test_sct_time_must_be_inside_ct_key_validity() -> None:
    pki, ct = Pki(), ec.generate_private_key(ec.SECP256R1())
    leaf = leaf_with_scts(pki, [(ct, T0)])
    expired = pki.trusted_root(ctlogs=[ctlog_entry(ct, end="2024-05-01T11:59:59Z")])
    assert "was not valid at the SCT time" in _fails(leaf, pki.inter, expired)
    # The end of the window is inclusive.
    verify_sct(leaf, pki.inter, pki.trusted_root(ctlogs=[ctlog_entry(ct, end="2024-05-01T12:00:00Z")]))


def test_one_good_sct_among_several_is_enough() -> None:
    pki, ct, rogue = Pki(), ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    leaf = leaf_with_scts(pki, [(rogue, T0), (ct, T0 + timedelta(seconds=1))])
    verify_sct(leaf, pki.inter, pki.trusted_root(ctlogs=[ctlog_entry(ct)]))


def test_leaf_without_sct_is_rejected() -> None:
    pki, ct = Pki(), ec.generate_private_key(ec.SECP256R1())
    assert "no embedded SCT" in _fails(pki.leaf(), pki.inter, pki.trusted_root(ctlogs=[ctlog_entry(ct)]))


# ---- real material ------------------------------------------------------------------------------


def _real(case: str) -> tuple[x509.Certificate, x509.Certificate, Any]:
    bundle = load_bundle(case)
    trusted = case_root(case)
    leaf = bundle_certificates(bundle)[0]
    entry = bundle["verificationMaterial"]["tlogEntries"][0]
    at = integrated_time(bundle) if entry.get("integratedTime") else leaf.not_valid_before_utc
    chain = CertificateVerifier(trusted).verify(leaf, at)
    return leaf, chain[1], trusted


@pytest.mark.fixtures
@pytest.mark.parametrize(
    "case",
    [
        "happy-path-v0.1",
        "happy-path-v0.3",
        "happy-path-intoto-in-dsse-v3",
        "rekor2-happy-path",
        "intoto-with-custom-trust-root",
    ],
)
def test_conformance_leaf_sct_verifies(case: str) -> None:
    leaf, issuer, trusted = _real(case)
    verify_sct(leaf, issuer, trusted)


@pytest.mark.fixtures
def test_sct_with_extensions_verifies() -> None:
    leaf, issuer, trusted = _real("bundle-with-sct-with-extensions")
    scts = leaf.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
    assert any(sct.extension_bytes for sct in scts)
    verify_sct(leaf, issuer, trusted)


@pytest.mark.fixtures
def test_invalid_ct_key_is_rejected() -> None:
    leaf, issuer, trusted = _real("invalid-ct-key_fail")
    assert "not a CT log of the trust root" in _fails(leaf, issuer, trusted)


@pytest.mark.fixtures
def test_connaisseur_certificate_sct_verifies() -> None:
    leaf, when = connaisseur_certificate()
    trusted = case_root("happy-path-v0.1")
    verify_sct(leaf, CertificateVerifier(trusted).verify(leaf, when)[1], trusted)


def test_millisecond_sct_timestamps_are_rebuilt_exactly() -> None:
    pki, ct = Pki(), ec.generate_private_key(ec.SECP256R1())
    leaf = leaf_with_scts(pki, [(ct, T0 + timedelta(milliseconds=987))])
    verify_sct(leaf, pki.inter, pki.trusted_root(ctlogs=[ctlog_entry(ct)]))
