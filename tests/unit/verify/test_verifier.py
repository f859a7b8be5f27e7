"""End-to-end verification of Sigstore bundles made by the test kit (a private Sigstore instance).

Every property a user relies on, one test each: the right signer verifies, anyone else is refused
with a message naming both; every tampered piece of material is refused at the step that owns it;
malformed bundles are refused as bundle errors and never escape as bare ValueError/KeyError.
"""

from __future__ import annotations

import base64
import copy
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.sigstore_kit import (
    MEDIA_TYPE_V03_OLD_STYLE,
    SignedBundle,
    SigstoreKit,
    in_toto_statement,
    statement_subject,
)
from tests.sigstore_kit.keys import new_p256, sha256, sign
from tests.sigstore_kit.tlog import signed_note
from webhook.errors import IdentityMismatchError, VerificationError
from webhook.verify.bundle import Bundle
from webhook.verify.identity import AllOf, AnyOf, ExtensionClaims, Identity, Policy
from webhook.verify.material import Digest
from webhook.verify.result import VerifiedSignature
from webhook.verify.trustroot import TrustedRoot
from webhook.verify.verifier import Artifact, Verifier

Json = dict[str, Any]

DATA = b"the artifact that was signed\n"
IDENTITY = "signer@example.com"
ISSUER = "https://oidc.example"
OTHER_IDENTITY = "mallory@example.com"
WORKFLOW = "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.2.3"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"


# -- fixtures and helpers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_kit() -> SigstoreKit:
    """Another Sigstore instance: its CA, logs and TSA are unknown to ``verifier``."""
    return SigstoreKit.create(seed_entries=2)


def identity(subject: str = IDENTITY, issuer: str = ISSUER) -> Identity:
    return Identity(subject=subject, issuer=issuer)


def as_dict(signed: SignedBundle | Json) -> Json:
    return copy.deepcopy(signed.bundle if isinstance(signed, SignedBundle) else signed)


def verify(
    verifier: Verifier,
    signed: SignedBundle | Json,
    data: bytes = DATA,
    *,
    policy: Policy | None = None,
    key: ec.EllipticCurvePublicKey | None = None,
) -> VerifiedSignature:
    bundle = Bundle.from_json(json.dumps(as_dict(signed)))
    if key is None and policy is None:
        policy = identity()
    return verifier.verify_bundle(bundle, Artifact.from_bytes(data), policy=policy, key=key)


def rejected(
    verifier: Verifier,
    signed: SignedBundle | Json,
    step: str,
    phrase: str,
    data: bytes = DATA,
    *,
    policy: Policy | None = None,
    key: ec.EllipticCurvePublicKey | None = None,
) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        verify(verifier, signed, data, policy=policy, key=key)
    error = info.value
    assert error.step == step, f"expected step {step!r}, got {error.step!r}: {error.reason}"
    assert phrase in error.reason, f"{phrase!r} not in {error.reason!r}"
    return error


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def flip(text: str, index: int = -1) -> str:
    """Base64 ``text`` with one byte of the decoded value changed."""
    raw = bytearray(unb64(text))
    raw[index] ^= 0x01
    return b64(bytes(raw))


def entry_of(bundle: Json) -> Json:
    entry: Json = bundle["verificationMaterial"]["tlogEntries"][0]
    return entry


# -- the right signer verifies; anyone else is refused -------------------------------------------

VERSIONS = [
    pytest.param("0.1", None, id="v0.1"),
    pytest.param("0.2", None, id="v0.2"),
    pytest.param("0.3", None, id="v0.3"),
    pytest.param("0.3", MEDIA_TYPE_V03_OLD_STYLE, id="v0.3-old-media-type"),
]


@pytest.mark.parametrize(("version", "media_type"), VERSIONS)
def test_message_signature_bundle_verifies_for_its_signer(
    kit: SigstoreKit, verifier: Verifier, version: Any, media_type: str | None
) -> None:
    signed = kit.sign_blob(DATA, bundle_version=version, media_type=media_type)
    assert signed.entry is not None and signed.entry.integrated_time is not None
    result = verify(verifier, signed)
    assert result.kind == "bundle"
    assert not result.key_verified
    assert result.certificate is not None
    assert result.signer is not None
    assert (result.signer.subject, result.signer.issuer) == (IDENTITY, ISSUER)
    assert result.signing_times == (datetime.fromtimestamp(signed.entry.integrated_time, UTC),)
    assert result.log_index == signed.entry.log_index  # the global index, not the shard's


