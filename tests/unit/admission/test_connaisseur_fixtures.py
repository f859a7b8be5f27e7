"""The 29 recorded AdmissionReviews of connaisseur: each parses, or is malformed, exactly as it should.

Broken ones must give HTTP 400 (malformed) or a clean denial (unreadable workload), never a crash.
"""

from __future__ import annotations

import pytest

from tests.fixtures_path import shared_fixture
from webhook.admission.decision import plan_verification
from webhook.admission.response import allowed, malformed_body, unreadable
from webhook.admission.review import MalformedReviewError, parse_review
from webhook.admission.workload import UnreadableWorkloadError

pytestmark = pytest.mark.fixtures

CHARLIE = (
    "securesystemsengineering/charlie-image@sha256:91ac9b26df583762234c1cdb2fc930364754ccc59bc752a2bfe298d2ea68f9ff"
)
SAME = "sha256:91ac9b26df583762234c1cdb2fc930364754ccc59bc752a2bfe298d2ea68f9ff"
ALICE_DIGEST = "sha256:1234567890123456123456789012345612345678901234561234567890123456"

# file → images to verify (in pod-spec order) or the outcome for those not verified.
VERIFY: dict[str, list[str]] = {
    "01_deployment": ["securesystemsengineering/alice-image:test"],
    "02_pod": [CHARLIE],
    "03_replicaset": ["securesystemsengineering/sample-san-sama:hai"],
    "04_cronjob": ["busybox"],  # oldObject is the string "None": ignored
    "05_replication_controller": ["nginx"],
    "06_daemonset": ["quay.io/fluentd_elasticsearch/fluentd:v2.5.2"],
    "07_statefulset": ["registry.k8s.io/nginx-slim:0.8"],
    "08_job": ["perl:5.34.0"],
    "09_dply_multi_image": ["busybox:1.32", "redis:alpine", "mysql:8"],  # init container first
    "13_unknown_parent": [CHARLIE],  # owner references are not Signet's business
    "14_deny_me_job": [f"my.reg/deny-me@{SAME}"],
    "15_allow_me_job": [f"my.reg/allow-me@{SAME}"],
    "16_mismatch_uid": [CHARLIE],
    "17_deny_me_pod": [f"my.reg/deny-me@{SAME}"],
    "18_allow_me_pod": [f"my.reg/allow-me@{SAME}"],
    "19_pod_initcontainer": ["nginx", CHARLIE],
    "20_pod_ephemeralcontainer": [CHARLIE, "nginx"],
    "22_allow_me_with_index_docker_io": ["test-image"],
    "23_alice_digest_dpl": [f"securesystemsengineering/alice-image@{ALICE_DIGEST}"],
    "24_alice_tag_digest_dpl": [f"securesystemsengineering/alice-image:test@{ALICE_DIGEST}"],
    "27_deleted_deployment": ["busybox"],  # a CREATE, even with a deletionTimestamp
}
SKIP: dict[str, str] = {
    "10_update": "images unchanged from oldObject",
    "11_role": "rbac.authorization.k8s.io/Role is not a workload",
    "28_deleted_deployment_updated": "images unchanged from oldObject",  # finalizer removal
    "29_deleted_deployment_update_for_delete": "images unchanged from oldObject",
}
MALFORMED: dict[str, str] = {
    "21_broken_admission_request": "request.uid must be a non-empty string",
    "25_null_request": "body must be a JSON object (an AdmissionReview), not null",
    "26_broken_update_admission_request": "request.uid must be a non-empty string",
}
UNREADABLE: dict[str, str] = {"12_err_pod": "Pod spec is missing"}
V1BETA1 = {"01", "03", "04", "09", "13", "23", "24", "27", "28", "29"}


def _body(name: str) -> bytes:
    return shared_fixture("admission-review", "connaisseur", f"{name}.json").read_bytes()


def test_every_fixture_has_an_expectation() -> None:
    folder = shared_fixture("admission-review", "connaisseur")
    names = {p.stem for p in folder.glob("*.json")}
    assert names == set(VERIFY) | set(SKIP) | set(MALFORMED) | set(UNREADABLE)


@pytest.mark.parametrize("name", sorted(VERIFY))
def test_workloads_name_their_images(name: str) -> None:
    review = parse_review(_body(name))
    assert review.api_version == ("admission.k8s.io/v1beta1" if name[:2] in V1BETA1 else "admission.k8s.io/v1")
    assert [u.image for u in plan_verification(review).images] == VERIFY[name]


@pytest.mark.parametrize("name", sorted(SKIP))
def test_allowed_without_verification(name: str) -> None:
    review = parse_review(_body(name))
    plan = plan_verification(review)
    assert (plan.images, plan.reason) == ((), SKIP[name])
    answer = allowed(review)
    assert review.uid.encode() in answer and review.api_version.encode() in answer


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_broken_requests_are_malformed(name: str) -> None:
    with pytest.raises(MalformedReviewError) as info:
        parse_review(_body(name))
    assert info.value.reason == MALFORMED[name]
    assert MALFORMED[name].encode() in malformed_body(info.value)


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_unreadable_workloads_are_denied_cleanly(name: str) -> None:
    review = parse_review(_body(name))
    with pytest.raises(UnreadableWorkloadError) as info:
        plan_verification(review)
    assert UNREADABLE[name] in info.value.problems
    answer = unreadable(review, info.value)
    assert b'"allowed":false' in answer and UNREADABLE[name].encode() in answer


def test_ephemeral_container_fixture_marks_the_debug_container() -> None:
    uses = plan_verification(parse_review(_body("20_pod_ephemeralcontainer"))).images
    assert [(u.kind, u.path) for u in uses] == [
        ("container", "/spec/containers/0/image"),
        ("ephemeralContainer", "/spec/ephemeralContainers/0/image"),
    ]
