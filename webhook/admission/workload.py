"""The images a workload object runs, each with the JSON pointer of its field (for patches).

Which kinds are workloads is decided by API group *and* kind from ``request.kind``: a CRD that
happens to be called ``Deployment`` in another group is not read as one.

A workload whose images cannot be read (no pod spec, ``containers`` not an array, an image that
is not a string...) raises ``UnreadableWorkloadError``, never returns a partial list: a partial
list could be empty and an empty list means "nothing to verify", i.e. allowed. The review itself
was well-formed, so the caller answers with a 200 denial naming the problem, not a 400. Should a
caller forget to catch it, the request fails (500), which a ``failurePolicy: Fail`` webhook also
turns into a rejection: the object is never admitted by accident.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from webhook.admission.review import GroupVersionKind, JsonObject
from webhook.errors import InputError

ImageKind: TypeAlias = Literal["container", "initContainer", "ephemeralContainer", "volume"]

_TEMPLATE_SPEC: Final = ("spec", "template", "spec")
_WORKLOAD_GROUPS: Final = ("apps", "extensions")  # extensions: pre-1.16 clusters' Deployments

# A pathological object may have thousands of bad entries; the denial names the first few.
_MAX_PROBLEMS_SHOWN: Final = 5

# (group, kind) → path from the object to its PodSpec.
_POD_SPEC_PATHS: Final[dict[tuple[str, str], tuple[str, ...]]] = {
    ("", "Pod"): ("spec",),
    ("", "ReplicationController"): _TEMPLATE_SPEC,
    ("", "PodTemplate"): ("template", "spec"),
    **{
        (group, kind): _TEMPLATE_SPEC
        for group in _WORKLOAD_GROUPS
        for kind in ("Deployment", "ReplicaSet", "DaemonSet")
    },
    ("apps", "StatefulSet"): _TEMPLATE_SPEC,
    ("batch", "Job"): _TEMPLATE_SPEC,
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
}

# Container lists of a PodSpec, in the order the kubelet starts them.
_CONTAINER_LISTS: Final[tuple[tuple[str, ImageKind], ...]] = (
    ("initContainers", "initContainer"),
    ("containers", "container"),
    ("ephemeralContainers", "ephemeralContainer"),
)


@dataclass(frozen=True, slots=True)
class ImageUse:
    """One image field of a workload: its value, owner, and JSON pointer (RFC 6901)."""

    image: str
    container: str  # container name, or volume name for kind "volume"
    kind: ImageKind
    path: str  # e.g. /spec/template/spec/containers/0/image


class UnreadableWorkloadError(InputError):
    """A workload's images cannot be read; the caller must deny (HTTP 200, allowed: false)."""

    def __init__(self, problems: Sequence[str]) -> None:
        shown = "; ".join(problems[:_MAX_PROBLEMS_SHOWN])
        if len(problems) > _MAX_PROBLEMS_SHOWN:
            shown += f"; and {len(problems) - _MAX_PROBLEMS_SHOWN} more"
        super().__init__("cannot read the images of this object: " + shown)
        self.problems = tuple(problems)


def json_pointer(parts: Iterable[str | int]) -> str:
    """Build an RFC 6901 JSON pointer, escaping ``~`` and ``/`` in keys."""
    return "".join("/" + (str(p) if isinstance(p, int) else p.replace("~", "~0").replace("/", "~1")) for p in parts)


@functools.cache
def _pointer_prefix(base: tuple[str, ...], field: str) -> str:
    # A handful of (pod spec path, list) pairs exist: escape each once, not per admission.
    return json_pointer([*base, field])


def _dotted(parts: Sequence[str | int]) -> str:
    # For humans: spec.containers[0].image reads better in a denial than a JSON pointer.
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def is_workload(kind: GroupVersionKind) -> bool:
    """True for the kinds whose images Signet checks (ARCHITECTURE.md §3)."""
    return (kind.group, kind.kind) in _POD_SPEC_PATHS


