"""``signet evaluate -f MANIFEST... --policies PATH...``: what the webhook would decide, before applying.

Reads multi-document YAML manifests like ``kubectl apply -f`` (files, directories, ``-``; any
pod-bearing kind; ``List`` objects are expanded; other kinds are listed as not checked), runs the
images of each workload through the same ``Engine.decide`` as the server, and prints per workload
and image allow/deny/warn and why. ``--explain`` shows the selection instead (policies,
authorities, identities, keys, attestations), without any registry (``webhook.commands.explain``).

Exit 0 when every workload would be admitted (warn counts as admitted), 1 when one would be
denied, 2 for input errors: unreadable file, invalid YAML, invalid policies (all listed).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from webhook.admission.outcome import ImageOutcome, clean
from webhook.admission.review import GroupVersionKind
from webhook.admission.workload import UnreadableWorkloadError, distinct_images, is_workload, workload_images
from webhook.audit import image_record
from webhook.commands import explain
from webhook.commands.common import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    add_trust_arguments,
    expand_paths,
    read_file,
    trusted_root_from_args,
)
from webhook.commands.console import Console, plural
from webhook.commands.hints import hint_for
from webhook.commands.policy import findings, load_paths
from webhook.commands.progress import Progress
from webhook.config import DEFAULT_DEADLINE, parse_mirrors
from webhook.errors import InputError
from webhook.policy.matching import PolicySet
from webhook.policy.models import NoMatchPolicy

EXIT_MEANINGS = {
    EXIT_OK: "admitted: every workload would be admitted (warnings included)",
    EXIT_REJECTED: "denied: at least one workload would be denied",
    EXIT_USAGE: "usage or input error: unreadable manifest or invalid policies; nothing was decided",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--filename", dest="manifests", action="append", nargs="+", required=True,
                        metavar="MANIFEST", help="manifest files (YAML or JSON), directories of them, or '-' for "
                                                 "stdin, like kubectl apply -f (repeatable)")
    parser.add_argument("-R", "--recursive", action="store_true", help="read directories given to -f recursively")
    parser.add_argument("--policies", action="append", nargs="+", required=True, metavar="PATH",
                        help="policy files or directories, read as serve reads --policies; several combine "
                             "(repeatable)")
    parser.add_argument("--explain", action="store_true",
                        help="show which policies, authorities, identities, keys and attestations apply to each "
                             "image, without verifying anything (no registry, no trust root)")
    add_trust_arguments(parser)
    parser.add_argument("--allow-http-registry", action="store_true", help="reach loopback registries over plain HTTP")
    parser.add_argument("--registry-mirror", action="append", default=[], metavar="HOST=URL",
                        help="fetch HOST's images from URL (repeatable; default: none)")
    parser.add_argument("--namespace", help="namespace of manifests that name none (default: default)")
    parser.add_argument("--no-match-policy", choices=[m.value for m in NoMatchPolicy], default="deny",
                        help="images no policy matches: deny, warn or allow (default: deny)")
    parser.add_argument("--on-error", choices=("deny", "warn", "allow"), default="deny",
                        help="registry, Rekor and deadline failures: deny, warn or allow (default: deny)")
    parser.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE, metavar="SECONDS",
                        help=f"per-workload verification deadline (default: {DEFAULT_DEADLINE:g})")


@dataclass
class Workload:
    source: str
    kind: str
    name: str
    namespace: str
    images: list[str] = field(default_factory=list)
    problem: str | None = None  # unreadable workload: denied
    skipped: str | None = None  # not a workload: not checked
    outcomes: list[ImageOutcome] = field(default_factory=list)
    document: Mapping[str, Any] | None = field(default=None, repr=False)
    """The object itself: what a policy's ``spec.policy`` with ``include*`` sees."""

    @property
    def verdict(self) -> str:
        if self.skipped is not None:
            return "skip"
        if self.problem is not None or any(o.verdict == "deny" for o in self.outcomes):
            return "deny"
        return "warn" if any(o.verdict == "warn" for o in self.outcomes) else "allow"


def _documents(path: str) -> Iterator[tuple[int, Any]]:
    raw = sys.stdin.read() if path == "-" else read_file(path, "manifest")
    try:
        yield from enumerate(yaml.safe_load_all(raw))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise InputError(f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}".replace("\n", " ")) from exc


