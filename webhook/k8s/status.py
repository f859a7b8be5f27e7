"""The ``Ready`` condition Signet writes on its policy objects' ``status`` subresource.

Written only when it differs from what the object already carries, so that the MODIFIED event our
own write causes does not cause another write (and so that a restart rewrites nothing). On
policy-controller's objects (``policy.sigstore.dev``) the condition is ``SignetReady``: the
conditions policy-controller writes, ``Ready`` among them, are kept, so both can run during a
migration without overwriting each other.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from kubernetes import client as k8s_client

from webhook.k8s.client import GROUP, VERSION, api_error
from webhook.policy.groups import POLICY_CONTROLLER_GROUP

_logger = logging.getLogger(__name__)

MAX_MESSAGE: Final = 4096
VALID_MESSAGE: Final = "policy is valid and in force"
READY: Final = "Ready"
SIGNET_READY: Final = "SignetReady"


def condition_type(group: str) -> str:
    """``Ready`` on Signet's objects, ``SignetReady`` on another controller's (policy-controller's own is kept)."""
    return SIGNET_READY if group == POLICY_CONTROLLER_GROUP else READY


@dataclass(frozen=True)
class ReadyCondition:
    """``Ready``: True/Valid when the object loaded, False/Invalid with the validation message."""

    ready: bool
    message: str
    observed_generation: int | None
    type: str = READY

    @property
    def reason(self) -> str:
        return "Valid" if self.ready else "Invalid"

    def as_dict(self, transition: str) -> dict[str, Any]:
        condition: dict[str, Any] = {
            "type": self.type,
            "status": "True" if self.ready else "False",
            "reason": self.reason,
            "message": self.message[:MAX_MESSAGE],
            "lastTransitionTime": transition,
        }
        if self.observed_generation is not None:
            condition["observedGeneration"] = self.observed_generation
        return condition


def _conditions(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = obj.get("status")
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    return [c for c in conditions if isinstance(c, Mapping)] if isinstance(conditions, list) else []


def _current(obj: Mapping[str, Any], condition_type: str) -> Mapping[str, Any] | None:
    return next((c for c in _conditions(obj) if c.get("type") == condition_type), None)


def needs_update(obj: Mapping[str, Any], wanted: ReadyCondition) -> bool:
    """True when the object's condition of ``wanted.type`` is missing or says something else."""
    current = _current(obj, wanted.type)
    if current is None:
        return True
    expected = wanted.as_dict("")
    return any(current.get(k) != expected.get(k)
               for k in ("status", "reason", "message", "observedGeneration"))


def status_patch(obj: Mapping[str, Any], wanted: ReadyCondition, now: datetime | None = None) -> dict[str, Any]:
    """A merge patch of ``status`` (the transition time is kept when only the message changed).

    A merge patch replaces the whole list: the conditions of other types are written back unchanged.
    """
    current = _current(obj, wanted.type)
    status_value = "True" if wanted.ready else "False"
    if current is not None and current.get("status") == status_value and current.get("lastTransitionTime"):
        transition = str(current["lastTransitionTime"])
    else:
        transition = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    others = [dict(c) for c in _conditions(obj) if c.get("type") != wanted.type]
    status: dict[str, Any] = {"conditions": [*others, wanted.as_dict(transition)]}
    if wanted.observed_generation is not None:
        status["observedGeneration"] = wanted.observed_generation
    return {"status": status}


def write_ready(api: Any, plural: str, obj: Mapping[str, Any], wanted: ReadyCondition, *,
                group: str = GROUP, version: str = VERSION) -> bool:
    """Patch ``/status`` when needed; errors are logged (status is informative), never raised."""
    if not needs_update(obj, wanted):
        return False
    metadata = obj.get("metadata") or {}
    name, namespace = metadata.get("name"), metadata.get("namespace")
    custom: Any = k8s_client.CustomObjectsApi(api)
    body = status_patch(obj, wanted)
    try:
        if namespace:
            custom.patch_namespaced_custom_object_status(group, version, namespace, plural, name, body,
                                                         _preload_content=False)
        else:
            custom.patch_cluster_custom_object_status(group, version, plural, name, body, _preload_content=False)
    except Exception as exc:  # noqa: BLE001 - any failure: log and go on, the policy itself is applied
        where = f"{namespace}/{name}" if namespace else name
        _logger.warning("cannot write the status of %s %s: %s", plural, where, api_error(exc))
        return False
    return True
