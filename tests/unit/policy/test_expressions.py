"""The policy-expression interface: loading, pinned bodies, the policy-level input, and the sandbox."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from webhook.errors import PolicyError
from webhook.policy.expressions import (
    ExpressionSyntaxError,
    Language,
    Limits,
    PolicyDeniedError,
    Scope,
    attestation_document,
    compile_policy,
    encode_document,
    json_safe,
    policy_digest,
    verify_pinned,
)
from webhook.policy.policy_result import (
    AuthorityMatch,
    MatchedAttestation,
    MatchedSignature,
    platform_key,
    policy_result_document,
)
from webhook.policy.sandbox import Sandbox, SandboxBusyError

STATEMENT = {"_type": "https://in-toto.io/Statement/v1", "predicateType": "https://slsa.dev/provenance/v1",
             "subject": [{"name": "app", "digest": {"sha256": "a" * 64}}],
             "predicate": {"buildDefinition": {"externalParameters": {"workflow": {"ref": "refs/tags/v1"}}}}}
DOCUMENT = attestation_document(STATEMENT, {"issuer": "https://token.actions.githubusercontent.com"})
TAG_ONLY = 'predicate.buildDefinition.externalParameters.workflow.ref.startsWith("refs/tags/")'
REGO_TAG_ONLY = ('package sigstore\nimport rego.v1\ndefault isCompliant := false\nisCompliant if startswith('
                 'input.predicate.buildDefinition.externalParameters.workflow.ref, "refs/tags/")')
# About 5 s of CPU in rego-cpp (it stops itself only after 10 million plan statements), 70 MB.
SLOW_REGO = ("package sigstore\nimport rego.v1\nisCompliant if {\n  xs := numbers.range(1, 3000)\n"
             "  count([1 | some i in xs; some j in xs; i + j == 0]) > 0\n}")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(Limits(timeout=10.0), workers=2) as shared:
        yield shared


def test_cue_is_refused_with_the_reason() -> None:
    with pytest.raises(PolicyError, match="type: cue is not supported: CUE has no Python runtime"):
        compile_policy("cue", 'predicateType: "https://spdx.dev/Document"', Scope.ATTESTATION)


@pytest.mark.parametrize(("language", "text", "message"), [
    ("wasm", "x", "unknown policy type 'wasm'; expected cel or rego"),
    ("cel", "   ", "the cel policy is empty"),
    ("cel", "true || " * 20000 + "true", "bytes; the limit is 65536"),
])
def test_unusable_policies_are_refused_at_load(language: str, text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        compile_policy(language, text, Scope.ATTESTATION)


def test_the_digest_changes_with_the_text_language_and_scope() -> None:
    cel = compile_policy("cel", TAG_ONLY, Scope.ATTESTATION)
    assert policy_digest(cel) == policy_digest(compile_policy("cel", TAG_ONLY, Scope.ATTESTATION))
    assert policy_digest(cel) != policy_digest(compile_policy("cel", TAG_ONLY + " && true", Scope.ATTESTATION))
    assert policy_digest(cel) != policy_digest(compile_policy("cel", "true", Scope.POLICY))


def test_a_pinned_policy_body_must_match_its_sha256sum() -> None:
    body = REGO_TAG_ONLY.encode()
    digest = hashlib.sha256(body).hexdigest()
    assert verify_pinned(body, digest) == REGO_TAG_ONLY
    assert verify_pinned(body, "sha256:" + digest.upper()) == REGO_TAG_ONLY
    with pytest.raises(PolicyError, match=f"policy body has sha256 {digest}, but the policy pins {'0' * 64}"):
        verify_pinned(body, "0" * 64)
    with pytest.raises(PolicyError, match="is not 64 hexadecimal digits"):
        verify_pinned(body, "abc")


def test_documents_are_bounded_before_they_reach_an_engine() -> None:
    with pytest.raises(PolicyDeniedError, match=r"the policy input is 5[0-9]* bytes; the limit is 1024"):
        encode_document({"statement": {"blob": "x" * 5000}}, Limits(max_document_bytes=1024))
    deep: Any = "leaf"
    for _ in range(200):
        deep = [deep]
    with pytest.raises(PolicyDeniedError, match="nests deeper than 128 levels"):
        json_safe(deep)
    assert json.loads(encode_document({"n": 2**70})) == {"n": float(2**70)}
    with pytest.raises(PolicyDeniedError, match="not JSON data"):
        json_safe({"when": object()})
    with pytest.raises(PolicyDeniedError, match="signer attributes must be strings: issuer"):
        attestation_document(STATEMENT, {"issuer": 1})  # type: ignore[dict-item]


def test_the_policy_level_document_has_policy_controllers_shape() -> None:
    keyless = MatchedSignature(
        id="ab" * 32, subject="https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1",
        issuer="https://token.actions.githubusercontent.com",
        claims={"githubWorkflowTrigger": "push", "githubWorkflowSHA": "c" * 40, "githubWorkflowName": "release",
                "githubWorkflowRepository": "acme/app", "githubWorkflowRef": "refs/tags/v1",
                "sourceRepositoryRef": "refs/tags/v1"})
    keyed = MatchedAttestation(id="cd" * 32, predicate_type="https://spdx.dev/Document")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "shop"},
           "spec": {"containers": [{"name": "app", "image": "ghcr.io/acme/app@sha256:" + "a" * 64}]}}
    config = {"os": "linux", "architecture": "arm", "variant": "v7", "config": {"User": "1000"}}
    document = policy_result_document(
        {"release": AuthorityMatch(signatures=[keyless]), "sbom": AuthorityMatch(attestations={"spdx": [keyed]}),
         "allow": AuthorityMatch(static=True), "empty": AuthorityMatch()},
        workload=pod, include_spec=True, include_object_meta=True, include_type_meta=True,
        config={platform_key(config): config})
    assert document == {
        "authorityMatches": {
            "release": {"signatures": [{
                "id": "ab" * 32, "subject": "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1",
                "issuer": "https://token.actions.githubusercontent.com", "githubWorkflowTrigger": "push",
                "githubWorkflowSha": "c" * 40, "githubWorkflowName": "release", "githubWorkflowRepo": "acme/app",
                "githubWorkflowRef": "refs/tags/v1"}]},
            "sbom": {"attestations": {"spdx": [{"id": "cd" * 32, "predicateType": "https://spdx.dev/Document"}]}},
            "allow": {"static": True},
            "empty": {},
        },
        "config": {"linux/arm/v7": config},
        "spec": pod["spec"],
        "metadata": pod["metadata"],
        "typemeta": {"apiVersion": "v1", "kind": "Pod"},
    }


def test_parts_not_asked_for_are_absent() -> None:
    document = policy_result_document({"a": AuthorityMatch(static=True)},
                                      workload={"apiVersion": "v1", "kind": "Pod", "spec": {}, "metadata": {}})
    assert document == {"authorityMatches": {"a": {"static": True}}}
    assert platform_key({"os": "windows", "architecture": "amd64", "os.version": "10.0.20348.2227"}) == \
        "windows/amd64:10.0.20348.2227"
    assert platform_key({"architecture": "amd64"}) == ""


@pytest.mark.parametrize(("language", "text"), [("cel", TAG_ONLY), ("rego", REGO_TAG_ONLY)])
def test_the_sandbox_evaluates_like_the_engine_in_process(sandbox: Sandbox, language: str, text: str) -> None:
    policy = compile_policy(language, text, Scope.ATTESTATION, sandbox=sandbox)
    assert sandbox.evaluate(policy, DOCUMENT) == policy.evaluate(DOCUMENT) == ()
    branch = attestation_document({**STATEMENT, "predicate": {"buildDefinition": {"externalParameters": {
        "workflow": {"ref": "refs/heads/main"}}}}}, {})
    with pytest.raises(PolicyDeniedError) as in_sandbox:
        sandbox.evaluate(policy, branch)
    with pytest.raises(PolicyDeniedError) as in_process:
        policy.evaluate(branch)
    assert in_sandbox.value.reason == in_process.value.reason


def test_the_sandbox_compiles_rego_for_the_loader(sandbox: Sandbox) -> None:
    with pytest.raises(ExpressionSyntaxError, match="line 2, column 1: Invalid literal"):
        compile_policy("rego", "package sigstore\nisCompliant {\n}}", Scope.ATTESTATION, sandbox=sandbox)


def test_a_runaway_policy_is_killed_at_the_time_limit_and_the_next_one_runs(sandbox: Sandbox) -> None:
    slow = compile_policy("rego", SLOW_REGO, Scope.ATTESTATION, sandbox=sandbox)
    quick = compile_policy("cel", TAG_ONLY, Scope.ATTESTATION)
    with Sandbox(Limits(timeout=0.5), workers=1) as own:
        assert own.evaluate(quick, DOCUMENT) == ()
        start = time.monotonic()
        with pytest.raises(PolicyDeniedError, match=r"exceeded its time limit of 0\.5 s"):
            own.evaluate(slow, DOCUMENT)
        assert time.monotonic() - start < 3
        assert own.evaluate(quick, DOCUMENT) == ()


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="the memory limit reads /proc")
def test_a_policy_that_grows_without_bound_is_killed_at_the_memory_limit() -> None:
    hog = compile_policy("cel", "predicate.l.map(x, predicate.s + predicate.s + predicate.s).size() > 0",
                         Scope.ATTESTATION)
    document = attestation_document({"predicate": {"l": list(range(9000)), "s": "a" * 100_000}}, {})
    with Sandbox(Limits(timeout=20.0, memory_bytes=256 * 1024 * 1024), workers=1) as sandbox, \
            pytest.raises(PolicyDeniedError, match="exceeded its memory limit of 256 MiB"):
        sandbox.evaluate(hog, document)


def test_a_worker_that_dies_denies_and_is_replaced(sandbox: Sandbox) -> None:
    with Sandbox(Limits(timeout=10.0), workers=1) as own:
        quick = compile_policy("cel", TAG_ONLY, Scope.ATTESTATION)
        slow = compile_policy("rego", SLOW_REGO, Scope.ATTESTATION, sandbox=sandbox)
        own.evaluate(quick, DOCUMENT)
        pid = own._idle[0].process.pid
        threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()
        with pytest.raises(PolicyDeniedError, match=r"crashed \(killed by signal 9\)"):
            own.evaluate(slow, DOCUMENT)
        assert own.evaluate(quick, DOCUMENT) == ()


def test_a_busy_sandbox_is_an_infrastructure_error_not_a_verdict(sandbox: Sandbox) -> None:
    slow = compile_policy("rego", SLOW_REGO, Scope.ATTESTATION, sandbox=sandbox)
    quick = compile_policy("cel", TAG_ONLY, Scope.ATTESTATION)
    outcome: list[str] = []

    def occupy() -> None:
        try:
            own.evaluate(slow, DOCUMENT)
        except PolicyDeniedError as exc:
            outcome.append(exc.reason)

    with Sandbox(Limits(timeout=2.0), workers=1, wait=0.3) as own:
        own.evaluate(quick, DOCUMENT)
        occupier = threading.Thread(target=occupy)
        occupier.start()
        time.sleep(0.2)
        with pytest.raises(SandboxBusyError, match=r"no policy worker became free within 0\.3 s"):
            own.evaluate(quick, DOCUMENT)
        occupier.join()
    assert outcome == ["policy evaluation exceeded its time limit of 2 s"]


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads the worker's environment from /proc")
def test_workers_do_not_inherit_the_webhooks_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNET_REGISTRY_PASSWORD", "hunter2")
    with Sandbox(workers=1) as own:
        own.evaluate(compile_policy("cel", TAG_ONLY, Scope.ATTESTATION), DOCUMENT)
        environment = Path(f"/proc/{own._idle[0].process.pid}/environ").read_bytes()
    assert b"hunter2" not in environment
    assert b"SIGNET_REGISTRY_PASSWORD" not in environment


def test_the_language_of_a_compiled_policy_is_known(sandbox: Sandbox) -> None:
    assert compile_policy("cel", TAG_ONLY, Scope.ATTESTATION).language is Language.CEL
    assert compile_policy("rego", REGO_TAG_ONLY, Scope.ATTESTATION, sandbox=sandbox).language is Language.REGO


def test_a_started_sandbox_answers_from_the_workers_it_started() -> None:
    with Sandbox(workers=2) as own:
        own.start()
        started = {worker.process.pid for worker in own._idle}
        assert len(started) == 2
        own.evaluate(compile_policy("cel", TAG_ONLY, Scope.ATTESTATION), DOCUMENT)
        assert {worker.process.pid for worker in own._idle} == started
