"""cosign image signatures made by the test kit: legacy ``.sig`` layers and cosign v3 bundles.

Legacy layers are verified with ``verify_cosign_signature`` (payload bytes + annotations); cosign v3
signatures are v0.3 bundles over an in-toto statement whose subject is the image digest, verified
with ``Verifier.verify_bundle`` and the image digest as the artifact.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.sigstore_kit import COSIGN_SIGN_PREDICATE_TYPE, LegacyImageSignature, SigstoreKit, rekor_bodies
from tests.sigstore_kit.cosign import BUNDLE_ANNOTATION, rekor_bundle_annotation
from tests.sigstore_kit.keys import new_p256, sign
from webhook.errors import IdentityMismatchError, VerificationError
from webhook.verify.bundle import Bundle
from webhook.verify.cosign import (
    CERTIFICATE_ANNOTATION,
    CHAIN_ANNOTATION,
    SIGNATURE_ANNOTATION,
    TIMESTAMP_ANNOTATION,
    CosignSignature,
    verify_cosign_signature,
)
from webhook.verify.identity import Identity, Policy
from webhook.verify.material import Digest
from webhook.verify.result import VerifiedSignature
from webhook.verify.tlog import TlogEntry
from webhook.verify.verifier import Artifact, Verifier

IMAGE = "sha256:" + hashlib.sha256(b"an image manifest").hexdigest()
OTHER_IMAGE = "sha256:" + hashlib.sha256(b"another image manifest").hexdigest()
IDENTITY = "signer@example.com"
ISSUER = "https://oidc.example"
REPOSITORY = "registry.example/team/app"


@pytest.fixture(scope="module")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return new_p256()


def identity(subject: str = IDENTITY, issuer: str = ISSUER) -> Identity:
    return Identity(subject=subject, issuer=issuer)


def verify_layer(
    verifier: Verifier,
    layer: LegacyImageSignature,
    image: str = IMAGE,
    *,
    payload: bytes | None = None,
    annotations: dict[str, str] | None = None,
    policy: Policy | None = None,
    key: ec.EllipticCurvePublicKey | None = None,
    log_entry: TlogEntry | None = None,
) -> VerifiedSignature:
    sig = CosignSignature.from_layer(layer.payload if payload is None else payload,
                                     layer.annotations if annotations is None else annotations)
    if key is None and policy is None:
        policy = identity()
    return verify_cosign_signature(verifier, sig, image, policy=policy, key=key, log_entry=log_entry)


def rejected_layer(
    verifier: Verifier, layer: LegacyImageSignature, step: str, phrase: str, image: str = IMAGE, **kwargs: object
) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        verify_layer(verifier, layer, image, **kwargs)  # type: ignore[arg-type]
    error = info.value
    assert error.step == step, f"expected step {step!r}, got {error.step!r}: {error.reason}"
    assert phrase in error.reason, f"{phrase!r} not in {error.reason!r}"
    return error


def signed_payload(kit: SigstoreKit, payload: bytes) -> LegacyImageSignature:
    """A keyless legacy layer over arbitrary payload bytes, logged in the kit's Rekor v1."""
    leaf = kit.issue_leaf(IDENTITY, ISSUER)
    signature = sign(leaf.private_key, payload)
    entry = kit.rekor_v1.add(rekor_bodies.hashedrekord_v001(hashlib.sha256(payload).digest(), signature,
                                                            leaf.certificate), datetime.now(UTC))
    annotations = {
        SIGNATURE_ANNOTATION: base64.b64encode(signature).decode(),
        CERTIFICATE_ANNOTATION: leaf.pem.decode(),
        BUNDLE_ANNOTATION: rekor_bundle_annotation(kit.rekor_v1, entry),
    }
    return LegacyImageSignature(payload, signature, annotations, entry)


# -- legacy keyless ------------------------------------------------------------------------------


def test_keyless_signature_with_set_verifies(kit: SigstoreKit, verifier: Verifier) -> None:
    layer = kit.sign_image_legacy(IMAGE)
    assert layer.entry is not None and layer.entry.integrated_time is not None
    result = verify_layer(verifier, layer)
    assert result.kind == "cosign"
    assert result.signer is not None
    assert (result.signer.subject, result.signer.issuer) == (IDENTITY, ISSUER)
    assert result.signing_times == (datetime.fromtimestamp(layer.entry.integrated_time, UTC),)
    assert result.log_index == layer.entry.log_index
    assert result.payload == layer.payload


