"""policy-controller's attestation policies load and decide as policy-controller does.

Its examples (../shared/fixtures/policy-controller) write their policies in CUE, which has no Python
runtime: as written they are refused with that reason and their images denied (never admitted).
With the same policy in Rego (policy-controller's other language, same input and meaning) they
load, and the authority is judged on its attestations alone, as policy-controller's validator
does. The same documents are also built here, so a clone without ../shared covers the same ground.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.fixtures_path import shared_fixture
from tests.sigstore_kit import default_kit
from tests.sigstore_kit.keys import new_p256, public_pem
from tests.unit.decision.attesting import SPDX, legacy, put_att
from tests.unit.engine_harness import REPO, Harness
from tests.unit.oci.fake_registry import HOST
from webhook.policy.loader import FAIL_CLOSED_AUTHORITY, load_documents
from webhook.policy.matching import PolicySet
from webhook.policy.models import NoMatchPolicy

pytestmark = pytest.mark.anyio

EXAMPLES = ("policy-controller", "examples", "policies")
GITHUB = "https://token.actions.githubusercontent.com"
TESTER = "https://github.com/sigstore/policy-controller/.github/workflows/policy-tester-examples.yml@refs/heads/main"
IMAGE = f"{HOST}/{REPO}:v1"
# The examples' CUE `predicateType: "https://spdx.dev/Document"`, as policy-controller's Rego.
SPDX_REGO = 'package sigstore\nisCompliant { input.predicateType == "https://spdx.dev/Document" }\n'
KEY = new_p256()


def keyless_example() -> dict[str, Any]:
    """keyless-attestation-sbom-spdxjson.yaml, as policy-controller ships it."""
    return {"apiVersion": "policy.sigstore.dev/v1alpha1", "kind": "ClusterImagePolicy",
            "metadata": {"name": "keyless-attestation-sbom-spdxjson"},
            "spec": {"images": [{"glob": "**"}], "authorities": [{
                "name": "keyless",
                "keyless": {"url": "https://fulcio.sigstore.dev",
                            "identities": [{"issuer": GITHUB, "subject": TESTER}]},
                "ctlog": {"url": "https://rekor.sigstore.dev"},
                "attestations": [{"name": "must-have-spdxjson", "predicateType": "spdxjson",
                                  "policy": {"type": "cue", "data": 'predicateType: "https://spdx.dev/Document"\n'}}],
            }]}}


def custom_key_example() -> dict[str, Any]:
    """custom-key-attestation-sbom-spdxjson.yaml, with this test's key."""
    document = keyless_example()
    document["metadata"]["name"] = "custom-key-attestation-sbom-spdxjson"
    authority = document["spec"]["authorities"][0]
    del authority["keyless"]
    authority.update(name="custom-key", key={"data": public_pem(KEY.public_key()).decode()})
    return document


def fixture_document(name: str) -> dict[str, Any]:
    documents = [d for d in yaml.safe_load_all(shared_fixture(*EXAMPLES, name).read_text()) if d]
    [document] = documents
    assert isinstance(document, dict)
    return document


def in_rego(document: dict[str, Any], *, key: bool = False) -> dict[str, Any]:
    """The document with its CUE policy written in Rego, and its Rekor the signing kit's (rekor.example)."""
    document = copy.deepcopy(document)
    authority = document["spec"]["authorities"][0]
    authority["ctlog"] = {"url": default_kit().rekor_v1.base_url}
    authority["attestations"][0]["policy"] = {"type": "rego", "data": SPDX_REGO}
    if key:
        authority["key"] = {"data": public_pem(KEY.public_key()).decode()}
    return document


def policy_set(document: dict[str, Any]) -> PolicySet:
    result = load_documents([document])
    assert not result.problems, result.problems
    return PolicySet.from_load_result(result, no_match_policy=NoMatchPolicy.DENY)


