"""``signet denials``: recent denials for auditors, from the cluster's Events or from the JSON audit log.

Sources: ``--from-log FILE|-`` reads the audit lines ``signet serve`` writes (one JSON object per
decision, ARCHITECTURE.md §8: every field); without it, the ``ImageDenied`` Events in the cluster
are listed (their ``signet.dev/images`` annotation when present, else the message is parsed back
into image, policy, authority, reason and signer; Events carry no user unless annotated).

One row per group of identical denials (``webhook.commands.denials_report``): last and first
time, count, user, namespace, workload, image, policy, signer found, reason, and with ``--wide``
the authority, issuer and Rekor log index (its search.sigstore.dev link only resolves for the
public-good Rekor), uncut. The table fits the terminal; a summary counts denials by policy,
namespace and reason. Filters: ``--namespace``, ``--policy``, ``--since``/``--until`` (a duration
such as ``90m``/``1h30m``/``2d`` back from now, or an RFC 3339 time). ``-o json|csv`` for scripts.
Exit 0 whatever was found ("no denials" when nothing), 1 when the cluster cannot be read, 2 on
input errors.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from webhook.commands import denials_report
from webhook.commands.common import EXIT_OK, EXIT_REJECTED, EXIT_USAGE
from webhook.commands.console import Console
from webhook.commands.table import terminal_width
from webhook.errors import InfrastructureError, InputError

OUTPUTS: Final = ("text", "json", "csv")
EXIT_MEANINGS: Final = {
    EXIT_OK: "listed: the denials found (possibly none)",
    EXIT_REJECTED: "the cluster's Events could not be read",
    EXIT_USAGE: "usage or input error: unreadable log or bad filter",
}

SEARCH_URL: Final = "https://search.sigstore.dev/?logIndex={}"
REASON: Final = "ImageDenied"
USER_ANNOTATION: Final = "signet.dev/user"
IMAGES_ANNOTATION: Final = "signet.dev/images"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# The line ``webhook.admission.outcome.describe`` writes for a denied image.
_LINE = re.compile(
    r'^image (?P<image>\S+)(?: \((?P<digest>[^)\s]+)\))? denied'
    r'(?: by policy "(?P<policy>[^"]*)")?(?:: authority "(?P<authority>[^"]*)")?: (?P<reason>.*?)'
    r'(?: \(found signer (?P<signer>[^,)]+)(?:, issuer (?P<issuer>[^)]+))?\))?$'
)
_SUMMARY = re.compile(r"^\d+ of \d+ images denied:$")
# How an attestation requirement names itself in a reason (webhook/decision/attested.py).
_ATTESTATION = re.compile(r'attestation "(?P<attestation>[^"]+)" \((?P<predicate_type>[^)\s]+)\)')


@dataclass(frozen=True)
class Denial:
    """One denied image (or one denied object when no image was checked)."""

    time: datetime | None
    source: str  # "log" or "event"
    user: str | None
    namespace: str | None
    kind: str | None
    name: str | None
    image: str | None
    reason: str
    digest: str | None = None
    policy: str | None = None
    authority: str | None = None
    signer: str | None = None
    issuer: str | None = None
    log_index: int | None = None
    operation: str | None = None
    uid: str | None = None
    count: int = 1
    attestation: str | None = None
    """The attestation requirement that was not met (missing, other predicate type, or its policy said no)."""
    predicate_type: str | None = None

    @property
    def workload(self) -> str:
        """``Deployment/web``; an object the API server names itself shows ``generateName…`` (see ``_name``)."""
        return f"{self.kind or 'object'}/{self.name or '(no name)'}"

    @property
    def rekor_url(self) -> str | None:
        return SEARCH_URL.format(self.log_index) if self.log_index is not None else None

    def as_json(self) -> dict[str, Any]:
        """Every field, camelCase (``logIndex``, ``predicateType``), with the workload and Rekor link."""
        data = {_camel(key): value for key, value in asdict(self).items()}
        data["time"] = _format_time(self.time) if self.time else None
        data["workload"] = self.workload
        data["rekorUrl"] = self.rekor_url
        return data


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _name(record: Mapping[str, Any]) -> str | None:
    """The object's name; a CREATE with ``generateName`` has none yet, so the prefix stands in for it."""
    name = _str(record.get("name"))
    generated = _str(record.get("generateName"))
    return name or (f"{generated}…" if generated else None)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from-log", metavar="FILE", help="read JSON audit log lines from FILE ('-' for stdin) "
                        "instead of the cluster's Events (default: the cluster's Events)")
    parser.add_argument("--namespace", "-n", metavar="NS", help="only denials in this namespace (default: all)")
    parser.add_argument("--policy", metavar="NAME", help="only denials by this policy (default: all)")
    parser.add_argument("--since", metavar="DURATION|TIME",
                        help="only denials at or after this: a duration back from now (30m, 1h30m, 2d) or an "
                             "RFC 3339 time (default: all)")
    parser.add_argument("--until", metavar="DURATION|TIME",
                        help="only denials before this, same forms as --since (default: now)")
    parser.add_argument("--wide", action="store_true",
                        help="every column (first seen, authority, issuer, Rekor link), nothing cut to fit the "
                             "terminal")
    parser.add_argument("--no-group", dest="group", action="store_false",
                        help="one row per denial instead of one per group of identical denials (default: grouped)")
    parser.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: in-cluster, then ~/.kube/config)")
    parser.add_argument("--context", metavar="NAME", help="kubeconfig context (default: the current one)")


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    console = Console.from_args(args)
    now = datetime.now(UTC)
    since = parse_since(args.since, now, flag="--since") if args.since else None
    until = parse_since(args.until, now, flag="--until") if args.until else None
    if since is not None and until is not None and until <= since:
        raise InputError(f"--until ({_format_time(until)}) must come after --since ({_format_time(since)})")
    if args.from_log:
        denials = list(denials_from_log(_read_lines(args.from_log)))
    else:
        denials = list(denials_from_events(_fetch_events(args.kubeconfig, args.context, args.namespace)))
    selected = sorted(filter_denials(denials, namespace=args.namespace, policy=args.policy, since=since,
                                     until=until),
                      key=lambda d: d.time or datetime.min.replace(tzinfo=UTC))
    groups = denials_report.group(selected, merge=args.group)
    if console.json:
        console.document({"summary": denials_report.summary_json(groups),
                          "denials": [g.as_json() for g in groups]}, EXIT_OK)
    elif console.output == "csv":
        console.print(denials_report.csv_text(groups).rstrip("\n"))
    elif not groups:
        console.print("no denials")
    else:
        width = terminal_width(console.out)
        for line in denials_report.table_lines(groups, width, wide=args.wide, console=console):
            console.print(line)
        console.print()
        for line in denials_report.summary_lines(groups):
            console.print(line)
    return EXIT_OK