@pytest.mark.parametrize(("version", "media_type"), VERSIONS)
def test_message_signature_bundle_rejected_for_another_identity(
    kit: SigstoreKit, verifier: Verifier, version: Any, media_type: str | None
) -> None:
    signed = kit.sign_blob(DATA, bundle_version=version, media_type=media_type)
    with pytest.raises(IdentityMismatchError) as info:
        verify(verifier, signed, policy=identity(OTHER_IDENTITY))
    error = info.value
    assert error.step == "identity"
    assert IDENTITY in error.found and ISSUER in error.found
    assert OTHER_IDENTITY in error.expected
    assert IDENTITY in str(error) and OTHER_IDENTITY in str(error)


def test_another_issuer_is_rejected(kit: SigstoreKit, verifier: Verifier) -> None:
    signed = kit.sign_blob(DATA)
    with pytest.raises(IdentityMismatchError) as info:
        verify(verifier, signed, policy=identity(issuer="https://accounts.google.com"))
    assert ISSUER in info.value.found
    assert "https://accounts.google.com" in info.value.expected


def test_one_verification_serves_many_policies(kit: SigstoreKit, verifier: Verifier) -> None:
    result = verifier.verify_bundle_signature(Bundle.from_dict(kit.sign_blob(DATA).bundle), Artifact.from_bytes(DATA))
    result.check_identity(identity())
    with pytest.raises(IdentityMismatchError):
        result.check_identity(identity(OTHER_IDENTITY))


def test_neither_key_nor_policy_is_refused(kit: SigstoreKit, verifier: Verifier) -> None:
    bundle = Bundle.from_dict(kit.sign_blob(DATA).bundle)
    with pytest.raises(VerificationError) as info:
        verifier.verify_bundle(bundle, Artifact.from_bytes(DATA))
    assert info.value.step == "policy"


def test_artifact_given_only_by_digest_verifies(kit: SigstoreKit, verifier: Verifier) -> None:
    signed = kit.sign_blob(DATA)
    artifact = Artifact(Digest("sha256", sha256(DATA)))
    result = verifier.verify_bundle(Bundle.from_dict(signed.bundle), artifact, policy=identity())
    assert result.signer is not None and result.signer.subject == IDENTITY


@pytest.mark.parametrize(
    ("subject_regexp", "issuer_regexp", "matches"),
    [
        (r"https://github\.com/acme/app/\.github/workflows/release\.yml@refs/tags/v.*", r"https://token\..*", True),
        (r".*@refs/tags/v1\.2\.3", GITHUB_ISSUER.replace(".", r"\."), True),
        # Full match: a prefix of the identity is not the identity.
        (r"https://github\.com/acme/", r".*", False),
        (r"https://github\.com/acme/app/\.github/workflows/release\.yml", r".*", False),
        (r".*", r"https://token\.actions", False),
        # Unanchored search would find these; full match does not.
        (r"acme", r".*", False),
        (r".*release\.yml@refs/heads/main", r".*", False),
    ],
)
def test_regexp_identities_must_match_in_full(
    kit: SigstoreKit, verifier: Verifier, subject_regexp: str, issuer_regexp: str, matches: bool
) -> None:
    signed = kit.sign_blob(DATA, identity=WORKFLOW, issuer=GITHUB_ISSUER)
    policy = Identity(subject_regexp=subject_regexp, issuer_regexp=issuer_regexp)
    if matches:
        verify(verifier, signed, policy=policy)
    else:
        with pytest.raises(IdentityMismatchError) as info:
            verify(verifier, signed, policy=policy)
        assert WORKFLOW in info.value.found


CLAIMS = {
    9: "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.2.3",
    12: "https://github.com/acme/app",
    14: "refs/tags/v1.2.3",
}


