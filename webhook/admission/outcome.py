"""Per-image outcomes and the texts built from them: denial message, warnings, audit annotations.

All formatting lives here so that the denial a developer reads, the warning ``kubectl`` prints
and the audit annotation an auditor greps say the same thing.

Every text is bounded and cleaned of control characters: image references come from the object
under admission and signer identities from certificates, i.e. from whoever made the request or
the signature. Nothing attacker-chosen may break a log line or blow up a response.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

import orjson

Verdict: TypeAlias = Literal["allow", "deny", "warn"]

MAX_IMAGE_LINE: Final = 1000
"""Characters of one image's line in ``status.message`` (Kubernetes shows it whole to users)."""

MAX_MESSAGE: Final = 8192
"""Characters of the whole denial message; further images are summarised as "and N more"."""

MAX_WARNING: Final = 120
"""Kubernetes asks warnings to stay within 120 characters (longer ones may be truncated)."""

MAX_ANNOTATION_VALUE: Final = 8192
"""Characters of one audit annotation value (it lands in every audit event of the request)."""

_MAX_REFERENCE: Final = 256
_MAX_NAME: Final = 128  # policy, authority, signer, issuer in messages
_MIN_REASON: Final = 80
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True, slots=True)
class ImageOutcome:
    """The verdict on one image, with what an auditor needs to check it.

    ``reason`` says why in one sentence ("verified", "certificate identity a@x does not match...",
    "not verified in time"). ``signer``/``issuer`` are the identity that signed (allow) or the one
    found closest to matching (deny); ``log_index`` its Rekor entry when there is one.
    ``attestation``/``predicate_type`` name the attestation requirement that decided a denial (missing,
    of another predicate type, or refused by its policy).
    """

    reference: str
    digest: str | None
    verdict: Verdict
    policy: str | None
    authority: str | None
    reason: str
    signer: str | None = None
    issuer: str | None = None
    log_index: int | None = None
    attestation: str | None = None
    predicate_type: str | None = None


def clean(text: str, limit: int) -> str:
    """``text`` on one line (control characters → space), at most ``limit`` characters ("…")."""
    # Cut first: the replacement is one character for one, and a 16 MiB name must not be scanned whole.
    if len(text) > limit:
        text = text[: max(limit - 1, 0)]
        return (text if text.isprintable() else _CONTROL.sub(" ", text)) + "…"
    # Every character _CONTROL replaces is unprintable: ordinary text (the hot path) skips the regexp.
    return text if text.isprintable() else _CONTROL.sub(" ", text)


def short_digest(digest: str) -> str:
    """``sha256:ab12cd34ef56…``: enough to recognise; the audit annotation has the full one."""
    algorithm, _, hex_part = digest.partition(":")
    if not hex_part or len(hex_part) <= 12:
        return digest
    return f"{algorithm}:{hex_part[:12]}…"


def _identity(outcome: ImageOutcome) -> str:
    if not outcome.signer:
        return ""
    signer = clean(outcome.signer, _MAX_NAME)
    issuer = f", issuer {clean(outcome.issuer, _MAX_NAME)}" if outcome.issuer else ""
    return f"signer {signer}{issuer}"


_REPEATED_PREFIX = re.compile(r"\b([A-Za-z][\w ]{3,40}: )\1+")
_REPEATED_AUTHORITY = re.compile(r"""authority (["'])([^"']{1,128})\1:? authority (["'])\2\3""")


def without_repeats(reason: str) -> str:
    """A reason assembled from several layers, said once: ``x; x: y`` → ``x: y``, ``a: a: b`` → ``a: b``."""
    if len(reason) > 4 * MAX_IMAGE_LINE:
        return reason  # long texts are cut before they are shown; not worth scanning
    text = _REPEATED_AUTHORITY.sub(lambda m: f'authority "{m.group(2)}"', _REPEATED_PREFIX.sub(r"\1", reason))
    kept: list[str] = []
    for part in text.split("; "):
        if any(part in earlier for earlier in kept):
            continue
        kept = [earlier for earlier in kept if earlier not in part] + [part]
    return "; ".join(kept)