# --- time -------------------------------------------------------------------------------------


def parse_since(value: str, now: datetime, *, flag: str = "--since") -> datetime:
    """``1h30m`` (back from ``now``) or an RFC 3339 time; anything else is an InputError naming ``flag``."""
    text = value.strip()
    if text and _DURATION.sub("", text) == "":
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text))
        return now - timedelta(seconds=seconds)
    parsed = _parse_time(text)
    if parsed is None:
        raise InputError(f"{flag} {value!r}: expected a duration (30m, 1h30m, 2d) or an RFC 3339 time")
    return parsed


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the audit log ----------------------------------------------------------------------------


def _read_lines(path: str) -> list[str]:
    if path == "-":
        return sys.stdin.read().splitlines()
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read --from-log {path}: {exc.strerror or exc}") from exc


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def denials_from_log(lines: Iterable[str]) -> Iterator[Denial]:
    """Denied images of the audit lines; other lines (allowed, other logs, prefixes like timestamps) are skipped."""
    for line in lines:
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(record, Mapping) and record.get("decision") == "deny":
            yield from _log_denials(record)


def _log_denials(record: Mapping[str, Any]) -> Iterator[Denial]:
    common: dict[str, Any] = {
        "time": _parse_time(record.get("time")), "source": "log", "user": _str(record.get("user")),
        "namespace": _str(record.get("namespace")), "kind": _str(record.get("kind")),
        "name": _name(record), "operation": _str(record.get("operation")), "uid": _str(record.get("uid")),
    }
    images = [i for i in record.get("images") or [] if isinstance(i, Mapping) and i.get("verdict") == "deny"]
    if not images:
        yield Denial(image=None, reason=_str(record.get("reason")) or "denied", **common)
    for image in images:
        yield Denial(**common, **_image_fields(image))


def _image_fields(image: Mapping[str, Any]) -> dict[str, Any]:
    """The per-image fields of an audit record (``reference``) or of the Event annotation (``image``)."""
    return {"image": _str(image.get("reference")) or _str(image.get("image")),
            "reason": _str(image.get("reason")) or "denied", "digest": _str(image.get("digest")),
            "policy": _str(image.get("policy")), "authority": _str(image.get("authority")),
            "signer": _str(image.get("signer")), "issuer": _str(image.get("issuer")),
            "log_index": _int(image.get("logIndex", image.get("log_index"))),
            "attestation": _str(image.get("attestation")), "predicate_type": _str(image.get("predicateType"))}