def test_extension_claims(kit: SigstoreKit, verifier: Verifier) -> None:
    signed = kit.sign_blob(DATA, identity=WORKFLOW, issuer=GITHUB_ISSUER, claims=CLAIMS)
    result = verify(verifier, signed, policy=ExtensionClaims({
        "buildSignerURI": CLAIMS[9], "sourceRepositoryURI": CLAIMS[12], "1.3.6.1.4.1.57264.1.14": CLAIMS[14],
        "issuer": GITHUB_ISSUER,
    }))
    assert result.signer is not None
    assert result.signer.extensions["sourceRepositoryRef"] == CLAIMS[14]

    with pytest.raises(IdentityMismatchError) as info:
        result.check_identity(ExtensionClaims({"sourceRepositoryRef": "refs/heads/main"}))
    assert "refs/tags/v1.2.3" in str(info.value) and "refs/heads/main" in str(info.value)
    with pytest.raises(IdentityMismatchError, match=r"runnerEnvironment is absent"):
        result.check_identity(ExtensionClaims({"runnerEnvironment": "github-hosted"}))

    result.check_identity(AllOf([Identity(subject=WORKFLOW, issuer=GITHUB_ISSUER),
                                 ExtensionClaims({"sourceRepositoryURI": CLAIMS[12]})]))
    with pytest.raises(IdentityMismatchError):
        result.check_identity(AllOf([Identity(subject=WORKFLOW, issuer=GITHUB_ISSUER),
                                     ExtensionClaims({"sourceRepositoryURI": "https://github.com/evil/app"})]))
    result.check_identity(AnyOf([identity(), Identity(subject=WORKFLOW, issuer=GITHUB_ISSUER)]))
    with pytest.raises(IdentityMismatchError) as any_info:
        result.check_identity(AnyOf([identity(), identity(OTHER_IDENTITY)]))
    assert WORKFLOW in any_info.value.found and OTHER_IDENTITY in any_info.value.expected
    for empty in (AnyOf([]), AllOf([])):
        with pytest.raises(IdentityMismatchError, match=r"fails closed"):
            result.check_identity(empty)


# -- DSSE / in-toto ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rekor", ["v1", "v2"])
def test_dsse_bundle_verifies_when_artifact_is_a_subject(kit: SigstoreKit, verifier: Verifier, rekor: Any) -> None:
    signed = kit.sign_blob(DATA, dsse=True, rekor=rekor)
    result = verify(verifier, signed)
    assert result.statement is not None
    assert result.statement.predicate_type == "https://slsa.dev/provenance/v1"
    assert result.statement.has_subject_digest("sha256", sha256(DATA).hex())
    assert result.payload is not None
    # The digest alone is enough: the statement names it.
    digest_only = Artifact(Digest("sha256", sha256(DATA)))
    verifier.verify_bundle(Bundle.from_dict(signed.bundle), digest_only, policy=identity())


@pytest.mark.parametrize("rekor", ["v1", "v2"])
def test_dsse_bundle_fails_for_an_artifact_it_does_not_name(
    kit: SigstoreKit, verifier: Verifier, rekor: Any
) -> None:
    signed = kit.sign_blob(DATA, dsse=True, rekor=rekor)
    rejected(verifier, signed, "artifact", "does not name", data=b"another artifact")


def test_dsse_statement_about_something_else_fails(kit: SigstoreKit, verifier: Verifier) -> None:
    statement = in_toto_statement([statement_subject(sha256(b"else").hex(), name="else")],
                                  "https://slsa.dev/provenance/v1", {})
    signed = kit.sign_blob(DATA, dsse=True, statement=statement)
    rejected(verifier, signed, "artifact", "does not name")


def test_dsse_bundle_with_a_tampered_payload_fails(kit: SigstoreKit, verifier: Verifier) -> None:
    bundle = as_dict(kit.sign_blob(DATA, dsse=True))
    payload = json.loads(unb64(bundle["dsseEnvelope"]["payload"]))
    payload["predicate"] = {"builder": "mallory"}
    bundle["dsseEnvelope"]["payload"] = b64(json.dumps(payload).encode())
    rejected(verifier, bundle, "signature", "DSSE envelope signature")


# -- signing times -----------------------------------------------------------------------------------


def test_rekor_v2_with_tsa_verifies_at_the_timestamp(kit: SigstoreKit, verifier: Verifier) -> None:
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    signed = kit.sign_blob(DATA, rekor="v2", signing_time=when)
    result = verify(verifier, signed)
    assert result.signing_times == (when,)
    assert result.log_proofs[0].integrated_time is None


def test_rekor_v2_without_tsa_has_no_signing_time(kit: SigstoreKit, verifier: Verifier) -> None:
    signed = kit.sign_blob(DATA, rekor="v2", tsa=False)
    rejected(verifier, signed, "signing time", "no verified signing time")


def test_rekor_v1_and_tsa_both_count(kit: SigstoreKit, verifier: Verifier) -> None:
    result = verify(verifier, kit.sign_blob(DATA, tsa=True))
    assert len(result.signing_times) == 2


def test_bundle_without_log_entry_fails(kit: SigstoreKit, verifier: Verifier) -> None:
    rejected(verifier, kit.sign_blob(DATA, rekor=None, tsa=True), "transparency log", "no transparency log entry")


def test_tsa_from_another_instance_is_not_trusted(
    kit: SigstoreKit, other_kit: SigstoreKit, verifier: Verifier
) -> None:
    bundle = as_dict(kit.sign_blob(DATA, rekor="v2"))
    signature = unb64(bundle["messageSignature"]["signature"])
    foreign = other_kit.tsa.timestamp(signature, at=datetime.now(UTC))
    bundle["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"] = [
        {"signedTimestamp": b64(foreign)}]
    rejected(verifier, bundle, "timestamp", "no timestamp authority")


