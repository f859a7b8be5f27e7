"""The fields policy-controller's documents bring are Signet's too: its CRDs and its loader agree on them."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.sigstore_kit.instance import SigstoreKit
from tests.unit.policy.policy_docs import make_cip
from tests.unit.policy.test_crds import _rules, _schema, _validator
from webhook.policy import load_documents

KIND = "ClusterImagePolicy"
CA_PEM = SigstoreKit.create(seed_entries=1).ca.root.public_bytes(Encoding.PEM).decode()
IDENTITIES = [{"issuer": "https://token.actions.githubusercontent.com", "subject": "build@acme.example"}]


def authority(**fields: Any) -> dict[str, Any]:
    return {"name": "a", "keyless": {"identities": IDENTITIES}} | fields


VALID = [
    make_cip(authorities=[authority(signatureFormat="bundle",
                                    source=[{"oci": "ghcr.io/acme/sigs", "tagPrefix": "v1-",
                                             "signaturePullSecrets": [{"name": "regcred"}]}],
                                    rfc3161timestamp={"trustRootRef": "tsa"})]),
    make_cip(authorities=[{"name": "ca", "keyless": {"identities": IDENTITIES, "caCert": {"data": CA_PEM},
                                                     "insecureIgnoreSCT": True}}]),
    make_cip(authorities=[{"name": "ca", "keyless": {"identities": IDENTITIES,
                                                     "caCert": {"secretRef": {"name": "corp-ca"}}}}]),
    make_cip(match=[{"group": "apps", "version": "*", "resource": "deployments",
                     "selector": {"matchLabels": {"tier": "web"},
                                  "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]}}]),
    {"apiVersion": "policy.signet.dev/v1alpha1", "kind": "TrustRoot", "metadata": {"name": "t"},
     "spec": {"remote": {"mirror": "https://tuf.example", "root": base64.b64encode(b"{}").decode(),
                         "targets": "repo/targets", "trustedRootTarget": "root.json"}}},
]


@pytest.mark.parametrize("doc", VALID)
def test_valid_for_both(doc: dict[str, Any]) -> None:
    result = load_documents([doc])
    assert result.ok, [str(p) for p in result.problems]
    assert not [e.message for e in _validator(doc["kind"]).iter_errors(doc)]


INVALID = [
    make_cip(authorities=[authority(signatureFormat="simplesigning")]),
    make_cip(authorities=[authority(source=[{"oci": "ghcr.io/a/b"}, {"oci": "ghcr.io/c/d"}])]),
    make_cip(authorities=[authority(source=[{"signaturePullSecrets": [{"name": ""}]}])]),
    make_cip(authorities=[{"name": "ca", "keyless": {"identities": IDENTITIES, "caCert": {}}}]),
    make_cip(match=[{"resource": "apples", "version": "v1"}]),
    make_cip(match=[{"resource": "pods", "selector": {"matchExpressions": [{"key": "a", "operator": "Equal"}]}}]),
]


@pytest.mark.parametrize("doc", INVALID)
def test_invalid_for_both(doc: dict[str, Any]) -> None:
    assert not load_documents([doc]).ok
    assert list(_validator(doc["kind"]).iter_errors(doc))


@pytest.mark.parametrize("conflict", [{"rfc3161timestamp": {"trustRootRef": "t"}},
                                      {"source": [{"oci": "ghcr.io/a/b"}]}])
def test_static_with_a_signature_requirement_is_refused_by_both(conflict: dict[str, Any]) -> None:
    result = load_documents([make_cip(authorities=[{"name": "s", "static": {"action": "pass"}, **conflict}])])
    assert [p.path for p in result.problems] == ["spec.authorities[0]"]
    assert "static cannot be combined with" in result.problems[0].message
    # the API server checks it with this CEL rule (jsonschema cannot run it)
    assert "!has(self.static) || (!has(self.source) && !has(self.rfc3161timestamp))" in _rules(_schema(KIND))


def test_a_namespaced_policy_names_ca_secrets_of_its_own_namespace_only() -> None:
    doc = make_cip(authorities=[{"name": "ca", "keyless": {
        "identities": IDENTITIES, "caCert": {"secretRef": {"name": "corp-ca", "namespace": "team-b"}}}}])
    doc["kind"], doc["metadata"]["namespace"] = "ImagePolicy", "team-a"
    (problem,) = load_documents([doc]).problems
    assert "authorities[0].keyless.caCert.secretRef.namespace" in problem.message and "team-b" in problem.message
    doc["spec"]["authorities"][0]["keyless"]["caCert"]["secretRef"]["namespace"] = "team-a"
    assert load_documents([doc]).ok