SOURCES: list[tuple[str, Callable[[], dict[str, Any]], Callable[[], dict[str, Any]]]] = [
    ("generated", keyless_example, custom_key_example),
    ("fixture", lambda: fixture_document("keyless-attestation-sbom-spdxjson.yaml"),
     lambda: fixture_document("custom-key-attestation-sbom-spdxjson.yaml")),
]


@pytest.fixture(params=SOURCES, ids=[s[0] for s in SOURCES])
def examples(request: pytest.FixtureRequest) -> tuple[Callable[[], dict[str, Any]], Callable[[], dict[str, Any]]]:
    name, keyless, keyed = request.param
    if name == "fixture":
        request.applymarker(pytest.mark.fixtures)
    return keyless, keyed


async def test_cue_policies_are_refused_with_the_reason_and_their_images_denied(
        make: Callable[..., Harness], examples: tuple[Callable[[], dict[str, Any]], ...]) -> None:
    for build in examples:
        result = load_documents([build()])
        [problem] = result.problems
        assert problem.path == "spec.authorities[0].attestations[0].policy"
        assert "type: cue is not supported: CUE has no Python runtime" in problem.message
        h = make(PolicySet.from_load_result(result, no_match_policy=NoMatchPolicy.ALLOW))
        h.fake.put_image(REPO, "v1")
        [outcome] = await h.decide(IMAGE)
        assert outcome.verdict == "deny" and outcome.authority == FAIL_CLOSED_AUTHORITY


async def test_keyless_sbom_attestation_decides_as_policy_controller(
        make: Callable[..., Harness], examples: tuple[Callable[[], dict[str, Any]], ...]) -> None:
    keyless, _ = examples
    document = in_rego(keyless())
    [authority] = load_documents([document]).policies[0].spec.authorities
    assert authority.require_signature is False and authority.attestations[0].predicate_type == SPDX
    h = make(policy_set(document))
    digest = h.fake.put_image(REPO, "v1")  # no image signature: policy-controller does not ask for one
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "deny" and outcome.attestation == "must-have-spdxjson"
    put_att(h.fake, digest, legacy(default_kit(), digest, identity=TESTER, issuer=GITHUB))
    h.engine.invalidate()
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "deny" and "its attestations are of type https://slsa.dev/provenance/v1" in outcome.reason
    put_att(h.fake, digest, legacy(default_kit(), digest, SPDX, {"spdxVersion": "SPDX-2.3"}, identity=TESTER,
                                   issuer=GITHUB))
    h.engine.invalidate()
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "allow", outcome.reason
    assert (outcome.signer, outcome.issuer) == (TESTER, GITHUB)


async def test_custom_key_sbom_attestation_decides_as_policy_controller(
        make: Callable[..., Harness], examples: tuple[Callable[[], dict[str, Any]], ...]) -> None:
    _, keyed = examples
    h = make(policy_set(in_rego(keyed(), key=True)))
    digest = h.fake.put_image(REPO, "v1")
    # ctlog is set: policy-controller requires the key's attestation to be in that Rekor.
    put_att(h.fake, digest, legacy(default_kit(), digest, SPDX, {}, key=KEY, log_entry=None))
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "deny" and "not recorded in the Rekor log" in outcome.reason
    put_att(h.fake, digest, legacy(default_kit(), digest, SPDX, {}, key=KEY))
    h.engine.invalidate()
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "allow", outcome.reason


def test_attestation_policy_fields_policy_controller_ignores_are_dropped_with_a_warning() -> None:
    document = in_rego(keyless_example())
    policy = document["spec"]["authorities"][0]["attestations"][0]["policy"]
    policy.update(includeSpec=True, configMapRef={"name": "x", "namespace": "elsewhere", "key": "k"})
    del policy["data"]
    result = load_documents([document])
    assert result.ok, result.problems
    assert {w.path for w in result.warnings} >= {"spec.authorities[0].attestations[0].policy.includeSpec",
                                                 "spec.authorities[0].attestations[0].policy.configMapRef.namespace"}
