"""Rego policies: policy-controller's query and input, its result objects, and clean refusals."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.policy.expressions import (
    ExpressionSyntaxError,
    PolicyDeniedError,
    Scope,
    attestation_document,
    compile_policy,
)
from webhook.policy.policy_result import AuthorityMatch, MatchedAttestation, MatchedSignature, policy_result_document
from webhook.policy.rego import CompiledRego, check_source, compile_module

VULN_STATEMENT: dict[str, Any] = {
    "_type": "https://in-toto.io/Statement/v0.1",
    "subject": [{"name": "ghcr.io/acme/app", "digest": {"sha256": "a" * 64}}],
    "predicateType": "https://cosign.sigstore.dev/attestation/vuln/v1",
    "predicate": {
        "invocation": {"uri": "invocation.example.com/cosign-testing"},
        "scanner": {"uri": "fakescanner.example.com/cosign-testing", "version": "1.0",
                    "result": {"findings": [{"id": "CVE-2026-0001", "severity": "LOW"}]}},
        "metadata": {"scanStartedOn": "2026-02-28T10:00:00Z", "scanFinishedOn": "2026-02-28T10:05:00Z"},
    },
}
DOCUMENT = attestation_document(VULN_STATEMENT, {"keyFingerprint": "ab" * 32})

# The shape of policy-controller's documented examples: Rego v0, a default, a rule per check.
POLICY_CONTROLLER_V0 = """package sigstore

default isCompliant = false

isCompliant {
  input.predicateType == "https://cosign.sigstore.dev/attestation/vuln/v1"
  input.predicate.scanner.uri == "fakescanner.example.com/cosign-testing"
  not critical
}

critical {
  input.predicate.scanner.result.findings[_].severity == "CRITICAL"
}
"""

WITH_ERRORS = """package sigstore
import rego.v1

default isCompliant := false

isCompliant if count(errors) == 0

errors contains sprintf("%s is %s", [f.id, f.severity]) if {
  some f in input.predicate.scanner.result.findings
  f.severity in {"CRITICAL", "HIGH"}
}
"""

# cosign's result-object form: a set of {result, error, warning}.
RESULT_OBJECTS = """package sigstore

isCompliant[response] {
  input.predicate.scanner.uri == "fakescanner.example.com/cosign-testing"
  response := {"result": true, "error": "", "warning": "scanner is a test double"}
}

