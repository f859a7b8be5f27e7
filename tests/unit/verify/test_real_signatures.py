"""Signatures Signet did not make: real public-good cosign signatures and bundles (../shared/fixtures).

Each test skips with a reason when the shared fixtures are absent; the kit-based tests in
test_verifier.py and test_cosign.py cover the same ground with generated material. Bogus
certificates (x509-bogus) are covered by test_certs.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.fixtures_path import shared_fixture
from webhook.errors import IdentityMismatchError, VerificationError
from webhook.trust.embedded import production_trusted_root, staging_trusted_root
from webhook.verify.bundle import Bundle
from webhook.verify.cosign import CosignSignature, verify_cosign_signature
from webhook.verify.identity import Identity
from webhook.verify.keys import PublicKey, load_pem_public_key
from webhook.verify.material import Digest
from webhook.verify.verifier import Artifact, Verifier

pytestmark = pytest.mark.fixtures

TESTIMAGE = ("cosign-image-signatures", "connaisseur-testimage")
REPOSITORY = (*TESTIMAGE, "securesystemsengineering", "testimage")
KEYLESS_DIGEST = "sha256:31dc72a13a0c34b40eb95419d2b2fd67320c856baf3b72da518023ee8d370aee"
KEYLESS_SIGNER = "philipp.belitz@securesystems.de"
GITHUB_OAUTH = "https://github.com/login/oauth"

ATTESTATION = ("cosign", "oci-attestation-new-bundle-format", "oci-attestation.sigstore.json")
ATTESTATION_SUBJECT = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"
ATTESTATION_SIGNER = "cody@soyland.com"

CONFORMANCE = ("sigstore-conformance", "test", "assets", "bundle-verify")
CONFORMANCE_IDENTITY = ("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/"
                        "workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main")
CONFORMANCE_ISSUER = "https://token.actions.githubusercontent.com"


@pytest.fixture(scope="module")
def prod() -> Verifier:
    return Verifier(production_trusted_root())


# -- the registry-shaped connaisseur tree -----------------------------------------------------------


def tag_digest(tag: str) -> str:
    """The image digest of a tag: sha256 of the manifest file's bytes."""
    return "sha256:" + hashlib.sha256(shared_fixture(*REPOSITORY, "manifests", f"{tag}.json").read_bytes()).hexdigest()


def signature_layers(image_digest: str) -> list[CosignSignature]:
    """The layers of the ``sha256-<hex>.sig`` manifest of ``image_digest``, with their payload blobs."""
    repository = shared_fixture(*REPOSITORY)
    tag = image_digest.replace(":", "-") + ".sig.json"
    manifest = json.loads((repository / "manifests" / tag).read_text())
    layers = []
    for layer in manifest["layers"]:
        payload = (repository / "blobs" / f"{layer['digest']}.json").read_bytes()
        assert "sha256:" + hashlib.sha256(payload).hexdigest() == layer["digest"]
        layers.append(CosignSignature.from_layer(payload, layer["annotations"]))
    return layers


def public_key(name: str) -> PublicKey:
    path: Path = shared_fixture(*TESTIMAGE, f"{name}.pub.pem")
    return load_pem_public_key(path.read_bytes())


def test_keyless_tag_digest_is_the_signed_one() -> None:
    assert tag_digest("keyless") == KEYLESS_DIGEST


def test_connaisseur_keyless_signature_verifies_for_its_signer(prod: Verifier) -> None:
    (layer,) = signature_layers(KEYLESS_DIGEST)
    result = verify_cosign_signature(prod, layer, KEYLESS_DIGEST,
                                     policy=Identity(subject=KEYLESS_SIGNER, issuer=GITHUB_OAUTH))
    assert result.signer is not None
    assert (result.signer.subject, result.signer.issuer) == (KEYLESS_SIGNER, GITHUB_OAUTH)
    assert result.log_index == 98235800
    assert [int(t.timestamp()) for t in result.signing_times] == [1717082297]


@pytest.mark.parametrize(
    "policy",
    [
        Identity(subject="someone.else@securesystems.de", issuer=GITHUB_OAUTH),
        Identity(subject=KEYLESS_SIGNER, issuer="https://accounts.google.com"),
        Identity(subject_regexp=r"philipp\.belitz@", issuer=GITHUB_OAUTH),
    ],
    ids=["other-subject", "other-issuer", "prefix-regexp"],
)
def test_connaisseur_keyless_signature_fails_for_others(prod: Verifier, policy: Identity) -> None:
    (layer,) = signature_layers(KEYLESS_DIGEST)
    with pytest.raises(IdentityMismatchError) as info:
        verify_cosign_signature(prod, layer, KEYLESS_DIGEST, policy=policy)
    assert KEYLESS_SIGNER in str(info.value)
    assert KEYLESS_SIGNER in info.value.found


def test_connaisseur_keyless_signature_is_for_its_image_only(prod: Verifier) -> None:
    (layer,) = signature_layers(KEYLESS_DIGEST)
    other = tag_digest("multi-cosigned-alice")
    with pytest.raises(VerificationError) as info:
        verify_cosign_signature(prod, layer, other, policy=Identity(subject=KEYLESS_SIGNER, issuer=GITHUB_OAUTH))
    assert info.value.step == "image binding"


def test_connaisseur_keyless_signature_fails_under_staging() -> None:
    (layer,) = signature_layers(KEYLESS_DIGEST)
    with pytest.raises(VerificationError) as info:
        verify_cosign_signature(Verifier(staging_trusted_root()), layer, KEYLESS_DIGEST,
                                policy=Identity(subject=KEYLESS_SIGNER, issuer=GITHUB_OAUTH))
    assert info.value.step == "transparency log"
    assert "does not know" in info.value.reason