def test_keyless_signature_rejected_for_another_identity(kit: SigstoreKit, verifier: Verifier) -> None:
    layer = kit.sign_image_legacy(IMAGE)
    with pytest.raises(IdentityMismatchError) as info:
        verify_layer(verifier, layer, policy=identity("mallory@example.com"))
    assert IDENTITY in info.value.found and "mallory@example.com" in info.value.expected


def test_wrong_image_digest(kit: SigstoreKit, verifier: Verifier) -> None:
    rejected_layer(verifier, kit.sign_image_legacy(IMAGE), "image binding", OTHER_IMAGE, image=OTHER_IMAGE)


def test_image_digest_compared_case_insensitively(kit: SigstoreKit, verifier: Verifier) -> None:
    verify_layer(verifier, kit.sign_image_legacy(IMAGE), IMAGE.upper().replace("SHA256", "sha256"))


def test_tampered_payload_fails_the_signature(kit: SigstoreKit, verifier: Verifier) -> None:
    layer = kit.sign_image_legacy(IMAGE)
    tampered = layer.payload.replace(IMAGE.encode(), OTHER_IMAGE.encode())
    assert tampered != layer.payload
    rejected_layer(verifier, layer, "signature", "image signature", image=OTHER_IMAGE, payload=tampered)


def test_tampered_signature_fails(kit: SigstoreKit, verifier: Verifier) -> None:
    layer = kit.sign_image_legacy(IMAGE)
    other = kit.sign_image_legacy(IMAGE)
    annotations = {**layer.annotations, SIGNATURE_ANNOTATION: other.annotations[SIGNATURE_ANNOTATION]}
    rejected_layer(verifier, layer, "signature", "does not verify", annotations=annotations)


def test_bundle_annotation_of_another_signature_fails(kit: SigstoreKit, verifier: Verifier) -> None:
    layer = kit.sign_image_legacy(IMAGE)
    other = kit.sign_image_legacy(IMAGE)
    annotations = {**layer.annotations, BUNDLE_ANNOTATION: other.annotations[BUNDLE_ANNOTATION]}
    rejected_layer(verifier, layer, "log entry", "different", annotations=annotations)


def test_forged_set_fails(kit: SigstoreKit, verifier: Verifier) -> None:
    layer = kit.sign_image_legacy(IMAGE)
    bundle = json.loads(layer.annotations[BUNDLE_ANNOTATION])
    assert layer.entry is not None
    bundle["SignedEntryTimestamp"] = base64.b64encode(
        kit.rekor_v1.signed_entry_timestamp(layer.entry, key=new_p256())).decode()
    annotations = {**layer.annotations, BUNDLE_ANNOTATION: json.dumps(bundle)}
    rejected_layer(verifier, layer, "transparency log", "signed entry timestamp", annotations=annotations)


def test_missing_bundle_annotation_needs_a_log_entry(kit: SigstoreKit, verifier: Verifier) -> None:
    layer = kit.sign_image_legacy(IMAGE, tlog=False)
    rejected_layer(verifier, layer, "transparency log", "no transparency log entry")


def test_missing_bundle_annotation_with_an_online_log_entry(kit: SigstoreKit, verifier: Verifier) -> None:
    logged = kit.sign_image_legacy(IMAGE)
    assert logged.entry is not None
    annotations = {k: v for k, v in logged.annotations.items() if k != BUNDLE_ANNOTATION}
    online = TlogEntry.from_rekor_response(kit.rekor_v1.api_entry(logged.entry))
    result = verify_layer(verifier, logged, annotations=annotations, log_entry=online)
    assert result.log_index == logged.entry.log_index
    # An online entry for another signature does not vouch for this one.
    other = kit.sign_image_legacy(IMAGE)
    assert other.entry is not None
    wrong = TlogEntry.from_rekor_response(kit.rekor_v1.api_entry(other.entry))
    rejected_layer(verifier, logged, "log entry", "different", annotations=annotations, log_entry=wrong)


