"""Identity regexps in policy documents: RE2 (Go syntax) at load, full match or search by group."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sigstore_kit import default_kit
from tests.unit.policy.policy_docs import make_cip
from webhook.errors import IdentityMismatchError
from webhook.policy import ClusterImagePolicy, load_documents
from webhook.policy._base import set_regexp_mode
from webhook.policy.authorities import Identity

FIELD = "spec.authorities[0].keyless.identities[0]"
WORKFLOW = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
GITHUB = "https://token.actions.githubusercontent.com"


def _with_identity(**identity: str) -> dict[str, Any]:
    doc = make_cip()
    doc["spec"]["authorities"][0]["keyless"]["identities"] = [identity]
    return doc


def _pc(**identity: str) -> dict[str, Any]:
    return {"apiVersion": "policy.sigstore.dev/v1beta1", "kind": "ClusterImagePolicy", "metadata": {"name": "pc"},
            "spec": {"images": [{"glob": "ghcr.io/acme/**"}],
                     "authorities": [{"keyless": {"url": "https://fulcio.sigstore.dev", "identities": [identity]}}]}}


def _loaded(doc: dict[str, Any]) -> ClusterImagePolicy:
    result = load_documents([doc], source="p.yaml")
    assert result.ok, [str(p) for p in result.problems]
    (policy,) = result.cluster_policies
    return policy


def _identity(policy: ClusterImagePolicy) -> Identity:
    keyless = policy.spec.authorities[0].keyless
    assert keyless is not None
    return keyless.identities[0]


@pytest.mark.parametrize(("field", "pattern", "words"), [
    ("subjectRegExp", r"^https://github\.com/(?=acme)", "lookahead and lookbehind are not supported"),
    ("subjectRegExp", r"(acme)/\1", "backreferences are not supported"),
    ("subjectRegExp", r"@acme\.com\Z", r"\z is the end of the text"),
    ("subjectRegExp", r"a\Cb", r"\C (any byte) is not supported by Go"),
    ("subjectRegExp", r"(?P<dépôt>.+)", "group name dépôt is not supported"),
    ("issuerRegExp", r"\p{L}{1000}", "too large"),
    ("issuerRegExp", r"x{9876543210}", "repetition count {9876543210} is too large"),
])
def test_refused_regexps_are_reported_at_their_field(field: str, pattern: str, words: str) -> None:
    identity = {"issuer": GITHUB, "subject": WORKFLOW, field: pattern}
    del identity["subject" if field == "subjectRegExp" else "issuer"]
    for doc, where in ((_with_identity(**identity), 'p.yaml: ClusterImagePolicy "release"'),
                       (_pc(**identity), 'p.yaml: ClusterImagePolicy "pc"')):
        result = load_documents([doc], source="p.yaml")
        messages = [str(p) for p in result.problems]
        expected = f"{where}: {FIELD}.{field}: invalid regular expression {pattern}: "
        assert any(m.startswith(expected) and words in m for m in messages), messages


def test_signet_documents_match_in_full() -> None:
    policy = _loaded(_with_identity(issuer=GITHUB, subjectRegExp=r"^https://github\.com/acme/"))
    assert policy.regexp_mode == "full"
    leaf = default_kit().issue_leaf(WORKFLOW, GITHUB).certificate
    with pytest.raises(IdentityMismatchError) as info:
        _identity(policy).to_policy(policy.regexp_mode).verify(leaf)
    assert info.value.expected == rf"subject matching regexp ^https://github\.com/acme/ (full match), issuer {GITHUB}"
    _identity(_loaded(_with_identity(issuer=GITHUB, subjectRegExp=r"https://github\.com/acme/.+"))).to_policy(
        "full").verify(leaf)


def test_a_policy_marked_as_policy_controller_searches() -> None:
    policy = _loaded(_pc(issuerRegExp=r"kubernetes\.default", subjectRegExp=r"^https://github\.com/acme/"))
    set_regexp_mode(policy, "search")  # what the loader does for policy.sigstore.dev documents
    assert policy.regexp_mode == "search"
    leaf = default_kit().issue_leaf(WORKFLOW, "https://kubernetes.default.svc").certificate
    _identity(policy).to_policy(policy.regexp_mode).verify(leaf)
    other = default_kit().issue_leaf("https://github.com/evil/app/x@refs/heads/main", "https://kubernetes.default.svc")
    with pytest.raises(IdentityMismatchError) as info:
        _identity(policy).to_policy(policy.regexp_mode).verify(other.certificate)
    assert info.value.expected == (r"subject matching regexp ^https://github\.com/acme/ (search), "
                                   r"issuer matching regexp kubernetes\.default (search)")


def test_regexps_are_kept_as_written() -> None:
    pattern = r"^https://github\.com/acme/[\w.-]+/\.github/workflows/.+@refs/tags/v\d+(\.\d+){2}$"
    assert _identity(_loaded(_with_identity(issuer=GITHUB, subjectRegExp=pattern))).subject_reg_exp == pattern
