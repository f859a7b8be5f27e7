"""``signet policy validate PATH...`` (alias ``lint``): load policy files exactly as ``serve`` would.

Every problem is printed as ``FILE:LINE: error: OBJECT: PATH: message`` (the form editors and CI
logs link), with a suggestion for a misspelt field; warnings name what is loaded but ignored.
Exit 0 when every document is valid (warnings allowed, unless ``--strict``), 1 when one is not,
2 when a path cannot be read. Fit for CI and for a pre-commit hook (README).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import yaml

from webhook.commands.common import EXIT_OK, EXIT_REJECTED, EXIT_USAGE
from webhook.commands.console import Console, plural
from webhook.commands.policy_locate import METADATA_FIELDS, compose, line_of, suggest_field
from webhook.errors import InputError, PolicyError
from webhook.policy.groups import POLICY_CONTROLLER_GROUP
from webhook.policy.loader import (
    LoadResult,
    PolicyObject,
    PolicyProblem,
    load_directory,
    load_file,
    load_text,
    policy_files,
)
from webhook.policy.models import ClusterImagePolicy, ImagePolicy, TrustRoot

EXIT_MEANINGS: Final = {
    EXIT_OK: "valid: every document loads as written",
    EXIT_REJECTED: "invalid: at least one document has a problem (or a warning, with --strict)",
    EXIT_USAGE: "usage or input error: a path could not be read",
}
_CLUSTER_SCOPED: Final = ("ClusterImagePolicy", "TrustRoot")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="policy files, directories of them (*.yaml, *.yml; as serve reads --policies) "
                             "or '-' for stdin")
    parser.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")


@dataclass(frozen=True)
class Finding:
    """One problem or warning, located."""

    severity: str  # "error" or "warning"
    problem: PolicyProblem
    file: str
    line: int | None
    suggestion: str | None = None

    @property
    def subject(self) -> str:
        if self.problem.kind and self.problem.name:
            return f'{self.problem.kind} "{self.problem.name}"'
        if self.problem.document is not None:
            return f"document {self.problem.document + 1}" + (f" ({self.problem.kind})" if self.problem.kind else "")
        return ""

    @property
    def message(self) -> str:
        hint = f" (did you mean {self.suggestion}?)" if self.suggestion else ""
        return self.problem.message + hint

    def as_json(self) -> dict[str, Any]:
        return {"severity": self.severity, "file": self.file, "line": self.line,
                "document": None if self.problem.document is None else self.problem.document + 1,
                "kind": self.problem.kind, "name": self.problem.name, "path": self.problem.path,
                "message": self.problem.message, "suggestion": self.suggestion}


@dataclass(frozen=True)
class Loaded:
    """What the paths hold: the merged result as serve would have it, and each file's text for line numbers."""

    result: LoadResult
    texts: Mapping[str, str]
    files: tuple[str, ...]


def _objects(result: LoadResult) -> tuple[PolicyObject, ...]:
    return (*result.cluster_policies, *result.image_policies, *result.trust_roots)


def _qualified(obj: PolicyObject) -> str:
    namespace = obj.metadata.namespace
    return f"{namespace}/{obj.name}" if isinstance(obj, ImagePolicy) and namespace else obj.name


def merge(results: Iterable[LoadResult]) -> LoadResult:
    """Several loads as one: the first object of a name wins and every later one is a problem (as in a directory)."""
    kept: dict[str, PolicyObject] = {}
    problems: list[PolicyProblem] = []
    warnings: list[PolicyProblem] = []
    fail_closed: list[str] = []
    for result in results:
        problems.extend(result.problems)
        warnings.extend(result.warnings)
        for obj in _objects(result):
            first = kept.get(obj.key)
            if first is not None:
                problems.append(PolicyProblem(obj.origin, f"duplicate name: already defined in {first.origin}; "
                                              "this one is ignored", kind=obj.kind, name=_qualified(obj)))
                continue
            kept[obj.key] = obj
            if obj.key in result.fail_closed:
                fail_closed.append(obj.key)
    objects = list(kept.values())
    return LoadResult(
        cluster_policies=tuple(o for o in objects if isinstance(o, ClusterImagePolicy)),
        image_policies=tuple(o for o in objects if isinstance(o, ImagePolicy)),
        trust_roots=tuple(o for o in objects if isinstance(o, TrustRoot)),
        problems=tuple(problems), warnings=tuple(warnings), fail_closed=tuple(fail_closed))


def load_paths(paths: Sequence[str], *, stdin_text: str | None = None) -> Loaded:
    """Each path as serve reads it (a directory: its *.yaml/*.yml, not recursive), merged; InputError if absent."""
    results: list[LoadResult] = []
    texts: dict[str, str] = {}
    files: list[str] = []
    for path in paths:
        if path == "-":
            text = stdin_text if stdin_text is not None else sys.stdin.read()
            texts["<stdin>"] = text
            files.append("<stdin>")
            results.append(load_text(text, "<stdin>"))
            continue
        entry = Path(path)
        if entry.is_dir():
            try:
                results.append(load_directory(entry))
            except PolicyError as exc:
                raise InputError(exc.reason) from exc
            names = [str(p) for p in policy_files(entry)]
        elif entry.is_file():
            results.append(load_file(entry))
            names = [path]
        else:
            raise InputError(f"cannot read policies {path}: No such file or directory")
        for name in names:
            files.append(name)
            try:
                texts[name] = Path(name).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                texts[name] = ""
    return Loaded(merge(results), texts, tuple(files))