def test_leaf_expired_at_integrated_time(kit: SigstoreKit, verifier: Verifier) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    signed = kit.sign_blob(DATA, signing_time=start, integrated_time=start + timedelta(minutes=20))
    rejected(verifier, signed, "certificate chain", "not valid at the signing time")


def test_integrated_time_before_the_leaf_was_valid(kit: SigstoreKit, verifier: Verifier) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    signed = kit.sign_blob(DATA, signing_time=start, integrated_time=start - timedelta(minutes=1))
    rejected(verifier, signed, "certificate chain", "not valid at the signing time")


def test_tsa_time_outside_leaf_validity(kit: SigstoreKit, verifier: Verifier) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    signed = kit.sign_blob(DATA, rekor="v2", signing_time=start, timestamp_time=start + timedelta(minutes=11))
    rejected(verifier, signed, "certificate chain", "not valid at the signing time")


# -- tampered material: each refused at its own step ------------------------------------------------

Tamper = Callable[[SigstoreKit, SignedBundle, Json], None]


def _other_signature(kit: SigstoreKit, signed: SignedBundle, bundle: Json) -> None:
    # A genuine signature by the same key, over other bytes.
    assert signed.signing_certificate is not None
    bundle["messageSignature"]["signature"] = b64(sign(signed.signing_certificate.private_key, b"other"))


def _flipped_signature(kit: SigstoreKit, signed: SignedBundle, bundle: Json) -> None:
    bundle["messageSignature"]["signature"] = flip(bundle["messageSignature"]["signature"])


def _claimed_digest(kit: SigstoreKit, signed: SignedBundle, bundle: Json) -> None:
    bundle["messageSignature"]["messageDigest"]["digest"] = b64(sha256(b"other"))


def _entry_of_another_artifact(kit: SigstoreKit, signed: SignedBundle, bundle: Json) -> None:
    bundle["verificationMaterial"]["tlogEntries"] = kit.sign_blob(b"other").bundle["verificationMaterial"][
        "tlogEntries"]


def _entry_of_another_signature(kit: SigstoreKit, signed: SignedBundle, bundle: Json) -> None:
    # Same artifact, signed again by someone else: a genuine entry, but not for this signature.
    bundle["verificationMaterial"]["tlogEntries"] = kit.sign_blob(DATA).bundle["verificationMaterial"][
        "tlogEntries"]


def _forged_set(kit: SigstoreKit, signed: SignedBundle, bundle: Json) -> None:
    assert signed.entry is not None
    forged = kit.rekor_v1.signed_entry_timestamp(signed.entry, key=new_p256())
    entry_of(bundle)["inclusionPromise"]["signedEntryTimestamp"] = b64(forged)


def _flipped_set(kit: SigstoreKit, signed: SignedBundle, bundle: Json) -> None:
    promise = entry_of(bundle)["inclusionPromise"]
    promise["signedEntryTimestamp"] = flip(promise["signedEntryTimestamp"])


def _shifted_integrated_time(kit: SigstoreKit, signed: SignedBundle, bundle: Json) -> None:
    # The SET signs the integrated time: moving it (here by one second) breaks the SET.
    entry = entry_of(bundle)
    entry["integratedTime"] = str(int(entry["integratedTime"]) + 1)


def _proof_hash(kit: SigstoreKit, signed: SignedBundle, bundle: Json) -> None:
    proof = entry_of(bundle)["inclusionProof"]
    proof["hashes"][0] = flip(proof["hashes"][0], 0)


def _proof_root(kit: SigstoreKit, signed: SignedBundle, bundle: Json) -> None:
    proof = entry_of(bundle)["inclusionProof"]
    proof["rootHash"] = flip(proof["rootHash"], 0)


def _forged_checkpoint(kit: SigstoreKit, signed: SignedBundle, bundle: Json) -> None:
    checkpoint = entry_of(bundle)["inclusionProof"]["checkpoint"]
    text, _ = checkpoint["envelope"].split("\n\n", 1)
    body = text + "\n"
    if entry_of(bundle)["kindVersion"]["version"] == "0.0.2":
        signatures = kit.rekor_v2.sign_note(body, key=ed25519.Ed25519PrivateKey.generate())
    else:
        signatures = kit.rekor_v1.sign_note(body, key=new_p256())
    checkpoint["envelope"] = signed_note(body, signatures)


