"""policy-controller documents: same meaning, or rejected with a message — never half-enforced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_path import shared_fixture
from tests.unit.policy.policy_docs import PEM_P256
from webhook.policy import Mode, load_documents, load_file

PC_V1ALPHA1 = "policy.sigstore.dev/v1alpha1"


def _pc_policy(authorities: list[dict[str, Any]], api_version: str = PC_V1ALPHA1, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": "ClusterImagePolicy", "metadata": {"name": "pc"},
            "spec": {"images": [{"glob": "ghcr.io/acme/**"}], "authorities": authorities, **spec}}


KEYLESS = {"url": "https://fulcio.sigstore.dev",
           "identities": [{"issuer": "https://accounts.google.com", "subjectRegExp": ".*@acme.com"}]}


@pytest.mark.parametrize("api_version", ["policy.sigstore.dev/v1alpha1", "policy.sigstore.dev/v1beta1"])
def test_supported_features_keep_their_meaning(api_version: str) -> None:
    doc = _pc_policy(
        [{"keyless": KEYLESS, "ctlog": {"url": "https://rekor.sigstore.dev"}},
         {"name": "pem", "key": {"data": PEM_P256, "hashAlgorithm": "sha384"}},
         {"static": {"action": "pass"}}],
        api_version=api_version, mode="warn")
    result = load_documents([doc], source="pc.yaml")
    assert result.ok and not result.warnings, result.problems
    (policy,) = result.cluster_policies
    assert policy.origin == f"pc.yaml ({api_version})"
    assert policy.spec.mode is Mode.WARN
    keyless, key, static = policy.spec.authorities
    assert [a.name for a in policy.spec.authorities] == ["authority-0", "pem", "authority-2"]
    assert keyless.keyless is not None and keyless.keyless.identities[0].subject_reg_exp == ".*@acme.com"
    assert keyless.keyless.rekor is not None and keyless.keyless.rekor.url == "https://rekor.sigstore.dev"
    assert key.key is not None and key.key.hash_algorithm.value == "sha384"
    assert static.static is not None and static.static.action == "pass"


@pytest.mark.parametrize(
    ("authority", "spec", "path", "words"),
    [
        ({"keyless": KEYLESS, "attestations": [{"name": "sbom", "predicateType": "spdxjson"}]}, {},
         "spec.authorities[0].attestations", "not supported"),
        ({"keyless": KEYLESS}, {"policy": {"type": "cue", "data": "x"}}, "spec.policy", "CUE/Rego"),
        ({"keyless": KEYLESS}, {"match": [{"resource": "pods", "version": "v1"}]}, "spec.match", "every workload kind"),
        ({"key": {"kms": "awskms:///arn"}}, {}, "spec.authorities[0].key.kms", "KMS keys are not supported"),
        ({"keyless": KEYLESS | {"ca-cert": {"secretRef": {"name": "ca"}}}}, {},
         "spec.authorities[0].keyless.ca-cert", "TrustRoot"),
        ({"rfc3161timestamp": {"trustRootRef": "tsa"}, "keyless": KEYLESS}, {},
         "spec.authorities[0].rfc3161timestamp", "not supported"),
        ({"keyless": KEYLESS}, {"images": [{"regex": "ghcr.io/.*"}]}, "spec.images[0].regex", "use glob"),
    ],
)
def test_unenforceable_requirements_reject_the_policy(authority: dict[str, Any], spec: dict[str, Any], path: str,
                                                      words: str) -> None:
    result = load_documents([_pc_policy([authority], **spec)], source="pc.yaml")
    assert not result.policies
    assert any(p.path == path and words in p.message for p in result.problems), result.problems
    # the consequence of removing the field (e.g. key: exactly one of data and secretRef) is not repeated
    assert len(result.problems) == 1, [str(p) for p in result.problems]


@pytest.mark.parametrize(
    ("authority", "path"),
    [
        ({"keyless": KEYLESS | {"insecureIgnoreSCT": True}}, "spec.authorities[0].keyless.insecureIgnoreSCT"),
        ({"keyless": KEYLESS, "source": [{"oci": "ghcr.io/acme/signatures"}]}, "spec.authorities[0].source"),
    ],
)
def test_features_whose_absence_cannot_admit_more_are_ignored_with_a_warning(authority: dict[str, Any],
                                                                            path: str) -> None:
    result = load_documents([_pc_policy([authority])])
    assert result.ok and len(result.policies) == 1
    assert [w.path for w in result.warnings] == [path]
    assert "ignored" in result.warnings[0].message


def test_trust_root_sigstore_keys_are_rejected_with_advice() -> None:
    doc = {"apiVersion": PC_V1ALPHA1, "kind": "TrustRoot", "metadata": {"name": "keys"},
           "spec": {"sigstoreKeys": {"certificateAuthorities": []}}}
    result = load_documents([doc])
    assert [p.path for p in result.problems] == ["spec.sigstoreKeys"]
    assert "spec.trustedRoot" in result.problems[0].message


def test_other_policy_controller_kinds_are_not_policies() -> None:
    doc = {"apiVersion": PC_V1ALPHA1, "kind": "ImagePolicy", "metadata": {"name": "x"}, "spec": {}}
    assert "not a Signet policy" in str(load_documents([doc]).problems[0])


# -- the real policy-controller test data ---------------------------------------------------------

TESTDATA = ("policy-controller", "test", "testdata", "policy-controller")
# Loaded with the same meaning: file → (glob, authority kinds) as policy-controller reads them.
LOADS = {
    "valid/valid-policy-hash-algo-sha512.yaml": ("ghcr.io/sgtcodfish/ace:0.5", ["key"]),
    "tester/cip-public-keyless.yaml": ("ghcr.io/sigstore/cosign/cosign:v1.12.1", ["keyless"]),
}


def _files(*parts: str) -> list[Path]:
    return sorted(shared_fixture(*parts).glob("*.yaml"))


@pytest.mark.fixtures
@pytest.mark.parametrize("relative", sorted(LOADS))
def test_policy_controller_valid_policies_load_with_the_same_meaning(relative: str) -> None:
    path = shared_fixture(*TESTDATA, relative)
    result = load_file(path)
    assert result.ok, [str(p) for p in result.problems]
    (policy,) = result.cluster_policies
    glob, kinds = LOADS[relative]
    assert policy.spec.images[0].glob == glob
    assert ["key" if a.key else "keyless" if a.keyless else "static" for a in policy.spec.authorities] == kinds


@pytest.mark.fixtures
def test_policy_controller_valid_policies_load_or_are_rejected_with_a_located_message() -> None:
    for path in _files(*TESTDATA, "valid"):
        result = load_file(path)
        assert result.ok or all(p.path and p.name and str(p).startswith(str(path)) for p in result.problems), path
        # Every "valid" file either loads, or contains a feature Signet cannot enforce.
        if not result.ok:
            assert any("not supported" in p.message for p in result.problems), [str(p) for p in result.problems]


@pytest.mark.fixtures
def test_policy_controller_invalid_policies_are_all_rejected() -> None:
    files = _files(*TESTDATA, "invalid")
    assert len(files) > 20
    for path in files:
        result = load_file(path)
        assert not result.policies, path
        assert result.problems and all(p.path for p in result.problems), path


@pytest.mark.fixtures
def test_policy_controller_examples() -> None:
    examples = shared_fixture("policy-controller", "examples", "policies")
    loaded = {p.name: p for f in sorted(examples.glob("*.yaml")) for p in load_file(f).cluster_policies}
    release = loaded["image-is-signed-by-github-actions"]
    authority = release.spec.authorities[0].keyless
    assert authority is not None and authority.rekor is not None
    assert authority.rekor.url == "https://rekor.sigstore.dev"
    assert authority.identities[0].issuer == "https://token.actions.githubusercontent.com"
    # attestation, CUE and KMS examples are rejected
    assert "keyless-attestation-sbom-spdxjson" not in loaded
    assert "image-policy-typemeta-allow-only-pods" not in loaded
    assert "image-is-signed-by-aws-kms-key" not in loaded
