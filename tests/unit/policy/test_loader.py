"""Loading policy documents: valid ones load, every invalid one is reported where it is."""

from __future__ import annotations

import base64
import copy
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.policy.policy_docs import PEM_P256, make_cip, make_ip
from webhook.errors import PolicyError
from webhook.policy import (
    ClusterImagePolicy,
    HashAlgorithm,
    ImagePolicy,
    InvalidPolicyError,
    Mode,
    TrustRoot,
    load_directory,
    load_documents,
    load_file,
    load_object,
    load_text,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "policies" / "examples"


def _dump(*docs: Any) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def _authority(doc: dict[str, Any], index: int = 0) -> dict[str, Any]:
    authority: dict[str, Any] = doc["spec"]["authorities"][index]
    return authority


def _identity(doc: dict[str, Any]) -> dict[str, Any]:
    identity: dict[str, Any] = _authority(doc)["keyless"]["identities"][0]
    return identity


def test_valid_policy_loads_with_defaults() -> None:
    result = load_documents([make_cip()])
    assert result.ok and not result.warnings
    (policy,) = result.cluster_policies
    assert isinstance(policy, ClusterImagePolicy)
    assert policy.key == "ClusterImagePolicy/release"
    assert policy.spec.mode is Mode.ENFORCE
    assert policy.spec.mutate.pin_digest is False
    identity = policy.spec.authorities[0].keyless.identities[0]  # type: ignore[union-attr]
    assert identity.issuer == "https://token.actions.githubusercontent.com"
    assert identity.subject_reg_exp == r"^https://github\.com/acme/.+$" and policy.regexp_mode == "full"


def test_error_message_names_file_object_and_field(tmp_path: Path) -> None:
    doc = make_cip()
    _identity(doc)["issuerRegExp"] = ".*"
    path = tmp_path / "a.yaml"
    path.write_text(_dump(doc))
    result = load_file(path, source="policies/a.yaml")
    assert not result.as_written
    assert [str(p) for p in result.problems] == [
        'policies/a.yaml: ClusterImagePolicy "release": spec.authorities[0].keyless.identities[0]: '
        "exactly one of issuer and issuerRegExp is required"
    ]
    problem = result.problems[0]
    assert (problem.kind, problem.name, problem.path) == (
        "ClusterImagePolicy", "release", "spec.authorities[0].keyless.identities[0]")


def _bend(path: str, value: Any) -> dict[str, Any]:
    """A valid policy with one field (dotted path, ints index lists) set; None deletes it."""
    doc = make_cip()
    node: Any = doc
    parts = [int(p) if p.isdigit() else p for p in path.split(".")]
    for part in parts[:-1]:
        node = node[part]
    if value is None:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return doc


IDENTITY = "spec.authorities.0.keyless.identities.0"
INVALID = [
    # (field to bend, value, expected field path in the message, expected words)
    ("spec.images", None, "spec.images", "required"),
    ("spec.images", [], "spec.images", "at least 1"),
    ("spec.images", [{"glob": "["}], "spec.images[0].glob", "not regular expressions"),
    ("spec.images", [{"regex": "ghcr.io/.*"}], "spec.images[0].glob", "required"),
    ("spec.authorities", [], "spec.authorities", "at least 1"),
    ("spec.mode", "audit", "spec.mode", "'enforce' or 'warn'"),
    ("spec.multiArch", "some", "spec.multiArch", "referencedDigest"),
    ("spec.authorities.0.name", None, "spec.authorities[0].name", "required"),
    ("spec.authorities.0.static", {"action": "pass"}, "spec.authorities[0]",
     "exactly one of keyless, key and static"),
    ("spec.authorities.0.keyless", None, "spec.authorities[0]", "exactly one of keyless, key and static"),
    ("spec.authorities.0.keyless.identities", [], "spec.authorities[0].keyless.identities", "at least 1"),
    (f"{IDENTITY}.issuer", None, "spec.authorities[0].keyless.identities[0]",
     "exactly one of issuer and issuerRegExp"),
    (f"{IDENTITY}.subject", "x", "spec.authorities[0].keyless.identities[0]",
     "exactly one of subject and subjectRegExp"),
    (f"{IDENTITY}.subjectRegExp", "****", "spec.authorities[0].keyless.identities[0].subjectRegExp",
     "invalid regular expression"),
    (f"{IDENTITY}.subjectRegexp", "x", "spec.authorities[0].keyless.identities[0].subjectRegexp",
     "unknown field"),
    ("spec.authorities.0.keyless.extensions", {"sourceRepositoryRf": "refs/heads/main"},
     "spec.authorities[0].keyless.extensions", "unknown Fulcio claim(s) sourceRepositoryRf"),
    ("spec.authorities.0.keyless.extensions", {"runnerEnvironment": ""},
     "spec.authorities[0].keyless.extensions", "must not be empty"),
    ("spec.authorities.0.keyless.trustRootRef", "Not A Name", "spec.authorities[0].keyless.trustRootRef",
     "pattern"),
    ("spec.authorities.0.keyless.rekor", {"url": "rekor.sigstore.dev"}, "spec.authorities[0].keyless.rekor.url",
     "pattern"),
    ("metadata.name", "Bad_Name", "metadata.name", "pattern"),
    ("spec.surprise", True, "spec.surprise", "unknown field"),
    ("spec", None, "spec", "required"),
]


@pytest.mark.parametrize(("path", "value", "field", "words"), INVALID, ids=[f"{r[0]}={r[1]}" for r in INVALID])
def test_each_invalid_rule_is_reported_at_its_field(path: str, value: Any, field: str, words: str) -> None:
    result = load_documents([_bend(path, value)], source="policies/a.yaml")
    assert not result.as_written
    messages = [str(p) for p in result.problems]
    assert any(p.path == field and words in p.message for p in result.problems), messages
    name = "Bad_Name" if path == "metadata.name" else "release"
    assert all(m.startswith(f'policies/a.yaml: ClusterImagePolicy "{name}": ') for m in messages), messages


@pytest.mark.parametrize(
    ("key", "path", "words"),
    [
        ({}, "spec.authorities[0].key", "exactly one of data and secretRef"),
        ({"data": "---somedata---"}, "spec.authorities[0].key.data", "not a PEM-encoded public key"),
        ({"data": PEM_P256, "secretRef": {"name": "k"}}, "spec.authorities[0].key",
         "exactly one of data and secretRef"),
        ({"data": PEM_P256, "hashAlgorithm": "shaINVALID"}, "spec.authorities[0].key.hashAlgorithm", "sha256"),
        ({"kms": "awskms:///arn"}, "spec.authorities[0].key.kms", "unknown field"),
    ],
)
def test_invalid_key_authorities(key: dict[str, Any], path: str, words: str) -> None:
    result = load_documents([make_cip(authorities=[{"name": "k", "key": key}])])
    assert any(p.path == path and words in p.message for p in result.problems), result.problems


def test_key_and_static_authorities_load() -> None:
    doc = make_cip(authorities=[
        {"name": "pem", "key": {"data": PEM_P256, "hashAlgorithm": "sha512"}},
        {"name": "secret", "key": {"secretRef": {"name": "cosign-pub", "namespace": "signet"}}},
        {"name": "deny", "static": {"action": "fail", "message": "frozen"}},
    ])
    (policy,) = load_documents([doc]).cluster_policies
    pem, secret, deny = policy.spec.authorities
    assert pem.key is not None and pem.key.hash_algorithm is HashAlgorithm.SHA512
    assert secret.key is not None and secret.key.secret_ref is not None
    assert secret.key.secret_ref.namespace == "signet"
    assert deny.static is not None and (deny.static.action, deny.static.message) == ("fail", "frozen")


def test_duplicate_authority_names_are_rejected() -> None:
    doc = make_cip()
    doc["spec"]["authorities"].append(copy.deepcopy(_authority(doc)))
    result = load_documents([doc])
    assert [p.path for p in result.problems] == ["spec.authorities"]
    assert "used twice" in result.problems[0].message


def test_extensions_and_extra_settings_load() -> None:
    doc = make_cip(mutate={"pinDigest": True}, multiArch="everyPlatform", mode="warn")
    keyless = _authority(doc)["keyless"]
    keyless["extensions"] = {"sourceRepositoryRef": "refs/heads/main", "runnerEnvironment": "github-hosted"}
    keyless["trustRootRef"] = "private"
    keyless["rekor"] = {"url": "https://rekor.example.com"}
    (policy,) = load_documents([doc]).cluster_policies
    assert policy.spec.mutate.pin_digest and policy.spec.mode is Mode.WARN
    assert policy.spec.multi_arch.value == "everyPlatform"
    loaded = policy.spec.authorities[0].keyless
    assert loaded is not None and loaded.extensions["runnerEnvironment"] == "github-hosted"
    assert loaded.rekor is not None and loaded.rekor.url == "https://rekor.example.com"
    assert policy.spec.authorities[0].trust_root_refs() == ("private",)


def test_multi_document_file_keeps_the_valid_documents(tmp_path: Path) -> None:
    broken = make_cip("broken", mode="nope")
    text = "# comments only\n---\n" + _dump(make_cip("one"), None, broken, make_ip("two", "team-a"))
    path = tmp_path / "many.yaml"
    path.write_text(text)
    result = load_file(path)
    assert [p.key for p in result.as_written] == ["ClusterImagePolicy/one", "ImagePolicy/team-a/two"]
    # The broken one keeps covering its images, denying them, instead of disappearing.
    assert result.fail_closed == ("ClusterImagePolicy/broken",)
    assert [str(p) for p in result.problems] == [
        f"{path}: ClusterImagePolicy \"broken\": spec.mode: Input should be 'enforce' or 'warn'"]


def test_document_without_name_is_located_by_index() -> None:
    doc = make_cip()
    del doc["metadata"]
    result = load_text(_dump(make_cip("first"), doc), source="p.yaml")
    assert [str(p) for p in result.problems] == [
        "p.yaml: document 2 (ClusterImagePolicy): metadata: required field is missing"]


def test_yaml_syntax_error_is_a_problem_not_a_crash() -> None:
    result = load_text(_dump(make_cip("first")) + "---\nspec: [unclosed\n", source="bad.yaml")
    assert [p.key for p in result.policies] == ["ClusterImagePolicy/first"]
    assert len(result.problems) == 1 and "invalid YAML at line" in str(result.problems[0])


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, "not a Signet policy"),
        ({"apiVersion": "policy.signet.dev/v1alpha1", "kind": "Policy", "metadata": {"name": "x"}},
         "not a Signet policy"),
        ({"kind": "ClusterImagePolicy"}, "apiVersion and kind are required"),
        (["a", "list"], "must be a mapping"),
        ("text", "must be a mapping"),
    ],
)
def test_foreign_documents_are_problems(document: Any, words: str) -> None:
    result = load_documents([document], source="dir/x.yaml")
    assert not result.as_written and words in str(result.problems[0])