def _checkpoint_for_another_tree(kit: SigstoreKit, signed: SignedBundle, bundle: Json) -> None:
    # A genuine checkpoint of the same log, but for a larger tree than the proof.
    kit.rekor_v1.add(b'{"filler":1}', 1_600_000_000)
    entry_of(bundle)["inclusionProof"]["checkpoint"]["envelope"] = kit.rekor_v1.checkpoint()


def _log_index(kit: SigstoreKit, signed: SignedBundle, bundle: Json) -> None:
    entry = entry_of(bundle)
    entry["logIndex"] = str(int(entry["logIndex"]) + 1)


TAMPERS = [
    pytest.param(_other_signature, "signature", "does not verify", id="signature-over-other-bytes"),
    pytest.param(_flipped_signature, "signature", "artifact signature", id="signature-flipped"),
    pytest.param(_claimed_digest, "artifact", "does not match", id="message-digest"),
    pytest.param(_entry_of_another_artifact, "log entry", "different artifact digest", id="entry-other-artifact"),
    pytest.param(_entry_of_another_signature, "log entry", "different signature", id="entry-other-signature"),
    pytest.param(_forged_set, "transparency log", "signed entry timestamp", id="set-forged"),
    pytest.param(_flipped_set, "transparency log", "signed entry timestamp", id="set-flipped"),
    pytest.param(_shifted_integrated_time, "transparency log", "signed entry timestamp", id="integrated-time"),
    pytest.param(_log_index, "transparency log", "signed entry timestamp", id="log-index"),
    pytest.param(_proof_hash, "inclusion proof", "leads to root", id="proof-hash"),
    pytest.param(_proof_root, "inclusion proof", "leads to root", id="proof-root"),
    pytest.param(_forged_checkpoint, "checkpoint", "checkpoint signature", id="checkpoint-forged"),
    pytest.param(_checkpoint_for_another_tree, "checkpoint", "tree size", id="checkpoint-other-tree"),
]


@pytest.mark.parametrize(("tamper", "step", "phrase"), TAMPERS)
def test_tampered_rekor_v1_bundle_is_rejected_at_its_step(
    kit: SigstoreKit, verifier: Verifier, tamper: Tamper, step: str, phrase: str
) -> None:
    signed = kit.sign_blob(DATA)
    bundle = as_dict(signed)
    verify(verifier, bundle)  # untampered it verifies
    tamper(kit, signed, bundle)
    rejected(verifier, bundle, step, phrase)


@pytest.mark.parametrize(
    ("tamper", "step", "phrase"),
    [
        pytest.param(_flipped_signature, "signature", "artifact signature", id="signature-flipped"),
        pytest.param(_proof_hash, "inclusion proof", "leads to root", id="proof-hash"),
        pytest.param(_forged_checkpoint, "checkpoint", "checkpoint signature", id="checkpoint-forged"),
        pytest.param(_log_index, "inclusion proof", "index", id="log-index"),
    ],
)
def test_tampered_rekor_v2_bundle_is_rejected_at_its_step(
    kit: SigstoreKit, verifier: Verifier, tamper: Tamper, step: str, phrase: str
) -> None:
    signed = kit.sign_blob(DATA, rekor="v2")
    bundle = as_dict(signed)
    verify(verifier, bundle)
    tamper(kit, signed, bundle)
    rejected(verifier, bundle, step, phrase)


def test_tampered_artifact_is_rejected(kit: SigstoreKit, verifier: Verifier) -> None:
    signed = kit.sign_blob(DATA)
    rejected(verifier, signed, "artifact", "does not match", data=DATA + b"!")
    # Without the bundle's digest hint, the signature itself fails.
    bundle = as_dict(signed)
    del bundle["messageSignature"]["messageDigest"]
    verify(verifier, bundle)
    rejected(verifier, bundle, "signature", "does not verify", data=DATA + b"!")


def test_v01_bundle_needs_only_its_set(kit: SigstoreKit, verifier: Verifier) -> None:
    verify(verifier, kit.sign_blob(DATA, bundle_version="0.1", include_proof=False))
    # ...but an inclusion proof it does carry is still checked.
    signed = kit.sign_blob(DATA, bundle_version="0.1")
    bundle = as_dict(signed)
    _proof_hash(kit, signed, bundle)
    rejected(verifier, bundle, "inclusion proof", "leads to root")


def test_set_without_proof_is_not_enough_since_v02(kit: SigstoreKit, verifier: Verifier) -> None:
    with pytest.raises(VerificationError) as info:
        verify(verifier, kit.sign_blob(DATA, bundle_version="0.3", include_proof=False))
    assert info.value.step == "bundle"
    assert "inclusion proof" in info.value.reason


