"""The admission layer: pure functions from AdmissionReview bytes to AdmissionReview bytes.

No network, no verification, no FastAPI: ``review`` parses, ``workload`` finds images,
``decision`` says what must be verified, ``outcome`` formats verdicts, ``response`` builds the
answer, ``patch`` pins digests. The app wires them around the verifier:

    body = await read_body(chunks, ...)              # UnreadableBodyError → HTTP 413/408 (size, values, time)
    review = parse_review(body)                      # MalformedReviewError → HTTP 400 malformed_body()
    try:
        plan = plan_verification(review)
    except UnreadableWorkloadError as exc:
        return unreadable(review, exc)               # HTTP 200, allowed: false
    if not plan.images:
        return skipped(review, plan.reason)
    outcomes = ... verify plan.distinct ...          # ImageOutcome per image
    return respond(review, outcomes)
"""

from __future__ import annotations

from webhook.admission.body import MAX_BODY, MAX_JSON_VALUES, UnreadableBodyError, read_body
from webhook.admission.decision import VerificationPlan, changed_images, plan_verification, requires_verification
from webhook.admission.outcome import ImageOutcome, audit_annotations, denial_message, describe, warnings_for
from webhook.admission.patch import pin_digest, pinning_patch
from webhook.admission.response import allowed, denied, malformed_body, respond, skipped, unreadable
from webhook.admission.review import AdmissionReview, MalformedReviewError, parse_review
from webhook.admission.workload import ImageUse, UnreadableWorkloadError, distinct_images, workload_images

__all__ = [
    "MAX_BODY",
    "MAX_JSON_VALUES",
    "AdmissionReview",
    "ImageOutcome",
    "ImageUse",
    "MalformedReviewError",
    "UnreadableBodyError",
    "UnreadableWorkloadError",
    "VerificationPlan",
    "allowed",
    "audit_annotations",
    "changed_images",
    "denial_message",
    "denied",
    "describe",
    "distinct_images",
    "malformed_body",
    "parse_review",
    "pin_digest",
    "pinning_patch",
    "plan_verification",
    "read_body",
    "requires_verification",
    "respond",
    "skipped",
    "unreadable",
    "warnings_for",
    "workload_images",
]
