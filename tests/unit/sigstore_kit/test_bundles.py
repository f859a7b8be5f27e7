"""Kit bundles and cosign image signatures: shaped like real ones, and internally consistent."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import rfc3161_client
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fixtures_path import shared_fixture
from tests.sigstore_kit import (
    COSIGN_SIGN_PREDICATE_TYPE,
    MEDIA_TYPE_V03_OLD_STYLE,
    SignedBundle,
    SigstoreKit,
    default_kit,
    pae,
)
from tests.unit.sigstore_kit.checks import parse_checkpoint, root_from_inclusion_proof, sha256, shape

SIGNING_TIME = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
ARTIFACT = b"hello, sigstore\n"
IMAGE_DIGEST = "sha256:" + "ab" * 32
CONFORMANCE = ("sigstore-conformance", "test", "assets", "bundle-verify")


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return default_kit()


def _b64(value: Any) -> bytes:
    return base64.b64decode(value, validate=True)


def _body(entry: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(_b64(entry["canonicalizedBody"]))
    return body


def _real_bundle(name: str) -> dict[str, Any]:
    path = shared_fixture(*CONFORMANCE, name, "bundle.sigstore.json")
    real: dict[str, Any] = json.loads(path.read_bytes())
    return real


def _check_proof(entry: dict[str, Any], origin_prefix: str) -> None:
    """Inclusion proof recomputes the root, and the checkpoint commits to the same size and root."""
    proof = entry["inclusionProof"]
    leaf = sha256(b"\x00" + _b64(entry["canonicalizedBody"]))
    hashes_ = [_b64(h) for h in proof["hashes"]]
    root = root_from_inclusion_proof(int(proof["logIndex"]), int(proof["treeSize"]), leaf, hashes_)
    assert root == _b64(proof["rootHash"])
    _, lines, _ = parse_checkpoint(proof["checkpoint"]["envelope"])
    assert lines[0].startswith(origin_prefix)
    assert (int(lines[1]), _b64(lines[2])) == (int(proof["treeSize"]), root)


def _check_set(kit: SigstoreKit, entry: dict[str, Any]) -> None:
    payload = rfc8785.dumps({
        "body": entry["canonicalizedBody"],
        "integratedTime": int(entry["integratedTime"]),
        "logID": _b64(entry["logId"]["keyId"]).hex(),
        "logIndex": int(entry["logIndex"]),
    })
    sig = _b64(entry["inclusionPromise"]["signedEntryTimestamp"])
    kit.rekor_v1.key.public_key().verify(sig, payload, ec.ECDSA(hashes.SHA256()))


def _leaf(bundle: dict[str, Any]) -> x509.Certificate:
    material = bundle["verificationMaterial"]
    raw = (material["certificate"]["rawBytes"] if "certificate" in material
           else material["x509CertificateChain"]["certificates"][0]["rawBytes"])
    return x509.load_der_x509_certificate(_b64(raw))


@pytest.mark.fixtures
@pytest.mark.parametrize(("fixture", "options"), [
    ("happy-path-v0.1", {"bundle_version": "0.1", "bundle_chain": "leaf_only"}),
    ("happy-path-v0.2", {"bundle_version": "0.2"}),
    ("happy-path-v0.3", {"media_type": MEDIA_TYPE_V03_OLD_STYLE}),
    ("happy-path-v0.3-new-mediaType", {"bundle_version": "0.3"}),
    ("happy-path-intoto-in-dsse-v3", {"dsse": True}),
    ("rekor2-happy-path", {"rekor": "v2"}),
    ("rekor2-dsse-happy-path", {"rekor": "v2", "dsse": True}),
])
def test_bundle_has_the_shape_of_the_real_one(kit: SigstoreKit, fixture: str,
                                              options: dict[str, Any]) -> None:
    real = _real_bundle(fixture)
    made = kit.sign_blob(ARTIFACT, **options).bundle
    assert made["mediaType"] == real["mediaType"]
    assert shape(made) == shape(real)
    real_entry = real["verificationMaterial"]["tlogEntries"][0]
    made_entry = made["verificationMaterial"]["tlogEntries"][0]
    assert shape(_body(made_entry)) == shape(_body(real_entry))


@pytest.mark.fixtures
def test_keyed_bundle_has_the_shape_of_the_real_one(kit: SigstoreKit) -> None:
    real = _real_bundle("managed-key-happy-path")
    key = ec.generate_private_key(ec.SECP256R1())
    made = kit.sign_blob(ARTIFACT, key=key, tsa=True).bundle
    assert shape(made) == shape(real)
    assert shape(_body(made["verificationMaterial"]["tlogEntries"][0])) == shape(
        _body(real["verificationMaterial"]["tlogEntries"][0]))
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    assert _b64(made["verificationMaterial"]["publicKey"]["hint"]) == sha256(spki)


@pytest.mark.parametrize("version", ["0.1", "0.2", "0.3"])
def test_message_signature_bundle_is_consistent(kit: SigstoreKit, version: str) -> None:
    signed = kit.sign_blob(ARTIFACT, bundle_version=version, signing_time=SIGNING_TIME)  # type: ignore[arg-type]
    bundle = signed.bundle
    leaf = _leaf(bundle)
    assert signed.signing_certificate is not None and leaf == signed.signing_certificate.certificate
    if version != "0.3":
        chain = bundle["verificationMaterial"]["x509CertificateChain"]["certificates"]
        assert [_b64(c["rawBytes"]) for c in chain[1:]] == [
            kit.ca.intermediate.public_bytes(serialization.Encoding.DER)]  # never the root
    message = bundle["messageSignature"]
    assert _b64(message["messageDigest"]["digest"]) == sha256(ARTIFACT)
    leaf_key = leaf.public_key()
    assert isinstance(leaf_key, ec.EllipticCurvePublicKey)
    leaf_key.verify(_b64(message["signature"]), ARTIFACT, ec.ECDSA(hashes.SHA256()))

    [entry] = bundle["verificationMaterial"]["tlogEntries"]
    assert entry["kindVersion"] == {"kind": "hashedrekord", "version": "0.0.1"}
    assert entry["integratedTime"] == str(int(SIGNING_TIME.timestamp()))
    assert int(entry["logIndex"]) != int(entry["inclusionProof"]["logIndex"])  # sharded like production
    spec = _body(entry)["spec"]
    assert spec["data"]["hash"] == {"algorithm": "sha256", "value": sha256(ARTIFACT).hex()}
    assert spec["signature"]["content"] == message["signature"]
    assert _b64(spec["signature"]["publicKey"]["content"]) == leaf.public_bytes(serialization.Encoding.PEM)
    _check_set(kit, entry)
    _check_proof(entry, "rekor.example - ")


def test_dsse_bundle_on_rekor_v1(kit: SigstoreKit) -> None:
    bundle = kit.sign_blob(ARTIFACT, dsse=True).bundle
    envelope = bundle["dsseEnvelope"]
    payload = _b64(envelope["payload"])
    statement = json.loads(payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"][0]["digest"] == {"sha256": sha256(ARTIFACT).hex()}
    [signature] = envelope["signatures"]
    leaf_key = _leaf(bundle).public_key()
    assert isinstance(leaf_key, ec.EllipticCurvePublicKey)
    leaf_key.verify(_b64(signature["sig"]), pae(envelope["payloadType"], payload), ec.ECDSA(hashes.SHA256()))
    [entry] = bundle["verificationMaterial"]["tlogEntries"]
    assert entry["kindVersion"] == {"kind": "dsse", "version": "0.0.1"}
    spec = _body(entry)["spec"]
    assert spec["payloadHash"] == {"algorithm": "sha256", "value": sha256(payload).hex()}
    assert spec["envelopeHash"]["value"] == sha256(json.dumps(envelope, separators=(",", ":")).encode()).hex()
    assert spec["signatures"] == [{"signature": signature["sig"],
                                   "verifier": base64.b64encode(_leaf(bundle).public_bytes(
                                       serialization.Encoding.PEM)).decode()}]
    _check_set(kit, entry)
    _check_proof(entry, "rekor.example - ")


@pytest.mark.parametrize("dsse", [False, True])
def test_rekor_v2_bundle_has_no_set_and_a_timestamp(kit: SigstoreKit, dsse: bool) -> None:
    signed = kit.sign_blob(ARTIFACT, rekor="v2", dsse=dsse, signing_time=SIGNING_TIME)
    bundle, leaf = signed.bundle, _leaf(signed.bundle)
    [entry] = bundle["verificationMaterial"]["tlogEntries"]
    assert "integratedTime" not in entry and "inclusionPromise" not in entry
    assert _b64(entry["logId"]["keyId"]) == kit.rekor_v2.log_id
    spec = _body(entry)["spec"]["hashedRekordV002"]
    if dsse:
        envelope = bundle["dsseEnvelope"]
        signature = envelope["signatures"][0]["sig"]
        signed_digest = sha256(pae(envelope["payloadType"], _b64(envelope["payload"])))
    else:
        signature, signed_digest = bundle["messageSignature"]["signature"], sha256(ARTIFACT)
    assert spec["data"] == {"algorithm": "SHA2_256", "digest": base64.b64encode(signed_digest).decode()}
    assert spec["signature"]["content"] == signature
    assert spec["signature"]["verifier"] == {
        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
        "x509Certificate": {"rawBytes": base64.b64encode(leaf.public_bytes(serialization.Encoding.DER))
                            .decode()},
    }
    _check_proof(entry, "log2025-test.rekor.example")
    [timestamp] = bundle["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
    response = rfc3161_client.decode_timestamp_response(_b64(timestamp["signedTimestamp"]))
    verifier = rfc3161_client.VerifierBuilder().add_root_certificate(kit.tsa.root).build()
    assert verifier.verify_message(response, _b64(signature))
    assert leaf.not_valid_before_utc <= response.tst_info.gen_time <= leaf.not_valid_after_utc


def test_bundle_options(kit: SigstoreKit) -> None:
    alternate = kit.sign_blob(ARTIFACT, media_type=MEDIA_TYPE_V03_OLD_STYLE).bundle
    assert alternate["mediaType"] == "application/vnd.dev.sigstore.bundle+json;version=0.3"
    bare = kit.sign_blob(ARTIFACT, include_promise=False, include_proof=False).bundle
    assert set(bare["verificationMaterial"]["tlogEntries"][0]) == {
        "logIndex", "logId", "kindVersion", "integratedTime", "canonicalizedBody"}
    late = kit.sign_blob(ARTIFACT, signing_time=SIGNING_TIME,
                         integrated_time=SIGNING_TIME + timedelta(hours=1))
    assert late.bundle["verificationMaterial"]["tlogEntries"][0]["integratedTime"] == str(
        int(SIGNING_TIME.timestamp()) + 3600)
    with pytest.raises(ValueError, match=r"v0\.3"):
        kit.sign_blob(ARTIFACT, rekor="v2", bundle_version="0.2")
    assert isinstance(kit.sign_blob(ARTIFACT, rekor=None, tsa=True), SignedBundle)
    for which, count in (("leaf_only", 1), ("intermediates", 2), ("with_root", 3)):
        chained = kit.sign_blob(ARTIFACT, bundle_version="0.2", bundle_chain=which).bundle  # type: ignore[arg-type]
        assert len(chained["verificationMaterial"]["x509CertificateChain"]["certificates"]) == count


# --- cosign image signatures ----------------------------------------------------------------------


def test_legacy_image_signature(kit: SigstoreKit) -> None:
    sig = kit.sign_image(IMAGE_DIGEST, repository="registry.example/app", tsa=True, signing_time=SIGNING_TIME)
    assert sig.payload == (
        b'{"critical":{"identity":{"docker-reference":"registry.example/app"},'
        b'"image":{"docker-manifest-digest":"sha256:' + b"ab" * 32 + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )
    annotations = sig.annotations
    assert set(annotations) == {
        "dev.cosignproject.cosign/signature", "dev.sigstore.cosign/certificate", "dev.sigstore.cosign/chain",
        "dev.sigstore.cosign/bundle", "dev.sigstore.cosign/rfc3161timestamp"}
    leaf = x509.load_pem_x509_certificate(annotations["dev.sigstore.cosign/certificate"].encode())
    assert x509.load_pem_x509_certificates(annotations["dev.sigstore.cosign/chain"].encode()) == [
        kit.ca.intermediate, kit.ca.root]
    signature = _b64(annotations["dev.cosignproject.cosign/signature"])
    leaf_key = leaf.public_key()
    assert isinstance(leaf_key, ec.EllipticCurvePublicKey)
    leaf_key.verify(signature, sig.payload, ec.ECDSA(hashes.SHA256()))

    rekor_bundle = json.loads(annotations["dev.sigstore.cosign/bundle"])
    assert list(rekor_bundle) == ["SignedEntryTimestamp", "Payload"]
    assert list(rekor_bundle["Payload"]) == ["body", "integratedTime", "logIndex", "logID"]
    body = json.loads(_b64(rekor_bundle["Payload"]["body"]))
    assert body["spec"]["data"]["hash"]["value"] == sha256(sig.payload).hex()
    assert body["spec"]["signature"]["content"] == annotations["dev.cosignproject.cosign/signature"]
    set_payload = rfc8785.dumps({key: rekor_bundle["Payload"][key]
                                 for key in ("body", "integratedTime", "logID", "logIndex")})
    kit.rekor_v1.key.public_key().verify(_b64(rekor_bundle["SignedEntryTimestamp"]), set_payload,
                                         ec.ECDSA(hashes.SHA256()))

    timestamp_json = json.loads(annotations["dev.sigstore.cosign/rfc3161timestamp"])
    timestamp = _b64(timestamp_json["SignedRFC3161Timestamp"])
    verifier = rfc3161_client.VerifierBuilder().add_root_certificate(kit.tsa.root).build()
    assert verifier.verify_message(rfc3161_client.decode_timestamp_response(timestamp), signature)


@pytest.mark.fixtures
def test_legacy_annotations_match_a_real_cosign_layer(kit: SigstoreKit) -> None:
    manifest = shared_fixture("cosign-image-signatures", "connaisseur-testimage", "securesystemsengineering",
                              "testimage", "manifests",
                              "sha256-31dc72a13a0c34b40eb95419d2b2fd67320c856baf3b72da518023ee8d370aee.sig.json")
    real = json.loads(manifest.read_bytes())["layers"][0]["annotations"]
    made = kit.sign_image(IMAGE_DIGEST).annotations
    assert set(made) == set(real)
    real_bundle = json.loads(real["dev.sigstore.cosign/bundle"])
    made_bundle = json.loads(made["dev.sigstore.cosign/bundle"])
    assert shape(made_bundle) == shape(real_bundle)
    assert list(made_bundle["Payload"]) == list(real_bundle["Payload"])
    real_body, made_body = (json.loads(_b64(b["Payload"]["body"])) for b in (real_bundle, made_bundle))
    assert shape(made_body) == shape(real_body)


def test_keyed_legacy_image_signature(kit: SigstoreKit) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    sig = kit.sign_image(IMAGE_DIGEST, key=key, tlog=False, optional={"env": "prod"})
    assert set(sig.annotations) == {"dev.cosignproject.cosign/signature"}
    assert json.loads(sig.payload)["optional"] == {"env": "prod"}
    key.public_key().verify(sig.signature, sig.payload, ec.ECDSA(hashes.SHA256()))
    chainless = kit.sign_image(IMAGE_DIGEST, chain="absent")
    assert "dev.sigstore.cosign/chain" not in chainless.annotations
    assert kit.sign_image(IMAGE_DIGEST, chain="empty").annotations["dev.sigstore.cosign/chain"] == ""
    with pytest.raises(ValueError, match="digest"):
        kit.sign_image("sha256:nothex")


@pytest.mark.parametrize("rekor", ["v1", "v2"])
def test_cosign_v3_image_bundle(kit: SigstoreKit, rekor: str) -> None:
    bundle = kit.sign_image(IMAGE_DIGEST, format="bundle", rekor=rekor).bundle
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    statement = json.loads(_b64(bundle["dsseEnvelope"]["payload"]))
    assert statement == {"_type": "https://in-toto.io/Statement/v1",
                         "subject": [{"digest": {"sha256": "ab" * 32}}],
                         "predicateType": COSIGN_SIGN_PREDICATE_TYPE, "predicate": {}}
    [entry] = bundle["verificationMaterial"]["tlogEntries"]
    expected_kind = {"v1": {"kind": "dsse", "version": "0.0.1"},
                     "v2": {"kind": "hashedrekord", "version": "0.0.2"}}
    assert entry["kindVersion"] == expected_kind[rekor]
    assert ("timestampVerificationData" in bundle["verificationMaterial"]) == (rekor == "v2")