def describe(outcome: ImageOutcome, limit: int = MAX_IMAGE_LINE) -> str:
    """One line for one image: reference, digest, verdict, policy, authority, reason, signer.

    e.g. ``image ghcr.io/acme/app:v1 (sha256:ab12cd34ef56…) denied by policy "release-images":
    authority "release-workflow": <reason> (found signer a@x, issuer https://…)``. The reason is
    shortened first so that the reference, policy and identity always survive truncation.
    """
    reference = clean(outcome.reference, _MAX_REFERENCE)
    head = f"image {reference}"
    if outcome.digest and outcome.digest not in outcome.reference:
        head += f" ({clean(short_digest(outcome.digest), 80)})"
    verb = {"allow": "allowed", "deny": "denied", "warn": "not verified (warn mode)"}[outcome.verdict]
    head += f" {verb}"
    if outcome.policy:
        head += f' by policy "{clean(outcome.policy, _MAX_NAME)}"'
    reason = without_repeats(outcome.reason)
    if outcome.authority and not reason.startswith(f'authority "{outcome.authority}"'):
        head += f': authority "{clean(outcome.authority, _MAX_NAME)}"'
    identity = _identity(outcome)
    tail = ""
    if identity and (outcome.signer or "") not in outcome.reason:
        # The reason may already name who signed; only add the identity when it does not.
        tail = f" ({'found ' if outcome.verdict != 'allow' else ''}{identity})"
    budget = max(limit - len(head) - len(tail) - 2, _MIN_REASON)
    line = f"{head}: {clean(reason, budget)}{tail}"
    return clean(line, limit)


def denial_message(outcomes: Sequence[ImageOutcome], limit: int = MAX_MESSAGE) -> str:
    """``status.message`` for a denial: one line per denied image, bounded to ``limit``."""
    denied = [o for o in outcomes if o.verdict == "deny"]
    if not denied:
        return "denied by signet"
    if len(denied) == 1:
        return describe(denied[0], min(limit, MAX_IMAGE_LINE))
    lines = [f"{len(denied)} of {len(outcomes)} images denied:"]
    used = len(lines[0])
    for index, outcome in enumerate(denied):
        line = describe(outcome)
        # Unless this is the last line, keep room for the summary of what does not fit.
        reserve = 64 if index < len(denied) - 1 else 0
        if used + 1 + len(line) > limit - reserve:
            more = len(denied) - index
            lines.append(f"… and {more} more denied image{'s' if more != 1 else ''} (see the audit log)")
            break
        lines.append(line)
        used += 1 + len(line)
    return "\n".join(lines)


def warning_for(outcome: ImageOutcome) -> str:
    """A short (≤ 120 characters) warning for an image admitted despite failing (warn mode)."""
    policy = f' (policy "{clean(outcome.policy, 40)}")' if outcome.policy else ""
    head = f"signet: image {clean(outcome.reference, 72)} not verified{policy}"
    return clean(f"{head}: {clean(without_repeats(outcome.reason), MAX_WARNING)}", MAX_WARNING)


def warnings_for(outcomes: Iterable[ImageOutcome]) -> list[str]:
    """One warning per image whose verdict is ``warn``."""
    return [warning_for(o) for o in outcomes if o.verdict == "warn"]


def _record(outcome: ImageOutcome, reason_limit: int) -> dict[str, Any]:
    record: dict[str, Any] = {
        "image": clean(outcome.reference, _MAX_REFERENCE),
        "digest": outcome.digest,
        "verdict": outcome.verdict,
        "policy": outcome.policy,
        "authority": outcome.authority,
        "reason": clean(outcome.reason, reason_limit),
        "signer": clean(outcome.signer, _MAX_REFERENCE) if outcome.signer else None,
        "issuer": clean(outcome.issuer, _MAX_REFERENCE) if outcome.issuer else None,
        "logIndex": outcome.log_index,
        "attestation": clean(outcome.attestation, _MAX_NAME) if outcome.attestation else None,
        "predicateType": clean(outcome.predicate_type, _MAX_REFERENCE) if outcome.predicate_type else None,
    }
    return {k: v for k, v in record.items() if v is not None}


def images_annotation(outcomes: Sequence[ImageOutcome], limit: int = MAX_ANNOTATION_VALUE) -> str:
    """JSON array of per-image records (full digests, signer, log index), at most ``limit`` chars.

    When too long, reasons are shortened first, then trailing records are replaced by
    ``{"omitted": N}`` so the value stays valid JSON.
    """
    for reason_limit in (500, 120):
        records = [_record(o, reason_limit) for o in outcomes]
        text = orjson.dumps(records).decode()
        if len(text) <= limit:
            return text
    kept: list[dict[str, Any]] = []
    size = 2
    for index, record in enumerate(records):
        encoded = len(orjson.dumps(record).decode()) + 1
        if size + encoded + 24 > limit:
            kept.append({"omitted": len(records) - index})
            break
        kept.append(record)
        size += encoded
    return orjson.dumps(kept).decode()


def audit_annotations(
    decision: str, outcomes: Sequence[ImageOutcome] = (), *, reason: str | None = None
) -> dict[str, str]:
    """``auditAnnotations`` for a decision (the API server prefixes keys with the webhook name).

    Keys: ``decision`` (allow/deny/warn), ``images`` (see ``images_annotation``), ``reason``
    (why no verification happened, or why the object was unreadable).
    """
    annotations = {"decision": decision}
    if outcomes:
        annotations["images"] = images_annotation(outcomes)
    if reason:
        annotations["reason"] = clean(reason, 1024)
    return annotations
