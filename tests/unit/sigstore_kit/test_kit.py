"""The kit's certificates, logs, timestamps and trust root have the exact formats verifiers expect."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
import rfc3161_client
import rfc8785
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import VerificationError

from tests.sigstore_kit import RekorV1Log, RekorV2Log, SigstoreKit, Witness, default_kit
from tests.sigstore_kit.merkle import MerkleTree, leaf_hash
from tests.unit.sigstore_kit.checks import (
    parse_checkpoint,
    root_from_inclusion_proof,
    sha256,
    verify_chain,
    verify_embedded_sct,
)
from webhook.verify.trustroot import TrustedRoot

SIGNING_TIME = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return default_kit()


def _ext(cert: x509.Certificate, dotted: str) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(dotted))


# --- Fulcio CA ------------------------------------------------------------------------------------


def test_leaf_follows_the_fulcio_profile(kit: SigstoreKit) -> None:
    leaf = kit.issue_leaf("https://github.com/o/r/.github/workflows/w.yml@refs/heads/main", GITHUB_ISSUER,
                          signing_time=SIGNING_TIME, claims={2: "push", 9: "https://github.com/o/r"})
    cert = leaf.certificate
    assert cert.subject == x509.Name([])
    assert cert.not_valid_before_utc == SIGNING_TIME
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(minutes=10)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.signature_hash_algorithm is not None and cert.signature_hash_algorithm.name == "sha384"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert list(san.value) == [x509.UniformResourceIdentifier(
        "https://github.com/o/r/.github/workflows/w.yml@refs/heads/main")]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CODE_SIGNING]
    # .1.1–.1.6 are raw UTF-8; .1.8 and later are DER UTF8String.
    ext_1 = _ext(cert, "1.3.6.1.4.1.57264.1.1").value
    ext_2 = _ext(cert, "1.3.6.1.4.1.57264.1.2").value
    ext_8 = _ext(cert, "1.3.6.1.4.1.57264.1.8").value
    ext_9 = _ext(cert, "1.3.6.1.4.1.57264.1.9").value
    assert isinstance(ext_1, x509.UnrecognizedExtension) and ext_1.value == GITHUB_ISSUER.encode()
    assert isinstance(ext_2, x509.UnrecognizedExtension) and ext_2.value == b"push"
    assert isinstance(ext_8, x509.UnrecognizedExtension)
    assert ext_8.value == b"\x0c" + bytes([len(GITHUB_ISSUER)]) + GITHUB_ISSUER.encode()
    assert isinstance(ext_9, x509.UnrecognizedExtension) and ext_9.value == b"\x0c\x16https://github.com/o/r"
    chain = verify_chain(cert, [kit.ca.intermediate], kit.ca.root, SIGNING_TIME + timedelta(minutes=1))
    assert chain == [cert, kit.ca.intermediate, kit.ca.root]


@pytest.mark.parametrize(("identity", "expected"), [
    ("alice@example.com", x509.RFC822Name("alice@example.com")),
    ("foo!oidc.local",
     x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7"), b"\x0c\x0efoo!oidc.local")),
])
def test_leaf_san_kinds(kit: SigstoreKit, identity: str, expected: x509.GeneralName) -> None:
    cert = kit.issue_leaf(identity, signing_time=SIGNING_TIME).certificate
    assert list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value) == [expected]
    verify_chain(cert, [kit.ca.intermediate], kit.ca.root, SIGNING_TIME)


def test_intermediate_is_a_code_signing_ca(kit: SigstoreKit) -> None:
    intermediate = kit.ca.intermediate
    bc = intermediate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    assert ExtendedKeyUsageOID.CODE_SIGNING in intermediate.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value
    assert isinstance(kit.ca.root.public_key(), ec.EllipticCurvePublicKey)
    assert kit.ca.root.public_key().curve.name == "secp384r1"  # type: ignore[union-attr]


def test_embedded_sct_verifies_over_the_precertificate(kit: SigstoreKit) -> None:
    leaf = kit.issue_leaf(signing_time=SIGNING_TIME)
    verify_embedded_sct(leaf.certificate, kit.ca.intermediate, kit.ctlog.key.public_key())
    sct = leaf.certificate.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps)
    assert sct.value[0].timestamp.replace(tzinfo=UTC) == SIGNING_TIME


def test_sct_negative_options(kit: SigstoreKit) -> None:
    no_sct = kit.issue_leaf(signing_time=SIGNING_TIME, sct="none").certificate
    with pytest.raises(x509.ExtensionNotFound):
        no_sct.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps)
    forged = kit.issue_leaf(signing_time=SIGNING_TIME, sct="wrong_key").certificate
    with pytest.raises(InvalidSignature):
        verify_embedded_sct(forged, kit.ca.intermediate, kit.ctlog.key.public_key())
    unknown = kit.issue_leaf(signing_time=SIGNING_TIME, sct="unknown_log").certificate
    scts = unknown.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
    assert scts[0].log_id != kit.ctlog.log_id


def test_leaf_negative_options(kit: SigstoreKit) -> None:
    no_eku = kit.issue_leaf(signing_time=SIGNING_TIME, extended_key_usage=None).certificate
    with pytest.raises(x509.ExtensionNotFound):
        no_eku.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    wrong_ku = x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=True,
                             data_encipherment=False, key_agreement=False, key_cert_sign=False,
                             crl_sign=False, encipher_only=False, decipher_only=False)
    cert = kit.issue_leaf(signing_time=SIGNING_TIME, key_usage=wrong_ku).certificate
    assert not cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    expired = kit.issue_leaf(signing_time=SIGNING_TIME).certificate
    with pytest.raises(VerificationError):
        verify_chain(expired, [kit.ca.intermediate], kit.ca.root, SIGNING_TIME + timedelta(minutes=11))
    from_root = kit.issue_leaf(signing_time=SIGNING_TIME, issued_by_root=True)
    assert from_root.certificate.issuer == kit.ca.root.subject
    verify_embedded_sct(from_root.certificate, kit.ca.root, kit.ctlog.key.public_key())


# --- Merkle logs ----------------------------------------------------------------------------------


def test_inclusion_proofs_recompute_the_root_for_every_size_and_index() -> None:
    tree = MerkleTree()
    for i in range(33):
        tree.append(leaf_hash(b"entry %d" % i))
        size = len(tree)
        for index in range(size):
            proof = tree.inclusion_path(index, size)
            assert root_from_inclusion_proof(index, size, tree.leaf(index), proof) == tree.root(size)
    # Proofs against an older tree head still work after the log grew.
    assert root_from_inclusion_proof(3, 7, tree.leaf(3), tree.inclusion_path(3, 7)) == tree.root(7)


def test_rekor_v1_checkpoint_and_proof(kit: SigstoreKit) -> None:
    log = RekorV1Log(tree_id=1193050959916656506, index_offset=500)
    entries = [log.add(b'{"n":%d}' % i, 1_700_000_000 + i) for i in range(5)]
    proof = log.inclusion_proof(entries[2])
    assert (proof.log_index, proof.tree_size) == (2, 5)
    assert entries[2].log_index == 502
    assert root_from_inclusion_proof(2, 5, leaf_hash(entries[2].body), list(proof.hashes)) == proof.root_hash

    signed, lines, signatures = parse_checkpoint(proof.checkpoint)
    assert lines == ["rekor.example - 1193050959916656506", "5", base64.b64encode(proof.root_hash).decode()]
    [(name, blob)] = signatures
    assert name == "rekor.example"
    assert blob[:4] == log.log_id[:4] == sha256(log.key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))[:4]
    log.key.public_key().verify(blob[4:], signed.encode(), ec.ECDSA(hashes.SHA256()))


def test_rekor_v1_signed_entry_timestamp_is_over_jcs_with_the_global_index() -> None:
    log = RekorV1Log(index_offset=1000)
    log.add(b"first", 1_700_000_000)
    entry = log.add(b'{"kind":"hashedrekord"}', 1_700_000_123)
    payload = rfc8785.dumps({"body": "eyJraW5kIjoiaGFzaGVkcmVrb3JkIn0=", "integratedTime": 1_700_000_123,
                             "logID": log.log_id.hex(), "logIndex": 1001})
    log.key.public_key().verify(log.signed_entry_timestamp(entry), payload, ec.ECDSA(hashes.SHA256()))


def test_rekor_v1_api_entry_shape() -> None:
    log = RekorV1Log(tree_id=42)
    entry = log.add(b"body", 1_700_000_000)
    [(uuid, value)] = log.api_entry(entry).items()
    assert uuid == "000000000000002a" + leaf_hash(b"body").hex()
    assert isinstance(value, dict)
    assert value["body"] == "Ym9keQ==" and value["integratedTime"] == 1_700_000_000
    assert value["logID"] == log.log_id.hex() and value["logIndex"] == 0
    proof = value["verification"]["inclusionProof"]
    assert set(proof) == {"checkpoint", "hashes", "logIndex", "rootHash", "treeSize"}
    assert proof["rootHash"] == leaf_hash(b"body").hex() and proof["treeSize"] == 1
    assert isinstance(value["verification"]["signedEntryTimestamp"], str)


def test_rekor_v2_checkpoint_uses_c2sp_key_id_and_witness_cosignatures() -> None:
    witness = Witness("witness.example", timestamp=1_760_000_000)
    log = RekorV2Log("log2025-test.rekor.example", witnesses=[witness])
    raw = log.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert log.log_id == sha256(b"log2025-test.rekor.example\n\x01" + raw)
    entry = log.add(b"v2 body")
    assert entry.integrated_time is None and entry.log_index == entry.tree_index == 0
    signed, lines, signatures = parse_checkpoint(log.checkpoint())
    assert lines[:2] == ["log2025-test.rekor.example", "1"]
    (name, blob), (witness_name, cosig) = signatures
    assert name == "log2025-test.rekor.example" and blob[:4] == log.log_id[:4] and len(blob) == 68
    log.key.public_key().verify(blob[4:], signed.encode())
    assert witness_name == "witness.example" and len(cosig) == 4 + 8 + 64
    assert int.from_bytes(cosig[4:12], "big") == 1_760_000_000
    witness_raw = witness.key.public_key().public_bytes(serialization.Encoding.Raw,
                                                        serialization.PublicFormat.Raw)
    assert cosig[:4] == sha256(b"witness.example\n\x04" + witness_raw)[:4]
    witness.key.public_key().verify(cosig[12:], b"cosignature/v1\ntime 1760000000\n" + signed.encode())
    assert isinstance(log.key, ed25519.Ed25519PrivateKey)


# --- TSA ------------------------------------------------------------------------------------------


def test_timestamp_verifies_with_rfc3161_client(kit: SigstoreKit) -> None:
    at = datetime(2025, 6, 1, 12, 0, 5, tzinfo=UTC)
    response = rfc3161_client.decode_timestamp_response(kit.tsa.timestamp(b"signature bytes", at=at))
    assert response.tst_info.gen_time == at
    assert response.tst_info.policy == x509.ObjectIdentifier("1.3.6.1.4.1.57264.2")
    verifier = rfc3161_client.VerifierBuilder().add_root_certificate(kit.tsa.root).build()
    assert verifier.verify_message(response, b"signature bytes")
    with pytest.raises(rfc3161_client.VerificationError):
        verifier.verify_message(response, b"other bytes")


def test_timestamp_without_embedded_certificates_needs_the_tsa_leaf(kit: SigstoreKit) -> None:
    response = rfc3161_client.decode_timestamp_response(kit.tsa.timestamp(b"x", include_certificates=False))
    assert len(response.signed_data.certificates) == 0
    verifier = (rfc3161_client.VerifierBuilder().add_root_certificate(kit.tsa.root)
                .tsa_certificate(kit.tsa.leaf).build())
    assert verifier.verify_message(response, b"x")


def test_forged_timestamp_and_critical_eku(kit: SigstoreKit) -> None:
    forged = kit.tsa.timestamp(b"x", signing_key=ec.generate_private_key(ec.SECP384R1()))
    verifier = rfc3161_client.VerifierBuilder().add_root_certificate(kit.tsa.root).build()
    with pytest.raises(rfc3161_client.VerificationError):
        verifier.verify_message(rfc3161_client.decode_timestamp_response(forged), b"x")
    eku = kit.tsa.leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]


# --- trusted root ---------------------------------------------------------------------------------


def test_trusted_root_parses_and_names_every_service(kit: SigstoreKit) -> None:
    root = TrustedRoot.from_json(kit.trusted_root_json())
    assert [log.log_id for log in root.tlogs] == [kit.rekor_v1.log_id, kit.rekor_v2.log_id]
    assert [log.key_details for log in root.tlogs] == ["PKIX_ECDSA_P256_SHA_256", "PKIX_ED25519"]
    assert root.tlogs[1].origin_host == "log2025-test.rekor.example"
    assert root.tlogs_for(kit.rekor_v2.log_id) == [root.tlogs[1]]
    assert root.ctlogs_for(kit.ctlog.log_id) == [root.ctlogs[0]]
    [ca] = root.cas_at(SIGNING_TIME)
    assert ca.chain == (kit.ca.intermediate, kit.ca.root)
    assert root.timestamp_authorities[0].chain == (kit.tsa.leaf, kit.tsa.root)


def test_separate_kits_do_not_trust_each_other() -> None:
    other = SigstoreKit.create()
    assert other.rekor_v1.log_id != default_kit().rekor_v1.log_id
    assert other.ca.root != default_kit().ca.root
