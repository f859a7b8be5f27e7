"""The attestation and ``spec.policy`` schema: what loads, what is refused (with where and why), and that the
CRDs' rules say the same as the loader."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from cel_expr_python import cel  # type: ignore[import-untyped,unused-ignore]

from webhook.policy.attestations import PREDICATE_TYPE_NAMES
from webhook.policy.loader import load_documents

ROOT = Path(__file__).resolve().parents[3]
ISSUER, SUBJECT = "https://token.actions.githubusercontent.com", "https://github.com/acme/app/.github/workflows/r.yml"
REGO = 'package sigstore\nimport rego.v1\nisCompliant if input.predicateType == "https://spdx.dev/Document"\n'


def policy(*attestations: dict[str, Any], kind: str = "ClusterImagePolicy", namespace: str | None = None,
           spec_policy: dict[str, Any] | None = None, **authority: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "p", **({"namespace": namespace} if namespace else {})}
    body: dict[str, Any] = {"name": "a", "keyless": {"identities": [{"issuer": ISSUER, "subject": SUBJECT}]},
                            **authority}
    if attestations:
        body["attestations"] = list(attestations)
    spec: dict[str, Any] = {"images": [{"glob": "ghcr.io/acme/**"}], "authorities": [body]}
    if spec_policy is not None:
        spec["policy"] = spec_policy
    return {"apiVersion": "policy.signet.dev/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec}


def attestation(name: str = "sbom", predicate_type: str = "spdxjson", **policy: Any) -> dict[str, Any]:
    return {"name": name, "predicateType": predicate_type, **({"policy": policy} if policy else {})}


def problems(document: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(p.path, p.message) for p in load_documents([document]).problems]


@pytest.mark.parametrize(("name", "uri"), sorted(PREDICATE_TYPE_NAMES.items()))
def test_cosign_predicate_type_names_map_to_their_uris(name: str, uri: str) -> None:
    [loaded] = load_documents([policy(attestation(predicate_type=name))]).policies
    assert loaded.spec.authorities[0].attestations[0].predicate_type == uri


def test_any_other_predicate_type_is_taken_exactly() -> None:
    [loaded] = load_documents([policy(attestation(predicate_type="https://example.com/Test/v1"))]).policies
    assert loaded.spec.authorities[0].attestations[0].predicate_type == "https://example.com/Test/v1"


def test_cel_and_rego_policies_compile_when_the_policy_loads() -> None:
    document = policy(attestation(type="cel", data='predicate.spdxVersion == "SPDX-2.3"'),
                      attestation("rego", type="rego", data=REGO),
                      spec_policy={"type": "cel", "data": 'has(authorityMatches.a)', "includeTypeMeta": True})
    [loaded] = load_documents([document]).policies
    compiled = [a.policy.compiled for a in loaded.spec.authorities[0].attestations if a.policy is not None]
    assert [c.language.value for c in compiled if c is not None] == ["cel", "rego"]
    assert loaded.spec.policy is not None and loaded.spec.policy.needs_workload


@pytest.mark.parametrize(("attested", "path", "said"), [
    (attestation(type="cel", data="predicate.x +"), "attestations[0].policy", "line 1, column 14"),
    (attestation(type="rego", data="package sigstore\nisCompliant { input.x = }"), "attestations[0].policy",
     "Rego module does not compile: line 2, column 23"),
    (attestation(type="cue", data='predicateType: "x"'), "attestations[0].policy",
     "type: cue is not supported: CUE has no Python runtime"),
    (attestation(type="opa", data="x"), "attestations[0].policy", "unknown policy type 'opa'"),
    (attestation(type="cel"), "attestations[0].policy", "exactly one of data, remote and configMapRef"),
    (attestation(type="cel", data="true", remote={"url": "https://x.example/p.cel", "sha256sum": "0" * 64}),
     "attestations[0].policy", "exactly one of data, remote and configMapRef"),
    (attestation(type="cel", remote={"url": "https://x.example/p.cel", "sha256sum": "abc"}),
     "attestations[0].policy.remote.sha256sum", "should match pattern"),
    ({"name": "x"}, "attestations[0].predicateType", "required field is missing"),
])
def test_a_policy_that_cannot_be_enforced_is_refused_at_its_field(attested: dict[str, Any], path: str,
                                                                  said: str) -> None:
    [(where, message)] = problems(policy(attested))
    assert where == f"spec.authorities[0].{path}" and said in message, message


@pytest.mark.parametrize(("authority", "said"), [
    ({"attestations": [attestation(), attestation()]}, "attestation name 'sbom' is used twice"),
    ({"requireSignature": False}, "requireSignature: false needs at least one attestation"),
    ({"keyless": None, "static": {"action": "pass"}, "attestations": [attestation()]},
     "static cannot be combined with attestations"),
])
def test_authority_rules(authority: dict[str, Any], said: str) -> None:
    document = policy()
    body = document["spec"]["authorities"][0]
    body.update(authority)
    if body.get("keyless") is None:
        body.pop("keyless", None)
    [(_, message)] = problems(document)
    assert said in message


def test_an_image_policy_reads_config_maps_of_its_own_namespace_only() -> None:
    elsewhere = attestation(type="cel", configMapRef={"name": "p", "namespace": "kube-system", "key": "k"})
    [(_, message)] = problems(policy(elsewhere, kind="ImagePolicy", namespace="team-a"))
    assert "may only use ConfigMaps of its own namespace (team-a), not kube-system" in message
    own = attestation(type="cel", configMapRef={"name": "p", "namespace": "team-a", "key": "k"})
    assert not problems(policy(own, kind="ImagePolicy", namespace="team-a"))


# --- the CRDs say the same ------------------------------------------------------------------------------------


def _authority_schema() -> dict[str, Any]:
    [crd] = [d for d in yaml.safe_load_all((ROOT / "policies/crds/clusterimagepolicies.yaml").read_text()) if d]
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    items: dict[str, Any] = spec["properties"]["authorities"]["items"]
    return items


def _rules_hold(rules: list[dict[str, str]], value: dict[str, Any]) -> list[str]:
    """The messages of the CRD's CEL rules that ``value`` breaks, evaluated as the API server would."""
    env = cel.NewEnv(variables={"self": cel.Type.DYN})
    broken = []
    for rule in rules:
        result = env.compile(rule["rule"]).eval(data={"self": value})
        if result.value() is not True:
            broken.append(rule["message"])
    return broken


