"""Which images of a review must be verified before it may be allowed (no verification here).

The rules are ARCHITECTURE.md §3:
- DELETE and CONNECT never start anything: allowed.
- Subresources are allowed, except ``pods/ephemeralcontainers`` (``kubectl debug`` adds a
  container to a running Pod through it).
- Objects that are not workloads (Role, ConfigMap, CRDs...) have no images: allowed.
- An UPDATE whose set of images equals the old object's is allowed without verification (scaling,
  label edits, finalizer removal during deletion...).

UPDATE that changes images: *all* images of the new object are verified, not only the added
ones. The unchanged ones were admitted under the policies of their time; policies may have been
tightened since, and the verdict cache makes re-verifying them cheap. Skipping them would let an
edit that swaps one image re-admit a now-forbidden neighbour silently.

An old object that is absent or unreadable never skips verification (fail safe); a new object
that is unreadable raises ``UnreadableWorkloadError`` (the caller denies).
"""

from __future__ import annotations

from dataclasses import dataclass

from webhook.admission.review import AdmissionReview, GroupVersionKind
from webhook.admission.workload import (
    ImageUse,
    UnreadableWorkloadError,
    distinct_images,
    is_workload,
    workload_images,
)

# The one subresource that can put a new image into a running Pod.
_CHECKED_SUBRESOURCES = frozenset({("", "pods", "ephemeralcontainers")})
_POD = GroupVersionKind("", "v1", "Pod")


@dataclass(frozen=True, slots=True)
class VerificationPlan:
    """What to verify for one review: ``images`` empty means allow without verification.

    ``reason`` says why, for the audit log (e.g. "DELETE is not checked", "images unchanged").
    """

    images: tuple[ImageUse, ...]
    reason: str

    @property
    def distinct(self) -> list[str]:
        """Distinct image strings to verify, each once, in first-seen order."""
        return distinct_images(self.images)


def _skip_reason(review: AdmissionReview) -> str | None:
    if review.operation in ("DELETE", "CONNECT"):
        return f"{review.operation} is not checked"
    if review.sub_resource:
        key = (review.resource.group, review.resource.resource, review.sub_resource)
        if key not in _CHECKED_SUBRESOURCES:
            return f"subresource {review.resource_path} is not checked"
    if not is_workload(_kind(review)):
        group = f"{review.kind.group}/" if review.kind.group else ""
        return f"{group}{review.kind.kind} is not a workload"
    return None


def _kind(review: AdmissionReview) -> GroupVersionKind:
    # Kubernetes < 1.25 sent pods/ephemeralcontainers as kind EphemeralContainers; reading it as
    # a Pod fails to find a spec, which denies: fail closed rather than skip a new container.
    if review.sub_resource and (review.resource.group, review.resource.resource, review.sub_resource) in (
        _CHECKED_SUBRESOURCES
    ):
        return _POD
    return review.kind


def _old_image_set(review: AdmissionReview) -> set[str] | None:
    if review.old_obj is None:
        return None
    try:
        return {use.image for use in workload_images(_kind(review), review.old_obj)}
    except UnreadableWorkloadError:
        return None  # cannot compare: verify everything


def plan_verification(review: AdmissionReview) -> VerificationPlan:
    """Decide what must be verified; raises ``UnreadableWorkloadError`` for unreadable workloads."""
    reason = _skip_reason(review)
    if reason is not None:
        return VerificationPlan((), reason)
    uses = workload_images(_kind(review), review.obj)
    if not uses:
        return VerificationPlan((), f"{review.kind.kind} has no images")
    if review.operation == "UPDATE" and _old_image_set(review) == {use.image for use in uses}:
        return VerificationPlan((), "images unchanged from oldObject")
    return VerificationPlan(tuple(uses), f"{len(distinct_images(uses))} image(s) to verify")


def requires_verification(review: AdmissionReview) -> bool:
    """True when the review may only be allowed after verifying images (or denied as unreadable)."""
    try:
        return bool(plan_verification(review).images)
    except UnreadableWorkloadError:
        return True  # it needs a decision, and that decision is a denial


def changed_images(review: AdmissionReview) -> list[ImageUse]:
    """Images of the new object that the old one did not run (all of them unless UPDATE).

    ``[]`` for reviews that are not checked at all (DELETE, other subresources, non-workloads).
    Informational (audit, messages): ``plan_verification`` decides what is verified. Raises
    ``UnreadableWorkloadError`` when the new object is an unreadable workload.
    """
    if _skip_reason(review) is not None:
        return []
    uses = workload_images(_kind(review), review.obj)
    if review.operation != "UPDATE":
        return uses
    old = _old_image_set(review)
    if old is None:
        return uses
    return [use for use in uses if use.image not in old]
