"""``signet evaluate -f MANIFEST... --policies DIR``: what the webhook would decide, before applying.

Reads multi-document YAML manifests (any pod-bearing kind; ``List`` objects are expanded; other
kinds are listed as not checked), runs the images of each workload through the same
``Engine.decide`` as the server, and prints per workload and image allow/deny/warn and why.

Exit 0 when every workload would be admitted (warn counts as admitted), 1 when one would be
denied, 2 for input errors: unreadable file, invalid YAML, invalid policies (all listed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from webhook.admission.outcome import ImageOutcome, clean
from webhook.admission.review import GroupVersionKind
from webhook.admission.workload import UnreadableWorkloadError, distinct_images, is_workload, workload_images
from webhook.audit import image_record
from webhook.commands.common import EXIT_OK, EXIT_REJECTED, add_trust_arguments, read_file, trusted_root_from_args
from webhook.config import DEFAULT_DEADLINE, parse_mirrors
from webhook.errors import InputError, PolicyError
from webhook.policy.loader import load_directory
from webhook.policy.matching import PolicySet
from webhook.policy.models import NoMatchPolicy


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--filename", dest="manifests", action="append", nargs="+", required=True,
                        metavar="MANIFEST", help="YAML manifest file(s), '-' for stdin (repeatable)")
    parser.add_argument("--policies", required=True, metavar="DIR", help="directory of policy YAML files")
    add_trust_arguments(parser)
    parser.add_argument("--allow-http-registry", action="store_true", help="reach loopback registries over plain HTTP")
    parser.add_argument("--registry-mirror", action="append", default=[], metavar="HOST=URL",
                        help="fetch HOST's images from URL (repeatable)")
    parser.add_argument("--namespace", help="namespace of manifests that name none (default: 'default')")
    parser.add_argument("--no-match-policy", choices=[m.value for m in NoMatchPolicy], default="deny")
    parser.add_argument("--on-error", choices=("deny", "warn", "allow"), default="deny")
    parser.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE, metavar="SECONDS",
                        help="per-workload verification deadline")
    parser.add_argument("--output", choices=("text", "json"), default="text", help="output format")


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

    @property
    def verdict(self) -> str:
        if self.skipped is not None:
            return "skip"
        if self.problem is not None or any(o.verdict == "deny" for o in self.outcomes):
            return "deny"
        return "warn" if any(o.verdict == "warn" for o in self.outcomes) else "allow"


def _documents(path: str) -> Iterator[tuple[int, Any]]:
    raw = sys.stdin.buffer.read() if path == "-" else read_file(path, "manifest")
    try:
        yield from enumerate(yaml.safe_load_all(raw))
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML: {exc}".replace("\n", " ")) from exc


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


def read_workloads(paths: Sequence[str], default_namespace: str | None) -> list[Workload]:
    """Every object of every manifest, with its images (InputError for unreadable/invalid files)."""
    workloads: list[Workload] = []
    for path in paths:
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
                    source=f"{path}#{index + 1}", kind=gvk.kind or "?", name=str(meta.get("name") or "?"),
                    namespace=str(meta.get("namespace") or default_namespace or "default"))
                if not is_workload(gvk):
                    workload.skipped = f"{gvk.kind or 'object without kind'} is not a workload"
                else:
                    try:
                        workload.images = distinct_images(workload_images(gvk, obj))
                    except UnreadableWorkloadError as exc:
                        workload.problem = exc.diagnostics()
                workloads.append(workload)
    return workloads


def load_policy_set(directory: str, no_match: NoMatchPolicy) -> PolicySet:
    """Policies of ``directory``; any invalid document is an input error listing all of them."""
    try:
        result = load_directory(Path(directory))
    except PolicyError as exc:
        raise InputError(exc.reason) from exc
    if result.problems:
        raise InputError("invalid policies:\n  " + "\n  ".join(str(p) for p in result.problems))
    return PolicySet.from_load_result(result, no_match_policy=no_match)


async def decide_all(workloads: list[Workload], args: argparse.Namespace, policy_set: PolicySet) -> None:
    from webhook.engine import Engine, EngineSettings
    from webhook.oci import RegistryClient
    from webhook.rekor import RekorClient

    root = trusted_root_from_args(args)
    settings = EngineSettings(on_error=args.on_error, deadline=args.deadline)
    mirrors = parse_mirrors(args.registry_mirror)
    async with RegistryClient(allow_http=args.allow_http_registry, mirrors=mirrors) as registry, RekorClient() as rekor:
        engine = Engine(policies=lambda: policy_set, trust_root=lambda: root, registry=registry, rekor=rekor,
                        settings=settings)
        try:
            for workload in workloads:
                if workload.images and workload.problem is None:
                    decisions = await engine.decide(workload.images, workload.namespace)
                    workload.outcomes = [d.outcome for d in decisions]
        finally:
            await engine.aclose()


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    paths = [p for group in args.manifests for p in group]
    workloads = read_workloads(paths, args.namespace)
    policy_set = load_policy_set(args.policies, NoMatchPolicy(args.no_match_policy))
    asyncio.run(decide_all(workloads, args, policy_set))
    if args.output == "json":
        print(json.dumps(as_json(workloads), indent=2))
    else:
        print(as_text(workloads))
    return EXIT_REJECTED if any(w.verdict == "deny" for w in workloads) else EXIT_OK


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


def as_text(workloads: Sequence[Workload]) -> str:
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
    header = ("WORKLOAD", "IMAGE", "VERDICT", "POLICY", "REASON")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4]
             for row in [header, *rows]]
    denied = sum(w.verdict == "deny" for w in workloads)
    checked = sum(w.verdict != "skip" for w in workloads)
    lines.append("")
    lines.append(f"{checked - denied} of {checked} workload(s) would be admitted, {denied} denied"
                 + (f", {len(workloads) - checked} not checked" if checked < len(workloads) else ""))
    return "\n".join(line.rstrip() for line in lines)