isCompliant[response] {
  input.predicate.scanner.uri != "fakescanner.example.com/cosign-testing"
  response := {"result": false, "error": sprintf("unknown scanner %s", [input.predicate.scanner.uri]),
               "warning": ""}
}
"""


def with_findings(*severities: str, scanner: str = "fakescanner.example.com/cosign-testing") -> dict[str, Any]:
    predicate = {**VULN_STATEMENT["predicate"], "scanner": {
        "uri": scanner, "result": {"findings": [{"id": f"CVE-{i}", "severity": s} for i, s in enumerate(severities)]}}}
    return attestation_document({**VULN_STATEMENT, "predicate": predicate}, {"keyFingerprint": "ab" * 32})


def test_a_policy_controller_v0_policy_passes_a_compliant_statement() -> None:
    policy = compile_module(POLICY_CONTROLLER_V0)
    assert policy.evaluate(DOCUMENT) == ()


def test_a_policy_controller_v0_policy_denies_and_says_what_isCompliant_was() -> None:
    policy = compile_module(POLICY_CONTROLLER_V0)
    with pytest.raises(PolicyDeniedError) as caught:
        policy.evaluate(with_findings("LOW", "CRITICAL"))
    assert caught.value.reason == "Rego policy is not compliant: data.sigstore.isCompliant is false"


def test_the_errors_rule_becomes_the_denial_message() -> None:
    policy = compile_module(WITH_ERRORS)
    assert policy.evaluate(with_findings("LOW", "MEDIUM")) == ()
    with pytest.raises(PolicyDeniedError) as caught:
        policy.evaluate(with_findings("HIGH", "LOW", "CRITICAL"))
    assert caught.value.reason == "Rego policy is not compliant: CVE-0 is HIGH; CVE-2 is CRITICAL"


def test_result_objects_pass_with_their_warning_or_deny_with_their_error() -> None:
    policy = compile_module(RESULT_OBJECTS)
    assert policy.evaluate(DOCUMENT) == ("scanner is a test double",)
    with pytest.raises(PolicyDeniedError) as caught:
        policy.evaluate(with_findings(scanner="evil.example.com"))
    assert caught.value.reason == "Rego policy is not compliant: unknown scanner evil.example.com"


def test_an_undefined_isCompliant_denies() -> None:
    policy = compile_module('package sigstore\nisCompliant { input.predicateType == "nope" }')
    with pytest.raises(PolicyDeniedError, match="isCompliant is undefined for this input"):
        policy.evaluate(DOCUMENT)


@pytest.mark.parametrize(("module", "message"), [
    ('package sigstore\nisCompliant = true { true }\nisCompliant = false { true }',
     "Rego evaluation failed: complete rules must not produce multiple outputs"),
    ("package sigstore\nisCompliant { lookup(input) }", "Rego evaluation failed: Function not found: lookup"),
    ("package sigstore\nisCompliant := {\"result\": 1}", "isCompliant is a object without a passing result"),
])
def test_runtime_failures_deny_with_the_engine_message(module: str, message: str) -> None:
    with pytest.raises(PolicyDeniedError) as caught:
        compile_module(module).evaluate(DOCUMENT)
    assert message in caught.value.reason


@pytest.mark.parametrize(("module", "message"), [
    ("package sigstore\n\nisCompliant {\n  input.x ==\n}",
     "does not compile: line 4, column 11: Invalid boolean operator"),
    ("package sigstore\nisCompliant := {", "line 2, column 16: this is unclosed"),
    ("package policy\nisCompliant := true", "is package policy; policy-controller's query"),
    ("package sigstore\nallow := true", "defines no isCompliant rule"),
    ("isCompliant := true", "has no package declaration"),
    ("package sigstore\nisCompliant { count(opa.runtime().env) > 0 }",
     "(line 2, column 21) calls opa.runtime, which Signet refuses: it reveals the webhook's environment"),
    ("package sigstore\nisCompliant { http . send({}).status_code == 200 }", "calls http.send, which Signet refuses"),
])
def test_a_module_that_cannot_load_is_refused_with_its_position(module: str, message: str) -> None:
    with pytest.raises(ExpressionSyntaxError) as caught:
        compile_module(module)
    assert message in caught.value.reason


def test_forbidden_names_in_comments_and_strings_are_only_text() -> None:
    module = ('package sigstore\n# opa.runtime() would leak the environment\n'
              'isCompliant { x := "opa.runtime()"; y := `http.send(\n)`; x != y }')
    check_source(module)
    assert compile_module(module).evaluate(DOCUMENT) == ()


def test_loading_compiles_in_a_worker_and_refuses_a_broken_module() -> None:
    policy = compile_policy("rego", POLICY_CONTROLLER_V0, Scope.ATTESTATION)
    assert isinstance(policy, CompiledRego)
    assert policy.evaluate(DOCUMENT) == ()
    with pytest.raises(ExpressionSyntaxError, match="line 2, column 16: this is unclosed"):
        compile_policy("rego", "package sigstore\nisCompliant := {", Scope.ATTESTATION)


def test_a_policy_level_module_sees_policy_controllers_policy_result() -> None:
    module = """package sigstore
import rego.v1

default isCompliant := false

isCompliant if {
  input.authorityMatches.release.signatures[0].githubWorkflowRepo == "acme/app"
  input.authorityMatches.scanner.attestations.vuln[0].predicateType == "https://cosign.sigstore.dev/attestation/vuln/v1"
  input.typemeta.kind == "Deployment"
}
"""
    release = MatchedSignature(id="cd" * 32, subject="s", issuer="https://token.actions.githubusercontent.com",
                               claims={"githubWorkflowRepository": "acme/app"})
    scan = MatchedAttestation(id="ef" * 32, predicate_type="https://cosign.sigstore.dev/attestation/vuln/v1")
    matches = {"release": AuthorityMatch(signatures=[release]),
               "scanner": AuthorityMatch(attestations={"vuln": [scan]})}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {}}
    policy = compile_module(module, Scope.POLICY)
    assert policy.evaluate(policy_result_document(matches, workload=deployment, include_type_meta=True)) == ()
    with pytest.raises(PolicyDeniedError, match="isCompliant is false"):
        policy.evaluate(policy_result_document(matches, workload={**deployment, "kind": "Job"},
                                               include_type_meta=True))