# --- Events -----------------------------------------------------------------------------------


def _fetch_events(kubeconfig: str | None, context: str | None, namespace: str | None) -> list[Mapping[str, Any]]:
    from kubernetes import client as k8s_client

    from webhook.k8s.client import api_error, load_api_client, raw_json

    api_client = load_api_client(kubeconfig, context=context)
    core: Any = k8s_client.CoreV1Api(api_client)
    events: list[Mapping[str, Any]] = []
    token: str | None = None
    try:
        while True:
            options = {"field_selector": f"reason={REASON}", "limit": 500, "_continue": token,
                       "_preload_content": False}
            response = (core.list_namespaced_event(namespace, **options) if namespace
                        else core.list_event_for_all_namespaces(**options))
            page = raw_json(response)
            events.extend(e for e in page.get("items") or [] if isinstance(e, Mapping))
            token = (page.get("metadata") or {}).get("continue") or None
            if token is None:
                return events
    except Exception as exc:  # any API failure: one line, exit 1
        raise InfrastructureError(f"cannot list Events from the cluster: {api_error(exc)}") from exc
    finally:
        api_client.close()


def denials_from_events(events: Iterable[Mapping[str, Any]]) -> Iterator[Denial]:
    """Denied images of ``ImageDenied`` Events (other Events are skipped)."""
    for event in events:
        if event.get("reason") != REASON:
            continue
        metadata, involved = _mapping(event, "metadata"), _mapping(event, "involvedObject")
        annotations = _mapping(metadata, "annotations")
        when = next((t for t in (_parse_time(event.get(k)) for k in ("lastTimestamp", "eventTime", "firstTimestamp"))
                     if t), _parse_time(metadata.get("creationTimestamp")))
        common: dict[str, Any] = {"time": when, "source": "event", "user": _str(annotations.get(USER_ANNOTATION)),
                  "namespace": _str(involved.get("namespace")) or _str(metadata.get("namespace")),
                  "kind": _str(involved.get("kind")), "name": _name(involved),
                  "uid": _str(involved.get("uid")), "count": _int(event.get("count")) or 1}
        records = _annotation_records(annotations.get(IMAGES_ANNOTATION))
        if records:
            yield from (Denial(**common, **_image_fields(r)) for r in records if r.get("verdict", "deny") == "deny")
        else:
            yield from (Denial(**common, **fields) for fields in parse_message(_str(event.get("message")) or ""))


def _mapping(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}


def _annotation_records(value: Any) -> list[Mapping[str, Any]]:
    try:
        records = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        return []
    return [r for r in records if isinstance(r, Mapping) and "omitted" not in r] if isinstance(records, list) else []


def parse_message(message: str) -> list[dict[str, Any]]:
    """A denial message (one line per denied image) back into fields, as well as it goes."""
    rows: list[dict[str, Any]] = []
    for line in (part.strip() for part in message.splitlines()):
        if not line or _SUMMARY.match(line) or line.startswith("… and "):
            continue
        match = _LINE.match(line)
        if match is None:
            rows.append({"image": None, "reason": line})
            continue
        fields = {k: v for k, v in match.groupdict().items() if v}
        attested = _ATTESTATION.search(fields.get("reason") or "")
        rows.append({"image": fields.get("image"), "reason": fields.get("reason") or "denied",
                     "digest": fields.get("digest"), "policy": fields.get("policy"),
                     "authority": fields.get("authority"), "signer": fields.get("signer"),
                     "issuer": fields.get("issuer"),
                     "attestation": attested.group("attestation") if attested else None,
                     "predicate_type": attested.group("predicate_type") if attested else None})
    return rows or [{"image": None, "reason": message or "denied"}]


# --- filters and output -----------------------------------------------------------------------


def filter_denials(denials: Iterable[Denial], *, namespace: str | None = None, policy: str | None = None,
                   since: datetime | None = None, until: datetime | None = None) -> Iterator[Denial]:
    for denial in denials:
        if namespace is not None and denial.namespace != namespace:
            continue
        if policy is not None and policy not in (denial.policy, (denial.policy or "").rpartition("/")[2]):
            continue
        if since is not None and (denial.time is None or denial.time < since):
            continue
        if until is not None and (denial.time is None or denial.time >= until):
            continue
        yield denial