def test_leaf_expired_at_integrated_time(kit: SigstoreKit, verifier: Verifier) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    layer = kit.sign_image_legacy(IMAGE, signing_time=start, integrated_time=start + timedelta(minutes=11))
    rejected_layer(verifier, layer, "certificate chain", "not valid at the signing time")


def test_leaf_without_sct_fails(kit: SigstoreKit, verifier: Verifier) -> None:
    layer = kit.sign_image_legacy(IMAGE, leaf=kit.issue_leaf(sct="none"))
    rejected_layer(verifier, layer, "SCT", "no embedded SCT")


def test_with_a_tsa_annotation(kit: SigstoreKit, verifier: Verifier) -> None:
    layer = kit.sign_image_legacy(IMAGE, tsa=True)
    assert TIMESTAMP_ANNOTATION in layer.annotations
    result = verify_layer(verifier, layer)
    assert len(result.signing_times) == 2
    # The timestamp covers the raw signature: another signature's timestamp does not count.
    other = kit.sign_image_legacy(IMAGE, tsa=True)
    annotations = {**layer.annotations, TIMESTAMP_ANNOTATION: other.annotations[TIMESTAMP_ANNOTATION]}
    rejected_layer(verifier, layer, "timestamp", "does not cover this signature", annotations=annotations)


def test_tsa_alone_does_not_replace_the_log_for_keyless(kit: SigstoreKit, verifier: Verifier) -> None:
    layer = kit.sign_image_legacy(IMAGE, tsa=True, tlog=False)
    rejected_layer(verifier, layer, "transparency log", "no transparency log entry")


@pytest.mark.parametrize("annotation", ["not json", '{"SignedRFC3161Timestamp": "!!"}', "{}"])
def test_malformed_tsa_annotation(kit: SigstoreKit, annotation: str) -> None:
    layer = kit.sign_image_legacy(IMAGE)
    with pytest.raises(VerificationError) as info:
        CosignSignature.from_layer(layer.payload, {**layer.annotations, TIMESTAMP_ANNOTATION: annotation})
    assert info.value.step == "timestamp"


@pytest.mark.parametrize("chain", ["full", "intermediates", "empty", "absent"])
def test_chain_annotation_does_not_matter(kit: SigstoreKit, verifier: Verifier, chain: str) -> None:
    layer = kit.sign_image_legacy(IMAGE, chain=chain)  # type: ignore[arg-type]
    assert (CHAIN_ANNOTATION in layer.annotations) == (chain != "absent")
    verify_layer(verifier, layer)


def test_chain_annotation_cannot_introduce_a_ca(kit: SigstoreKit, verifier: Verifier) -> None:
    # A leaf from another instance, with that instance's chain in the annotation: still untrusted.
    other = SigstoreKit.create(seed_entries=1)
    leaf = other.issue_leaf(IDENTITY, ISSUER)
    layer = kit.sign_image_legacy(IMAGE, leaf=leaf, chain="full")
    assert leaf.chain_pem.decode() == layer.annotations[CHAIN_ANNOTATION]
    rejected_layer(verifier, layer, "certificate chain", "does not chain to a Fulcio CA")


def test_capitalised_manifest_digest_key_is_accepted(kit: SigstoreKit, verifier: Verifier) -> None:
    payload = json.dumps({
        "critical": {
            "identity": {"docker-reference": REPOSITORY},
            "image": {"Docker-manifest-digest": IMAGE},
            "type": "cosign container image signature",
        },
        "optional": {"creator": "test"},
    }).encode()
    layer = signed_payload(kit, payload)
    result = verify_layer(verifier, layer)
    assert result.payload == payload
    rejected_layer(verifier, layer, "image binding", IMAGE, image=OTHER_IMAGE)


