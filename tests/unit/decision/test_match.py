"""``spec.match``: a policy covers only the objects whose resource (and labels) it names, as in policy-controller.

The images are real (signed by the kit, or not at all) in the in-memory registry; what changes is
the object under review: its resource as the admission request names it and its own labels.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.unit.admission.reviews import pod_spec, review_body
from tests.unit.admission.reviews import workload as workload_object
from tests.unit.decision.features import (
    HOST,
    REPO,
    Rig,
    default_kit,
    keyless_policy,
    load_policies,
    put_sig,
    rigs,
    sign,
)
from tests.unit.oci.fake_registry import FakeRegistry
from webhook.admission import parse_review
from webhook.decision.plans import Planner
from webhook.decision.workload import Workload, review_workload
from webhook.policy.matching import MatchTarget
from webhook.policy.models import NoMatchPolicy

pytestmark = pytest.mark.anyio

PODS = "  match:\n    - {group: '', version: v1, resource: pods}\n"
WEB_DEPLOYMENTS = ("  match:\n    - group: apps\n      version: '*'\n      resource: deployments\n"
                   "      selector:\n        matchExpressions:\n"
                   "          - {key: tier, operator: In, values: [web, api]}\n")


@pytest.fixture
async def rig() -> AsyncIterator[Callable[..., Rig]]:
    async for build in rigs():
        yield build


def obj(kind: str, labels: dict[str, str] | None = None, api_version: str = "v1") -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind,
            "metadata": {"name": "w", "namespace": "team-a", **({"labels": labels} if labels else {})}}


def pod(labels: dict[str, str] | None = None) -> Workload:
    return Workload.of(obj("Pod", labels), group="", version="v1", resource="pods")


def deployment(labels: dict[str, str] | None = None) -> Workload:
    return Workload.of(obj("Deployment", labels, "apps/v1"), group="apps", version="v1", resource="deployments")


def images(fake: FakeRegistry) -> tuple[str, str]:
    """(signed, unsigned) image references."""
    signed = fake.put_image(REPO, None, seed=b"signed")
    put_sig(fake, signed, sign(default_kit(), signed))
    unsigned = fake.put_image(REPO, None, seed=b"unsigned")
    return f"{HOST}/{REPO}@{signed}", f"{HOST}/{REPO}@{unsigned}"


async def test_a_policy_matching_pods_covers_pods_and_nothing_else(rig: Callable[..., Rig]) -> None:
    fake = FakeRegistry()
    signed, unsigned = images(fake)
    r = rig(load_policies(keyless_policy(spec_extra=PODS), no_match=NoMatchPolicy.ALLOW), fake)
    assert (await r.one(signed, workload=pod())).verdict == "allow"
    denied = await r.one(unsigned, workload=pod())
    assert denied.verdict == "deny" and denied.policy == "release" and "no signatures found" in denied.reason
    # a Deployment is not covered: no policy applies, so noMatchPolicy (allow) decides
    other = await r.one(unsigned, workload=deployment({"tier": "web"}))
    assert other.verdict == "allow" and other.policy is None and "no policy matches" in other.reason


async def test_a_label_selector_picks_objects_by_their_own_labels(rig: Callable[..., Rig]) -> None:
    fake = FakeRegistry()
    _signed, unsigned = images(fake)
    r = rig(load_policies(keyless_policy(spec_extra=WEB_DEPLOYMENTS)), fake)
    for labels in ({"tier": "web"}, {"tier": "api", "team": "x"}):
        covered = await r.one(unsigned, workload=deployment(labels))
        assert covered.verdict == "deny" and covered.policy == "release", labels
    unlabelled: list[dict[str, str] | None] = [{"tier": "db"}, None]
    for other in unlabelled:
        uncovered = await r.one(unsigned, workload=deployment(other))
        assert uncovered.verdict == "deny" and uncovered.policy is None, other  # noMatchPolicy deny
        assert "no policy matches" in uncovered.reason
    # the right labels on the wrong resource do not count either
    assert (await r.one(unsigned, workload=pod({"tier": "web"}))).policy is None


async def test_every_matching_policy_still_applies_and_others_do_not(rig: Callable[..., Rig]) -> None:
    fake = FakeRegistry()
    signed, _unsigned = images(fake)
    pods_only = keyless_policy(name="pods-by-other", subject="other@example.com", spec_extra=PODS)
    r = rig(load_policies(keyless_policy(), pods_only), fake)
    # the Pod meets both policies (AND): the one for pods wants another signer
    refused = await r.one(signed, workload=pod())
    assert refused.verdict == "deny" and refused.policy == "pods-by-other"
    assert (await r.one(signed, workload=deployment())).verdict == "allow"


async def test_without_the_object_every_policy_whose_globs_match_applies(rig: Callable[..., Rig]) -> None:
    fake = FakeRegistry()
    _signed, unsigned = images(fake)
    r = rig(load_policies(keyless_policy(spec_extra=PODS), no_match=NoMatchPolicy.ALLOW), fake)
    # pre-warming knows no object: the policy is not left out for not knowing
    unknown = await r.one(unsigned)
    assert unknown.verdict == "deny" and unknown.policy == "release"


async def test_a_bare_document_has_its_resource_derived_from_its_kind(rig: Callable[..., Rig]) -> None:
    fake = FakeRegistry()
    _signed, unsigned = images(fake)
    r = rig(load_policies(keyless_policy(spec_extra=WEB_DEPLOYMENTS), no_match=NoMatchPolicy.ALLOW), fake)
    as_evaluate_reads_it = obj("Deployment", {"tier": "web"}, "apps/v1")
    assert (await r.one(unsigned, workload=as_evaluate_reads_it)).policy == "release"
    assert (await r.one(unsigned, workload=obj("StatefulSet", {"tier": "web"}, "apps/v1"))).verdict == "allow"


async def test_namespaced_policies_follow_match_too(rig: Callable[..., Rig]) -> None:
    fake = FakeRegistry()
    signed, _unsigned = images(fake)
    team = ("apiVersion: policy.signet.dev/v1alpha1\nkind: ImagePolicy\n"
            "metadata: {name: team-pods, namespace: team-a}\n"
            + keyless_policy(subject="team@example.com", spec_extra=PODS).split("metadata: {name: release}\n")[1])
    r = rig(load_policies(keyless_policy(), team), fake)
    denied = await r.one(signed, workload=pod())
    assert denied.verdict == "deny" and denied.policy == "team-pods"
    assert (await r.one(signed, workload=deployment())).verdict == "allow"


async def test_a_warm_engine_answers_each_object_for_itself(rig: Callable[..., Rig]) -> None:
    fake = FakeRegistry()
    _signed, unsigned = images(fake)
    r = rig(load_policies(keyless_policy(spec_extra=WEB_DEPLOYMENTS), no_match=NoMatchPolicy.ALLOW), fake)
    for _ in range(2):  # the second round is answered from plans and verdicts already cached
        assert (await r.one(unsigned, workload=deployment({"tier": "web"}))).verdict == "deny"
        assert (await r.one(unsigned, workload=deployment({"tier": "db"}))).verdict == "allow"
        assert (await r.one(unsigned, workload=pod({"tier": "web"}))).verdict == "allow"


def test_plans_depend_on_the_object_only_when_some_policy_uses_match() -> None:
    web, db = (MatchTarget.of("apps", "v1", "deployments", {"labels": {"tier": t, "build": t}}) for t in ("web", "db"))
    plain = Planner(load_policies(keyless_policy()), on_error="deny")
    assert plain.plan(f"{HOST}/{REPO}:v1", "ns", web) is plain.plan(f"{HOST}/{REPO}:v1", "ns", db)
    matching = Planner(load_policies(keyless_policy(spec_extra=WEB_DEPLOYMENTS)), on_error="deny")
    assert matching.plan(f"{HOST}/{REPO}:v1", "ns", web) is not matching.plan(f"{HOST}/{REPO}:v1", "ns", db)
    # labels no selector names do not make plans of their own
    other_build = MatchTarget.of("apps", "v1", "deployments", {"labels": {"tier": "web", "build": "7"}})
    assert matching.plan(f"{HOST}/{REPO}:v1", "ns", web) is matching.plan(f"{HOST}/{REPO}:v1", "ns", other_build)


def test_labels_that_are_not_strings_are_not_labels() -> None:
    target = MatchTarget.of("", "v1", "pods", {"labels": {"tier": "web", "n": 7, "x": None}})
    assert target.label_map == {"tier": "web"}
    assert MatchTarget.of("", "v1", "pods", {"labels": ["tier"]}).label_map == {}
    assert MatchTarget.of("", "v1", "pods", None).labels == ()


def test_the_review_gives_the_resource_it_names_and_the_objects_own_labels() -> None:
    obj = workload_object("Deployment", pod_spec("ghcr.io/acme/app:v1"))
    obj["metadata"]["labels"] = {"tier": "web"}
    obj["spec"]["template"]["metadata"]["labels"] = {"tier": "db"}
    review = parse_review(review_body(obj, "Deployment"))
    target = review_workload(review)
    assert target is not None and target.document is review.obj
    assert target.target == MatchTarget("apps", "v1", "deployments", (("tier", "web"),))
    deleted = parse_review(review_body(None, "Deployment", operation="DELETE"))
    assert review_workload(deleted) is None
