"""Independent re-implementations of the verifier-side checks (SIGSTORE.md §3–§6), used to prove the kit's
output is well-formed. Deliberately written from the spec, not from the kit's code."""

from __future__ import annotations

import base64
import hashlib
import struct
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification

EM_DASH = "\u2014"


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def spki_sha256(key: ec.EllipticCurvePublicKey) -> bytes:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return sha256(der)


def verify_chain(leaf: x509.Certificate, intermediates: list[x509.Certificate], root: x509.Certificate,
                 at: datetime) -> list[x509.Certificate]:
    """Path-validate as sigstore-python does: webpki defaults, EKU relaxed (codeSigning checked apart)."""
    ee_policy = verification.ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.ExtendedKeyUsage, verification.Criticality.NON_CRITICAL, None)
    ca_policy = verification.ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, verification.Criticality.NON_CRITICAL, None)
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store([root]))
        .time(at)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )
    return verifier.verify(leaf, intermediates).chain


def verify_embedded_sct(leaf: x509.Certificate, issuer: x509.Certificate,
                        ct_key: ec.EllipticCurvePublicKey) -> None:
    """SIGSTORE.md §4: the single embedded SCT is a v1 precert SCT over the precert TBS, by ``ct_key``."""
    scts = leaf.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
    assert len(scts) == 1
    sct = scts[0]
    assert sct.version == x509.certificate_transparency.Version.v1
    assert sct.entry_type == x509.certificate_transparency.LogEntryType.PRE_CERTIFICATE
    assert sct.log_id == spki_sha256(ct_key)
    assert isinstance(sct.signature_hash_algorithm, hashes.SHA256)
    issuer_key = issuer.public_key()
    assert isinstance(issuer_key, ec.EllipticCurvePublicKey)
    timestamp_ms = int(sct.timestamp.replace(tzinfo=UTC).timestamp() * 1000)
    tbs = leaf.tbs_precertificate_bytes
    signed = (
        struct.pack(">BBQH", 0, 0, timestamp_ms, 1)
        + spki_sha256(issuer_key)
        + len(tbs).to_bytes(3, "big") + tbs
        + struct.pack(">H", len(sct.extension_bytes)) + sct.extension_bytes
    )
    ct_key.verify(sct.signature, signed, ec.ECDSA(hashes.SHA256()))


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: list[bytes]) -> bytes:
    """sigstore-python's merkle.py algorithm (SIGSTORE.md §5.3)."""
    assert 0 <= index < size
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    assert len(proof) == inner + border
    node = leaf
    for i, sibling in enumerate(proof[:inner]):
        node = (sha256(b"\x01" + node + sibling) if (index >> i) & 1 == 0
                else sha256(b"\x01" + sibling + node))
    for sibling in proof[inner:]:
        node = sha256(b"\x01" + sibling + node)
    return node


def parse_checkpoint(note: str) -> tuple[str, list[str], list[tuple[str, bytes]]]:
    """Split a signed note into (signed text, its lines, [(signer name, decoded signature blob)])."""
    text, separator, signature_block = note.partition("\n\n")
    assert separator, "no blank line between note text and signatures"
    signed = text + "\n"
    signatures = []
    assert signature_block.endswith("\n")
    for line in signature_block.splitlines():
        dash, name, blob = line.split(" ")
        assert dash == EM_DASH
        signatures.append((name, base64.b64decode(blob, validate=True)))
    return signed, text.split("\n"), signatures


def shape(value: object) -> object:
    """The JSON structure of a value: key sets, element shapes and scalar types, without the data."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__
