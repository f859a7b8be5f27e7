"""One JSON line per admission decision (ARCHITECTURE.md §8): on stdout in ``signet serve``.

The line is built with orjson and written whole, with its newline, and flushed (``signet serve``
gives stdout; without a stream it goes to the ``signet.audit`` logger as the message itself), so
every decision is exactly one JSON object per line. Texts that came from the request or a
certificate are cleaned (``outcome.clean``) so a crafted image name or SAN cannot split the line.

Every field is bounded, and so is the line: at most ``MAX_LINE`` bytes (64 KiB, under what log
shippers accept as one record). When the images do not all fit, the line keeps those that do, in
order, and says ``"truncated": true`` with ``"imagesOmitted"``: the count of those left out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TextIO

import orjson

from webhook.admission.outcome import ImageOutcome, clean
from webhook.admission.review import AdmissionReview

AUDIT_LOGGER: Final = "signet.audit"
MAX_LINE: Final = 64 * 1024
_MAX_TEXT: Final = 1024
_MAX_NAME: Final = 256
MAX_UPSTREAMS: Final = 16


def image_record(outcome: ImageOutcome) -> dict[str, Any]:
    """The per-image part of an audit line (None fields kept: auditors grep for them; the attestation
    fields appear when an attestation requirement decided)."""
    record = {
        "reference": clean(outcome.reference, _MAX_NAME),
        "digest": _bounded(outcome.digest),
        "policy": _bounded(outcome.policy),
        "authority": _bounded(outcome.authority),
        "verdict": outcome.verdict,
        "reason": clean(outcome.reason, _MAX_TEXT),
        "signer": _bounded(outcome.signer),
        "issuer": _bounded(outcome.issuer),
        "logIndex": outcome.log_index,
    }
    if outcome.attestation:
        record["attestation"] = _bounded(outcome.attestation)
        record["predicateType"] = _bounded(outcome.predicate_type)
    return record


def _upstream_record(wait: Mapping[str, Any]) -> dict[str, Any]:
    # Registry hosts come from the Pod spec: cleaned like any other text from the request.
    return {"upstream": clean(str(wait.get("upstream", "")), 16), "host": clean(str(wait.get("host", "")), _MAX_NAME),
            "waitMs": float(wait.get("waitMs", 0.0)), "requests": int(wait.get("requests", 0))}


def _bounded(text: str | None) -> str | None:
    return clean(text, _MAX_NAME) if text else None


def audit_line(
    review: AdmissionReview,
    *,
    decision: str,
    reason: str | None,
    outcomes: Sequence[ImageOutcome],
    duration: float,
    route: str,
    now: datetime | None = None,
    upstreams: Sequence[Mapping[str, Any]] = (),
) -> bytes:
    """The JSON document for one decision (bytes, no newline, at most ``MAX_LINE``).

    ``upstreams`` (``webhook.upstreams.ReviewWaits.summary``): per registry host, Rekor and TUF, the
    wall time this review waited on it (``waitMs``) and the requests it sent.
    """
    head = {
        "time": (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "event": "admission",
        "route": route,
        "uid": clean(review.uid, 128),
        "user": clean(review.user.username, _MAX_NAME),
        "namespace": clean(review.namespace, _MAX_NAME),
        "kind": clean(review.kind.kind, 128),
        "name": clean(review.object_name, _MAX_NAME),
        "operation": review.operation,
        "dryRun": review.dry_run,
        "decision": decision,
        "reason": clean(reason, _MAX_TEXT) if reason else None,
        "durationMs": round(duration * 1000, 3),
        "upstreams": [_upstream_record(u) for u in upstreams[:MAX_UPSTREAMS]],
    }
    images = [image_record(o) for o in outcomes]
    line = orjson.dumps({**head, "images": images})
    if len(line) <= MAX_LINE:
        return line
    # Room for the head, the marker and the JSON punctuation; each image costs its encoding plus a comma.
    budget = MAX_LINE - len(orjson.dumps({**head, "images": [], "truncated": True, "imagesOmitted": len(images)}))
    kept = 0
    for record in images:
        budget -= len(orjson.dumps(record)) + 1
        if budget < 0:
            break
        kept += 1
    return orjson.dumps({**head, "images": images[:kept], "truncated": True, "imagesOmitted": len(images) - kept})


class AuditLog:
    """Writes audit lines to ``stream`` (one write and flush per line), else to a logger (``signet.audit``).

    ``signet serve`` gives stdout: a line per decision is the hot path, and the logging machinery
    would cost more than building the line.
    """

    def __init__(self, logger: logging.Logger | None = None, *, stream: TextIO | None = None) -> None:
        self._logger = logger or logging.getLogger(AUDIT_LOGGER)
        self._stream = stream

    def record(
        self,
        review: AdmissionReview,
        *,
        decision: str,
        reason: str | None,
        outcomes: Sequence[ImageOutcome],
        duration: float,
        route: str,
        upstreams: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        if self._stream is None and not self._logger.isEnabledFor(logging.INFO):
            return
        line = audit_line(review, decision=decision, reason=reason, outcomes=outcomes, duration=duration, route=route,
                          upstreams=upstreams).decode()
        if self._stream is None:
            self._logger.info("%s", line)
            return
        self._stream.write(line + "\n")
        self._stream.flush()
