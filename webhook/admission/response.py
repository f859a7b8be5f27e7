"""AdmissionReview response bodies (orjson bytes), and the body of the HTTP 400 for malformed ones.

Two channels (STYLE.md, kopf): a decision is HTTP 200 with an AdmissionReview in the request's
apiVersion echoing its ``uid``; a malformed review is HTTP 400 with ``malformed_body``.

Kubernetes constraints enforced here rather than trusted to callers:
- ``auditAnnotations`` keys: the API server stores them as ``<webhook name>/<key>`` and drops
  (with only a server-side log line) any key that is not then a valid qualified name, so a key
  must itself be a name part: ``[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?``, ≤ 63 characters,
  no ``/`` (``decision``, not ``signet.dev/decision``). Invalid keys are dropped and logged here.
- warnings: single line, short, bounded in number.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from webhook.admission.outcome import (
    MAX_ANNOTATION_VALUE,
    ImageOutcome,
    audit_annotations,
    clean,
    denial_message,
    warnings_for,
)
from webhook.admission.review import AdmissionReview
from webhook.errors import SignetError

_logger = logging.getLogger(__name__)

MAX_WARNINGS: Final = 32
MAX_CALLER_WARNING: Final = 256  # Kubernetes truncates longer warnings anyway
_AUDIT_KEY = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")  # fullmatch: no "$" before "\n"

JsonPatchOp = Mapping[str, Any]


def is_valid_audit_key(key: str) -> bool:
    """True when the API server will keep ``<webhook name>/<key>`` as an audit annotation."""
    return _AUDIT_KEY.fullmatch(key) is not None


def _warnings(warnings: Sequence[str]) -> list[str]:
    out = [clean(w, MAX_CALLER_WARNING) for w in warnings[:MAX_WARNINGS]]
    if len(warnings) > MAX_WARNINGS:
        out[-1] = f"signet: {len(warnings) - MAX_WARNINGS + 1} more warnings, see the audit log"
    return out


def _annotations(annotations: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in annotations.items():
        if not is_valid_audit_key(key):
            _logger.warning("dropping audit annotation with invalid key %r (the API server would drop it)", key)
            continue
        out[key] = value if len(value) <= MAX_ANNOTATION_VALUE else clean(value, MAX_ANNOTATION_VALUE)
    return out


def _review(review: AdmissionReview, response: dict[str, Any]) -> bytes:
    return orjson.dumps({"apiVersion": review.api_version, "kind": "AdmissionReview", "response": response})


def allowed(
    review: AdmissionReview,
    *,
    warnings: Sequence[str] = (),
    audit_annotations: Mapping[str, str] | None = None,
    patch: Sequence[JsonPatchOp] | None = None,
) -> bytes:
    """``allowed: true``, with optional warnings, audit annotations and JSONPatch (mutating only)."""
    response: dict[str, Any] = {"uid": review.uid, "allowed": True}
    if warnings:
        response["warnings"] = _warnings(warnings)
    if audit_annotations:
        response["auditAnnotations"] = _annotations(audit_annotations)
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(list(patch))).decode("ascii")
    return _review(review, response)


def denied(
    review: AdmissionReview,
    message: str,
    *,
    warnings: Sequence[str] = (),
    audit_annotations: Mapping[str, str] | None = None,
    code: int = 403,
    reason: str = "Forbidden",
) -> bytes:
    """``allowed: false`` with ``status {code, reason, message}``; ``message`` is shown to the user."""
    response: dict[str, Any] = {
        "uid": review.uid,
        "allowed": False,
        "status": {"code": code, "reason": reason, "message": message},
    }
    if warnings:
        response["warnings"] = _warnings(warnings)
    if audit_annotations:
        response["auditAnnotations"] = _annotations(audit_annotations)
    return _review(review, response)


def respond(
    review: AdmissionReview,
    outcomes: Sequence[ImageOutcome],
    *,
    patch: Sequence[JsonPatchOp] | None = None,
) -> bytes:
    """The decision for verified images: denied if any is ``deny``, else allowed (warn → warnings).

    Both carry ``auditAnnotations`` (``decision``, ``images``). ``patch`` is only sent when allowed.
    """
    warnings = warnings_for(outcomes)
    if any(o.verdict == "deny" for o in outcomes):
        return denied(
            review,
            denial_message(outcomes),
            warnings=warnings,
            audit_annotations=audit_annotations("deny", outcomes),
        )
    decision = "warn" if warnings else "allow"
    return allowed(review, warnings=warnings, audit_annotations=audit_annotations(decision, outcomes), patch=patch)


def skipped(review: AdmissionReview, reason: str) -> bytes:
    """Allowed without verification (DELETE, unchanged images, not a workload...), saying why."""
    return allowed(review, audit_annotations=audit_annotations("allow", reason=reason))


def unreadable(review: AdmissionReview, error: SignetError) -> bytes:
    """Denial of a workload whose images cannot be read (``UnreadableWorkloadError``)."""
    message = clean(f"signet cannot check this {review.kind.kind}: {error.diagnostics()}", 2048)
    return denied(review, message, audit_annotations=audit_annotations("deny", reason=message))


def malformed_body(error: SignetError, *, code: int = 400, reason: str = "BadRequest") -> bytes:
    """HTTP 4xx body for a review that was not read or not usable: a Kubernetes ``Status`` naming the problem."""
    what = "malformed AdmissionReview" if code == 400 else "AdmissionReview not read"
    return orjson.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": reason,
            "code": code,
            "message": clean(f"{what}: {error.diagnostics()}", 1024),
        }
    )
