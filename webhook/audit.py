"""One JSON line per admission decision (ARCHITECTURE.md §8), on the ``signet.audit`` logger.

The line is built with orjson and logged as the message itself, so a handler with the format
``%(message)s`` (what ``signet serve`` installs on stdout) emits exactly one JSON object per
line. Texts that came from the request or a certificate are cleaned (``outcome.clean``) so a
crafted image name or SAN cannot split the line.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from webhook.admission.outcome import ImageOutcome, clean
from webhook.admission.review import AdmissionReview

AUDIT_LOGGER: Final = "signet.audit"
_MAX_TEXT: Final = 1024


def image_record(outcome: ImageOutcome) -> dict[str, Any]:
    """The per-image part of an audit line (None fields kept: auditors grep for them)."""
    return {
        "reference": clean(outcome.reference, 256),
        "digest": outcome.digest,
        "policy": outcome.policy,
        "authority": outcome.authority,
        "verdict": outcome.verdict,
        "reason": clean(outcome.reason, _MAX_TEXT),
        "signer": clean(outcome.signer, 256) if outcome.signer else None,
        "issuer": clean(outcome.issuer, 256) if outcome.issuer else None,
        "logIndex": outcome.log_index,
    }


def audit_line(
    review: AdmissionReview,
    *,
    decision: str,
    reason: str | None,
    outcomes: Sequence[ImageOutcome],
    duration: float,
    route: str,
    now: datetime | None = None,
) -> bytes:
    """The JSON document for one decision (bytes, no newline)."""
    return orjson.dumps({
        "time": (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "event": "admission",
        "route": route,
        "uid": clean(review.uid, 128),
        "user": clean(review.user.username, 256),
        "namespace": clean(review.namespace, 256),
        "kind": clean(review.kind.kind, 128),
        "name": clean(review.name, 256),
        "operation": review.operation,
        "dryRun": review.dry_run,
        "decision": decision,
        "reason": clean(reason, _MAX_TEXT) if reason else None,
        "durationMs": round(duration * 1000, 3),
        "images": [image_record(o) for o in outcomes],
    })


class AuditLog:
    """Writes audit lines to a logger (``signet.audit`` unless told otherwise)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger(AUDIT_LOGGER)

    def record(
        self,
        review: AdmissionReview,
        *,
        decision: str,
        reason: str | None,
        outcomes: Sequence[ImageOutcome],
        duration: float,
        route: str,
    ) -> None:
        if not self._logger.isEnabledFor(logging.INFO):
            return
        line = audit_line(review, decision=decision, reason=reason, outcomes=outcomes, duration=duration, route=route)
        self._logger.info("%s", line.decode())


def configure_audit_handler(stream: Any) -> logging.Handler:
    """Send ``signet.audit`` lines, bare, to ``stream`` (stdout in ``signet serve``), not to the root logger."""
    logger = logging.getLogger(AUDIT_LOGGER)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler
