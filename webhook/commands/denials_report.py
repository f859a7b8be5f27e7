"""What ``signet denials`` shows: identical denials grouped, a table that fits the terminal, a summary, CSV.

Identical means the same request (user, namespace, workload) denied for the same image, policy,
authority, reason and signer; only the time differs. A group keeps its count and first and last
time. The summary counts denials (not groups) by policy, namespace and kind of reason.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from webhook.commands.console import Console, plural
from webhook.commands.table import Column, render


class DenialLike(Protocol):
    """The fields of ``denials.Denial`` this module reads."""

    @property
    def time(self) -> datetime | None: ...

    @property
    def user(self) -> str | None: ...

    @property
    def namespace(self) -> str | None: ...

    @property
    def image(self) -> str | None: ...

    @property
    def digest(self) -> str | None: ...

    @property
    def policy(self) -> str | None: ...

    @property
    def authority(self) -> str | None: ...

    @property
    def reason(self) -> str: ...

    @property
    def signer(self) -> str | None: ...

    @property
    def issuer(self) -> str | None: ...

    @property
    def log_index(self) -> int | None: ...

    @property
    def count(self) -> int: ...

    @property
    def workload(self) -> str: ...

    @property
    def rekor_url(self) -> str | None: ...

    def as_json(self) -> dict[str, Any]: ...


# Kinds of reason for the summary, first match wins; the reason itself is always in the table.
_REASON_KINDS: Final = (
    ("no signatures", re.compile(r"no signatures? (were )?found|unsigned", re.I)),
    ("wrong signer", re.compile(r"does not match expected|identity|not signed by", re.I)),
    ("infrastructure", re.compile(r"infrastructure|unreachable|not verified in time|timed out", re.I)),
    ("no policy matches", re.compile(r"no policy matches", re.I)),
    ("invalid reference", re.compile(r"invalid image reference", re.I)),
    ("policy cannot be enforced", re.compile(r"cannot be enforced", re.I)),
    ("attestation", re.compile(r"attestation", re.I)),
    ("static fail", re.compile(r"static fail", re.I)),
)
_TOP: Final = 3


def reason_kind(reason: str) -> str:
    """A short family name for a reason ("wrong signer", "no signatures", …), else "other"."""
    return next((name for name, pattern in _REASON_KINDS if pattern.search(reason)), "other")


@dataclass(frozen=True)
class Group:
    """Identical denials: the latest one, how many, and when the first and the last happened."""

    denial: DenialLike
    count: int
    first: datetime | None
    last: datetime | None

    def as_json(self) -> dict[str, Any]:
        data = self.denial.as_json()
        data.pop("time", None)
        data.update(count=self.count, firstTime=_time(self.first), lastTime=_time(self.last))
        return data


def _time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _key(denial: DenialLike) -> tuple[Any, ...]:
    return (denial.user, denial.namespace, denial.workload, denial.image, denial.digest, denial.policy,
            denial.authority, denial.reason, denial.signer, denial.issuer, denial.log_index)


def group(denials: Iterable[DenialLike], *, merge: bool = True) -> list[Group]:
    """Groups in order of their last time; ``merge=False`` keeps every denial on its own."""
    groups: dict[Any, Group] = {}
    for index, denial in enumerate(denials):
        key = _key(denial) if merge else index
        known = groups.get(key)
        if known is None:
            groups[key] = Group(denial, denial.count, denial.time, denial.time)
            continue
        times = [t for t in (known.first, known.last, denial.time) if t is not None]
        latest = denial if denial.time and (known.last is None or denial.time >= known.last) else known.denial
        groups[key] = Group(latest, known.count + denial.count, min(times, default=None), max(times, default=None))
    return sorted(groups.values(), key=lambda g: g.last or datetime.min.replace(tzinfo=UTC))


def summary_json(groups: Sequence[Group]) -> dict[str, Any]:
    by_policy: Counter[str] = Counter()
    by_namespace: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    for item in groups:
        by_policy[item.denial.policy or "(no policy)"] += item.count
        by_namespace[item.denial.namespace or "(cluster)"] += item.count
        by_reason[reason_kind(item.denial.reason)] += item.count
    times = [t for g in groups for t in (g.first, g.last) if t is not None]
    return {"denials": sum(g.count for g in groups), "distinct": len(groups),
            "from": _time(min(times, default=None)), "to": _time(max(times, default=None)),
            "byPolicy": dict(by_policy.most_common()), "byNamespace": dict(by_namespace.most_common()),
            "byReason": dict(by_reason.most_common())}


def _counts(counts: dict[str, int]) -> str:
    items = list(counts.items())
    shown = ", ".join(f"{name} {count}" for name, count in items[:_TOP])
    return shown + (f", {len(items) - _TOP} more" if len(items) > _TOP else "")


def summary_lines(groups: Sequence[Group]) -> list[str]:
    data = summary_json(groups)
    span = f" from {data['from']} to {data['to']}" if data["from"] and data["from"] != data["to"] else (
        f" at {data['from']}" if data["from"] else "")
    distinct = f" ({data['distinct']} distinct)" if data["distinct"] != data["denials"] else ""
    return [f"{plural(data['denials'], 'denial')}{distinct}{span}",
            f"  by policy:    {_counts(data['byPolicy'])}",
            f"  by namespace: {_counts(data['byNamespace'])}",
            f"  by reason:    {_counts(data['byReason'])}"]


def _image(denial: DenialLike, wide: bool) -> str:
    image = denial.image or "-"
    if wide and denial.digest and denial.digest not in image:
        image += f"@{denial.digest}"  # the table's default view leaves the digest to --wide and -o json
    return image


def _short_time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value else "-"


def table_lines(groups: Sequence[Group], width: int | None, *, wide: bool, console: Console) -> list[str]:
    """LAST SEEN (UTC), COUNT, USER, NAMESPACE, WORKLOAD, IMAGE, POLICY, REASON; ``wide`` adds the rest, uncut."""
    columns = [Column("LAST SEEN", shrink=False), Column("COUNT", shrink=False), Column("USER", minimum=10),
               Column("NAMESPACE"), Column("WORKLOAD", minimum=12), Column("IMAGE", cut="middle", minimum=16),
               Column("POLICY", minimum=10), Column("REASON", minimum=20)]
    if wide:
        columns[1:1] = [Column("FIRST SEEN", shrink=False)]
        columns[-1:-1] = [Column("AUTHORITY"), Column("SIGNER"), Column("ISSUER"), Column("REKOR")]
    rows = []
    for item in groups:
        d = item.denial
        row = [(_time(item.last) or "-") if wide else _short_time(item.last), str(item.count), d.user or "-",
               d.namespace or "-", d.workload, _image(d, wide), d.policy or "-", d.reason]
        if wide:
            row[1:1] = [_time(item.first) or "-"]
            row[-1:-1] = [d.authority or "-", d.signer or "-", d.issuer or "-", d.rekor_url or "-"]
        rows.append(row)
    reason = len(columns) - 1

    def paint(index: int, cell: str) -> str:
        return console.paint(cell, "deny") if index == reason else cell

    return render(columns, rows, None if wide else width, paint)


def _cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run: text starting like a formula gets a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_text(groups: Sequence[Group]) -> str:
    """One row per group, every field (camelCase headers, as in -o json)."""
    records = [g.as_json() for g in groups]
    fields = list(dict.fromkeys(k for r in records for k in r)) or ["count", "firstTime", "lastTime"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _cell(v) for k, v in r.items()} for r in records)
    return buffer.getvalue()