@pytest.mark.parametrize(
    "critical",
    [
        {"identity": {"docker-reference": REPOSITORY}, "image": {"docker-manifest-digest": IMAGE},
         "type": "atomic container signature"},
        {"identity": {"docker-reference": REPOSITORY}, "image": {"docker-manifest-digest": IMAGE}},
        {"identity": {"docker-reference": REPOSITORY}, "type": "cosign container image signature"},
        {"identity": {"docker-reference": REPOSITORY}, "image": {"docker-manifest-digest": 5},
         "type": "cosign container image signature"},
    ],
    ids=["wrong-type", "no-type", "no-image", "digest-not-a-string"],
)
def test_malformed_critical_section_is_rejected(
    kit: SigstoreKit, verifier: Verifier, critical: dict[str, object]
) -> None:
    layer = signed_payload(kit, json.dumps({"critical": critical, "optional": None}).encode())
    phrase = "docker-manifest-digest" if critical.get("type") == "cosign container image signature" else "payload type"
    rejected_layer(verifier, layer, "payload", phrase)


@pytest.mark.parametrize("payload", [b"not json", b"[]", b'{"optional": {}}'])
def test_payload_that_is_not_simple_signing(kit: SigstoreKit, verifier: Verifier, payload: bytes) -> None:
    rejected_layer(verifier, signed_payload(kit, payload), "payload", "payload")


@pytest.mark.parametrize("value", ["not base64!", "", "QUJ", "QU JD"])
def test_bad_signature_annotation(kit: SigstoreKit, value: str) -> None:
    layer = kit.sign_image_legacy(IMAGE)
    with pytest.raises(VerificationError) as info:
        CosignSignature.from_layer(layer.payload, {**layer.annotations, SIGNATURE_ANNOTATION: value})
    assert info.value.step == "signature"


def test_missing_signature_annotation(kit: SigstoreKit) -> None:
    layer = kit.sign_image_legacy(IMAGE)
    annotations = {k: v for k, v in layer.annotations.items() if k != SIGNATURE_ANNOTATION}
    with pytest.raises(VerificationError, match=r"no signature annotation"):
        CosignSignature.from_layer(layer.payload, annotations)


def test_bad_certificate_annotation(kit: SigstoreKit) -> None:
    layer = kit.sign_image_legacy(IMAGE)
    with pytest.raises(VerificationError) as info:
        CosignSignature.from_layer(layer.payload, {**layer.annotations, CERTIFICATE_ANNOTATION: "not a PEM"})
    assert info.value.step == "certificate"


def test_certificate_annotation_with_a_malformed_key(kit: SigstoreKit, verifier: Verifier) -> None:
    # The PEM loads (keys are decoded lazily) but its point is not on the curve.
    leaf = kit.issue_leaf(IDENTITY, ISSUER)
    layer = kit.sign_image_legacy(IMAGE, leaf=leaf)
    point = leaf.certificate.public_key().public_bytes(serialization.Encoding.X962,
                                                       serialization.PublicFormat.UncompressedPoint)
    der = leaf.der.replace(point, point[:-1] + bytes([point[-1] ^ 0x01]))
    pem = "-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der).decode() + "-----END CERTIFICATE-----\n"
    annotations = {**layer.annotations, CERTIFICATE_ANNOTATION: pem}
    rejected_layer(verifier, layer, "certificate", "public key is malformed", annotations=annotations)


@pytest.mark.parametrize("value", ["not json", "{}", '{"Payload": {}}', '{"SignedEntryTimestamp": "AA==", '
                                   '"Payload": {"body": "!", "integratedTime": 1, "logIndex": 1, "logID": "ab"}}'])
def test_malformed_bundle_annotation(kit: SigstoreKit, value: str) -> None:
    layer = kit.sign_image_legacy(IMAGE)
    with pytest.raises(VerificationError) as info:
        CosignSignature.from_layer(layer.payload, {**layer.annotations, BUNDLE_ANNOTATION: value})
    assert info.value.step == "log entry"


# -- legacy keyed ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tlog", [True, False], ids=["with-tlog", "without-tlog"])
def test_keyed_signature(
    kit: SigstoreKit, verifier: Verifier, signing_key: ec.EllipticCurvePrivateKey, tlog: bool
) -> None:
    layer = kit.sign_image_legacy(IMAGE, key=signing_key, tlog=tlog)
    assert CERTIFICATE_ANNOTATION not in layer.annotations
    result = verify_layer(verifier, layer, key=signing_key.public_key())
    assert result.key_verified and result.certificate is None and result.signer is None
    assert len(result.log_proofs) == (1 if tlog else 0)
    rejected_layer(verifier, layer, "signature", "does not verify", key=new_p256().public_key())
    rejected_layer(verifier, layer, "image binding", OTHER_IMAGE, image=OTHER_IMAGE, key=signing_key.public_key())
    # Without a certificate there is no identity to check.
    rejected_layer(verifier, layer, "key", "made with a key")


