"""Workload → images: every kind, every place a Pod names an image, and unreadable workloads."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.admission.reviews import KINDS, pod_spec, workload
from webhook.admission.review import GroupVersionKind
from webhook.admission.workload import (
    ImageUse,
    UnreadableWorkloadError,
    distinct_images,
    is_workload,
    json_pointer,
    workload_images,
)

PREFIX = {
    "Pod": "/spec",
    "PodTemplate": "/template/spec",
    "CronJob": "/spec/jobTemplate/spec/template/spec",
}
WORKLOAD_KINDS = [k for k in KINDS if k != "Role"]


def _gvk(kind: str) -> GroupVersionKind:
    return GroupVersionKind(KINDS[kind][0], "v1", kind)


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
def test_every_workload_kind_yields_its_images_with_pointers(kind: str) -> None:
    obj = workload(kind, pod_spec("ghcr.io/acme/app:v1", "redis:7", init=("busybox",)))
    prefix = PREFIX.get(kind, "/spec/template/spec")

    assert workload_images(_gvk(kind), obj) == [
        ImageUse("busybox", "i0", "initContainer", f"{prefix}/initContainers/0/image"),
        ImageUse("ghcr.io/acme/app:v1", "c0", "container", f"{prefix}/containers/0/image"),
        ImageUse("redis:7", "c1", "container", f"{prefix}/containers/1/image"),
    ]


def test_pod_with_init_ephemeral_and_image_volumes() -> None:
    obj = workload("Pod", pod_spec("app:1", init=("init:1",), ephemeral=("debug:1",), volumes=("data:1", "model:2")))
    uses = workload_images(_gvk("Pod"), obj)

    assert [(u.image, u.kind, u.container, u.path) for u in uses] == [
        ("init:1", "initContainer", "i0", "/spec/initContainers/0/image"),
        ("app:1", "container", "c0", "/spec/containers/0/image"),
        ("debug:1", "ephemeralContainer", "e0", "/spec/ephemeralContainers/0/image"),
        # volumes[0] is a configMap volume: image volumes keep their own index.
        ("data:1", "volume", "v0", "/spec/volumes/1/image/reference"),
        ("model:2", "volume", "v1", "/spec/volumes/2/image/reference"),
    ]


def test_the_pointer_addresses_the_image_in_the_object() -> None:
    obj = workload("CronJob", pod_spec("a:1", "b:2", volumes=("c:3",)))
    for use in workload_images(_gvk("CronJob"), obj):
        node: Any = obj
        for part in use.path.split("/")[1:]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        assert node == use.image


@pytest.mark.parametrize(
    "kind",
    [
        GroupVersionKind("rbac.authorization.k8s.io", "v1", "Role"),
        GroupVersionKind("", "v1", "ConfigMap"),
        # Same kind name in another group is someone else's CRD: not read as a workload.
        GroupVersionKind("example.com", "v1", "Deployment"),
        GroupVersionKind("", "v1", "Deployment"),
    ],
)
def test_non_workloads_have_no_images(kind: GroupVersionKind) -> None:
    assert not is_workload(kind)
    assert workload_images(kind, {"spec": "anything", "template": 3}) == []
    assert workload_images(kind, None) == []


def test_legacy_extensions_group_is_a_workload() -> None:
    kind = GroupVersionKind("extensions", "v1beta1", "Deployment")
    assert workload_images(kind, workload("Deployment", pod_spec("a"))) == [
        ImageUse("a", "c0", "container", "/spec/template/spec/containers/0/image")
    ]


def test_empty_containers_list_has_no_images() -> None:
    assert workload_images(_gvk("Pod"), workload("Pod", {"containers": []})) == []


@pytest.mark.parametrize(
    ("kind", "obj", "problem"),
    [
        ("Pod", None, "the Pod object is missing from the request"),
        ("Pod", {"msg": "Expecting a Pod?"}, "Pod spec is missing"),
        ("Pod", {"spec": []}, "Pod spec must be an object"),
        ("Deployment", {"spec": {"replicas": 1}}, "Deployment spec.template is missing"),
        (
            "CronJob",
            {"spec": {"jobTemplate": {"spec": {"template": {"spec": 1}}}}},
            "CronJob spec.jobTemplate.spec.template.spec must be an object",
        ),
        ("PodTemplate", {"template": {}}, "PodTemplate template.spec is missing"),
        ("Pod", {"spec": {}}, "spec.containers is missing"),
        ("Pod", {"spec": {"containers": {"name": "a"}}}, "spec.containers must be an array"),
        ("Pod", {"spec": {"containers": ["nginx"]}}, "spec.containers[0] must be an object"),
        ("Pod", {"spec": {"containers": [{"name": "a", "image": 5}]}}, "spec.containers[0].image must be a string"),
        ("Pod", {"spec": {"containers": [{"name": "a"}]}}, "spec.containers[0].image is missing"),
        (
            "Pod",
            {"spec": {"containers": [{"image": "a"}], "initContainers": "x"}},
            "spec.initContainers must be an array",
        ),
        (
            "Pod",
            {"spec": {"containers": [], "ephemeralContainers": [{"image": None}]}},
            "spec.ephemeralContainers[0].image is missing",
        ),
        ("Pod", {"spec": {"containers": [], "volumes": {}}}, "spec.volumes must be an array"),
        ("Pod", {"spec": {"containers": [], "volumes": [1]}}, "spec.volumes[0] must be an object"),
        ("Pod", {"spec": {"containers": [], "volumes": [{"image": "a"}]}}, "spec.volumes[0].image must be an object"),
        (
            "Pod",
            {"spec": {"containers": [], "volumes": [{"image": {"reference": ["a"]}}]}},
            "spec.volumes[0].image.reference must be a string",
        ),
        (
            "Job",
            {"spec": {"template": {"spec": {"containers": [{"image": {"a": 1}}]}}}},
            "spec.template.spec.containers[0].image must be a string",
        ),
    ],
)
def test_unreadable_workloads_raise_naming_the_field(kind: str, obj: Any, problem: str) -> None:
    with pytest.raises(UnreadableWorkloadError) as info:
        workload_images(_gvk(kind), obj)
    assert problem in info.value.problems
    assert problem in str(info.value)


def test_every_problem_is_collected_and_the_message_is_bounded() -> None:
    obj = {"spec": {"containers": [{"image": i} for i in range(100)], "initContainers": 3}}
    with pytest.raises(UnreadableWorkloadError) as info:
        workload_images(_gvk("Pod"), obj)
    assert len(info.value.problems) == 101
    assert "and 96 more" in str(info.value)
    assert len(str(info.value)) < 500


def test_a_readable_image_next_to_an_unreadable_one_still_raises() -> None:
    # Never a partial list: the readable images alone could all be allowed.
    obj = {"spec": {"containers": [{"image": "good:1"}, {"image": 7}]}}
    with pytest.raises(UnreadableWorkloadError):
        workload_images(_gvk("Pod"), obj)


def test_templates_may_leave_the_image_to_be_defaulted() -> None:
    # Controllers' templates may omit the image (set later by tooling); the Pod is checked itself.
    obj = workload("Deployment", {"containers": [{"name": "a"}, {"name": "b", "image": "b:1"}]})
    assert [u.image for u in workload_images(_gvk("Deployment"), obj)] == ["b:1"]


def test_missing_container_name_is_tolerated() -> None:
    uses = workload_images(_gvk("Pod"), {"spec": {"containers": [{"image": "a"}]}})
    assert uses == [ImageUse("a", "", "container", "/spec/containers/0/image")]


def test_distinct_images_keeps_first_seen_order() -> None:
    uses = workload_images(_gvk("Pod"), workload("Pod", pod_spec("b", "a", "b", init=("a",))))
    assert distinct_images(uses) == ["a", "b"]


def test_json_pointer_escapes_per_rfc6901() -> None:
    assert json_pointer(["metadata", "annotations", "a/b~c", 0]) == "/metadata/annotations/a~1b~0c/0"
    assert json_pointer([]) == ""