def test_proof_without_set_verifies_with_a_tsa(kit: SigstoreKit, verifier: Verifier) -> None:
    # No SET: the integrated time is unverified, so only the TSA time counts.
    result = verify(verifier, kit.sign_blob(DATA, include_promise=False, tsa=True))
    assert len(result.signing_times) == 1
    rejected(verifier, kit.sign_blob(DATA, include_promise=False), "signing time", "no verified signing time")


# -- certificates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sct", "phrase"),
    [("wrong_key", "no SCT verified"), ("unknown_log", "not a CT log of the trust root"),
     ("none", "no embedded SCT")],
)
def test_leaf_without_a_valid_sct_is_rejected(kit: SigstoreKit, verifier: Verifier, sct: str, phrase: str) -> None:
    leaf = kit.issue_leaf(sct=sct)
    rejected(verifier, kit.sign_blob(DATA, leaf=leaf), "SCT", phrase)


def test_leaf_from_another_ca_is_rejected(kit: SigstoreKit, other_kit: SigstoreKit, verifier: Verifier) -> None:
    # Logged in our Rekor, but issued by another instance's Fulcio (which even has the same names).
    signed = kit.sign_blob(DATA, leaf=other_kit.issue_leaf())
    rejected(verifier, signed, "certificate chain", "does not chain to a Fulcio CA")


def test_leaf_issued_by_the_root_directly_is_rejected(kit: SigstoreKit, verifier: Verifier) -> None:
    signed = kit.sign_blob(DATA, leaf=kit.issue_leaf(issued_by_root=True))
    rejected(verifier, signed, "certificate chain", "Fulcio CA")