def object_name(meta: Mapping[str, Any]) -> str:
    """``metadata.name``, else ``generateName`` + ``…`` (the API server completes it), else ``(unnamed)``."""
    name, generated = meta.get("name"), meta.get("generateName")
    if isinstance(name, str) and name:
        return name
    if isinstance(generated, str) and generated:
        return f"{generated}…"
    return "(unnamed)"


def _gvk(doc: Mapping[str, Any]) -> GroupVersionKind:
    api = str(doc.get("apiVersion") or "")
    group, _, version = api.rpartition("/")
    return GroupVersionKind(group, version, str(doc.get("kind") or ""))


def _objects(doc: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
        for item in doc["items"]:
            yield from _objects(item)
    elif isinstance(doc, dict):
        yield doc


def read_workloads(paths: Sequence[str], default_namespace: str | None, *, recursive: bool = False
                   ) -> list[Workload]:
    """Every object of every manifest, with its images (InputError for unreadable/invalid files)."""
    workloads: list[Workload] = []
    for path in expand_paths(paths, recursive=recursive):
        for index, doc in _documents(path):
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise InputError(f"{path}: document {index + 1} is not a mapping (a Kubernetes object)")
            for obj in _objects(doc):
                raw_meta = obj.get("metadata")
                meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
                gvk = _gvk(obj)
                workload = Workload(
                    source=f"{path}#{index + 1}", kind=gvk.kind or "(no kind)", name=object_name(meta),
                    namespace=str(meta.get("namespace") or default_namespace or "default"), document=obj)
                if not is_workload(gvk):
                    workload.skipped = f"{gvk.kind or 'object without kind'} is not a workload"
                else:
                    try:
                        workload.images = distinct_images(workload_images(gvk, obj))
                    except UnreadableWorkloadError as exc:
                        workload.problem = exc.diagnostics()
                workloads.append(workload)
    return workloads


def load_policy_set(paths: Sequence[str], no_match: NoMatchPolicy) -> PolicySet:
    """Policies of ``paths`` combined; any invalid document is an input error listing all of them (FILE:LINE)."""
    loaded = load_paths(paths)
    if loaded.result.problems:
        errors = [f for f in findings(loaded) if f.severity == "error"]
        lines = [f"{f.file}:{f.line}: " + ": ".join(p for p in (f.subject, f.problem.path, f.message) if p)
                 if f.line else ": ".join(p for p in (f.file, f.subject, f.problem.path, f.message) if p)
                 for f in errors]
        raise InputError(f"invalid policies ({plural(len(errors), 'problem')}; see signet policy validate):\n"
                         + "\n".join(lines))
    return PolicySet.from_load_result(loaded.result, no_match_policy=no_match)


async def decide_all(workloads: list[Workload], args: argparse.Namespace, policy_set: PolicySet,
                     progress: Progress | None = None) -> None:
    from webhook.decision import Engine, EngineSettings
    from webhook.oci import RegistryClient
    from webhook.rekor import RekorClient

    root = trusted_root_from_args(args)
    settings = EngineSettings(on_error=args.on_error, deadline=args.deadline)
    mirrors = parse_mirrors(args.registry_mirror)
    async with RegistryClient(allow_http=args.allow_http_registry, mirrors=mirrors) as registry, RekorClient() as rekor:
        engine = Engine(policies=lambda: policy_set, trust_root=lambda: root, registry=registry, rekor=rekor,
                        settings=settings)
        try:
            for number, workload in enumerate(workloads, start=1):
                if progress is not None:
                    progress.update(f"{number}/{len(workloads)} {workload.kind}/{workload.namespace}/{workload.name}")
                if workload.images and workload.problem is None:
                    decisions = await engine.decide(workload.images, workload.namespace, workload=workload.document)
                    workload.outcomes = [d.outcome for d in decisions]
        finally:
            await engine.aclose()


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    console = Console.from_args(args)
    if not args.deadline > 0:
        raise InputError(f"--deadline must be a positive number of seconds, not {args.deadline:g}")
    paths = [p for group in args.manifests for p in group]
    workloads = read_workloads(paths, args.namespace, recursive=args.recursive)
    policy_set = load_policy_set([p for group in args.policies for p in group], NoMatchPolicy(args.no_match_policy))
    if args.explain:
        return explain_workloads(workloads, policy_set, args, console)
    with Progress(console.err, "evaluating") as progress:
        asyncio.run(decide_all(workloads, args, policy_set, progress))
    code = EXIT_REJECTED if any(w.verdict == "deny" for w in workloads) else EXIT_OK
    if console.json:
        console.document(as_json(workloads), code)
    else:
        console.print(as_text(workloads, console))
    for hint in dict.fromkeys(h for w in workloads for o in w.outcomes if (h := hint_for(o.reason))):
        console.note(f"{console.paint('Hint:', 'hint', stream=console.err)} {hint}")
    return code


def explain_workloads(workloads: Sequence[Workload], policy_set: PolicySet, args: argparse.Namespace,
                      console: Console) -> int:
    """The selection for every image, no registry; exit 1 only for an image denied whatever its signatures."""
    from webhook.decision.plans import Planner

    planner = Planner(policy_set, on_error=args.on_error)
    explained = [(w, explain.explain_images(w.images, w.namespace, planner, w.document) if w.problem is None else [])
                 for w in workloads]
    denied = any(w.problem is not None or any(e.decided is not None and e.decided.verdict == "deny" for e in items)
                 for w, items in explained if w.skipped is None)
    code = EXIT_REJECTED if denied else EXIT_OK
    if console.json:
        console.document({"workloads": [
            {"source": w.source, "kind": w.kind, "namespace": w.namespace, "name": w.name,
             **({"reason": w.problem or w.skipped} if (w.problem or w.skipped) else {}),
             "images": [explain.image_json(e) for e in items]} for w, items in explained]}, code)
        return code
    blocks = []
    for workload, items in explained:
        lines = [console.paint(f"{workload.kind}/{workload.namespace}/{workload.name}", "bold")
                 + f" ({workload.source})"]
        if workload.skipped or workload.problem:
            lines.append(f"  {console.verdict(workload.verdict)}: {workload.problem or workload.skipped}")
        for item in items:
            lines.extend(f"  {line}" for line in explain.image_lines(item, console))
        blocks.append("\n".join(lines))
    blocks.append(explain.summary([item for _, items in explained for item in items]))
    console.print("\n\n".join(blocks))
    return code


def as_json(workloads: Sequence[Workload]) -> dict[str, Any]:
    return {
        "allowed": not any(w.verdict == "deny" for w in workloads),
        "workloads": [
            {"source": w.source, "kind": w.kind, "namespace": w.namespace, "name": w.name, "verdict": w.verdict,
             **({"reason": w.problem or w.skipped} if (w.problem or w.skipped) else {}),
             "images": [image_record(o) for o in w.outcomes]}
            for w in workloads
        ],
    }


def as_text(workloads: Sequence[Workload], console: Console | None = None) -> str:
    """An aligned table: one row per image (or per workload when no image was decided)."""
    rows: list[tuple[str, str, str, str, str]] = []
    for w in workloads:
        label = f"{w.kind}/{w.namespace}/{w.name}"
        if w.skipped or w.problem:
            rows.append((label, "-", w.verdict, "-", clean(w.problem or w.skipped or "", 300)))
            continue
        if not w.outcomes:
            rows.append((label, "-", "allow", "-", "no images"))
        for o in w.outcomes:
            policy = o.policy or "-"
            if o.authority:
                policy += f" ({o.authority})"
            why = o.reason
            if o.signer and o.signer not in why:
                why += f" [signer {o.signer}" + (f", issuer {o.issuer}" if o.issuer else "") + "]"
            rows.append((label, clean(o.reference, 120), o.verdict, clean(policy, 60), clean(why, 300)))
    console = console or Console()
    header = ("WORKLOAD", "IMAGE", "VERDICT", "POLICY", "REASON")
    rows = [(r[0], r[1], console.shown(r[2]), r[3], r[4]) for r in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = []
    for number, row in enumerate([header, *rows]):
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        if number:  # colour after padding: escape codes have no width
            cells[2] = console.verdict(row[2].split()[-1], widths[2])
        lines.append("  ".join(cells) + "  " + row[4])
    denied = sum(w.verdict == "deny" for w in workloads)
    checked = sum(w.verdict != "skip" for w in workloads)
    lines.append("")
    summary = (f"{checked - denied} of {plural(checked, 'workload')} would be admitted, {denied} denied"
               + (f", {len(workloads) - checked} not checked" if checked < len(workloads) else ""))
    lines.append(f"{console.symbol('deny' if denied else 'allow')} {summary}".strip())
    return "\n".join(line.rstrip() for line in lines)
