"""cosign's legacy ``.att`` attestations (cosign < v3), made by the test kit: each check passes and fails."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.sigstore_kit import (
    COSIGN_SIGN_PREDICATE_TYPE,
    LegacyImageAttestation,
    SigstoreKit,
    attest_image_legacy,
    attestation_statement,
    rekor_bodies,
)
from tests.sigstore_kit.attestations import LegacyLogEntry, StatementVersion
from tests.sigstore_kit.cosign import rekor_bundle_annotation
from tests.sigstore_kit.instance import DEFAULT_IDENTITY, DEFAULT_ISSUER
from webhook.errors import IdentityMismatchError, VerificationError
from webhook.verify.attestation import VerifiedAttestation, verify_attestation
from webhook.verify.cosign_attestation import CosignAttestation
from webhook.verify.identity import Identity
from webhook.verify.keys import PublicKey, spki_sha256
from webhook.verify.tlog import TlogEntry
from webhook.verify.verifier import Verifier

IMAGE = "sha256:" + "a1" * 32
OTHER_IMAGE = "sha256:" + "b2" * 32
SLSA = "https://slsa.dev/provenance/v1"
SIGNER = Identity(subject=DEFAULT_IDENTITY, issuer=DEFAULT_ISSUER)
GITHUB = "https://token.actions.githubusercontent.com"


def verify(verifier: Verifier, att: LegacyImageAttestation, digest: str = IMAGE, *,
           policy: Identity | None = SIGNER, key: PublicKey | None = None, log_entry: TlogEntry | None = None,
           predicate_type: str | None = None) -> VerifiedAttestation:
    material = CosignAttestation.from_layer(att.envelope, att.annotations)
    return verify_attestation(verifier, material, digest, policy=None if key is not None else policy, key=key,
                              log_entry=log_entry, predicate_type=predicate_type)


def refused(verifier: Verifier, att: LegacyImageAttestation, step: str, reason: str, digest: str = IMAGE,
            **options: Any) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        verify(verifier, att, digest, **options)
    assert info.value.step == step, info.value.diagnostics()
    assert reason in info.value.reason
    return info.value


# -- what passes ------------------------------------------------------------------------------------


def test_keyless_attestation_logged_as_intoto_001(kit: SigstoreKit, verifier: Verifier) -> None:
    att = attest_image_legacy(kit, IMAGE, predicate={"buildDefinition": {"buildType": "gha"}})
    result = verify(verifier, att, predicate_type=SLSA)
    assert result.layout == "cosign"
    assert result.predicate_type == SLSA
    assert result.predicate == {"buildDefinition": {"buildType": "gha"}}
    assert result.statement_json == json.loads(att.statement)
    assert result.subjects == (("registry.example/team/app", {"sha256": "a1" * 32}),)
    assert result.signer is not None
    assert (result.signer.subject, result.signer.issuer) == (DEFAULT_IDENTITY, DEFAULT_ISSUER)
    assert result.key_fingerprint is None
    assert att.entry is not None and result.log_index == att.entry.log_index
    assert result.log_proofs[0].integrated_time == result.signing_times[0]


@pytest.mark.parametrize("log_entry", ["intoto", "intoto-0.0.2", "dsse"])
@pytest.mark.parametrize("version", ["v0.1", "v1"])
def test_every_log_kind_and_statement_version(kit: SigstoreKit, verifier: Verifier, log_entry: LegacyLogEntry,
                                              version: StatementVersion) -> None:
    att = attest_image_legacy(kit, IMAGE, log_entry=log_entry, version=version)
    result = verify(verifier, att)
    assert result.statement.type == f"https://in-toto.io/Statement/{version}"


def test_missing_predicate_type_annotation_is_fine(kit: SigstoreKit, verifier: Verifier) -> None:
    att = attest_image_legacy(kit, IMAGE, predicate_annotation=False)
    assert CosignAttestation.from_layer(att.envelope, att.annotations).predicate_type_hint is None
    assert verify(verifier, att).predicate_type == SLSA


def test_a_lying_predicate_type_annotation_decides_nothing(kit: SigstoreKit, verifier: Verifier) -> None:
    att = attest_image_legacy(kit, IMAGE).with_annotations({"predicateType": "https://spdx.dev/Document"})
    refused(verifier, att, "predicate type", "'https://slsa.dev/provenance/v1'",
            predicate_type="https://spdx.dev/Document")


def test_old_fulcio_certificate_with_only_the_first_extensions(kit: SigstoreKit, verifier: Verifier) -> None:
    workflow = "https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1"
    leaf = kit.issue_leaf(workflow, GITHUB, issuer_oids=(1,),
                          claims={2: "push", 3: "f" * 40, 4: "release", 5: "org/repo", 6: "refs/tags/v1"})
    result = verify(verifier, attest_image_legacy(kit, IMAGE, leaf=leaf), policy=Identity(subject=workflow,
                                                                                          issuer=GITHUB))
    assert result.signer is not None and result.signer.issuer == GITHUB
    assert result.signer.extensions["githubWorkflowRepository"] == "org/repo"
    assert result.signer.extensions["githubWorkflowRef"] == "refs/tags/v1"


def test_keyed_attestation(kit: SigstoreKit, verifier: Verifier) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    logged: LegacyLogEntry | None
    for logged in ("intoto", None):
        att = attest_image_legacy(kit, IMAGE, key=key, log_entry=logged)
        result = verify(verifier, att, key=public)
        assert result.certificate is None and result.signer is None
        assert result.key_fingerprint == "sha256:" + spki_sha256(public).hex()
        assert len(result.log_proofs) == (1 if logged else 0)
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    refused(verifier, att, "signature", "does not verify", key=other)
    refused(verifier, att, "key", "made with a key")
    with pytest.raises(VerificationError, match="made with a key"):
        verify(verifier, att, key=public).check_identity(SIGNER)


def test_certificate_for_another_key_than_the_one_given(kit: SigstoreKit, verifier: Verifier) -> None:
    att = attest_image_legacy(kit, IMAGE)
    refused(verifier, att, "key", "another key", key=ec.generate_private_key(ec.SECP256R1()).public_key())


def test_rfc3161_timestamp_over_the_envelope(kit: SigstoreKit, verifier: Verifier) -> None:
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    result = verify(verifier, attest_image_legacy(kit, IMAGE, tsa=True, signing_time=when))
    assert result.signing_times == (when, when)
    key = ec.generate_private_key(ec.SECP256R1())
    keyed = attest_image_legacy(kit, IMAGE, key=key, tsa=True, log_entry=None, signing_time=when)
    assert verify(verifier, keyed, key=key.public_key()).signing_times == (when,)


def test_online_log_entry_for_a_layer_without_bundle(kit: SigstoreKit, verifier: Verifier) -> None:
    att = attest_image_legacy(kit, IMAGE)
    assert att.entry is not None
    bare = att.with_annotations({"dev.sigstore.cosign/bundle": None})
    refused(verifier, bare, "transparency log", "no transparency log entry")
    online = TlogEntry.from_rekor_response(kit.rekor_v1.api_entry(att.entry))
    assert verify(verifier, bare, log_entry=online).log_index == att.entry.log_index


def test_sha512_image_digest(kit: SigstoreKit, verifier: Verifier) -> None:
    digest = "sha512:" + "c3" * 64
    att = attest_image_legacy(kit, digest, statement=attestation_statement(digest, repository="r"))
    assert verify(verifier, att, digest).subjects == (("r", {"sha512": "c3" * 64}),)
    refused(verifier, att, "artifact", "does not name", "sha256:" + "c3" * 32)


# -- each check fails -------------------------------------------------------------------------------


def test_wrong_subject_digest(kit: SigstoreKit, verifier: Verifier) -> None:
    att = attest_image_legacy(kit, OTHER_IMAGE)
    refused(verifier, att, "artifact", f"does not name {IMAGE}")


def test_malformed_image_digest(kit: SigstoreKit, verifier: Verifier) -> None:
    att = attest_image_legacy(kit, IMAGE)
    for digest in ("sha256:" + "a1" * 31, "md5:" + "a1" * 16, IMAGE + "\n", ""):
        refused(verifier, att, "artifact", "not a sha256 or sha512 image digest", digest)


def test_wrong_predicate_type_is_reported(kit: SigstoreKit, verifier: Verifier) -> None:
    att = attest_image_legacy(kit, IMAGE, predicate_type="https://cyclonedx.org/bom")
    error = refused(verifier, att, "predicate type", "not 'https://slsa.dev/provenance/v1'", predicate_type=SLSA)
    assert "'https://cyclonedx.org/bom'" in error.reason


def test_tampered_envelope(kit: SigstoreKit, verifier: Verifier) -> None:
    att = attest_image_legacy(kit, OTHER_IMAGE)
    forged = att.with_statement(attestation_statement(IMAGE, repository="registry.example/team/app"))
    refused(verifier, forged, "signature", "DSSE envelope signature does not verify")


def test_log_entry_for_another_envelope(kit: SigstoreKit, verifier: Verifier) -> None:
    leaf = kit.issue_leaf()
    att = attest_image_legacy(kit, IMAGE, leaf=leaf)
    kind: LegacyLogEntry
    for kind in ("intoto", "intoto-0.0.2", "dsse"):
        # A genuine entry, SET and all, by the same signer, but for another envelope.
        other = attest_image_legacy(kit, IMAGE, leaf=leaf, predicate={"other": True}, log_entry=kind)
        swapped = att.with_annotations({"dev.sigstore.cosign/bundle": other.annotations["dev.sigstore.cosign/bundle"]})
        refused(verifier, swapped, "log entry", "different DSSE")


def test_log_entry_by_another_signer(kit: SigstoreKit, verifier: Verifier) -> None:
    att = attest_image_legacy(kit, IMAGE)
    # This very envelope, but recorded under another certificate.
    body = rekor_bodies.intoto_v001(att.envelope, att.statement, kit.issue_leaf("mallory@example.com").certificate)
    entry = kit.rekor_v1.add(body, datetime.now(UTC))
    swapped = att.with_annotations({"dev.sigstore.cosign/bundle": rekor_bundle_annotation(kit.rekor_v1, entry)})
    refused(verifier, swapped, "log entry", "different certificate")


def test_statement_type(kit: SigstoreKit, verifier: Verifier) -> None:
    for statement_type in ("https://in-toto.io/Statement/v0.2", None):
        statement = json.loads(attestation_statement(IMAGE))
        statement["_type"] = statement_type
        att = attest_image_legacy(kit, IMAGE, statement=json.dumps(statement).encode())
        refused(verifier, att, "statement", "unsupported in-toto statement type")


def test_hostile_statements(kit: SigstoreKit, verifier: Verifier) -> None:
    for statement, reason in ((b'{"a":' * 100_000, "not valid JSON"), (b"[]", "not a JSON object"),
                              (b'{"_type":"https://in-toto.io/Statement/v1","subject":["x"]}', "no digest"),
                              (b'{"_type":"https://in-toto.io/Statement/v1","subject":[]}', "no subjects")):
        refused(verifier, attest_image_legacy(kit, IMAGE, statement=statement), "statement", reason)


def test_statement_without_predicate_type(kit: SigstoreKit, verifier: Verifier) -> None:
    for value in ("", None, ["https://slsa.dev/provenance/v1"]):
        statement = json.loads(attestation_statement(IMAGE))
        statement["predicateType"] = value
        att = attest_image_legacy(kit, IMAGE, statement=json.dumps(statement).encode())
        refused(verifier, att, "statement", "names no predicate type")


def test_payload_type(kit: SigstoreKit, verifier: Verifier) -> None:
    att = attest_image_legacy(kit, IMAGE, payload_type="application/json")
    refused(verifier, att, "envelope", "unsupported DSSE payload type 'application/json'")


def test_identity_mismatch(kit: SigstoreKit, verifier: Verifier) -> None:
    att = attest_image_legacy(kit, IMAGE, identity="mallory@example.com")
    with pytest.raises(IdentityMismatchError) as info:
        verify(verifier, att)
    assert "mallory@example.com" in info.value.found


def test_cosign_signature_statement_is_not_an_attestation(kit: SigstoreKit, verifier: Verifier) -> None:
    att = attest_image_legacy(kit, IMAGE, predicate_type=COSIGN_SIGN_PREDICATE_TYPE)
    refused(verifier, att, "statement", "a cosign image signature, not an attestation")


def test_keyless_certificate_outside_its_validity(kit: SigstoreKit, verifier: Verifier) -> None:
    start = datetime.now(UTC) - timedelta(hours=2)
    leaf = kit.issue_leaf(signing_time=start)
    # Logged an hour after the ten-minute certificate expired.
    att = attest_image_legacy(kit, IMAGE, leaf=leaf, signing_time=start + timedelta(hours=1))
    refused(verifier, att, "certificate chain", "not valid at the signing time")


@pytest.mark.parametrize(
    ("envelope", "annotations", "step", "reason"),
    [
        (b"not json", {}, "envelope", "not valid JSON"),
        (b"[" * 100_000, {}, "envelope", "not valid JSON"),
        (b'{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}', {}, "envelope",
         "exactly one signature"),
        (b'{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"sig":"AA=="}]}',
         {"dev.cosignproject.cosign/signature": "AQ=="}, "envelope", "not the envelope's signature"),
        (b'{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"sig":"AA=="}]}',
         {"dev.sigstore.cosign/certificate": "not a certificate"}, "certificate", "not a PEM certificate"),
        (b'{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"sig":"AA=="}]}',
         {"dev.sigstore.cosign/bundle": "{}"}, "log entry", "Payload"),
    ],
    ids=["not-json", "too-deep", "no-signature", "other-signature-annotation", "bad-certificate", "bad-bundle"],
)
def test_malformed_layers(envelope: bytes, annotations: dict[str, str], step: str, reason: str) -> None:
    with pytest.raises(VerificationError) as info:
        CosignAttestation.from_layer(envelope, annotations)
    assert info.value.step == step and reason in info.value.reason
