"""The object under review, as a decision sees it: its document and its place among the resources.

``spec.match`` selects policies by the admission request's resource (group, version, plural name)
and the object's own labels; ``spec.policy`` with ``include*`` sees the document. The admission
server knows the resource from the request; ``signet evaluate`` has only the document, whose
resource is derived from its ``apiVersion`` and ``kind`` (every workload kind's plural is its
lower-cased kind plus ``s``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.admission.review import AdmissionReview
from webhook.policy.matching import MatchTarget


@dataclass(frozen=True)
class Workload:
    """The admitted object (``document``) and what ``match`` sees of it (``target``)."""

    document: Mapping[str, Any]
    target: MatchTarget

    @classmethod
    def of(cls, document: Mapping[str, Any], *, group: str | None = None, version: str | None = None,
           resource: str | None = None) -> Workload:
        """The object with the request's resource; any part not given is derived from the document."""
        api_version = document.get("apiVersion")
        parts = api_version.rpartition("/") if isinstance(api_version, str) else ("", "", "")
        derived_group, derived_version = parts[0], parts[2]
        kind = document.get("kind")
        derived_resource = f"{kind.lower()}s" if isinstance(kind, str) and kind else ""
        target = MatchTarget.of(derived_group if group is None else group,
                                derived_version if version is None else version,
                                derived_resource if resource is None else resource, document.get("metadata"))
        return cls(document, target)


def as_workload(workload: Workload | Mapping[str, Any] | None) -> Workload | None:
    """A ``Workload``: given, or derived from a bare document (``signet evaluate``)."""
    if workload is None or isinstance(workload, Workload):
        return workload
    return Workload.of(workload)


def review_workload(review: AdmissionReview) -> Workload | None:
    """The object of an admission review with the resource the request names (None: the review has no object)."""
    if review.obj is None:
        return None
    resource = review.resource
    return Workload.of(review.obj, group=resource.group, version=resource.version, resource=resource.resource)
