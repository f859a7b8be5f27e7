"""Attestations in Sigstore bundles (cosign v3 ``attest``, ``gh attestation``), made by the test kit."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.sigstore_kit import (
    COSIGN_SIGN_PREDICATE_TYPE,
    DsseEnvelope,
    SignedBundle,
    SigstoreKit,
    attest_image_bundle,
    attestation_statement,
    bundle,
    rekor_bodies,
    tlog_entry_v1,
    verification_material,
)
from tests.sigstore_kit.attestations import StatementVersion
from tests.sigstore_kit.instance import DEFAULT_IDENTITY, DEFAULT_ISSUER
from webhook.errors import IdentityMismatchError, VerificationError
from webhook.verify.attestation import VerifiedAttestation, verify_attestation, verify_bundle_attestation
from webhook.verify.bundle import Bundle
from webhook.verify.identity import Identity
from webhook.verify.keys import PublicKey, spki_sha256
from webhook.verify.tlog import TlogEntry
from webhook.verify.verifier import Verifier

IMAGE = "sha256:" + "d4" * 32
OTHER_IMAGE = "sha256:" + "e5" * 32
SLSA = "https://slsa.dev/provenance/v1"
SIGNER = Identity(subject=DEFAULT_IDENTITY, issuer=DEFAULT_ISSUER)


def verify(verifier: Verifier, signed: SignedBundle | dict[str, Any], digest: str = IMAGE, *,
           policy: Identity | None = SIGNER, key: PublicKey | None = None,
           predicate_type: str | None = None) -> VerifiedAttestation:
    raw = signed.bundle if isinstance(signed, SignedBundle) else signed
    return verify_attestation(verifier, Bundle.from_dict(raw), digest, policy=None if key is not None else policy,
                              key=key, predicate_type=predicate_type)


def refused(verifier: Verifier, signed: SignedBundle | dict[str, Any], step: str, reason: str,
            digest: str = IMAGE, **options: Any) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        verify(verifier, signed, digest, **options)
    assert info.value.step == step, info.value.diagnostics()
    assert reason in info.value.reason, info.value.reason
    return info.value


def _payload(signed: SignedBundle) -> bytes:
    return base64.b64decode(signed.bundle["dsseEnvelope"]["payload"])


# -- what passes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rekor", ["v1", "v2"])
@pytest.mark.parametrize("version", ["v0.1", "v1"])
def test_keyless_bundle_attestation(kit: SigstoreKit, verifier: Verifier, rekor: str,
                                    version: StatementVersion) -> None:
    signed = attest_image_bundle(kit, IMAGE, predicate={"builder": {"id": "gha"}}, rekor=rekor, version=version)
    result = verify(verifier, signed, predicate_type=SLSA)
    assert result.layout == "bundle"
    assert result.statement.type == f"https://in-toto.io/Statement/{version}"
    assert result.predicate == {"builder": {"id": "gha"}}
    assert result.statement_json == json.loads(_payload(signed))
    assert result.subjects == (("", {"sha256": "d4" * 32}),)
    assert result.signer is not None and result.signer.subject == DEFAULT_IDENTITY
    assert signed.entry is not None and result.log_index == signed.entry.log_index
    assert result.signing_times


def test_rekor_v2_dsse_entry(kit: SigstoreKit, verifier: Verifier) -> None:
    leaf = kit.issue_leaf()
    signed = attest_image_bundle(kit, IMAGE, rekor="v2", v2_dsse_entry="dsse", leaf=leaf)
    [entry] = signed.bundle["verificationMaterial"]["tlogEntries"]
    assert entry["kindVersion"] == {"kind": "dsse", "version": "0.0.2"}
    result = verify(verifier, signed)
    assert signed.entry is not None and result.log_index == signed.entry.log_index
    assert result.log_proofs[0].integrated_time is None and len(result.signing_times) == 1
    other = attest_image_bundle(kit, IMAGE, rekor="v2", v2_dsse_entry="dsse", leaf=leaf, predicate={"other": 1})
    swapped = copy.deepcopy(signed.bundle)
    swapped["verificationMaterial"]["tlogEntries"] = other.bundle["verificationMaterial"]["tlogEntries"]
    refused(verifier, swapped, "log entry", "different DSSE payload")


@pytest.mark.parametrize("bundle_version", ["0.1", "0.2"])
def test_older_bundle_versions(kit: SigstoreKit, verifier: Verifier, bundle_version: str) -> None:
    signed = attest_image_bundle(kit, IMAGE, bundle_version=bundle_version)
    assert verify(verifier, signed).predicate_type == SLSA


def test_keyed_bundle_attestation(kit: SigstoreKit, verifier: Verifier) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    signed = attest_image_bundle(kit, IMAGE, key=key)
    result = verify(verifier, signed, key=key.public_key())
    assert result.certificate is None and result.signer is None
    assert result.key_fingerprint == "sha256:" + spki_sha256(key.public_key()).hex()
    refused(verifier, signed, "signature", "does not verify",
            key=ec.generate_private_key(ec.SECP256R1()).public_key())
    refused(verifier, signed, "key", "verify it with --key")


def test_sha512_image_digest(kit: SigstoreKit, verifier: Verifier) -> None:
    digest = "sha512:" + "f6" * 64
    signed = attest_image_bundle(kit, digest, statement=attestation_statement(digest, version="v1"))
    assert verify(verifier, signed, digest).subjects == (("", {"sha512": "f6" * 64}),)
    refused(verifier, signed, "artifact", "does not name", IMAGE)


def test_material_verification_serves_many_policies(kit: SigstoreKit, verifier: Verifier) -> None:
    signed = attest_image_bundle(kit, IMAGE)
    result = verify_bundle_attestation(verifier, Bundle.from_dict(signed.bundle), IMAGE)
    result.check_identity(SIGNER)
    with pytest.raises(IdentityMismatchError):
        result.check_identity(Identity(subject="someone@example.com", issuer=DEFAULT_ISSUER))
    result.check_predicate_type(SLSA)


# -- each check fails -------------------------------------------------------------------------------


def test_wrong_subject_digest(kit: SigstoreKit, verifier: Verifier) -> None:
    refused(verifier, attest_image_bundle(kit, OTHER_IMAGE), "artifact", f"does not name {IMAGE}")


def test_wrong_predicate_type_is_reported(kit: SigstoreKit, verifier: Verifier) -> None:
    signed = attest_image_bundle(kit, IMAGE, predicate_type="https://spdx.dev/Document")
    error = refused(verifier, signed, "predicate type", "'https://spdx.dev/Document'", predicate_type=SLSA)
    assert f"not {SLSA!r}" in error.reason


def test_tampered_envelope(kit: SigstoreKit, verifier: Verifier) -> None:
    signed = attest_image_bundle(kit, OTHER_IMAGE)
    forged = copy.deepcopy(signed.bundle)
    forged["dsseEnvelope"]["payload"] = base64.b64encode(attestation_statement(IMAGE, version="v1")).decode()
    refused(verifier, forged, "signature", "DSSE envelope signature does not verify")


def test_log_entry_for_another_envelope(kit: SigstoreKit, verifier: Verifier) -> None:
    leaf = kit.issue_leaf()
    signed = attest_image_bundle(kit, IMAGE, leaf=leaf)
    other = attest_image_bundle(kit, IMAGE, leaf=leaf, predicate={"other": True})
    swapped = copy.deepcopy(signed.bundle)
    swapped["verificationMaterial"]["tlogEntries"] = other.bundle["verificationMaterial"]["tlogEntries"]
    refused(verifier, swapped, "log entry", "different DSSE payload")


def test_intoto_001_entry_cannot_vouch_for_a_bundle(kit: SigstoreKit, verifier: Verifier) -> None:
    # Its body keeps only a hash of the envelope as submitted, which a bundle does not preserve.
    leaf = kit.issue_leaf()
    envelope = DsseEnvelope.sign(leaf.private_key, attestation_statement(IMAGE))
    body = rekor_bodies.intoto_v001(envelope.to_json(), envelope.payload, leaf.certificate)
    entry = kit.rekor_v1.add(body, int(leaf.certificate.not_valid_before_utc.timestamp()))
    material = verification_material("0.1", certificate=leaf.certificate, tlog_entries=[
        tlog_entry_v1(kit.rekor_v1, entry, kind="intoto", include_proof=False)])
    refused(verifier, bundle("0.1", material, envelope=envelope), "log entry", "only for a cosign .att layer")


def test_statement_type(kit: SigstoreKit, verifier: Verifier) -> None:
    statement = json.loads(attestation_statement(IMAGE, version="v1"))
    statement["_type"] = "https://in-toto.io/Statement/v2"
    signed = attest_image_bundle(kit, IMAGE, statement=json.dumps(statement).encode())
    refused(verifier, signed, "statement", "unsupported in-toto statement type")


def test_payload_type(kit: SigstoreKit, verifier: Verifier) -> None:
    signed = attest_image_bundle(kit, IMAGE, payload_type="application/vnd.cyclonedx+json")
    refused(verifier, signed, "envelope", "unsupported DSSE payload type")


def test_identity_mismatch(kit: SigstoreKit, verifier: Verifier) -> None:
    signed = attest_image_bundle(kit, IMAGE, identity="mallory@example.com")
    with pytest.raises(IdentityMismatchError) as info:
        verify(verifier, signed)
    assert "mallory@example.com" in info.value.found


def test_signatures_are_not_attestations(kit: SigstoreKit, verifier: Verifier) -> None:
    image_signature = kit.sign_image(IMAGE, format="bundle")
    refused(verifier, image_signature, "statement", "a cosign image signature, not an attestation")
    sign_predicate = attest_image_bundle(kit, IMAGE, predicate_type=COSIGN_SIGN_PREDICATE_TYPE)
    refused(verifier, sign_predicate, "statement", "not an attestation")
    message = kit.sign_blob(b"some blob")
    refused(verifier, message, "statement", "signs a message")


def test_a_bundle_brings_its_own_log_entries(kit: SigstoreKit, verifier: Verifier) -> None:
    signed = attest_image_bundle(kit, IMAGE)
    assert signed.entry is not None
    online = TlogEntry.from_rekor_response(kit.rekor_v1.api_entry(signed.entry))
    with pytest.raises(VerificationError, match="carries its own log entries"):
        verify_attestation(verifier, Bundle.from_dict(signed.bundle), IMAGE, policy=SIGNER, log_entry=online)
    with pytest.raises(VerificationError, match="neither a public key nor an identity policy"):
        verify_attestation(verifier, Bundle.from_dict(signed.bundle), IMAGE)