def test_leaf_without_code_signing_is_rejected(kit: SigstoreKit, verifier: Verifier) -> None:
    leaf = kit.issue_leaf(extended_key_usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
    rejected(verifier, kit.sign_blob(DATA, leaf=leaf), "certificate chain", "codeSigning")


def test_bundle_of_another_instance_is_rejected(other_kit: SigstoreKit, verifier: Verifier) -> None:
    rejected(verifier, other_kit.sign_blob(DATA), "transparency log", "does not know")
    rejected(verifier, other_kit.sign_blob(DATA, rekor="v2"), "timestamp", "no timestamp authority")


def test_bundle_of_another_instance_verifies_under_its_own_root(other_kit: SigstoreKit) -> None:
    own = Verifier(TrustedRoot.from_json(other_kit.trusted_root_json()))
    verify(own, other_kit.sign_blob(DATA))


# -- keyed bundles -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return new_p256()


@pytest.mark.parametrize(
    ("version", "rekor"), [("0.1", "v1"), ("0.3", "v1"), ("0.3", "v2")], ids=["v0.1", "v0.3", "v0.3-rekor-v2"]
)
def test_keyed_bundle_verifies_with_its_key(
    kit: SigstoreKit, verifier: Verifier, signing_key: ec.EllipticCurvePrivateKey, version: Any, rekor: Any
) -> None:
    signed = kit.sign_blob(DATA, key=signing_key, bundle_version=version, rekor=rekor)
    result = verify(verifier, signed, key=signing_key.public_key())
    assert result.key_verified
    assert result.certificate is None and result.signer is None
    with pytest.raises(VerificationError) as info:
        result.check_identity(identity())
    assert info.value.step == "identity"


def test_keyed_bundle_fails_with_another_key(
    kit: SigstoreKit, verifier: Verifier, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    signed = kit.sign_blob(DATA, key=signing_key)
    rejected(verifier, signed, "signature", "does not verify", key=new_p256().public_key())


def test_keyed_bundle_with_identity_flags_fails(
    kit: SigstoreKit, verifier: Verifier, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    signed = kit.sign_blob(DATA, key=signing_key)
    rejected(verifier, signed, "key", "signed with a key", policy=identity())


def test_keyless_bundle_with_another_key_fails(kit: SigstoreKit, verifier: Verifier) -> None:
    rejected(verifier, kit.sign_blob(DATA), "key", "another key", key=new_p256().public_key())


def test_keyed_bundle_log_entry_must_name_the_key(
    kit: SigstoreKit, verifier: Verifier, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    # The same signature bytes logged under another key: the entry does not vouch for this one.
    signed = kit.sign_blob(DATA, key=signing_key)
    other = kit.sign_blob(DATA, key=new_p256())
    bundle = as_dict(signed)
    bundle["verificationMaterial"]["tlogEntries"] = other.bundle["verificationMaterial"]["tlogEntries"]
    rejected(verifier, bundle, "log entry", "different", key=signing_key.public_key())


# -- structure -------------------------------------------------------------------------------------


def _set_chain(bundle: Json, certificates: list[Json]) -> None:
    bundle["verificationMaterial"]["x509CertificateChain"]["certificates"] = certificates


def _chain_in_v03(bundle: Json) -> None:
    material = bundle["verificationMaterial"]
    material["x509CertificateChain"] = {"certificates": [material.pop("certificate")]}


Change = Callable[[Json], None]
MALFORMED: dict[str, tuple[str, Change]] = {
    "unknown media type": ("0.3", lambda b: b.update(mediaType="application/vnd.dev.sigstore.bundle+json;version=0.4")),
    "no media type": ("0.3", lambda b: b.pop("mediaType")),
    "empty chain": ("0.1", lambda b: _set_chain(b, [])),
    "chain not a list": ("0.2", lambda b: _set_chain(b, {})),  # type: ignore[arg-type]
    "chain in v0.3": ("0.3", _chain_in_v03),
    "certificate not DER": ("0.3", lambda b: b["verificationMaterial"].update(certificate={"rawBytes": b64(b"no")})),
    "two kinds of material": ("0.3", lambda b: b["verificationMaterial"].update(publicKey={"hint": "x"})),
    "no verification material": ("0.3", lambda b: b.pop("verificationMaterial")),
    "no content": ("0.3", lambda b: b.pop("messageSignature")),
    "both contents": ("0.3", lambda b: b.update(dsseEnvelope={"payload": "", "payloadType": "x", "signatures": []})),
    "bad base64 signature": ("0.3", lambda b: b["messageSignature"].update(signature="!!!")),
    "unknown digest algorithm": ("0.3", lambda b: b["messageSignature"]["messageDigest"].update(algorithm="MD5")),
    "v0.1 entry without SET": ("0.1", lambda b: entry_of(b).pop("inclusionPromise")),
    "v0.3 entry without proof": ("0.3", lambda b: entry_of(b).pop("inclusionProof")),
    "v0.3 proof without checkpoint": ("0.3", lambda b: entry_of(b)["inclusionProof"].pop("checkpoint")),
    "tlogEntries not a list": ("0.3", lambda b: b["verificationMaterial"].update(tlogEntries={})),
    "too many tlog entries": ("0.3", lambda b: b["verificationMaterial"].update(tlogEntries=[entry_of(b)] * 33)),
    "timestamps not a list": ("0.3", lambda b: b["verificationMaterial"].update(
        timestampVerificationData={"rfc3161Timestamps": {"a": 1}})),
}


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b"", b"null", b"\xff\xfe"],
                         ids=["not-json", "array", "empty", "null", "not-utf8"])
def test_unparseable_bundles_are_bundle_errors(raw: bytes) -> None:
    with pytest.raises(VerificationError) as info:
        Bundle.from_json(raw)
    assert info.value.step == "bundle"


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_bundles_are_bundle_errors(kit: SigstoreKit, name: str) -> None:
    version, change = MALFORMED[name]
    bundle = as_dict(kit.sign_blob(DATA, bundle_version=version))  # type: ignore[arg-type]
    change(bundle)
    with pytest.raises(VerificationError) as info:
        Bundle.from_json(json.dumps(bundle))
    assert info.value.step == "bundle", f"step {info.value.step!r}: {info.value.reason}"


@pytest.mark.parametrize("version", ["0.1", "0.2"])
def test_chain_with_root_is_a_bundle_error(kit: SigstoreKit, version: Any) -> None:
    signed = kit.sign_blob(DATA, bundle_version=version, bundle_chain="with_root")
    with pytest.raises(VerificationError) as info:
        Bundle.from_dict(signed.bundle)
    assert info.value.step == "bundle", f"step {info.value.step!r}: {info.value.reason}"
    assert "root" in info.value.reason


def _with_issuer_tag_corrupted(der: bytes, issuer: bytes) -> bytes:
    """The certificate with its issuer Name's first string tag changed (cryptography parses names lazily)."""
    start = der.index(issuer)
    tag = start + issuer.index(b"\x06\x03\x55\x04") + 5  # the value tag after the first attribute OID
    return der[:tag] + bytes([der[tag] ^ 0x01]) + der[tag + 1:]


def _with_point_off_the_curve(der: bytes, public_key: ec.EllipticCurvePublicKey) -> bytes:
    point = public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    assert der.count(point) == 1
    return der.replace(point, point[:-1] + bytes([point[-1] ^ 0x01]))


@pytest.mark.parametrize("version", ["0.2", "0.3"])
def test_certificate_with_a_malformed_issuer_is_a_bundle_error(kit: SigstoreKit, version: Any) -> None:
    # Regression: the name decoded lazily on first use and escaped as a bare ValueError.
    signed = kit.sign_blob(DATA, bundle_version=version)
    assert signed.signing_certificate is not None
    der = _with_issuer_tag_corrupted(signed.signing_certificate.der,
                                     signed.signing_certificate.certificate.issuer.public_bytes())
    with pytest.raises(ValueError, match=r"issuer"):
        _ = x509.load_der_x509_certificate(der).issuer  # loads fine; fails only when read
    bundle = as_dict(signed)
    material = bundle["verificationMaterial"]
    if version == "0.3":
        material["certificate"]["rawBytes"] = b64(der)
    else:
        material["x509CertificateChain"]["certificates"][0]["rawBytes"] = b64(der)
    with pytest.raises(VerificationError) as info:
        Bundle.from_dict(bundle)
    assert info.value.step == "bundle"
    assert "not a valid DER certificate" in info.value.reason


def test_certificate_with_a_malformed_key_is_rejected(kit: SigstoreKit, verifier: Verifier) -> None:
    # Regression: the key decoded lazily in the verifier and escaped as a bare ValueError.
    signed = kit.sign_blob(DATA)
    assert signed.signing_certificate is not None
    public_key = signed.signing_certificate.certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    bundle = as_dict(signed)
    bundle["verificationMaterial"]["certificate"]["rawBytes"] = b64(
        _with_point_off_the_curve(signed.signing_certificate.der, public_key))
    rejected(verifier, bundle, "certificate", "public key is malformed")


@pytest.mark.parametrize("chain", ["leaf_only", "intermediates"])
def test_untrusted_chain_is_not_needed(kit: SigstoreKit, verifier: Verifier, chain: Any) -> None:
    verify(verifier, kit.sign_blob(DATA, bundle_version="0.2", bundle_chain=chain))


# -- no bare ValueError/KeyError: random mutations of valid bundles --------------------------------

_GARBAGE: list[object] = [None, "", "!!not base64!!", "AAAA", 0, -1, 2**70, 1.5, True, [], {}, [{}], "9" * 30]


def _locations(node: object, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = [path] if path else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _locations(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _locations(value, (*path, index))
    return found


def _mutate(bundle: Json, rng: random.Random) -> str:
    """Apply one to three random mutations; return a description for the failure message."""
    done = []
    for _ in range(rng.randint(1, 3)):
        locations = _locations(bundle)
        if not locations:
            break
        path = rng.choice(locations)
        parent: Any = bundle
        for part in path[:-1]:
            parent = parent[part]
        key = path[-1]
        action = rng.choice(["delete", "garbage", "garbage", "corrupt"])
        value = parent[key]
        if action == "delete":
            del parent[key]
        elif action == "corrupt" and isinstance(value, str) and value:
            index = rng.randrange(len(value))
            parent[key] = value[:index] + rng.choice("A/+=-_.x\n") + value[index + 1:]
        elif action == "corrupt" and isinstance(value, str | int):
            parent[key] = rng.choice(["0", "-5", "18446744073709551616", " 1"])
        else:
            action = "garbage"
            parent[key] = copy.deepcopy(rng.choice(_GARBAGE))
        done.append(f"{action} {'/'.join(map(str, path))}")
    return "; ".join(done)


@pytest.fixture(scope="module")
def mutation_bases(kit: SigstoreKit) -> dict[str, Json]:
    return {
        "v0.1": kit.sign_blob(DATA, bundle_version="0.1").bundle,
        "v0.3": kit.sign_blob(DATA).bundle,
        "v0.3-dsse": kit.sign_blob(DATA, dsse=True).bundle,
        "v0.3-rekor-v2": kit.sign_blob(DATA, rekor="v2").bundle,
    }


@pytest.mark.parametrize("base", ["v0.1", "v0.3", "v0.3-dsse", "v0.3-rekor-v2"])
@pytest.mark.parametrize("seed", range(12))
def test_random_mutations_only_raise_verification_errors(
    verifier: Verifier, mutation_bases: dict[str, Json], base: str, seed: int
) -> None:
    rng = random.Random(f"{base}-{seed}")
    for attempt in range(5):
        bundle = copy.deepcopy(mutation_bases[base])
        description = _mutate(bundle, rng)
        try:
            parsed = Bundle.from_json(json.dumps(bundle))
            verifier.verify_bundle(parsed, Artifact.from_bytes(DATA), policy=identity())
        except VerificationError:
            continue
        except Exception as exc:
            pytest.fail(f"attempt {attempt} ({description}) escaped as {type(exc).__name__}: {exc}")
