"""Kit attestations: shaped like cosign's (legacy ``.att`` layers and DSSE bundles) and internally consistent."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
import rfc3161_client
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fixtures_path import shared_fixture
from tests.sigstore_kit import (
    SigstoreKit,
    attest_image_bundle,
    attest_image_legacy,
    attestation_statement,
    default_kit,
)
from tests.unit.sigstore_kit.checks import sha256, shape

SIGNING_TIME = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
IMAGE_DIGEST = "sha256:" + "cd" * 32
REAL_ATTESTATION = ("cosign", "oci-attestation-new-bundle-format", "oci-attestation.sigstore.json")


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return default_kit()


def _b64(value: Any) -> bytes:
    return base64.b64decode(value, validate=True)


def _pae(payload_type: str, payload: bytes) -> bytes:
    # Written from the DSSE spec rather than imported, so the kit is checked against the spec.
    return b" ".join([b"DSSEv1", str(len(payload_type)).encode(), payload_type.encode(),
                      str(len(payload)).encode(), payload])


def _rekor_bundle(annotations: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    rekor_bundle: dict[str, Any] = json.loads(annotations["dev.sigstore.cosign/bundle"])
    body: dict[str, Any] = json.loads(_b64(rekor_bundle["Payload"]["body"]))
    return rekor_bundle, body


def _verify_set(kit: SigstoreKit, rekor_bundle: dict[str, Any]) -> None:
    payload = rfc8785.dumps({key: rekor_bundle["Payload"][key]
                             for key in ("body", "integratedTime", "logID", "logIndex")})
    kit.rekor_v1.key.public_key().verify(_b64(rekor_bundle["SignedEntryTimestamp"]), payload,
                                         ec.ECDSA(hashes.SHA256()))


def test_legacy_attestation_layer_is_what_cosign_attest_pushes(kit: SigstoreKit) -> None:
    att = attest_image_legacy(kit, IMAGE_DIGEST, predicate={"buildType": "x"}, repository="registry.example/app",
                              tsa=True, signing_time=SIGNING_TIME)
    assert att.media_type == "application/vnd.dsse.envelope.v1+json"
    envelope = json.loads(att.envelope)
    assert list(envelope) == ["payloadType", "payload", "signatures"]
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    assert list(envelope["signatures"][0]) == ["keyid", "sig"] and envelope["signatures"][0]["keyid"] == ""
    statement = json.loads(_b64(envelope["payload"]))
    assert list(statement) == ["_type", "predicateType", "subject", "predicate"]
    assert statement == {"_type": "https://in-toto.io/Statement/v0.1",
                         "predicateType": "https://slsa.dev/provenance/v1",
                         "subject": [{"name": "registry.example/app", "digest": {"sha256": "cd" * 32}}],
                         "predicate": {"buildType": "x"}}

    annotations = att.annotations
    assert set(annotations) == {
        "dev.cosignproject.cosign/signature", "predicateType", "dev.sigstore.cosign/certificate",
        "dev.sigstore.cosign/chain", "dev.sigstore.cosign/bundle", "dev.sigstore.cosign/rfc3161timestamp"}
    assert annotations["dev.cosignproject.cosign/signature"] == ""
    assert annotations["predicateType"] == "https://slsa.dev/provenance/v1"
    leaf = x509.load_pem_x509_certificate(annotations["dev.sigstore.cosign/certificate"].encode())
    leaf_key = leaf.public_key()
    assert isinstance(leaf_key, ec.EllipticCurvePublicKey)
    leaf_key.verify(_b64(envelope["signatures"][0]["sig"]),
                    _pae(envelope["payloadType"], _b64(envelope["payload"])), ec.ECDSA(hashes.SHA256()))

    # cosign < v3 timestamps the envelope bytes of an attestation (there is no signature annotation).
    timestamp = _b64(json.loads(annotations["dev.sigstore.cosign/rfc3161timestamp"])["SignedRFC3161Timestamp"])
    verifier = rfc3161_client.VerifierBuilder().add_root_certificate(kit.tsa.root).build()
    assert verifier.verify_message(rfc3161_client.decode_timestamp_response(timestamp), att.envelope)


def test_legacy_attestation_is_logged_as_intoto_001_with_a_set(kit: SigstoreKit) -> None:
    att = attest_image_legacy(kit, IMAGE_DIGEST, signing_time=SIGNING_TIME)
    rekor_bundle, body = _rekor_bundle(att.annotations)
    assert rekor_bundle["Payload"]["integratedTime"] == int(SIGNING_TIME.timestamp())
    _verify_set(kit, rekor_bundle)
    # rekor pkg/types/intoto/v0.0.1 Canonicalize: the envelope is dropped, its hash and the payload's kept.
    assert body == {
        "apiVersion": "0.0.1", "kind": "intoto",
        "spec": {
            "content": {"hash": {"algorithm": "sha256", "value": sha256(att.envelope).hex()},
                        "payloadHash": {"algorithm": "sha256", "value": sha256(att.statement).hex()}},
            "publicKey": base64.b64encode(att.annotations["dev.sigstore.cosign/certificate"].encode()).decode(),
        },
    }


def test_legacy_attestation_intoto_002_and_dsse_bodies(kit: SigstoreKit) -> None:
    att = attest_image_legacy(kit, IMAGE_DIGEST, log_entry="intoto-0.0.2")
    _, body = _rekor_bundle(att.annotations)
    content = body["spec"]["content"]
    assert (body["kind"], body["apiVersion"]) == ("intoto", "0.0.2")
    # rekor pkg/types/intoto/v0.0.2: no payload in the canonical body; sig is base64 of the base64 text.
    assert set(content["envelope"]) == {"payloadType", "signatures"}
    assert _b64(_b64(content["envelope"]["signatures"][0]["sig"])) == att.signature
    assert content["hash"]["value"] == sha256(att.envelope).hex()
    assert content["payloadHash"]["value"] == sha256(att.statement).hex()

    att = attest_image_legacy(kit, IMAGE_DIGEST, log_entry="dsse")
    _, body = _rekor_bundle(att.annotations)
    assert (body["kind"], body["spec"]["envelopeHash"]["value"]) == ("dsse", sha256(att.envelope).hex())
    assert _b64(body["spec"]["signatures"][0]["signature"]) == att.signature


def test_keyed_and_unlogged_legacy_attestations(kit: SigstoreKit) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    att = attest_image_legacy(kit, IMAGE_DIGEST, key=key, log_entry=None, predicate_annotation=False)
    assert set(att.annotations) == {"dev.cosignproject.cosign/signature"}
    key.public_key().verify(att.signature, _pae("application/vnd.in-toto+json", att.statement),
                            ec.ECDSA(hashes.SHA256()))


def test_tampered_variants_keep_the_original_signature(kit: SigstoreKit) -> None:
    att = attest_image_legacy(kit, IMAGE_DIGEST)
    forged = att.with_statement(attestation_statement("sha256:" + "ef" * 32))
    assert json.loads(forged.envelope)["signatures"][0]["sig"] == json.loads(att.envelope)["signatures"][0]["sig"]
    assert forged.envelope != att.envelope
    stripped = att.with_annotations({"predicateType": None, "dev.sigstore.cosign/chain": ""})
    assert "predicateType" not in stripped.annotations
    assert stripped.annotations["dev.sigstore.cosign/chain"] == ""


def test_statement_versions_and_digests() -> None:
    v1 = json.loads(attestation_statement(IMAGE_DIGEST, "https://spdx.dev/Document", version="v1"))
    assert list(v1) == ["_type", "subject", "predicateType", "predicate"]
    assert v1["_type"] == "https://in-toto.io/Statement/v1" and v1["subject"] == [{"digest": {"sha256": "cd" * 32}}]
    sha512 = json.loads(attestation_statement("sha512:" + "01" * 64, repository="r"))
    assert sha512["subject"] == [{"name": "r", "digest": {"sha512": "01" * 64}}]


def test_old_fulcio_leaf_has_only_the_first_extensions(kit: SigstoreKit) -> None:
    leaf = kit.issue_leaf("https://github.com/o/r/.github/workflows/w.yml@refs/heads/main",
                          "https://token.actions.githubusercontent.com", issuer_oids=(1,),
                          claims={5: "o/r"}).certificate
    oids = {e.oid.dotted_string for e in leaf.extensions}
    assert {"1.3.6.1.4.1.57264.1.1", "1.3.6.1.4.1.57264.1.5"} <= oids
    assert "1.3.6.1.4.1.57264.1.8" not in oids


@pytest.mark.parametrize("rekor", ["v1", "v2"])
def test_bundle_attestation(kit: SigstoreKit, rekor: str) -> None:
    signed = attest_image_bundle(kit, IMAGE_DIGEST, predicate_type="https://cyclonedx.org/bom", rekor=rekor)
    statement = json.loads(_b64(signed.bundle["dsseEnvelope"]["payload"]))
    assert statement["predicateType"] == "https://cyclonedx.org/bom"
    assert statement["subject"] == [{"digest": {"sha256": "cd" * 32}}]
    [entry] = signed.bundle["verificationMaterial"]["tlogEntries"]
    assert entry["kindVersion"] == ({"kind": "dsse", "version": "0.0.1"} if rekor == "v1"
                                    else {"kind": "hashedrekord", "version": "0.0.2"})


def test_rekor_v2_dsse_body(kit: SigstoreKit) -> None:
    signed = attest_image_bundle(kit, IMAGE_DIGEST, rekor="v2", v2_dsse_entry="dsse")
    [entry] = signed.bundle["verificationMaterial"]["tlogEntries"]
    body = json.loads(_b64(entry["canonicalizedBody"]))
    inner = body["spec"]["dsseV002"]
    payload = _b64(signed.bundle["dsseEnvelope"]["payload"])
    assert inner["payloadHash"] == {"algorithm": "SHA2_256", "digest": base64.b64encode(sha256(payload)).decode()}
    [signature] = inner["signatures"]
    assert signature["content"] == signed.bundle["dsseEnvelope"]["signatures"][0]["sig"]
    assert signature["verifier"]["keyDetails"] == "PKIX_ECDSA_P256_SHA_256"
    assert signed.signing_certificate is not None
    assert _b64(signature["verifier"]["x509Certificate"]["rawBytes"]) == signed.signing_certificate.der


@pytest.mark.fixtures
def test_kit_attestations_match_the_real_cosign_one(kit: SigstoreKit) -> None:
    real = json.loads(shared_fixture(*REAL_ATTESTATION).read_bytes())
    made = attest_image_bundle(kit, IMAGE_DIGEST, version="v0.1", repository="registry.example/app").bundle
    real_statement, made_statement = (json.loads(_b64(b["dsseEnvelope"]["payload"])) for b in (real, made))
    assert list(made_statement) == list(real_statement)
    assert shape(made_statement["subject"]) == shape(real_statement["subject"])
    real_entry, made_entry = (b["verificationMaterial"]["tlogEntries"][0] for b in (real, made))
    assert made_entry["kindVersion"] == real_entry["kindVersion"]
    real_body, made_body = (json.loads(_b64(e["canonicalizedBody"])) for e in (real_entry, made_entry))
    assert shape(made_body) == shape(real_body)
    legacy = attest_image_legacy(kit, IMAGE_DIGEST)
    assert list(json.loads(legacy.statement)) == list(real_statement)
