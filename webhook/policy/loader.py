"""Policy documents in, validated objects and problems out.

Files in a directory (``--policies DIR``: every ``*.yaml``/``*.yml``, multi-document) and objects
from the Kubernetes API (dicts) go through the same code. An invalid document is reported, and a
policy that cannot be enforced as written never simply disappears: its images stay covered by a
fail-closed stand-in that denies them with the reason (a dropped policy would hand them to looser
policies or to noMatchPolicy). The valid ones keep working. Every problem names where it is: file (or "cluster"),
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
from webhook.policy._base import set_regexp_mode
from webhook.policy.globs import GlobError, compile_glob
from webhook.policy.groups import POLICY_CONTROLLER_GROUP
from webhook.policy.models import (
    API_VERSION,
    ClusterImagePolicy,
    ImagePolicy,
    Policy,
    TrustRoot,
    set_api_group,
    set_origin,
)
from webhook.verify.regexp import RegexpMode

_logger = logging.getLogger(__name__)

PolicyObject = ClusterImagePolicy | ImagePolicy | TrustRoot
_POLICY_KINDS: dict[str, type[Policy]] = {"ClusterImagePolicy": ClusterImagePolicy, "ImagePolicy": ImagePolicy}
_KINDS: dict[str, type[PolicyObject]] = {**_POLICY_KINDS, "TrustRoot": TrustRoot}
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
    """A document is invalid; ``problems`` lists every reason (the message joins them).

    ``fail_closed`` is what stays in force instead: the document's images, denied (see
    :func:`fail_closed_policy`), or None when not even its images could be read.
    """

    def __init__(self, problems: Iterable[PolicyProblem], fail_closed: PolicyObject | None = None) -> None:
        self.problems = tuple(problems)
        self.fail_closed = fail_closed
        super().__init__("; ".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class LoadResult:
    """Objects in force, in load order, and the problems of the invalid documents.

    A policy document that is invalid or cannot be enforced is among the policies all the same, as
    its fail-closed replacement (its images, denied); ``fail_closed`` names those by key.
    """

    cluster_policies: tuple[ClusterImagePolicy, ...] = ()
    image_policies: tuple[ImagePolicy, ...] = ()
    trust_roots: tuple[TrustRoot, ...] = ()
    problems: tuple[PolicyProblem, ...] = ()
    warnings: tuple[PolicyProblem, ...] = ()
    fail_closed: tuple[str, ...] = ()

    @property
    def policies(self) -> tuple[Policy, ...]:
        """Cluster policies then namespaced ones."""
        return (*self.cluster_policies, *self.image_policies)

    @property
    def as_written(self) -> tuple[Policy, ...]:
        """The policies in force as their documents say (the fail-closed stand-ins left out)."""
        return tuple(p for p in self.policies if p.key not in self.fail_closed)

    @property
    def ok(self) -> bool:
        """True when every document was valid."""
        return not self.problems


@dataclass
class _Collector:
    # Signet's namespace: policy.sigstore.dev documents may name Secrets only there (None: the pod's).
    system_namespace: str | None = None
    objects: list[PolicyObject] = field(default_factory=list)
    problems: list[PolicyProblem] = field(default_factory=list)
    warnings: list[PolicyProblem] = field(default_factory=list)
    fail_closed: list[PolicyObject] = field(default_factory=list)

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
            fail_closed=tuple(o.key for o in kept if any(o is f for f in self.fail_closed)),
        )


def _qualified_name(obj: PolicyObject) -> str:
    ns = obj.metadata.namespace
    return f"{ns}/{obj.name}" if isinstance(obj, ImagePolicy) and ns else obj.name


def _ancestors(path: str) -> list[str]:
    """``a.b[0].c`` → ``a.b[0]``, ``a``: where a field's removal shows up as a follow-up error."""
    ancestors = []
    while "." in path:
        path = path.rpartition(".")[0]
        ancestors.append(path)
    return ancestors


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
    origin = source
    regexp_mode: RegexpMode = "full"
    policy_controller = False
    first_problem = len(collector.problems)
    if not isinstance(api_version, str) or not isinstance(kind, str):
        collector.problems.append(problem("apiVersion and kind are required"))
        return
    if api_version == API_VERSION and kind in _KINDS:
        data = dict(document)
        origin = source
    elif api_version in compat.POLICY_CONTROLLER_API_VERSIONS and kind in compat.POLICY_CONTROLLER_KINDS:
        regexp_mode = "search"  # as policy-controller (Go's regexp.MatchString) reads them
        policy_controller = True
        translation = compat.translate(document, collector.system_namespace)
        data = translation.document
        origin = f"{source} ({api_version})"
        collector.warnings.extend(problem(m, p) for p, m in translation.warnings)
        # Unsupported features invalidate the document; the rest is still validated so that
        # the user sees every problem at once.
        collector.problems.extend(problem(m, p) for p, m in translation.errors)
        unsupported = bool(translation.errors)
        consequential = {a for p, _ in translation.errors for a in _ancestors(p)}
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
            if policy_controller:
                path = compat.document_path(path)
            # Removing an unsupported field (key.kms) leaves its parent incomplete (key: exactly
            # one of data and secretRef): that follow-up error would only repeat the first one.
            parent = path.rpartition(".")[0] if error["type"] == "missing" else path
            if path not in consequential and parent not in consequential:
                collector.problems.append(problem(_message(error), path or None))
        unsupported = True
    if unsupported:
        # Dropping the document would hand its images to looser policies (or to noMatchPolicy):
        # what it covers stays covered, and denied, until it is fixed.
        replacement = fail_closed_policy(document, kind, collector.problems[first_problem:], origin)
        if isinstance(replacement, ClusterImagePolicy) and policy_controller:
            set_api_group(replacement, POLICY_CONTROLLER_GROUP)
        if replacement is not None:
            collector.objects.append(replacement)
            collector.fail_closed.append(replacement)
        return
    set_origin(obj, origin)
    set_regexp_mode(obj, regexp_mode)
    if policy_controller and isinstance(obj, ClusterImagePolicy | TrustRoot):
        set_api_group(obj, POLICY_CONTROLLER_GROUP)
    collector.objects.append(obj)


