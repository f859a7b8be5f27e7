"""Parsing AdmissionReview bodies: the fields Signet reads, and precise 400 messages otherwise."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.unit.admission.reviews import UID, pod_spec, review_body, review_dict, workload
from webhook.admission.review import AdmissionReview, MalformedReviewError, parse_review
from webhook.errors import InputError


def _parse(doc: Any) -> AdmissionReview:
    return parse_review(orjson.dumps(doc))


def test_reads_every_field_of_a_v1_review() -> None:
    obj = workload("Deployment", pod_spec("ghcr.io/acme/app:v1"))
    review = parse_review(review_body(obj, "Deployment", operation="UPDATE", old=obj))

    assert review.api_version == "admission.k8s.io/v1"
    assert review.uid == UID
    assert (review.kind.group, review.kind.version, review.kind.kind) == ("apps", "v1", "Deployment")
    assert (review.resource.group, review.resource.resource) == ("apps", "deployments")
    assert review.sub_resource == ""
    assert review.resource_path == "deployments"
    assert (review.namespace, review.name, review.operation) == ("team-a", "w", "UPDATE")
    assert review.user.username == "dev@example.com"
    assert review.user.groups == ("system:authenticated",)
    assert review.obj == obj
    assert review.old_obj == obj
    assert review.dry_run is False


def test_keeps_the_decoded_object_without_copying_it() -> None:
    review = parse_review(review_body(workload("Pod", pod_spec("a"))))
    # Same dict the decoder produced: the object is read in place, never deep-copied.
    assert review.obj is not None
    assert review.obj["spec"]["containers"][0]["image"] == "a"


def test_v1beta1_is_accepted_and_remembered() -> None:
    review = parse_review(review_body(workload("Pod", pod_spec("a")), api_version="admission.k8s.io/v1beta1"))
    assert review.api_version == "admission.k8s.io/v1beta1"


def test_subresource_and_dry_run() -> None:
    doc = review_dict(workload("Pod", pod_spec("a")), sub_resource="ephemeralcontainers", operation="UPDATE")
    doc["request"]["dryRun"] = True
    review = _parse(doc)
    assert review.sub_resource == "ephemeralcontainers"
    assert review.resource_path == "pods/ephemeralcontainers"
    assert review.dry_run is True


def test_optional_fields_may_be_absent() -> None:
    doc = review_dict(None, operation="DELETE")
    for key in ("name", "namespace", "userInfo", "object", "oldObject", "dryRun", "options"):
        del doc["request"][key]
    del doc["request"]["kind"]["group"]
    review = _parse(doc)
    assert (review.name, review.namespace, review.user.username) == ("", "", "")
    assert review.obj is None and review.old_obj is None
    assert review.kind.group == ""


@pytest.mark.parametrize("old", ["", "None", 0, [], True])
def test_unusable_old_object_is_ignored(old: Any) -> None:
    # Recorded reviews carry oldObject "" or "None"; ignoring it only ever means "verify".
    review = _parse(review_dict(workload("Pod", pod_spec("a")), old=old))
    assert review.old_obj is None


def test_accepts_bytes_like_and_str() -> None:
    body = review_body(workload("Pod", pod_spec("a")))
    for variant in (body, bytearray(body), memoryview(body), body.decode()):
        assert parse_review(variant).uid == UID


def test_malformed_review_error_is_an_input_error() -> None:
    assert issubclass(MalformedReviewError, InputError)


# The contract's malformed bodies (checks/contract.py: all HTTP 400).
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", r"^body is not valid JSON: "),
        (b"", r"^body is not valid JSON: "),
        (b"\xff\xfe", r"^body is not valid JSON: "),
        (b"null", r"^body must be a JSON object \(an AdmissionReview\), not null$"),
        (b"[]", r"^body must be a JSON object \(an AdmissionReview\), not array$"),
        (b'{"kind":"AdmissionReview"}', r"^apiVersion is missing"),
        (b'{"request": {"uid": 7}}', r"^apiVersion is missing"),
        (b'{"apiVersion": "admission.k8s.io/v1", "request": {"uid": 7}}', r"^request.uid must be a non-empty string$"),
        (b'{"apiVersion": "admission.k8s.io/v1"}', r"^request is missing$"),
        (b'{"apiVersion": "admission.k8s.io/v1", "request": []}', r"^request must be an object, not array$"),
        (b'{"apiVersion": ["x"], "request": {}}', r"^apiVersion must be admission.k8s.io/v1 or "),
        (b'{"apiVersion": "admission.k8s.io/v2", "request": {}}', r"'admission.k8s.io/v2'$"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "Pod", "request": {}}', r"^kind must be AdmissionReview"),
    ],
)
def test_contract_malformed_bodies(body: bytes, message: str) -> None:
    with pytest.raises(MalformedReviewError, match=message):
        parse_review(body)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("uid",), "", r"^request.uid must be a non-empty string$"),
        (("uid",), None, r"^request.uid must be a non-empty string$"),
        (("operation",), "PATCH", r"^request.operation must be one of CREATE, UPDATE, DELETE, CONNECT, not 'PATCH'$"),
        (("operation",), {"x": 1}, r"^request.operation must be one of"),
        (("kind",), None, r"^request.kind is missing$"),
        (("kind",), "Pod", r"^request.kind must be an object, not string$"),
        (("kind", "kind"), None, r"^request.kind.kind is missing$"),
        (("kind", "kind"), "", r"^request.kind.kind must be a non-empty string$"),
        (("kind", "group"), 1, r"^request.kind.group must be a string, not number$"),
        (("resource",), None, r"^request.resource is missing$"),
        (("resource", "resource"), [], r"^request.resource.resource must be a string, not array$"),
        (("subResource",), 5, r"^request.subResource must be a string, not number$"),
        (("namespace",), {}, r"^request.namespace must be a string, not object$"),
        (("userInfo",), "me", r"^request.userInfo must be an object, not string$"),
        (("userInfo", "username"), True, r"^request.userInfo.username must be a string, not boolean$"),
        (("userInfo", "groups"), ["a", 1], r"^request.userInfo.groups must be an array of strings$"),
        (("object",), "pod", r"^request.object must be an object or null, not string$"),
        (("dryRun",), "yes", r"^request.dryRun must be a boolean, not string$"),
    ],
)
def test_malformed_fields_are_named(path: tuple[str, ...], value: Any, message: str) -> None:
    doc = review_dict(workload("Pod", pod_spec("a")))
    node = doc["request"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(MalformedReviewError, match=message):
        _parse(doc)


def test_quoted_values_are_bounded() -> None:
    doc = review_dict(workload("Pod", pod_spec("a")))
    doc["request"]["operation"] = "X" * 10_000
    with pytest.raises(MalformedReviewError) as info:
        _parse(doc)
    assert len(str(info.value)) < 200


def test_non_bytes_input_is_malformed_not_type_error() -> None:
    with pytest.raises(MalformedReviewError, match=r"^body must be bytes or str, not int$"):
        parse_review(42)  # type: ignore[arg-type]
