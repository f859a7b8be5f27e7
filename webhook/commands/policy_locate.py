"""Where a policy problem sits in its file, and what a misspelt field was probably meant to be.

The loader names a problem by document, object and JSON path (``spec.authorities[0].keyless``);
an editor and a CI log want the line. The YAML is composed again (nodes keep their marks) and the
path walked down it: the line of the deepest part that exists. Field suggestions come from the
policy models themselves, so they cannot drift from what the loader accepts.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import yaml
from pydantic import BaseModel

from webhook.policy.models import ClusterImagePolicy, ImagePolicy, TrustRoot

_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")
_KINDS: Final[Mapping[str, type[BaseModel]]] = {
    "ClusterImagePolicy": ClusterImagePolicy, "ImagePolicy": ImagePolicy, "TrustRoot": TrustRoot}
# policy.sigstore.dev spellings the translation accepts besides the model's own.
_POLICY_CONTROLLER_FIELDS: Final = {"keyless": ("ca-cert", "url"), "authorities": ("ctlog",), "key": ("kms",)}
METADATA_FIELDS: Final = frozenset({
    "name", "namespace", "labels", "annotations", "generateName", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "finalizers", "ownerReferences",
    "managedFields", "selfLink"})


def parse_path(path: str | None) -> list[str | int]:
    """``spec.authorities[0].keyless`` → ``["spec", "authorities", 0, "keyless"]``."""
    return [int(index) if index else name for index, name in _PART.findall(path or "")]


def compose(text: str) -> list[yaml.Node | None]:
    """The documents of ``text`` as YAML nodes; what follows a syntax error is left out."""
    nodes: list[yaml.Node | None] = []
    try:
        for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
            nodes.append(node)  # noqa: PERF402 - keeps the documents before a syntax error
    except yaml.YAMLError:
        pass
    return nodes


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node, int] | None:
    """The child of ``node`` at ``part`` and the line to show for it (a key's own line for mappings)."""
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == part:
                return value, key.start_mark.line
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        child = node.value[part]
        return child, child.start_mark.line
    return None


def _scalar(node: yaml.Node, *path: str) -> str | None:
    for part in path:
        found = _child(node, part)
        if found is None:
            return None
        node = found[0]
    return node.value if isinstance(node, yaml.ScalarNode) else None


def _names(node: yaml.Node) -> set[str]:
    name, namespace = _scalar(node, "metadata", "name"), _scalar(node, "metadata", "namespace")
    return {n for n in (name, f"{namespace}/{name}" if namespace and name else None) if n}


def _objects(root: yaml.Node) -> Iterator[yaml.Node]:
    """A document's objects: the document, or the items of a ``kind: List``."""
    items = _child(root, "items") if _scalar(root, "kind") == "List" else None
    if items is not None and isinstance(items[0], yaml.SequenceNode):
        yield from items[0].value
    else:
        yield root


def find_object(nodes: Sequence[yaml.Node | None], document: int | None, kind: str | None,
                name: str | None) -> yaml.Node | None:
    """The object a problem is about: by document index, narrowed (and, without one, found) by kind and name."""
    candidates = [nodes[document]] if document is not None and 0 <= document < len(nodes) else list(nodes)
    objects = [o for root in candidates if root is not None for o in _objects(root)]
    named = [o for o in objects if name and name in _names(o) and (not kind or _scalar(o, "kind") == kind)]
    if named:
        return named[-1] if document is None else named[0]  # a duplicate is the later one
    return objects[0] if document is not None and objects else None


def line_of(nodes: Sequence[yaml.Node | None], document: int | None, kind: str | None, name: str | None,
            path: str | None) -> int | None:
    """1-based line of ``path`` in the object (the deepest part found), else of the object; None if unknown."""
    node = find_object(nodes, document, kind, name)
    if node is None:
        return None
    line = node.start_mark.line
    for part in parse_path(path):
        found = _child(node, part)
        if found is None:
            break
        node, line = found
    return line + 1


# --- suggestions -------------------------------------------------------------------------------------


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is None and not isinstance(annotation, types.UnionType):
        return []
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _aliases(model: type[BaseModel]) -> dict[str, Any]:
    return {(info.alias or name): info.annotation for name, info in model.model_fields.items()}


def fields_at(kind: str, path: Sequence[str | int]) -> set[str]:
    """The field names valid in the mapping at ``path`` of a ``kind`` object (empty when unknown)."""
    model = _KINDS.get(kind)
    if model is None:
        return set()
    models = [model]
    for part in path:
        if isinstance(part, int):
            continue
        models = [m for current in models for m in _models_in(_aliases(current).get(part))]
        if not models:
            return set()
    names = {alias for m in models for alias in _aliases(m)}
    if path and isinstance(path[-1], str):
        names.update(_POLICY_CONTROLLER_FIELDS.get(path[-1], ()))
    return names


def _squashed(text: str) -> str:
    return re.sub(r"[-_]", "", text).lower()


def closest(word: str, candidates: set[str]) -> str | None:
    """``subjectRegexp`` → ``subjectRegExp``: same letters in another case first, then the nearest spelling."""
    same = [c for c in sorted(candidates) if _squashed(c) == _squashed(word)]
    if same:
        return same[0]
    found = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.7)
    return found[0] if found else None


def suggest_field(kind: str | None, path: str | None) -> str | None:
    """The field an unknown ``path``'s last part was probably meant to be, or None."""
    parts = parse_path(path)
    if not kind or not parts or not isinstance(parts[-1], str):
        return None
    if parts[:-1] == ["metadata"]:
        return closest(parts[-1], set(METADATA_FIELDS))
    return closest(parts[-1], fields_at(kind, parts[:-1]) - {parts[-1]})
