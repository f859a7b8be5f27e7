"""Rendering the chart offline with helm-python (Helm's own Go engine) for the chart tests."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from helm_python.chart import Chart

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "signet"
RELEASE = "signet"
NAMESPACE = "signet-system"

Obj = dict[str, Any]


@functools.cache
def chart() -> Chart:
    """The chart, loaded once per test session (loading parses every template)."""
    return Chart.load(str(CHART))


def ci_values(name: str) -> Obj:
    """A values file of charts/signet/ci/."""
    data: Obj = yaml.safe_load((CHART / "ci" / name).read_text())
    return data


def render(values: Obj | None = None) -> dict[str, str]:
    """Template path → rendered text, as `helm install` would render it (lookup finds nothing)."""
    return chart().render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def render_cached(values: Obj | None = None) -> list[Obj]:
    """The rendered Kubernetes objects; cached per values set, since rendering crosses into Go."""
    return list(_render_objects(json.dumps(values or {}, sort_keys=True)))


@functools.cache
def _render_objects(values_json: str) -> tuple[Obj, ...]:
    rendered = render(json.loads(values_json))
    return tuple(_objects(rendered))


def _objects(rendered: dict[str, str]) -> Iterator[Obj]:
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                yield doc


class Rendered:
    """One render's objects, with look-ups by kind and name."""

    def __init__(self, values: Obj | None = None) -> None:
        self.values = values or {}
        self.objects = render_cached(values)

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> Obj:
        found = [o for o in self.of_kind(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    @property
    def deployment(self) -> Obj:
        return self.one("Deployment")

    @property
    def pod_spec(self) -> Obj:
        spec: Obj = self.deployment["spec"]["template"]["spec"]
        return spec

    @property
    def container(self) -> Obj:
        containers: list[Obj] = self.pod_spec["containers"]
        assert len(containers) == 1
        return containers[0]

    @property
    def args(self) -> list[str]:
        args: list[str] = self.container["args"]
        return args

    def flag(self, name: str) -> str | None:
        """The value following `name` in the container args, or None when the flag is absent."""
        args = self.args
        return args[args.index(name) + 1] if name in args else None

    def webhooks(self, kind: str = "ValidatingWebhookConfiguration") -> list[Obj]:
        return [w for o in self.of_kind(kind) for w in o["webhooks"]]
