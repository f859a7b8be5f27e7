"""Parsing an AdmissionReview request body into the few fields Signet decides on.

The API server sends ``admission.k8s.io/v1`` (``v1beta1`` from old clusters or old webhook
configurations); we answer in the version we were asked in. The body is decoded once with orjson
and the workload objects are kept as the decoded dicts (no copy, no model validation): only the
image fields are ever read from them, by ``workload.py``.

Two outcomes only: an ``AdmissionReview`` or a ``MalformedReviewError`` (the HTTP 400 channel,
see STYLE.md / kopf). No other exception escapes ``parse_review`` whatever the bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

import orjson

from webhook.errors import InputError

ADMISSION_V1: Final = "admission.k8s.io/v1"
ADMISSION_V1BETA1: Final = "admission.k8s.io/v1beta1"
SUPPORTED_API_VERSIONS: Final = frozenset({ADMISSION_V1, ADMISSION_V1BETA1})

Operation: TypeAlias = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
_OPERATIONS: Final[dict[str, Operation]] = {
    "CREATE": "CREATE",
    "UPDATE": "UPDATE",
    "DELETE": "DELETE",
    "CONNECT": "CONNECT",
}

JsonObject: TypeAlias = Mapping[str, Any]

# Error messages quote user data; keep them short enough for a log line and a 400 body.
_MAX_QUOTED = 80
# A namespace is an RFC 1123 label (what the API server accepts); fullmatch, so no "$" before "\n".
_NAMESPACE = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")


class MalformedReviewError(InputError):
    """The body is not a usable AdmissionReview; the server answers HTTP 400 with ``reason``."""


@dataclass(frozen=True, slots=True)
class GroupVersionKind:
    """``request.kind``: the kind of the object under admission (core group is ``""``)."""

    group: str
    version: str
    kind: str


@dataclass(frozen=True, slots=True)
class GroupVersionResource:
    """``request.resource``: the resource that was called (``pods``, ``deployments``...)."""

    group: str
    version: str
    resource: str


@dataclass(frozen=True, slots=True)
class UserInfo:
    """Who asked (``request.userInfo``), for the audit log."""

    username: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AdmissionReview:
    """The fields of an AdmissionReview request that Signet uses.

    ``obj`` and ``old_obj`` are the decoded JSON objects as sent (never copied): treat them as
    read-only. ``sub_resource`` is ``""`` for a call on the resource itself.
    """

    api_version: str
    uid: str
    kind: GroupVersionKind
    resource: GroupVersionResource
    sub_resource: str
    namespace: str
    name: str
    operation: Operation
    user: UserInfo
    obj: JsonObject | None
    old_obj: JsonObject | None
    dry_run: bool

    @property
    def object_name(self) -> str:
        """The workload's name for people: the request's, else the object's own, else ``generateName…``.

        The API server sends no name for a CREATE whose object only has ``generateName``.
        """
        if self.name:
            return self.name
        metadata = self.obj.get("metadata") if isinstance(self.obj, dict) else None
        if isinstance(metadata, dict):
            if isinstance(metadata.get("name"), str) and metadata["name"]:
                return str(metadata["name"])
            if isinstance(metadata.get("generateName"), str) and metadata["generateName"]:
                return f"{metadata['generateName']}…"
        return ""

    @property
    def resource_path(self) -> str:
        """``pods`` or ``pods/ephemeralcontainers``: how webhook rules name what was called."""
        if self.sub_resource:
            return f"{self.resource.resource}/{self.sub_resource}"
        return self.resource.resource


def _quote(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_QUOTED else text[: _MAX_QUOTED - 1] + "…"


def _type_name(value: object) -> str:
    # JSON vocabulary, not Python's: the person reading the 400 wrote JSON.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _object(parent: JsonObject, key: str, where: str) -> JsonObject:
    value = parent.get(key)
    if value is None:
        raise MalformedReviewError(f"{where} is missing")
    if not isinstance(value, dict):
        raise MalformedReviewError(f"{where} must be an object, not {_type_name(value)}")
    return value


def _string(parent: JsonObject, key: str, where: str, *, required: bool) -> str:
    value = parent.get(key)
    if value is None:
        if required:
            raise MalformedReviewError(f"{where} is missing")
        return ""
    if not isinstance(value, str):
        raise MalformedReviewError(f"{where} must be a string, not {_type_name(value)}")
    return value


def _gvk(request: JsonObject) -> GroupVersionKind:
    raw = _object(request, "kind", "request.kind")
    kind = _string(raw, "kind", "request.kind.kind", required=True)
    if not kind:
        raise MalformedReviewError("request.kind.kind must be a non-empty string")
    return GroupVersionKind(
        group=_string(raw, "group", "request.kind.group", required=False),
        version=_string(raw, "version", "request.kind.version", required=False),
        kind=kind,
    )


def _gvr(request: JsonObject) -> GroupVersionResource:
    raw = _object(request, "resource", "request.resource")
    resource = _string(raw, "resource", "request.resource.resource", required=True)
    if not resource:
        raise MalformedReviewError("request.resource.resource must be a non-empty string")
    return GroupVersionResource(
        group=_string(raw, "group", "request.resource.group", required=False),
        version=_string(raw, "version", "request.resource.version", required=False),
        resource=resource,
    )


def _user(request: JsonObject) -> UserInfo:
    raw = request.get("userInfo")
    if raw is None:
        return UserInfo(username="")
    if not isinstance(raw, dict):
        raise MalformedReviewError(f"request.userInfo must be an object, not {_type_name(raw)}")
    username = _string(raw, "username", "request.userInfo.username", required=False)
    groups = raw.get("groups")
    if groups is None:
        return UserInfo(username=username)
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise MalformedReviewError("request.userInfo.groups must be an array of strings")
    return UserInfo(username=username, groups=tuple(groups))


def _namespace(request: JsonObject) -> str:
    # Namespaces key state kept across reviews (plans, Secret reads): only names the API server
    # could send, so that a caller reaching the Service directly cannot pin megabytes per review.
    namespace = _string(request, "namespace", "request.namespace", required=False)
    if namespace and _NAMESPACE.fullmatch(namespace) is None:
        raise MalformedReviewError(f"request.namespace {_quote(namespace)} is not a namespace name (RFC 1123 label)")
    return namespace


def _new_object(request: JsonObject) -> JsonObject | None:
    value = request.get("object")
    if value is None or isinstance(value, dict):
        return value
    raise MalformedReviewError(f"request.object must be an object or null, not {_type_name(value)}")


def _old_object(request: JsonObject) -> JsonObject | None:
    # Deliberately lenient: recorded reviews (connaisseur's) carry oldObject "" or "None" on
    # CREATE. The old object can only ever let an UPDATE skip verification, so ignoring an
    # unusable one fails safe: the new object's images get verified.
    value = request.get("oldObject")
    return value if isinstance(value, dict) else None


def _decode(body: bytes | bytearray | memoryview | str) -> object:
    if not isinstance(body, bytes | bytearray | memoryview | str):
        raise MalformedReviewError(f"body must be bytes or str, not {type(body).__name__}")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedReviewError(f"body is not valid JSON: {str(exc)[:200]}") from None


def parse_review(body: bytes | bytearray | memoryview | str) -> AdmissionReview:
    """Parse an AdmissionReview request body; raise ``MalformedReviewError`` naming the bad field."""
    doc = _decode(body)
    if not isinstance(doc, dict):
        raise MalformedReviewError(f"body must be a JSON object (an AdmissionReview), not {_type_name(doc)}")

    api_version = doc.get("apiVersion")
    if api_version is None:
        raise MalformedReviewError(f"apiVersion is missing (expected {ADMISSION_V1})")
    # isinstance first: a list or dict is unhashable and would raise TypeError in the set test.
    if not isinstance(api_version, str) or api_version not in SUPPORTED_API_VERSIONS:
        raise MalformedReviewError(
            f"apiVersion must be {ADMISSION_V1} or {ADMISSION_V1BETA1}, not {_quote(api_version)}"
        )
    kind = doc.get("kind")
    if kind is not None and kind != "AdmissionReview":
        raise MalformedReviewError(f"kind must be AdmissionReview, not {_quote(kind)}")

    request = _object(doc, "request", "request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise MalformedReviewError("request.uid must be a non-empty string")

    raw_operation = request.get("operation")
    operation = _OPERATIONS.get(raw_operation) if isinstance(raw_operation, str) else None
    if operation is None:
        raise MalformedReviewError(
            f"request.operation must be one of CREATE, UPDATE, DELETE, CONNECT, not {_quote(raw_operation)}"
        )

    dry_run = request.get("dryRun")
    if dry_run is not None and not isinstance(dry_run, bool):
        raise MalformedReviewError(f"request.dryRun must be a boolean, not {_type_name(dry_run)}")

    return AdmissionReview(
        api_version=api_version,
        uid=uid,
        kind=_gvk(request),
        resource=_gvr(request),
        sub_resource=_string(request, "subResource", "request.subResource", required=False),
        namespace=_namespace(request),
        name=_string(request, "name", "request.name", required=False),
        operation=operation,
        user=_user(request),
        obj=_new_object(request),
        old_obj=_old_object(request),
        dry_run=bool(dry_run),
    )
