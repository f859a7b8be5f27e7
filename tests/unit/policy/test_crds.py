"""The CRDs: valid YAML, the expected kinds and rules, and the examples validate against them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from tests.unit.policy.policy_docs import PEM_P256, make_cip
from webhook.policy import FULCIO_EXTENSION_OIDS, load_directory, load_documents

ROOT = Path(__file__).resolve().parents[3]
CRDS = ROOT / "policies" / "crds"
EXAMPLES = ROOT / "policies" / "examples"
EXPECTED = {
    "ClusterImagePolicy": ("clusterimagepolicies", "Cluster"),
    "ImagePolicy": ("imagepolicies", "Namespaced"),
    "TrustRoot": ("trustroots", "Cluster"),
}


def _crds() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                found[doc["spec"]["names"]["kind"]] = doc
    return found


def _schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = _crds()[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _as_json_schema(node: Any) -> Any:
    """OpenAPI v3 → JSON Schema: drop x-kubernetes-* and close objects, as strict field validation does."""
    if isinstance(node, list):
        return [_as_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _as_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if "properties" in node and node.get("type") == "object" and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def _validator(kind: str) -> jsonschema.Draft7Validator:
    schema = _as_json_schema(_schema(kind))
    schema["properties"]["metadata"] = {"type": "object"}  # the API server validates metadata itself
    return jsonschema.Draft7Validator(schema)


def _rules(node: Any) -> list[str]:
    if isinstance(node, list):
        return [r for n in node for r in _rules(n)]
    if not isinstance(node, dict):
        return []
    own = [v["rule"] for v in node.get("x-kubernetes-validations", [])]
    return own + [r for v in node.values() for r in _rules(v)]


def test_crd_files_define_the_three_kinds() -> None:
    crds = _crds()
    assert set(crds) == set(EXPECTED)
    for kind, (plural, scope) in EXPECTED.items():
        crd = crds[kind]
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
        assert crd["kind"] == "CustomResourceDefinition"
        assert crd["metadata"]["name"] == f"{plural}.policy.signet.dev"
        spec = crd["spec"]
        assert (spec["group"], spec["scope"], spec["names"]["plural"]) == ("policy.signet.dev", scope, plural)
        assert spec["names"]["shortNames"] and "signet" in spec["names"]["categories"]
        (version,) = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
        assert version["subresources"] == {"status": {}}
        columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
        assert columns["Age"] == ".metadata.creationTimestamp"
        assert "Ready" in columns["Ready"]
        if kind != "TrustRoot":
            assert columns["Mode"] == ".spec.mode"
        status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
        assert "conditions" in status["properties"]


def test_short_names_do_not_collide() -> None:
    names = [n for crd in _crds().values() for n in crd["spec"]["names"]["shortNames"]]
    assert len(names) == len(set(names))


def test_policy_schemas_of_both_kinds_are_identical() -> None:
    assert _schema("ClusterImagePolicy")["properties"]["spec"] == _schema("ImagePolicy")["properties"]["spec"]


def test_policy_schema_states_required_fields_limits_enums_and_one_of_rules() -> None:
    spec = _schema("ClusterImagePolicy")["properties"]["spec"]
    assert set(spec["required"]) == {"images", "authorities"}
    assert spec["properties"]["images"]["minItems"] == 1
    assert spec["properties"]["authorities"]["minItems"] == 1
    assert spec["properties"]["mode"]["enum"] == ["enforce", "warn"]
    assert spec["properties"]["mode"]["default"] == "enforce"
    assert spec["properties"]["authorities"]["x-kubernetes-list-map-keys"] == ["name"]
    rules = _rules(spec)
    assert "has(self.issuer) != has(self.issuerRegExp)" in rules
    assert "has(self.subject) != has(self.subjectRegExp)" in rules
    assert "has(self.data) != has(self.secretRef)" in rules
    assert any("has(self.keyless)" in r and "has(self.static)" in r for r in rules)
    (claims_rule,) = [r for r in rules if r.startswith("self.all(k, k in [")]
    assert all(f"'{claim}'" in claims_rule for claim in FULCIO_EXTENSION_OIDS)  # same claims as the loader
    trust = _schema("TrustRoot")["properties"]["spec"]
    assert any("has(self.trustedRoot)" in r and "has(self.repository)" in r for r in _rules(trust))


def test_every_example_validates_against_its_crd_schema() -> None:
    paths = sorted(EXAMPLES.glob("*.yaml"))
    assert paths
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            errors = [e.message for e in _validator(doc["kind"]).iter_errors(doc)]
            assert not errors, (path.name, errors)


def test_crd_schema_and_loader_agree_on_valid_documents() -> None:
    docs = [
        make_cip(),
        make_cip("key", authorities=[{"name": "k", "key": {"data": PEM_P256, "hashAlgorithm": "sha512"}}],
                 mutate={"pinDigest": True}, multiArch="everyPlatform", mode="warn"),
        make_cip("static", authorities=[{"name": "s", "static": {"action": "fail", "message": "no"}}]),
        {"apiVersion": "policy.signet.dev/v1alpha1", "kind": "TrustRoot", "metadata": {"name": "t"},
         "spec": {"trustedRoot": {"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}}},
    ]
    assert load_documents(docs).ok
    for doc in docs:
        assert not list(_validator(doc["kind"]).iter_errors(doc)), doc


def _broken(path: list[str | int], value: Any) -> dict[str, Any]:
    doc = make_cip()
    node: Any = doc
    for part in path[:-1]:
        node = node[part]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return copy.deepcopy(doc)


IDENTITY: list[str | int] = ["spec", "authorities", 0, "keyless", "identities", 0]


@pytest.mark.parametrize(
    "doc",
    [
        _broken(["spec", "images"], []),
        _broken(["spec", "images"], None),
        _broken(["spec", "authorities"], []),
        _broken(["spec", "mode"], "audit"),
        _broken(["spec", "images"], [{"glob": "["}]),
        _broken([*IDENTITY, "issuer"], None),
        _broken([*IDENTITY, "issuerRegExp"], "x"),
        _broken([*IDENTITY, "subjectRegexp"], "typo"),
        _broken(["spec", "authorities", 0, "static"], {"action": "pass"}),
        _broken(["spec", "authorities", 0, "keyless"], None),
        _broken(["spec", "authorities"], [{"name": "k", "key": {}}]),
        _broken(["spec", "authorities"], [{"name": "k", "static": {"action": "maybe"}}]),
    ],
)
def test_crd_schema_and_loader_agree_on_invalid_documents(doc: dict[str, Any]) -> None:
    assert not load_documents([doc]).ok
    assert list(_validator("ClusterImagePolicy").iter_errors(doc))


def test_examples_load_and_each_file_explains_itself() -> None:
    assert load_directory(EXAMPLES).ok
    for path in sorted(EXAMPLES.glob("*.yaml")):
        assert path.read_text().lstrip().startswith("#"), f"{path.name} should open with a comment for users"


def test_crds_are_valid_kubernetes_objects() -> None:
    import kubernetes_validate
    for path in sorted(CRDS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                kubernetes_validate.validate(doc, "1.30.0", strict=True)