def _file_of(source: str, texts: Mapping[str, str]) -> str:
    # A policy-controller object's origin is "FILE (policy.sigstore.dev/v1beta1)".
    return source if source in texts else source.rsplit(" (", 1)[0]


def _ignored(texts: Mapping[str, str]) -> Iterator[PolicyProblem]:
    """Warnings the loader has no reason to give: metadata it does not read, a namespace on a cluster object."""
    for file, text in texts.items():
        try:
            documents = list(yaml.safe_load_all(text))
        except yaml.YAMLError:
            continue  # the loader reports it
        for index, document in enumerate(documents):
            items = document.get("items") if isinstance(document, dict) and document.get("kind") == "List" else None
            for obj in items if isinstance(items, list) else [document]:
                if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
                    continue
                kind, metadata = obj.get("kind"), obj["metadata"]
                name = metadata.get("name") if isinstance(metadata.get("name"), str) else None
                where = PolicyProblem(file, "", document=index, kind=kind if isinstance(kind, str) else None,
                                      name=name)
                for key in metadata:
                    if key not in METADATA_FIELDS:
                        yield replace(where, message="ignored: not an object metadata field", path=f"metadata.{key}")
                if str(obj.get("apiVersion", "")).startswith(POLICY_CONTROLLER_GROUP):
                    yield from _policy_controller_ignored(obj, where)
                if kind in _CLUSTER_SCOPED and "namespace" in metadata:
                    yield replace(where, message=f"ignored: a {kind} is cluster-scoped", path="metadata.namespace")


def _policy_controller_ignored(obj: Mapping[str, Any], where: PolicyProblem) -> Iterator[PolicyProblem]:
    spec = obj.get("spec")
    authorities = spec.get("authorities") if isinstance(spec, dict) else None
    for index, authority in enumerate(authorities if isinstance(authorities, list) else []):
        keyless = authority.get("keyless") if isinstance(authority, dict) else None
        if isinstance(keyless, dict) and "url" in keyless:
            yield replace(where, message="ignored: signet checks certificates against the trust root and never "
                          "contacts Fulcio", path=f"spec.authorities[{index}].keyless.url")


def findings(loaded: Loaded) -> list[Finding]:
    nodes = {file: compose(text) for file, text in loaded.texts.items()}
    found: list[Finding] = []
    seen: set[tuple[Any, ...]] = set()
    extra = list(_ignored(loaded.texts))
    for severity, problems in (("error", loaded.result.problems), ("warning", (*loaded.result.warnings, *extra))):
        for problem in problems:
            file = _file_of(problem.source, loaded.texts)
            # A problem with the whole object (a duplicate name) points at its name.
            where = problem.path or ("metadata.name" if problem.name else None)
            line = line_of(nodes.get(file, []), problem.document, problem.kind, problem.name, where)
            suggestion = None
            if "unknown field" in problem.message or problem.message.startswith("ignored: not an object metadata"):
                suggestion = suggest_field(problem.kind, problem.path)
            key = (severity, file, problem.document, problem.name, problem.path, problem.message.split(":")[0])
            if key not in seen:
                seen.add(key)
                found.append(Finding(severity, replace(problem, source=file), file, line, suggestion))
    order = {f: i for i, f in enumerate(loaded.files)}
    return sorted(found, key=lambda f: (order.get(f.file, len(order)), f.line or 0))


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    console = Console.from_args(args)
    loaded = load_paths(args.paths)
    found = findings(loaded)
    errors = sum(f.severity == "error" for f in found)
    warnings = len(found) - errors
    code = EXIT_REJECTED if errors or (args.strict and warnings) else EXIT_OK
    objects = _objects(loaded.result)
    if console.json:
        console.document({
            "valid": code == EXIT_OK, "errors": errors, "warnings": warnings, "files": list(loaded.files),
            "objects": [{"kind": o.kind, "name": _qualified(o), "source": o.origin,
                         "failClosed": o.key in loaded.result.fail_closed} for o in objects],
            "problems": [f.as_json() for f in found]}, code)
        return code
    for finding in found:
        location = f"{finding.file}:{finding.line}" if finding.line else finding.file
        label = console.paint(finding.severity, "deny" if finding.severity == "error" else "warn")
        parts = [p for p in (finding.subject, finding.problem.path, finding.message) if p]
        console.print(f"{location}: {label}: {': '.join(parts)}")
    for obj in objects:
        if obj.key in loaded.result.fail_closed:
            console.print(f'until it is fixed, signet serve denies every image {obj.kind} "{_qualified(obj)}" '
                          "covers (it cannot be enforced as written)")
    files = plural(len(loaded.files), "file")
    counts = plural(errors, "error") + (f" and {plural(warnings, 'warning')}" if warnings else "")
    if code == EXIT_OK:
        tail = f", {plural(warnings, 'warning')}" if warnings else ""
        console.print(f"{console.symbol('valid')} {files}, {plural(len(objects), 'object')} valid{tail}".strip())
    else:
        console.print(f"{console.symbol('error')} {counts if errors else plural(warnings, 'warning')} in "
                      f"{files}".strip())
    return code


