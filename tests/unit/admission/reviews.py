"""Builders of AdmissionReview bodies and workload objects for the admission tests."""

from __future__ import annotations

from typing import Any

import orjson

UID = "0b7e5c3a-1111-4222-8333-444455556666"
DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32

# request.kind group and resource name of each workload kind.
KINDS: dict[str, tuple[str, str]] = {
    "Pod": ("", "pods"),
    "ReplicationController": ("", "replicationcontrollers"),
    "PodTemplate": ("", "podtemplates"),
    "Deployment": ("apps", "deployments"),
    "ReplicaSet": ("apps", "replicasets"),
    "StatefulSet": ("apps", "statefulsets"),
    "DaemonSet": ("apps", "daemonsets"),
    "Job": ("batch", "jobs"),
    "CronJob": ("batch", "cronjobs"),
    "Role": ("rbac.authorization.k8s.io", "roles"),
}


def pod_spec(
    *images: str, init: tuple[str, ...] = (), ephemeral: tuple[str, ...] = (), volumes: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A PodSpec running ``images`` (containers c0, c1...), plus init/ephemeral/image volumes."""
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}", "image": img} for i, img in enumerate(images)]}
    if init:
        spec["initContainers"] = [{"name": f"i{i}", "image": img} for i, img in enumerate(init)]
    if ephemeral:
        spec["ephemeralContainers"] = [{"name": f"e{i}", "image": img} for i, img in enumerate(ephemeral)]
    if volumes:
        spec["volumes"] = [{"name": "config", "configMap": {"name": "cm"}}] + [
            {"name": f"v{i}", "image": {"reference": img, "pullPolicy": "IfNotPresent"}}
            for i, img in enumerate(volumes)
        ]
    return spec


def workload(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """An object of ``kind`` whose pod spec is ``spec``, at the place that kind keeps it."""
    group = KINDS[kind][0]
    meta = {"name": "w", "namespace": "team-a"}
    api = f"{group}/v1" if group else "v1"
    template = {"metadata": {"labels": {"app": "w"}}, "spec": spec}
    if kind == "Pod":
        return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}
    if kind == "PodTemplate":
        return {"apiVersion": api, "kind": kind, "metadata": meta, "template": template}
    if kind == "CronJob":
        return {
            "apiVersion": api,
            "kind": kind,
            "metadata": meta,
            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}},
        }
    if kind == "Role":
        return {"apiVersion": api, "kind": kind, "metadata": meta, "rules": []}
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": {"replicas": 1, "template": template}}


def review_dict(
    obj: Any,
    kind: str = "Pod",
    *,
    operation: str = "CREATE",
    old: Any = None,
    sub_resource: str | None = None,
    api_version: str = "admission.k8s.io/v1",
    uid: str = UID,
) -> dict[str, Any]:
    """An AdmissionReview request as the API server sends it."""
    group, resource = KINDS.get(kind, ("example.com", "things"))
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": group, "version": "v1", "kind": kind},
        "resource": {"group": group, "version": "v1", "resource": resource},
        "requestKind": {"group": group, "version": "v1", "kind": kind},
        "name": "w",
        "namespace": "team-a",
        "operation": operation,
        "userInfo": {"username": "dev@example.com", "groups": ["system:authenticated"]},
        "object": obj,
        "oldObject": old,
        "dryRun": False,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
    }
    if sub_resource:
        request["subResource"] = sub_resource
    return {"apiVersion": api_version, "kind": "AdmissionReview", "request": request}


def review_body(obj: Any, kind: str = "Pod", **kwargs: Any) -> bytes:
    """``review_dict`` encoded as the API server would send it."""
    return orjson.dumps(review_dict(obj, kind, **kwargs))
