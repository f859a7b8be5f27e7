"""CEL attestation policies: the spec behaviours Signet's users rely on, and how failures read."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from webhook.policy.cel import ITERATION_BUDGET, compile_expression
from webhook.policy.expressions import ExpressionSyntaxError, PolicyDeniedError, Scope, attestation_document
from webhook.policy.policy_result import AuthorityMatch, MatchedSignature, policy_result_document

ERROR = "error"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

STATEMENT: dict[str, Any] = {
    "_type": "https://in-toto.io/Statement/v1",
    "subject": [{"name": "ghcr.io/acme/app", "digest": {"sha256": "a" * 64}}],
    "predicateType": "https://slsa.dev/provenance/v1",
    "predicate": {
        "buildDefinition": {
            "buildType": "https://actions.github.io/buildtypes/workflow/v1",
            "externalParameters": {"workflow": {"ref": "refs/tags/v1.2.3",
                                                "repository": "https://github.com/acme/app"}},
            "resolvedDependencies": [{"uri": "git+https://github.com/acme/app@refs/tags/v1.2.3",
                                      "digest": {"gitCommit": "b" * 40}}],
        },
        "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"},
                       "metadata": {"startedOn": "2026-02-28T10:00:00Z"}},
        "a": "x", "n": None, "nested": {"b": 1}, "list": [1, 2, 3], "num": 3,
    },
}
SIGNER = {"subject": "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.2.3",
          "issuer": "https://token.actions.githubusercontent.com", "sourceRepositoryRef": "refs/tags/v1.2.3"}
DOCUMENT = attestation_document(STATEMENT, SIGNER)


def verdict(expression: str, document: dict[str, Any] = DOCUMENT) -> bool | str:
    """True when the expression admits, else the denial reason."""
    try:
        assert compile_expression(expression).evaluate(document, now=NOW) == ()
    except PolicyDeniedError as exc:
        return exc.reason
    return True


# The CEL specification's behaviours (langdef.md), over `m` = predicate: True/False is the value
# the expression must produce, ERROR an evaluation error (which denies).
SPEC_TABLE: list[tuple[str, bool | str]] = [
    ("has(m.a)", True), ("has(m.zz)", False), ("has(m.nested.zz)", False), ("has(m.zz.b)", ERROR),
    ("m.zz == 1", ERROR), ("m.n == null", True), ("m['zz'] == 1", ERROR),
    ("[1,2,3].all(x, x > 0)", True), ("[1,2,3].exists(x, x == 2)", True), ("[1,2,3].exists_one(x, x > 1)", False),
    ("[1,2,3].map(x, x * 2) == [2,4,6]", True), ("[1,2,3].filter(x, x > 1) == [2,3]", True),
    ("[1,2,3].map(x, x > 1, x * 10) == [20,30]", True), ("{'a':1,'b':2}.all(k, k in ['a','b'])", True),
    ("'abc'.startsWith('ab')", True), ("'abc'.endsWith('bc')", True), ("'abc'.contains('b')", True),
    ("'xabcx'.matches('abc')", True), ("'abc'.matches('^b')", False), ("'é'.matches('^.$')", True),
    ("'abc'.matches('(?=a)')", ERROR), ("'aa'.matches('(a)\\\\1')", ERROR), ("'abc'.matches('[')", ERROR),
    ("size('héllo') == 5", True), ("size(b'abc') == 3", True),
    ("timestamp('2024-01-01T00:00:00Z') < timestamp('2024-01-02T00:00:00Z')", True),
    ("timestamp('2024-01-01T00:00:00Z') + duration('24h') == timestamp('2024-01-02T00:00:00Z')", True),
    ("timestamp('2024-01-01T01:00:00+01:00') == timestamp('2024-01-01T00:00:00Z')", True),
    ("duration('1h30m') == duration('90m')", True), ("timestamp('2024-03-05T00:00:00Z').getFullYear() == 2024", True),
    ("timestamp('not a time') == timestamp('2024-01-01T00:00:00Z')", ERROR),
    ("timestamp('9999-12-31T23:59:59Z') + duration('1s') > timestamp('2024-01-01T00:00:00Z')", ERROR),
    ("timestamp('2024-01-02T00:00:00Z') - timestamp('2024-01-01T00:00:00Z') == duration('24h')", True),
    ("9223372036854775807 + 1 > 0", ERROR), ("-9223372036854775808 - 1 < 0", ERROR),
    ("1 / 0 == 0", ERROR), ("1 % 0 == 0", ERROR), ("1u - 2u > 0u", ERROR),
    ("int('9223372036854775808') > 0", ERROR), ("uint(-1) > 0u", ERROR),
    ("-5 / 2 == -2", True), ("-5 % 3 == -2", True), ("1.0 / 0.0 > 1e308", True), ("dyn(2) + 2.0 == 4.0", ERROR),
    ("dyn(1) == 1u", True), ("dyn(1) == 1.0", True), ("dyn(1) == 'a'", False), ("dyn([1]) == [1.0]", True),
    ("dyn(1) < 2.5", True), ("dyn(2u) > 1", True),
    ("false && (1 / 0 == 1)", False), ("(1 / 0 == 1) || true", True), ("(1 / 0 == 1) && false", False),
    ("type(1) == int && type(1u) == uint && type(1.0) == double", True),
    ("string(1u) == '1' && int('12') == 12 && double('1.5') == 1.5", True),
    ("'\\u00e9' == 'é'", True), ("m.num == 3", True), ("m.list.size() == 3", True),
    ("'k' in {'k': 1}", True), ("m.nested.b + 1 == 2", True),
]


@pytest.mark.parametrize(("expression", "expected"), SPEC_TABLE, ids=[e for e, _ in SPEC_TABLE])
def test_cel_spec_behaviour(expression: str, expected: bool | str) -> None:
    result = verdict(expression.replace("m.", "predicate.").replace("m[", "predicate["))
    if expected is ERROR:
        assert isinstance(result, str) and result.startswith("CEL evaluation failed"), result
    elif expected is True:
        assert result is True
    else:
        assert isinstance(result, str) and result.startswith("CEL expression is false"), result


def test_a_slsa_provenance_policy_sees_the_predicate_the_statement_and_the_signer() -> None:
    assert verdict(
        'predicateType == "https://slsa.dev/provenance/v1"'
        ' && predicate.buildDefinition.externalParameters.workflow.ref.startsWith("refs/tags/")'
        ' && statement.subject.exists(s, s.digest.sha256 == "' + "a" * 64 + '")'
        ' && signer.issuer == "https://token.actions.githubusercontent.com"'
        ' && signer.sourceRepositoryRef == "refs/tags/v1.2.3"') is True
    branch = {**STATEMENT, "predicate": {"buildDefinition": {"externalParameters": {"workflow": {
        "ref": "refs/heads/main"}}}}}
    reason = verdict('predicate.buildDefinition.externalParameters.workflow.ref.startsWith("refs/tags/")',
                     attestation_document(branch, SIGNER))
    assert reason == ('CEL expression is false: '
                      'predicate.buildDefinition.externalParameters.workflow.ref.startsWith("refs/tags/")')


def test_now_is_the_evaluation_time_so_freshness_can_be_required() -> None:
    fresh = "now - timestamp(predicate.runDetails.metadata.startedOn) < duration('168h')"
    assert verdict(fresh) is True
    later = compile_expression(fresh)
    with pytest.raises(PolicyDeniedError, match="is false"):
        later.evaluate(DOCUMENT, now=datetime(2026, 4, 1, tzinfo=UTC))


def test_a_key_signature_is_seen_through_its_fingerprint() -> None:
    document = attestation_document(STATEMENT, {"keyFingerprint": "ab" * 32})
    assert verdict(f"signer.keyFingerprint == '{'ab' * 32}'", document) is True
    assert verdict("signer.issuer == 'x'", document) == 'CEL evaluation failed: Key not found in map : "issuer"'
    assert verdict("has(signer.issuer) && signer.issuer == 'x' || signer.keyFingerprint != ''", document) is True


def test_extensions_for_absent_json_fields_and_strings() -> None:
    assert verdict("predicate.?missing.deeper.orValue('none') == 'none'") is True
    assert verdict("'refs/tags/v1'.split('/').size() == 3 && 'ABC'.lowerAscii() == 'abc'") is True
    assert verdict("cel.bind(w, predicate.buildDefinition.externalParameters.workflow, w.ref != '')") is True


def test_json_integers_past_int64_reach_cel_as_doubles() -> None:
    document = attestation_document({**STATEMENT, "predicate": {"big": 2**70, "small": 7}}, SIGNER)
    assert verdict("predicate.big > 1e21 && predicate.small == 7", document) is True


@pytest.mark.parametrize(("text", "message"), [
    ("predicate.x.startsWith('a') &&\n  foo == 1", "line 2, column 3: undeclared reference to 'foo'"),
    ("predicate.x ==", "line 1, column 15: Syntax error"),
    ("predicateType + 1 == 2", "line 1, column 15: found no matching overload for '_+_' applied to '(string, int)'"),
    ("signer.subject", "returns string; it must return a bool"),
    ("size(predicate)", "returns int; it must return a bool"),
    ("predicate" + ".a" * 40 + " == 1", "Exceeded max recursion depth of 32"),
])
def test_an_expression_that_does_not_compile_is_refused_at_load_with_its_position(text: str, message: str) -> None:
    with pytest.raises(ExpressionSyntaxError, match="CEL expression") as caught:
        compile_expression(text)
    assert message in caught.value.reason


def test_a_non_bool_result_denies_with_what_it_returned() -> None:
    assert verdict("predicate.a") == "CEL expression returned string 'x', not a bool"
    assert verdict("predicate.list") == "CEL expression returned list<dyn> [1, 2, 3], not a bool"


def test_runtime_errors_deny_with_the_engine_message() -> None:
    assert verdict("predicate.zz == 1") == 'CEL evaluation failed: Key not found in map : "zz"'
    assert verdict("predicate.num / 0 == 1").startswith("CEL evaluation failed: divide by zero")  # type: ignore[union-attr]
    assert verdict("predicate.a.matches('(?=a)')") == (
        "CEL evaluation failed: invalid regular expression: invalid perl operator: (?=")


def test_a_runaway_comprehension_stops_at_the_iteration_budget() -> None:
    document = attestation_document({**STATEMENT, "predicate": {"l": list(range(200))}}, SIGNER)
    reason = verdict("predicate.l.all(x, predicate.l.all(y, x + y >= 0))", document)
    assert reason == (f"CEL evaluation stopped: more than {ITERATION_BUDGET} comprehension iterations "
                      "(the evaluation budget)")
    small = attestation_document({**STATEMENT, "predicate": {"l": list(range(99))}}, SIGNER)
    assert verdict("predicate.l.all(x, predicate.l.all(y, x + y >= 0))", small) is True


def test_a_policy_level_expression_sees_authority_matches_and_included_parts() -> None:
    document = policy_result_document(
        {"release": AuthorityMatch(signatures=[MatchedSignature(id="ab" * 32, subject="s", issuer="i")]),
         "break-glass": AuthorityMatch(static=True)},
        workload={"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                  "spec": {"replicas": 2}},
        include_type_meta=True)
    policy = compile_expression("authorityMatches.size() == 2 && typemeta.kind == 'Deployment' && "
                                "authorityMatches.release.signatures[0].issuer == 'i' && !has(spec.replicas)",
                                Scope.POLICY)
    assert policy.evaluate(document, now=NOW) == ()
    with pytest.raises(ExpressionSyntaxError, match="undeclared reference to 'predicate"):
        compile_expression("predicate.x == 1", Scope.POLICY)