def pod_spec_path(kind: GroupVersionKind) -> tuple[str, ...] | None:
    """Path from an object of this kind to its PodSpec; ``None`` when it is not a workload."""
    return _POD_SPEC_PATHS.get((kind.group, kind.kind))


def _image_problem(value: object, *, required: bool) -> str | None:
    # Only called when the value is not a usable image string.
    if value is None or value == "":
        # Workload controllers' templates may leave the image to be defaulted later; the Pod
        # that eventually runs must have one and is checked itself. A Pod must name it now.
        return "is missing" if required else None
    return "must be a string"


def _pod_spec_images(
    spec: JsonObject, base: tuple[str, ...], *, images_required: bool, problems: list[str]
) -> list[ImageUse]:
    # Hot path (every admission): no per-image lists or escaping; the field names are constants
    # so a pointer prefix is built once per list. Dotted paths are only built for problems.
    uses: list[ImageUse] = []
    for field, kind in _CONTAINER_LISTS:
        containers: Any = spec.get(field)
        if containers is None:
            if field == "containers":
                problems.append(f"{_dotted([*base, field])} is missing")
            continue
        if not isinstance(containers, list):
            problems.append(f"{_dotted([*base, field])} must be an array")
            continue
        prefix = _pointer_prefix(base, field)
        for index, container in enumerate(containers):
            if not isinstance(container, dict):
                problems.append(f"{_dotted([*base, field, index])} must be an object")
                continue
            image: Any = container.get("image")
            if isinstance(image, str) and image:
                name = container.get("name")
                uses.append(ImageUse(image, name if isinstance(name, str) else "", kind, f"{prefix}/{index}/image"))
            elif (problem := _image_problem(image, required=images_required)) is not None:
                problems.append(f"{_dotted([*base, field, index, 'image'])} {problem}")

    volumes: Any = spec.get("volumes")
    if volumes is None:
        return uses
    if not isinstance(volumes, list):
        problems.append(f"{_dotted([*base, 'volumes'])} must be an array")
        return uses
    prefix = _pointer_prefix(base, "volumes")
    for index, volume in enumerate(volumes):
        if not isinstance(volume, dict):
            problems.append(f"{_dotted([*base, 'volumes', index])} must be an object")
            continue
        source: Any = volume.get("image")
        if source is None:
            continue  # not an image volume
        if not isinstance(source, dict):
            problems.append(f"{_dotted([*base, 'volumes', index, 'image'])} must be an object")
            continue
        image = source.get("reference")
        if isinstance(image, str) and image:
            name = volume.get("name")
            uses.append(
                ImageUse(image, name if isinstance(name, str) else "", "volume", f"{prefix}/{index}/image/reference")
            )
        elif (problem := _image_problem(image, required=images_required)) is not None:
            problems.append(f"{_dotted([*base, 'volumes', index, 'image', 'reference'])} {problem}")
    return uses


def workload_images(kind: GroupVersionKind, obj: JsonObject | None) -> list[ImageUse]:
    """Every image ``obj`` runs, in pod-spec order; ``[]`` for kinds that are not workloads.

    Raises ``UnreadableWorkloadError`` (listing every problem found) when ``obj`` is a workload
    whose images cannot all be read.
    """
    path = pod_spec_path(kind)
    if path is None:
        return []
    if obj is None:
        raise UnreadableWorkloadError([f"the {kind.kind} object is missing from the request"])
    node: Any = obj
    for depth, key in enumerate(path):
        child: Any = node.get(key)
        if not isinstance(child, dict):
            where = _dotted(path[: depth + 1])
            state = "is missing" if child is None else "must be an object"
            raise UnreadableWorkloadError([f"{kind.kind} {where} {state}"])
        node = child
    problems: list[str] = []
    uses = _pod_spec_images(node, path, images_required=kind.kind == "Pod", problems=problems)
    if problems:
        raise UnreadableWorkloadError(problems)
    return uses


def distinct_images(uses: Iterable[ImageUse]) -> list[str]:
    """The distinct image strings of ``uses``, first-seen order (each is verified once)."""
    return list(dict.fromkeys(use.image for use in uses))
