"""A real ``cosign attest --new-bundle-format`` attestation (../shared/fixtures), verified as an attestation.

Skips with a reason when the shared fixtures are absent; test_attestation_bundle.py covers the same
ground with kit-made bundles.
"""

from __future__ import annotations

import pytest

from tests.fixtures_path import shared_fixture
from webhook.errors import IdentityMismatchError, VerificationError
from webhook.trust.embedded import production_trusted_root
from webhook.verify.attestation import verify_attestation
from webhook.verify.bundle import Bundle
from webhook.verify.identity import Identity
from webhook.verify.verifier import Verifier

pytestmark = pytest.mark.fixtures

ATTESTATION = ("cosign", "oci-attestation-new-bundle-format", "oci-attestation.sigstore.json")
SUBJECT = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"
SIGNER = Identity(subject="cody@soyland.com", issuer="https://github.com/login/oauth")
PREDICATE_TYPE = "https://cosign.sigstore.dev/attestation/v1"


@pytest.fixture(scope="module")
def prod() -> Verifier:
    return Verifier(production_trusted_root())


def attestation() -> Bundle:
    return Bundle.from_json(shared_fixture(*ATTESTATION).read_bytes())


def test_passes_for_its_subject_and_signer(prod: Verifier) -> None:
    result = verify_attestation(prod, attestation(), SUBJECT, policy=SIGNER, predicate_type=PREDICATE_TYPE)
    assert result.statement.type == "https://in-toto.io/Statement/v0.1"
    assert result.predicate == {"Data": '{"foo": "bar"}\n', "Timestamp": "2025-02-28T19:18:11Z"}
    assert result.subjects == (("127.0.0.1:60943/repo", {"sha256": SUBJECT.removeprefix("sha256:")}),)
    assert result.signer is not None
    assert (result.signer.subject, result.signer.issuer) == ("cody@soyland.com", "https://github.com/login/oauth")
    [proof] = result.log_proofs
    assert proof.integrated_time is not None and proof.integrated_time in result.signing_times


def test_fails_for_another_digest(prod: Verifier) -> None:
    other = "sha256:" + "0" * 64
    with pytest.raises(VerificationError) as info:
        verify_attestation(prod, attestation(), other, policy=SIGNER)
    assert info.value.step == "artifact"


@pytest.mark.parametrize(
    "policy",
    [Identity(subject="someone@soyland.com", issuer="https://github.com/login/oauth"),
     Identity(subject="cody@soyland.com", issuer="https://accounts.google.com")],
    ids=["other-subject", "other-issuer"],
)
def test_fails_for_another_identity(prod: Verifier, policy: Identity) -> None:
    with pytest.raises(IdentityMismatchError) as info:
        verify_attestation(prod, attestation(), SUBJECT, policy=policy)
    assert "cody@soyland.com" in info.value.found


def test_fails_for_another_predicate_type(prod: Verifier) -> None:
    with pytest.raises(VerificationError) as info:
        verify_attestation(prod, attestation(), SUBJECT, policy=SIGNER, predicate_type="https://slsa.dev/provenance/v1")
    assert info.value.step == "predicate type" and repr(PREDICATE_TYPE) in info.value.reason