@pytest.mark.parametrize("changes", [
    {},
    {"attestations": [attestation()]},
    {"attestations": [attestation()], "requireSignature": False},
    {"requireSignature": False},
    {"keyless": None, "static": {"action": "pass"}, "attestations": [attestation()]},
    {"keyless": None, "static": {"action": "pass"}, "requireSignature": True},
])
def test_crd_authority_rules_and_the_loader_agree(changes: dict[str, Any]) -> None:
    document = policy()
    body = document["spec"]["authorities"][0]
    body.update(copy.deepcopy(changes))
    if body.get("keyless") is None:
        body.pop("keyless", None)
    crd_broken = _rules_hold(_authority_schema()["x-kubernetes-validations"], body)
    assert bool(crd_broken) == bool(problems(document)), (crd_broken, problems(document))


@pytest.mark.parametrize("content", [
    {"type": "cel", "data": "true"},
    {"type": "cel"},
    {"type": "cel", "data": "true", "configMapRef": {"name": "p", "key": "k"}},
    {"type": "rego", "remote": {"url": "https://x.example/p.rego", "sha256sum": "a" * 64}},
])
def test_crd_content_policy_rule_and_the_loader_agree(content: dict[str, Any]) -> None:
    schema = _authority_schema()["properties"]["attestations"]["items"]["properties"]["policy"]
    crd_broken = _rules_hold(schema["x-kubernetes-validations"], content)
    assert bool(crd_broken) == bool(problems(policy(attestation(**content))))
