"""What must be verified: DELETE/CONNECT, subresources, non-workloads, UPDATE with same images."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.unit.admission.reviews import pod_spec, review_body, workload
from webhook.admission.decision import changed_images, plan_verification, requires_verification
from webhook.admission.review import AdmissionReview, GroupVersionResource, parse_review
from webhook.admission.workload import UnreadableWorkloadError


def _review(obj: Any, kind: str = "Pod", **kwargs: Any) -> AdmissionReview:
    return parse_review(review_body(obj, kind, **kwargs))


def test_create_verifies_every_image() -> None:
    review = _review(workload("Deployment", pod_spec("a:1", "b:1", init=("a:1",))), "Deployment")
    plan = plan_verification(review)
    assert [u.image for u in plan.images] == ["a:1", "a:1", "b:1"]
    assert plan.distinct == ["a:1", "b:1"]
    assert plan.reason == "2 image(s) to verify"
    assert requires_verification(review)


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_delete_and_connect_are_not_checked(operation: str) -> None:
    # DELETE carries the old object, not a new one; nothing starts.
    review = _review(None, "Deployment", operation=operation, old=workload("Deployment", pod_spec("a")))
    plan = plan_verification(review)
    assert plan.images == ()
    assert plan.reason == f"{operation} is not checked"
    assert not requires_verification(review)
    assert changed_images(review) == []


def test_non_workloads_are_not_checked() -> None:
    review = _review(workload("Role", {}), "Role")
    assert plan_verification(review).reason == "rbac.authorization.k8s.io/Role is not a workload"
    assert not requires_verification(review)


@pytest.mark.parametrize(("kind", "sub"), [("Pod", "status"), ("Pod", "binding"), ("Deployment", "scale")])
def test_other_subresources_are_not_checked(kind: str, sub: str) -> None:
    review = _review(workload(kind, pod_spec("unsigned:1")), kind, operation="UPDATE", sub_resource=sub)
    assert plan_verification(review).reason.startswith("subresource ")
    assert not requires_verification(review)


def test_ephemeral_containers_subresource_is_checked() -> None:
    old = workload("Pod", pod_spec("app:1"))
    new = workload("Pod", pod_spec("app:1", ephemeral=("debug:1",)))
    review = _review(new, operation="UPDATE", old=old, sub_resource="ephemeralcontainers")
    plan = plan_verification(review)
    assert [(u.image, u.kind) for u in plan.images] == [("app:1", "container"), ("debug:1", "ephemeralContainer")]
    assert [u.image for u in changed_images(review)] == ["debug:1"]


def test_ephemeral_containers_subresource_of_old_clusters_fails_closed() -> None:
    # Kubernetes < 1.25 sent kind EphemeralContainers: unreadable as a Pod, hence denied.
    obj = {"kind": "EphemeralContainers", "ephemeralContainers": [{"name": "d", "image": "debug:1"}]}
    review = _review(obj, "EphemeralContainers", operation="UPDATE", sub_resource="ephemeralcontainers")
    review = dataclasses.replace(review, resource=GroupVersionResource("", "v1", "pods"))
    with pytest.raises(UnreadableWorkloadError):
        plan_verification(review)
    assert requires_verification(review)


def test_update_with_unchanged_images_is_not_checked() -> None:
    old = workload("Deployment", pod_spec("a:1", "b:1"))
    new = workload("Deployment", pod_spec("b:1", "a:1"))  # reordered, same set
    new["spec"]["replicas"] = 5
    review = _review(new, "Deployment", operation="UPDATE", old=old)
    assert plan_verification(review).reason == "images unchanged from oldObject"
    assert not requires_verification(review)
    assert changed_images(review) == []


def test_update_that_changes_an_image_verifies_all_images_of_the_new_object() -> None:
    old = workload("Deployment", pod_spec("a:1", "b:1"))
    new = workload("Deployment", pod_spec("a:1", "b:2"))
    review = _review(new, "Deployment", operation="UPDATE", old=old)
    assert [u.image for u in plan_verification(review).images] == ["a:1", "b:2"]
    assert [u.image for u in changed_images(review)] == ["b:2"]


def test_update_that_removes_an_image_is_a_change() -> None:
    # The contract allows only *unchanged* images without verification.
    old = workload("Pod", pod_spec("a:1", "b:1"))
    review = _review(workload("Pod", pod_spec("a:1")), operation="UPDATE", old=old)
    assert requires_verification(review)
    assert changed_images(review) == []


@pytest.mark.parametrize("old", [None, {}, {"spec": {"containers": "x"}}, "None"])
def test_update_with_missing_or_unreadable_old_object_verifies(old: Any) -> None:
    review = _review(workload("Pod", pod_spec("a:1")), operation="UPDATE", old=old)
    assert [u.image for u in plan_verification(review).images] == ["a:1"]
    assert [u.image for u in changed_images(review)] == ["a:1"]


def test_update_of_an_unreadable_object_raises_even_if_old_matches() -> None:
    old = workload("Pod", pod_spec("a:1"))
    new = {"spec": {"containers": [{"image": "a:1"}, {"image": 3}]}}
    review = _review(new, operation="UPDATE", old=old)
    with pytest.raises(UnreadableWorkloadError):
        plan_verification(review)
    assert requires_verification(review)
    with pytest.raises(UnreadableWorkloadError):
        changed_images(review)


def test_workload_without_images_is_allowed_without_verification() -> None:
    review = _review(workload("Pod", {"containers": []}))
    assert plan_verification(review).reason == "Pod has no images"
    assert not requires_verification(review)


def test_create_without_object_is_unreadable() -> None:
    review = _review(None, "Job")
    with pytest.raises(UnreadableWorkloadError, match=r"the Job object is missing"):
        plan_verification(review)