def test_image_policy_requires_a_namespace() -> None:
    doc = make_ip("team", "team-a")
    del doc["metadata"]["namespace"]
    result = load_documents([doc])
    assert "metadata.namespace is required" in str(result.problems[0])


def test_cluster_object_with_server_fields_loads() -> None:
    doc = make_cip()
    doc["metadata"].update(uid="1234", resourceVersion="42", generation=3, managedFields=[{"manager": "kubectl"}])
    doc["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    obj = load_object(doc)
    assert isinstance(obj, ClusterImagePolicy) and obj.origin == "cluster"


def test_load_object_raises_policy_error_with_every_problem() -> None:
    doc = _bend(f"{IDENTITY}.issuer", None)
    doc["spec"]["mode"] = "nope"
    with pytest.raises(InvalidPolicyError) as caught:
        load_object(doc, source="cluster")
    assert isinstance(caught.value, PolicyError)
    assert len(caught.value.problems) == 2
    assert 'cluster: ClusterImagePolicy "release": spec.mode' in str(caught.value)


def test_kubectl_list_output_loads_its_items() -> None:
    listing = {"apiVersion": "v1", "kind": "List", "items": [make_cip("a"), make_cip("b")]}
    assert [p.name for p in load_documents([listing]).policies] == ["a", "b"]


def test_duplicate_names_across_files_are_problems(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(_dump(make_cip("same", ("ghcr.io/a/**",))))
    (tmp_path / "b.yml").write_text(_dump(make_cip("same", ("ghcr.io/b/**",)), make_ip("same", "ns")))
    (tmp_path / "notes.txt").write_text("not yaml: [")
    (tmp_path / ".hidden.yaml").write_text("not yaml: [")
    result = load_directory(tmp_path)
    assert [p.key for p in result.policies] == ["ClusterImagePolicy/same", "ImagePolicy/ns/same"]
    assert result.cluster_policies[0].spec.images[0].glob == "ghcr.io/a/**"  # first file wins
    assert [str(p) for p in result.problems] == [
        f'{tmp_path / "b.yml"}: ClusterImagePolicy "same": duplicate name: already defined in '
        f'{tmp_path / "a.yaml"}; this one is ignored']


def test_load_directory_requires_a_directory(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="not a directory"):
        load_directory(tmp_path / "absent")


def test_examples_directory_loads_without_problems() -> None:
    result = load_directory(EXAMPLES)
    assert result.ok, [str(p) for p in result.problems]
    assert not result.warnings
    assert len(result.policies) >= 5
    modes = {p.spec.mode for p in result.policies}
    assert modes == {Mode.ENFORCE, Mode.WARN}
    assert any(isinstance(p, ImagePolicy) for p in result.policies)
    kinds = {
        "keyless" if a.keyless else "key" if a.key else "static"
        for p in result.policies for a in p.spec.authorities
    }
    assert {"keyless", "key"} <= kinds


# -- TrustRoot -----------------------------------------------------------------------------------

ROOT_JSON = json.dumps({"signed": {"_type": "root"}, "signatures": []}).encode()
TRUSTED_ROOT = {"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1", "tlogs": []}


def _trust_root(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "policy.signet.dev/v1alpha1", "kind": "TrustRoot", "metadata": {"name": "private"},
            "spec": spec}


def test_trust_root_sources_load() -> None:
    b64root = base64.b64encode(ROOT_JSON).decode()
    tarball = base64.b64encode(gzip.compress(b"tar bytes")).decode()
    result = load_documents([
        _trust_root({"trustedRoot": TRUSTED_ROOT}) | {"metadata": {"name": "inline-object"}},
        _trust_root({"trustedRoot": json.dumps(TRUSTED_ROOT)}) | {"metadata": {"name": "inline-string"}},
        _trust_root({"remote": {"mirror": "https://tuf.example.com", "root": b64root}}) | {"metadata": {"name": "r"}},
        _trust_root({"repository": {"root": b64root, "mirrorFS": tarball}}) | {"metadata": {"name": "airgap"}},
    ])
    assert result.ok, result.problems
    obj, string, remote, repository = result.trust_roots
    assert isinstance(obj, TrustRoot)
    assert obj.spec.trusted_root == string.spec.trusted_root == TRUSTED_ROOT
    assert remote.spec.remote is not None and remote.spec.remote.root_bytes == ROOT_JSON
    assert repository.spec.repository is not None
    assert repository.spec.repository.tarball == b"tar bytes"
    assert repository.spec.repository.targets == "targets"


@pytest.mark.parametrize(
    ("spec", "path", "words"),
    [
        ({}, "spec", "exactly one of trustedRoot, remote and repository"),
        ({"trustedRoot": TRUSTED_ROOT, "remote": {"mirror": "https://x", "root": "e30="}}, "spec", "exactly one"),
        ({"trustedRoot": "{not json"}, "spec.trustedRoot", "not valid JSON"),
        ({"trustedRoot": "[1]"}, "spec.trustedRoot", "JSON object"),
        ({"remote": {"mirror": "https://x", "root": "%%%"}}, "spec.remote.root", "not valid base64"),
        ({"remote": {"mirror": "ftp://x", "root": "e30="}}, "spec.remote.mirror", "pattern"),
        ({"repository": {"root": "e30=", "mirrorFS": "aGVsbG8="}}, "spec.repository.mirrorFS", "gzip"),
    ],
)
def test_invalid_trust_roots(spec: dict[str, Any], path: str, words: str) -> None:
    result = load_documents([_trust_root(spec)])
    assert any(p.path == path and words in p.message for p in result.problems), result.problems


def test_policy_controller_documents_search_and_signet_documents_match_in_full() -> None:
    pc = {"apiVersion": "policy.sigstore.dev/v1beta1", "kind": "ClusterImagePolicy", "metadata": {"name": "pc"},
          "spec": {"images": [{"glob": "ghcr.io/**"}], "authorities": [{"keyless": {"identities": [
              {"issuerRegExp": r"kubernetes\.default", "subjectRegExp": "^https://github.com/acme/"}]}}]}}
    (policy,) = load_documents([pc]).cluster_policies
    assert policy.regexp_mode == "search"
    (own,) = load_documents([make_cip()]).cluster_policies
    assert own.regexp_mode == "full"
