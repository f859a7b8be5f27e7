"""Response bodies: uid echo, apiVersion of the request, allowed/denied shapes, Kubernetes limits."""

from __future__ import annotations

import base64
import logging
from typing import Any

import orjson
import pytest

from tests.unit.admission.reviews import DIGEST, UID, pod_spec, review_body, workload
from webhook.admission.outcome import ImageOutcome
from webhook.admission.response import (
    MAX_WARNINGS,
    allowed,
    denied,
    is_valid_audit_key,
    malformed_body,
    respond,
    skipped,
    unreadable,
)
from webhook.admission.review import AdmissionReview, MalformedReviewError, parse_review
from webhook.admission.workload import UnreadableWorkloadError

V1 = "admission.k8s.io/v1"
V1BETA1 = "admission.k8s.io/v1beta1"


def _review(api_version: str = V1) -> AdmissionReview:
    return parse_review(review_body(workload("Pod", pod_spec("a:1")), api_version=api_version))


def _decode(body: bytes) -> dict[str, Any]:
    doc = orjson.loads(body)
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize("api_version", [V1, V1BETA1])
def test_allowed_echoes_uid_in_the_requests_version(api_version: str) -> None:
    doc = _decode(allowed(_review(api_version)))
    assert doc == {"apiVersion": api_version, "kind": "AdmissionReview", "response": {"uid": UID, "allowed": True}}


@pytest.mark.parametrize("api_version", [V1, V1BETA1])
def test_denied_has_a_403_status(api_version: str) -> None:
    doc = _decode(denied(_review(api_version), "image a:1 denied", audit_annotations={"decision": "deny"}))
    assert doc["apiVersion"] == api_version
    assert doc["response"] == {
        "uid": UID,
        "allowed": False,
        "status": {"code": 403, "reason": "Forbidden", "message": "image a:1 denied"},
        "auditAnnotations": {"decision": "deny"},
    }


def test_warnings_and_annotations_are_strings() -> None:
    doc = _decode(allowed(_review(), warnings=["w1", "w\n2"], audit_annotations={"decision": "warn", "images": "[]"}))
    response = doc["response"]
    assert response["warnings"] == ["w1", "w 2"]
    assert response["auditAnnotations"] == {"decision": "warn", "images": "[]"}


def test_warnings_are_bounded_in_number_and_length() -> None:
    response = _decode(allowed(_review(), warnings=["x" * 1000] * 100))["response"]
    assert len(response["warnings"]) == MAX_WARNINGS
    assert all(len(w) <= 256 for w in response["warnings"])
    assert response["warnings"][-1] == f"signet: {100 - MAX_WARNINGS + 1} more warnings, see the audit log"


@pytest.mark.parametrize("key", ["decision", "images", "signer.0", "a-b_c", "x" * 63])
def test_valid_audit_keys(key: str) -> None:
    assert is_valid_audit_key(key)


@pytest.mark.parametrize("key", ["signet.dev/decision", "", "-a", "a-", "x" * 64, "a b", "é", "decision\n"])
def test_invalid_audit_keys_are_dropped(key: str, caplog: pytest.LogCaptureFixture) -> None:
    # The API server stores "<webhook name>/<key>": a "/" in the key makes it invalid there.
    assert not is_valid_audit_key(key)
    with caplog.at_level(logging.WARNING):
        response = _decode(allowed(_review(), audit_annotations={key: "v", "decision": "allow"}))["response"]
    assert response["auditAnnotations"] == {"decision": "allow"}
    assert "invalid key" in caplog.text


def test_patch_is_base64_jsonpatch() -> None:
    ops = [{"op": "replace", "path": "/spec/containers/0/image", "value": f"a:1@{DIGEST}"}]
    response = _decode(allowed(_review(), patch=ops))["response"]
    assert response["patchType"] == "JSONPatch"
    assert orjson.loads(base64.b64decode(response["patch"])) == ops
    assert "patch" not in _decode(allowed(_review(), patch=[]))["response"]


def _outcome(verdict: str, reference: str = "ghcr.io/acme/app:v1") -> ImageOutcome:
    return ImageOutcome(reference, DIGEST, verdict, "p", "a", "why", "s@x", "https://i", 7)  # type: ignore[arg-type]


def test_respond_denies_when_any_image_is_denied_and_never_patches() -> None:
    ops = [{"op": "replace", "path": "/x", "value": "y"}]
    response = _decode(respond(_review(), [_outcome("allow"), _outcome("deny", "b:1")], patch=ops))["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert response["status"]["message"].startswith("image b:1 (sha256:abababababab…) denied")
    assert response["auditAnnotations"]["decision"] == "deny"
    assert len(orjson.loads(response["auditAnnotations"]["images"])) == 2
    assert "patch" not in response


def test_respond_warn_mode_allows_with_warnings() -> None:
    response = _decode(respond(_review(), [_outcome("allow"), _outcome("warn", "b:1")]))["response"]
    assert response["allowed"] is True
    assert response["warnings"] == ['signet: image b:1 not verified (policy "p"): why']
    assert response["auditAnnotations"]["decision"] == "warn"


def test_respond_allows_and_records_signers() -> None:
    response = _decode(respond(_review(), [_outcome("allow")]))["response"]
    assert response["allowed"] is True and "warnings" not in response
    (record,) = orjson.loads(response["auditAnnotations"]["images"])
    assert (record["signer"], record["issuer"], record["logIndex"], record["digest"]) == ("s@x", "https://i", 7, DIGEST)


def test_skipped_says_why() -> None:
    response = _decode(skipped(_review(), "DELETE is not checked"))["response"]
    assert response == {
        "uid": UID,
        "allowed": True,
        "auditAnnotations": {"decision": "allow", "reason": "DELETE is not checked"},
    }


def test_unreadable_is_a_clean_denial() -> None:
    error = UnreadableWorkloadError(["spec.containers[0].image must be a string"])
    response = _decode(unreadable(_review(), error))["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert response["status"]["message"] == (
        "signet cannot check this Pod: cannot read the images of this object: spec.containers[0].image must be a string"
    )
    assert response["auditAnnotations"]["decision"] == "deny"


def test_malformed_body_is_a_kubernetes_status() -> None:
    doc = _decode(malformed_body(MalformedReviewError("request.uid must be a non-empty string")))
    assert doc == {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": "BadRequest",
        "code": 400,
        "message": "malformed AdmissionReview: request.uid must be a non-empty string",
    }
