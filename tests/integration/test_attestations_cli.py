"""``signet verify-attestation`` against Debian's docker-registry: cosign's output, policies, exit codes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.integration.registry import LocalRegistry
from tests.sigstore_kit import SigstoreKit
from tests.sigstore_kit.attestations import attest_image_bundle, attest_image_legacy
from tests.sigstore_kit.keys import new_p256, public_pem
from webhook.cli import main

SIGNER, ISSUER = "builder@example.com", "https://oidc.example"
PROVENANCE = "https://slsa.dev/provenance/v1"
DSSE = "application/vnd.dsse.envelope.v1+json"
TAGS = {"buildDefinition": {"externalParameters": {"workflow": {"ref": "refs/tags/v1.0.0"}}}}


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return SigstoreKit.create(seed_entries=3)


@pytest.fixture(scope="module")
def root_file(kit: SigstoreKit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trust") / "trusted_root.json"
    path.write_bytes(kit.trusted_root_json())
    return path


@pytest.fixture(scope="module")
def attested(registry: LocalRegistry, kit: SigstoreKit) -> str:
    """An image with a provenance (.att layer) and an SBOM (bundle referrer), both keyless."""
    repo = "cli/attested"
    digest = registry.push_random_image(repo, None)
    layer = attest_image_legacy(kit, digest, predicate=TAGS, identity=SIGNER, issuer=ISSUER)
    registry.push_legacy_signature(repo, digest, [(layer.envelope, layer.annotations)], suffix="att",
                                   layer_media_type=DSSE)
    sbom = attest_image_bundle(kit, digest, predicate_type="https://spdx.dev/Document",
                               predicate={"spdxVersion": "SPDX-2.3"}, identity=SIGNER, issuer=ISSUER)
    registry.push_bundle_referrer(repo, digest, sbom.to_json(), predicate_type="https://spdx.dev/Document")
    return f"{registry.host}/{repo}@{digest}"


def run(root_file: Path, *args: str) -> int:
    return main(["verify-attestation", "--allow-http-registry", "--trusted-root", str(root_file), *args])


def keyless(image: str, *args: str) -> list[str]:
    return [image, "--certificate-identity", SIGNER, "--certificate-oidc-issuer", ISSUER, *args]


def test_verified_statements_on_stdout_and_checks_on_stderr(attested: str, root_file: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root_file, *keyless(attested, "--type", "slsaprovenance1")) == 0
    out, err = capsys.readouterr()
    [line] = out.splitlines()
    envelope = json.loads(line)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    assert statement["predicateType"] == PROVENANCE and statement["predicate"] == TAGS
    assert statement["subject"][0]["digest"]["sha256"] == attested.rpartition(":")[2]
    assert f"Verification for {attested}" in err and "The cosign claims were validated" in err
    assert f"Certificate subject: {SIGNER}" in err


def test_a_bundle_attestation_by_its_uri(attested: str, root_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root_file, *keyless(attested, "--type", "https://spdx.dev/Document", "-o", "json")) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["verified"] is True
    assert [s["predicate"] for s in document["statements"]] == [{"spdxVersion": "SPDX-2.3"}]


def test_a_type_with_no_attestation_names_the_types_found(attested: str, root_file: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root_file, *keyless(attested, "--type", "vuln")) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "none of the attestations matched the predicate type https://cosign.sigstore.dev/attestation/vuln/v1" in err
    assert PROVENANCE in err and "https://spdx.dev/Document" in err


def test_policies_every_attestation_must_pass(attested: str, root_file: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    tags = tmp_path / "tags.cel"
    tags.write_text('predicate.buildDefinition.externalParameters.workflow.ref.startsWith("refs/tags/")')
    main_only = tmp_path / "main.rego"
    main_only.write_text('package sigstore\nimport rego.v1\ndefault isCompliant := false\n'
                         'isCompliant if input.predicate.buildDefinition.externalParameters.workflow.ref == '
                         '"refs/heads/main"\nerrors contains "not built from main" if not isCompliant\n')
    assert run(root_file, *keyless(attested, "--type", "slsaprovenance1", "--policy", str(tags))) == 0
    capsys.readouterr()
    assert run(root_file, *keyless(attested, "--type", "slsaprovenance1", "--policy", str(tags),
                                   "--policy", str(main_only))) == 1
    out, err = capsys.readouterr()
    assert out == "" and "1 validation error occurred" in err and "not built from main" in err


def test_a_policy_that_does_not_compile_is_an_input_error(attested: str, root_file: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.cel"
    broken.write_text("predicate.x +")
    assert run(root_file, *keyless(attested, "--policy", str(broken))) == 2
    assert "line 1, column 14" in capsys.readouterr().err


def test_another_identity_verifies_nothing(attested: str, root_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [attested, "--certificate-identity", "mallory@example.com", "--certificate-oidc-issuer", ISSUER,
            "--type", "slsaprovenance1"]
    assert run(root_file, *args) == 1
    err = capsys.readouterr().err
    assert "verified as required" in err and "mallory@example.com" in err and SIGNER in err


def test_keyed_attestation(registry: LocalRegistry, kit: SigstoreKit, root_file: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    key, other = new_p256(), new_p256()
    repo = "cli/keyed"
    digest = registry.push_random_image(repo, None)
    layer = attest_image_legacy(kit, digest, predicate=TAGS, key=key, log_entry=None)
    registry.push_legacy_signature(repo, digest, [(layer.envelope, layer.annotations)], suffix="att",
                                   layer_media_type=DSSE)
    good, bad = tmp_path / "good.pub", tmp_path / "bad.pub"
    good.write_bytes(public_pem(key.public_key()))
    bad.write_bytes(public_pem(other.public_key()))
    image = f"{registry.host}/{repo}@{digest}"
    assert run(root_file, image, "--key", str(good), "--type", PROVENANCE) == 0
    assert "verified against the specified public key" in capsys.readouterr().err
    assert run(root_file, image, "--key", str(bad), "--type", PROVENANCE) == 1
