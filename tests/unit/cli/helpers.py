"""Running ``signet`` in-process, and what every ``-o json`` document must look like."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from webhook.cli import main

DIGEST = "sha256:" + "ab" * 32
_CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")
# Maps whose keys are data (policy names, namespaces, claims), not field names.
_DATA_MAPS = frozenset({"byPolicy", "byNamespace", "byReason", "extensions"})

STATIC_POLICIES = """\
apiVersion: policy.signet.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {name: good}
spec:
  images: [{glob: "registry.example.com/good/**"}]
  authorities: [{name: ok, static: {action: pass}}]
---
apiVersion: policy.signet.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {name: bad}
spec:
  images: [{glob: "registry.example.com/bad/**"}]
  authorities: [{name: nope, static: {action: fail, message: "images from bad/ are forbidden"}}]
"""


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def signet(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> Run:
    """``signet ARGV`` in-process: usage errors leave through SystemExit, as from the shell."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return Run(code, out, err)


def camel_keys(value: Any, path: str = "$") -> list[str]:
    """Every key of ``value`` (recursively) that is not camelCase, with where it is."""
    wrong: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if not _CAMEL.match(str(key)):
                wrong.append(f"{path}.{key}")
            if key not in _DATA_MAPS:
                wrong += camel_keys(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            wrong += camel_keys(item, f"{path}[{index}]")
    return wrong


def document(run: Run) -> dict[str, Any]:
    """The one JSON object on stdout, checked: exit code and its meaning inside, camelCase keys."""
    parsed = json.loads(run.out)  # exactly one document: json.loads refuses trailing data
    assert isinstance(parsed, dict), run.out
    assert parsed["exitCode"] == run.code, (parsed, run.err)
    assert isinstance(parsed["exitMeaning"], str) and parsed["exitMeaning"]
    assert camel_keys(parsed) == []
    if run.code != 0 and "error" in parsed:
        assert parsed["error"]["type"] in ("usage", "input", "verification", "infrastructure", "internal")
        assert parsed["error"]["message"]
    return parsed


def pod(name: str, *images: str, namespace: str = "team-a") -> str:
    containers = ", ".join(f"{{name: c{i}, image: '{image}'}}" for i, image in enumerate(images))
    return (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
            f"spec: {{containers: [{containers}]}}\n")