FAIL_CLOSED_AUTHORITY = "cannot-be-enforced"


def fail_closed_policy(document: Mapping[str, Any], kind: str, problems: Iterable[PolicyProblem],
                       origin: str) -> Policy | None:
    """The stand-in for a policy that cannot be enforced as written: its images, each denied with why.

    Keeps the document's name, namespace, mode and every glob that is valid; None when it names no
    usable glob (then nothing can say which images it meant, and the problem is all there is).
    """
    if kind not in ("ClusterImagePolicy", "ImagePolicy"):
        return None
    metadata, spec = document.get("metadata"), document.get("spec")
    if not isinstance(metadata, Mapping) or not isinstance(spec, Mapping) or not isinstance(spec.get("images"), list):
        return None
    globs = []
    for entry in spec["images"]:
        glob = entry.get("glob") if isinstance(entry, Mapping) else None
        try:
            if isinstance(glob, str):
                compile_glob(glob)
                globs.append(glob)
        except GlobError:
            continue
    if not globs:
        return None
    reasons = "; ".join(f"{p.path}: {p.message}" if p.path else p.message for p in problems)
    message = f"this policy cannot be enforced as written, so it denies every image it covers: {reasons}"
    mode = spec.get("mode") if spec.get("mode") in ("enforce", "warn") else "enforce"
    stand_in = {
        "apiVersion": API_VERSION, "kind": kind,
        "metadata": {k: metadata[k] for k in ("name", "namespace") if k in metadata},
        "spec": {"images": [{"glob": g} for g in globs], "mode": mode, "authorities": [
            {"name": FAIL_CLOSED_AUTHORITY, "static": {"action": "fail", "message": message[:1024]}}]},
    }
    try:
        policy = _POLICY_KINDS[kind].model_validate(stand_in)
    except ValidationError:
        return None  # e.g. no valid name: there is nothing to key it by
    set_origin(policy, origin)
    return policy


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


def load_text(text: str, source: str = "<text>", *, system_namespace: str | None = None) -> LoadResult:
    """Load a (multi-document) YAML text; ``source`` names it in problems.

    ``system_namespace`` (every ``load_*``): the namespace Signet runs in, where policy.sigstore.dev
    documents may read Secrets (default: the pod's namespace, else ``signet-system``).
    """
    collector = _Collector(system_namespace)
    _parse_text(text, source, collector)
    return collector.result()


def load_documents(documents: Iterable[Any], source: str = "cluster", *,
                   system_namespace: str | None = None) -> LoadResult:
    """Load already-parsed documents (e.g. objects listed from the Kubernetes API)."""
    collector = _Collector(system_namespace)
    _parse_many(documents, source, collector)
    return collector.result()


def load_object(document: Mapping[str, Any], source: str = "cluster", *,
                system_namespace: str | None = None) -> PolicyObject:
    """Validate one object (e.g. from a watch event); raises :class:`InvalidPolicyError`."""
    collector = _Collector(system_namespace)
    _parse_one(document, source, None, collector)
    if collector.problems or not collector.objects:
        raise InvalidPolicyError(collector.problems, collector.fail_closed[0] if collector.fail_closed else None)
    for warning in collector.warnings:
        _logger.warning("%s", warning)
    return collector.objects[0]


def policy_files(directory: Path) -> list[Path]:
    """The files ``load_directory`` reads: ``*.yaml``/``*.yml``, not hidden, sorted, not recursive.

    Hidden entries are skipped because a mounted ConfigMap keeps old copies under ``..<timestamp>``.
    """
    return sorted(p for p in directory.iterdir()
                  if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file())


def load_file(path: Path, source: str | None = None, *, system_namespace: str | None = None) -> LoadResult:
    """Load one file; an unreadable file is a problem, not an exception."""
    collector = _Collector(system_namespace)
    _load_file_into(path, source or str(path), collector)
    return collector.result()


def _load_file_into(path: Path, source: str, collector: _Collector) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        collector.problems.append(PolicyProblem(source, f"cannot read: {exc}"))
        return
    _parse_text(text, source, collector)


def load_directory(directory: Path, *, system_namespace: str | None = None) -> LoadResult:
    """Load every policy file of ``directory``; raises PolicyError only if it is not a directory."""
    if not directory.is_dir():
        raise PolicyError(f"{directory}: not a directory of policies")
    collector = _Collector(system_namespace)
    for path in policy_files(directory):
        _load_file_into(path, str(path), collector)
    return collector.result()