@pytest.mark.parametrize(("name", "verifies"), [("alice", True), ("bob", False), ("charlie", False)])
def test_multi_cosigned_alice(prod: Verifier, name: str, verifies: bool) -> None:
    digest = tag_digest("multi-cosigned-alice")
    (layer,) = signature_layers(digest)
    if verifies:
        result = verify_cosign_signature(prod, layer, digest, key=public_key(name))
        assert result.key_verified and not result.log_proofs
    else:
        with pytest.raises(VerificationError) as info:
            verify_cosign_signature(prod, layer, digest, key=public_key(name))
        assert info.value.step == "signature"


@pytest.mark.parametrize("name", ["alice", "bob", "charlie"])
def test_multi_cosigned_alice_bob_charlie_each_key_verifies_one_layer(prod: Verifier, name: str) -> None:
    digest = tag_digest("multi-cosigned-alice-bob-charlie")
    layers = signature_layers(digest)
    assert len(layers) == 3
    verified = 0
    for layer in layers:
        try:
            verify_cosign_signature(prod, layer, digest, key=public_key(name))
        except VerificationError as exc:
            assert exc.step == "signature"
        else:
            verified += 1
    assert verified == 1


def test_keyed_layers_have_no_identity(prod: Verifier) -> None:
    digest = tag_digest("multi-cosigned-alice")
    (layer,) = signature_layers(digest)
    with pytest.raises(VerificationError) as info:
        verify_cosign_signature(prod, layer, digest, policy=Identity(subject=KEYLESS_SIGNER, issuer=GITHUB_OAUTH))
    assert info.value.step == "key"


# -- cosign v3 attestation bundle -------------------------------------------------------------------


def attestation() -> Bundle:
    return Bundle.from_json(shared_fixture(*ATTESTATION).read_bytes())


def digest_artifact(digest: str) -> Artifact:
    return Artifact(Digest("sha256", bytes.fromhex(digest.removeprefix("sha256:"))))


def test_attestation_bundle_verifies_for_its_subject_and_signer(prod: Verifier) -> None:
    result = prod.verify_bundle(attestation(), digest_artifact(ATTESTATION_SUBJECT),
                                policy=Identity(subject=ATTESTATION_SIGNER, issuer=GITHUB_OAUTH))
    assert result.statement is not None
    assert result.statement.has_subject_digest("sha256", ATTESTATION_SUBJECT.removeprefix("sha256:"))
    assert result.signer is not None and result.signer.subject == ATTESTATION_SIGNER
    assert result.log_proofs and result.log_proofs[0].integrated_time is not None


def test_attestation_bundle_fails_for_another_digest(prod: Verifier) -> None:
    with pytest.raises(VerificationError) as info:
        prod.verify_bundle(attestation(), digest_artifact(KEYLESS_DIGEST),
                           policy=Identity(subject=ATTESTATION_SIGNER, issuer=GITHUB_OAUTH))
    assert info.value.step == "artifact"


def test_attestation_bundle_fails_for_another_identity(prod: Verifier) -> None:
    with pytest.raises(IdentityMismatchError) as info:
        prod.verify_bundle(attestation(), digest_artifact(ATTESTATION_SUBJECT),
                           policy=Identity(subject=KEYLESS_SIGNER, issuer=GITHUB_OAUTH))
    assert ATTESTATION_SIGNER in info.value.found


# -- another instance's bundle ----------------------------------------------------------------------


def test_staging_bundle_is_rejected_under_prod(prod: Verifier) -> None:
    case = shared_fixture(*CONFORMANCE, "bundle-from-wrong-instance_fail")
    bundle = Bundle.from_json((case / "bundle.sigstore.json").read_bytes())
    artifact = Artifact.from_bytes(shared_fixture(*CONFORMANCE, "a.txt").read_bytes())
    policy = Identity(subject=CONFORMANCE_IDENTITY, issuer=CONFORMANCE_ISSUER)
    with pytest.raises(VerificationError) as info:
        prod.verify_bundle(bundle, artifact, policy=policy)
    assert info.value.step == "transparency log"
    assert "does not know" in info.value.reason
    # It is a genuine signature: its own instance's trust root accepts it.
    result = Verifier(staging_trusted_root()).verify_bundle(bundle, artifact, policy=policy)
    assert result.signer is not None and result.signer.subject == CONFORMANCE_IDENTITY


# -- bogus certificates in a whole flow (CertificateVerifier itself: test_certs.py) ------------------

BOGUS = ("x509-bogus",)


def bogus_certificates() -> list[Path]:
    return sorted(shared_fixture(*BOGUS).glob("*.pem"))


def test_bogus_certificates_fail_as_the_leaf_of_a_bundle(prod: Verifier) -> None:
    """Swapped into a genuine bundle, a bogus certificate is refused cleanly (never a crash)."""
    case = shared_fixture(*CONFORMANCE, "happy-path-v0.3")
    original = json.loads((case / "bundle.sigstore.json").read_bytes())
    artifact = Artifact.from_bytes(shared_fixture(*CONFORMANCE, "a.txt").read_bytes())
    policy = Identity(subject_regexp=r".*", issuer_regexp=r".*")
    paths = bogus_certificates()
    assert paths
    for path in paths:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        bundle = json.loads(json.dumps(original))
        der = cert.public_bytes(serialization.Encoding.DER)
        bundle["verificationMaterial"]["certificate"] = {"rawBytes": base64.b64encode(der).decode()}
        with pytest.raises(VerificationError):
            prod.verify_bundle(Bundle.from_dict(bundle), artifact, policy=policy)
        # And the certificate checks alone, at a time when the bogus certificates were valid.
        with pytest.raises(VerificationError):
            prod.check_certificate(cert, [datetime(2024, 1, 1, tzinfo=UTC)])