def test_keyed_verification_of_a_keyless_signature_needs_its_key(kit: SigstoreKit, verifier: Verifier) -> None:
    layer = kit.sign_image_legacy(IMAGE)
    rejected_layer(verifier, layer, "key", "another key", key=new_p256().public_key())


def test_keyed_signature_with_a_forged_set_fails(
    kit: SigstoreKit, verifier: Verifier, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    # A tlog entry that is present is checked even though keyed signatures do not require one.
    layer = kit.sign_image_legacy(IMAGE, key=signing_key)
    bundle = json.loads(layer.annotations[BUNDLE_ANNOTATION])
    bundle["SignedEntryTimestamp"] = base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode()
    annotations = {**layer.annotations, BUNDLE_ANNOTATION: json.dumps(bundle)}
    rejected_layer(verifier, layer, "transparency log", "signed entry timestamp", annotations=annotations,
                   key=signing_key.public_key())


def test_neither_key_nor_policy(kit: SigstoreKit, verifier: Verifier) -> None:
    layer = kit.sign_image_legacy(IMAGE)
    sig = CosignSignature.from_layer(layer.payload, layer.annotations)
    with pytest.raises(VerificationError) as info:
        verify_cosign_signature(verifier, sig, IMAGE)
    assert info.value.step == "policy"


# -- cosign v3 image bundles -------------------------------------------------------------------------


def image_artifact(digest: str) -> Artifact:
    return Artifact(Digest("sha256", bytes.fromhex(digest.removeprefix("sha256:"))))


@pytest.mark.parametrize("rekor", ["v1", "v2"])
def test_cosign_v3_image_bundle_verifies(kit: SigstoreKit, verifier: Verifier, rekor: str) -> None:
    signed = kit.sign_image_bundle(IMAGE, rekor=rekor, subject_annotations={"tag": "v1"})  # type: ignore[arg-type]
    bundle = Bundle.from_json(signed.to_json())
    assert bundle.media_type == "application/vnd.dev.sigstore.bundle.v0.3+json"
    result = verifier.verify_bundle(bundle, image_artifact(IMAGE), policy=identity())
    assert result.statement is not None
    assert result.statement.predicate_type == COSIGN_SIGN_PREDICATE_TYPE
    assert result.statement.has_subject_digest("sha256", IMAGE.removeprefix("sha256:"))
    assert result.signer is not None and result.signer.subject == IDENTITY


def test_cosign_v3_image_bundle_fails_for_another_image(kit: SigstoreKit, verifier: Verifier) -> None:
    bundle = Bundle.from_json(kit.sign_image_bundle(IMAGE).to_json())
    with pytest.raises(VerificationError) as info:
        verifier.verify_bundle(bundle, image_artifact(OTHER_IMAGE), policy=identity())
    assert info.value.step == "artifact"
    assert OTHER_IMAGE.removeprefix("sha256:") in info.value.reason


def test_cosign_v3_image_bundle_fails_for_another_identity(kit: SigstoreKit, verifier: Verifier) -> None:
    bundle = Bundle.from_json(kit.sign_image_bundle(IMAGE, identity="ci@example.com").to_json())
    with pytest.raises(IdentityMismatchError) as info:
        verifier.verify_bundle(bundle, image_artifact(IMAGE), policy=identity())
    assert "ci@example.com" in info.value.found


def test_cosign_v3_keyed_image_bundle(
    kit: SigstoreKit, verifier: Verifier, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    bundle = Bundle.from_json(kit.sign_image_bundle(IMAGE, key=signing_key).to_json())
    result = verifier.verify_bundle(bundle, image_artifact(IMAGE), key=signing_key.public_key())
    assert result.key_verified
    with pytest.raises(VerificationError) as info:
        verifier.verify_bundle(bundle, image_artifact(IMAGE), key=new_p256().public_key())
    assert info.value.step == "signature"
