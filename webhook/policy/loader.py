"""Policy documents in, validated objects and problems out.

Files in a directory (``--policies DIR``: every ``*.yaml``/``*.yml``, multi-document) and objects
from the Kubernetes API (dicts) go through the same code. An invalid document is reported and
left out; the valid ones keep working. Every problem names where it is: file (or "cluster"),
object (kind and name, or document number when the name is unknown) and field path, e.g.
``policies/a.yaml: ClusterImagePolicy "release": spec.authorities[0].keyless.identities[0]:
exactly one of issuer and issuerRegExp is required``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from webhook.errors import PolicyError
from webhook.policy import compat
from webhook.policy.models import (
    API_VERSION,
    ClusterImagePolicy,
    ImagePolicy,
    Policy,
    TrustRoot,
    set_origin,
)

_logger = logging.getLogger(__name__)

PolicyObject = ClusterImagePolicy | ImagePolicy | TrustRoot
_KINDS: dict[str, type[PolicyObject]] = {
    "ClusterImagePolicy": ClusterImagePolicy,
    "ImagePolicy": ImagePolicy,
    "TrustRoot": TrustRoot,
}
# Objects as the API server returns them carry output-only fields that are not ours to validate.
_IGNORED_TOP_LEVEL = frozenset({"status"})


@dataclass(frozen=True)
class PolicyProblem:
    """One invalid (or, as a warning, partly ignored) part of a document, located for a human."""

    source: str
    message: str
    document: int | None = None  # 0-based index in a multi-document file
    kind: str | None = None
    name: str | None = None
    path: str | None = None

    def __str__(self) -> str:
        where = [self.source]
        if self.kind and self.name:
            where.append(f'{self.kind} "{self.name}"')
        elif self.document is not None:
            where.append(f"document {self.document + 1}" + (f" ({self.kind})" if self.kind else ""))
        if self.path:
            where.append(self.path)
        return ": ".join([*where, self.message])


class InvalidPolicyError(PolicyError):
    """A document is invalid; ``problems`` lists every reason (the message joins them)."""

    def __init__(self, problems: Iterable[PolicyProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class LoadResult:
    """Valid objects, in load order, and the problems of the invalid ones."""

    cluster_policies: tuple[ClusterImagePolicy, ...] = ()
    image_policies: tuple[ImagePolicy, ...] = ()
    trust_roots: tuple[TrustRoot, ...] = ()
    problems: tuple[PolicyProblem, ...] = ()
    warnings: tuple[PolicyProblem, ...] = ()

    @property
    def policies(self) -> tuple[Policy, ...]:
        """Cluster policies then namespaced ones."""
        return (*self.cluster_policies, *self.image_policies)

    @property
    def ok(self) -> bool:
        """True when every document was valid."""
        return not self.problems


@dataclass
class _Collector:
    objects: list[PolicyObject] = field(default_factory=list)
    problems: list[PolicyProblem] = field(default_factory=list)
    warnings: list[PolicyProblem] = field(default_factory=list)

    def result(self) -> LoadResult:
        # Duplicates: the first wins (files load in sorted order, so the choice is stable) and
        # every later one is a problem naming both places.
        seen: dict[str, PolicyObject] = {}
        problems = list(self.problems)
        for obj in self.objects:
            first = seen.get(obj.key)
            if first is None:
                seen[obj.key] = obj
                continue
            problems.append(PolicyProblem(
                obj.origin, f"duplicate name: already defined in {first.origin}; this one is ignored",
                kind=obj.kind, name=_qualified_name(obj)))
        kept = list(seen.values())
        return LoadResult(
            cluster_policies=tuple(o for o in kept if isinstance(o, ClusterImagePolicy)),
            image_policies=tuple(o for o in kept if isinstance(o, ImagePolicy)),
            trust_roots=tuple(o for o in kept if isinstance(o, TrustRoot)),
            problems=tuple(problems),
            warnings=tuple(self.warnings),
        )


def _qualified_name(obj: PolicyObject) -> str:
    ns = obj.metadata.namespace
    return f"{ns}/{obj.name}" if isinstance(obj, ImagePolicy) and ns else obj.name


def _format_loc(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return f"unknown field (not part of {API_VERSION})"
    return error["msg"]


def _parse_one(document: Any, source: str, index: int | None, collector: _Collector) -> None:
    """Validate one document and add it, or its problems, to ``collector``."""
    if not isinstance(document, Mapping):
        collector.problems.append(PolicyProblem(source, "a document must be a mapping", document=index))
        return
    api_version, kind = document.get("apiVersion"), document.get("kind")
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    name = name if isinstance(name, str) and name else None
    if isinstance(metadata, Mapping) and isinstance(metadata.get("namespace"), str) and kind == "ImagePolicy":
        name = f"{metadata['namespace']}/{name}" if name else None

    def problem(message: str, path: str | None = None) -> PolicyProblem:
        return PolicyProblem(source, message, document=index, kind=kind if isinstance(kind, str) else None,

                             name=name, path=path)

    unsupported = False
    consequential: set[str] = set()
    if not isinstance(api_version, str) or not isinstance(kind, str):
        collector.problems.append(problem("apiVersion and kind are required"))
        return
    if api_version == API_VERSION and kind in _KINDS:
        data = dict(document)
        origin = source
    elif api_version in compat.POLICY_CONTROLLER_API_VERSIONS and kind in compat.POLICY_CONTROLLER_KINDS:
        translation = compat.translate(document)
        data = translation.document
        origin = f"{source} ({api_version})"
        collector.warnings.extend(problem(m, p) for p, m in translation.warnings)
        # Unsupported features invalidate the document; the rest is still validated so that
        # the user sees every problem at once.
        collector.problems.extend(problem(m, p) for p, m in translation.errors)
        unsupported = bool(translation.errors)
        consequential = {p.rpartition(".")[0] for p, _ in translation.errors}
    else:
        collector.problems.append(problem(
            f"not a Signet policy (apiVersion {api_version!r}, kind {kind!r}); expected {API_VERSION} "
            "ClusterImagePolicy, ImagePolicy or TrustRoot, or policy.sigstore.dev ClusterImagePolicy or "
            "TrustRoot"))
        return
    for key in _IGNORED_TOP_LEVEL:
        data.pop(key, None)
    try:
        obj = _KINDS[kind].model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            path = _format_loc(error["loc"])
            # Removing an unsupported field (key.kms) leaves its parent incomplete (key: exactly
            # one of data and secretRef): that follow-up error would only repeat the first one.
            parent = path.rpartition(".")[0] if error["type"] == "missing" else path
            if path not in consequential and parent not in consequential:
                collector.problems.append(problem(_message(error), path or None))
        return
    if unsupported:
        return  # a policy-controller document with a requirement Signet cannot enforce stays out
    set_origin(obj, origin)
    collector.objects.append(obj)


def _parse_many(documents: Iterable[Any], source: str, collector: _Collector) -> None:
    for index, document in enumerate(documents):
        if document is None:
            continue  # empty documents (`---` separators, comments only) are allowed
        is_list = isinstance(document, Mapping) and document.get("kind") == "List"
        if is_list and document.get("apiVersion") == "v1":
            # `kubectl get ... -o yaml` output: a List whose items are the objects.
            for item in document.get("items") or []:
                _parse_one(item, source, index, collector)
            continue
        _parse_one(document, source, index, collector)


def _parse_text(text: str, source: str, collector: _Collector) -> None:
    documents: list[Any] = []
    try:
        # Appending one by one keeps the documents before a syntax error.
        for document in yaml.safe_load_all(text):
            documents.append(document)  # noqa: PERF402
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        collector.problems.append(PolicyProblem(
            source, f"invalid YAML{where}: {getattr(exc, 'problem', None) or exc}", document=len(documents)))
    _parse_many(documents, source, collector)


def load_text(text: str, source: str = "<text>") -> LoadResult:
    """Load a (multi-document) YAML text; ``source`` names it in problems."""
    collector = _Collector()
    _parse_text(text, source, collector)
    return collector.result()


def load_documents(documents: Iterable[Any], source: str = "cluster") -> LoadResult:
    """Load already-parsed documents (e.g. objects listed from the Kubernetes API)."""
    collector = _Collector()
    _parse_many(documents, source, collector)
    return collector.result()


def load_object(document: Mapping[str, Any], source: str = "cluster") -> PolicyObject:
    """Validate one object (e.g. from a watch event); raises :class:`InvalidPolicyError`."""
    collector = _Collector()
    _parse_one(document, source, None, collector)
    if collector.problems or not collector.objects:
        raise InvalidPolicyError(collector.problems)
    for warning in collector.warnings:
        _logger.warning("%s", warning)
    return collector.objects[0]


def policy_files(directory: Path) -> list[Path]:
    """The files ``load_directory`` reads: ``*.yaml``/``*.yml``, not hidden, sorted, not recursive.

    Hidden entries are skipped because a mounted ConfigMap keeps old copies under ``..<timestamp>``.
    """
    return sorted(p for p in directory.iterdir()
                  if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file())


def load_file(path: Path, source: str | None = None) -> LoadResult:
    """Load one file; an unreadable file is a problem, not an exception."""
    collector = _Collector()
    _load_file_into(path, source or str(path), collector)
    return collector.result()


def _load_file_into(path: Path, source: str, collector: _Collector) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        collector.problems.append(PolicyProblem(source, f"cannot read: {exc}"))
        return
    _parse_text(text, source, collector)


def load_directory(directory: Path) -> LoadResult:
    """Load every policy file of ``directory``; raises PolicyError only if it is not a directory."""
    if not directory.is_dir():
        raise PolicyError(f"{directory}: not a directory of policies")
    collector = _Collector()
    for path in policy_files(directory):
        _load_file_into(path, str(path), collector)
    return collector.result()
