"""Pre-warm the caches at start: verify the images of the Pods already running, in the background.

After a restart (or on a new replica) the first admissions of a node drain or a scale-out would
all miss the caches at once. Listing the running Pods and deciding their images ahead of time,
a few namespaces at a time, makes those admissions cache hits. Failures are logged and counted;
nothing here can deny or admit anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from kubernetes import client as k8s_client

from webhook.k8s.client import api_error, raw_json

_logger = logging.getLogger(__name__)

PAGE_SIZE: Final = 500
_CONTAINER_LISTS: Final = ("initContainers", "containers", "ephemeralContainers")


@dataclass(frozen=True)
class PrewarmResult:
    """What pre-warming did: namespaces and distinct images decided, and how many calls failed."""

    namespaces: int
    images: int
    failures: int


def _mapping(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}


def running_images(pods: Iterable[Mapping[str, Any]], exclude: Iterable[str] = ()) -> dict[str, list[str]]:
    """Namespace → sorted distinct images of the Pods in phase Running (as their specs name them)."""
    skip = set(exclude)
    by_namespace: dict[str, set[str]] = {}
    for pod in pods:
        metadata, spec, status = (_mapping(pod, k) for k in ("metadata", "spec", "status"))
        namespace = metadata.get("namespace")
        if status.get("phase") != "Running" or not isinstance(namespace, str) or namespace in skip:
            continue
        for field in _CONTAINER_LISTS:
            for container in spec.get(field) or []:
                image = container.get("image") if isinstance(container, Mapping) else None
                if isinstance(image, str) and image:
                    by_namespace.setdefault(namespace, set()).add(image)
    return {ns: sorted(images) for ns, images in sorted(by_namespace.items())}


def list_running_pods(api_client: Any) -> list[Mapping[str, Any]]:
    """Every Pod in phase Running, all namespaces, page by page."""
    core: Any = k8s_client.CoreV1Api(api_client)
    pods: list[Mapping[str, Any]] = []
    token: str | None = None
    while True:
        page = raw_json(core.list_pod_for_all_namespaces(
            field_selector="status.phase=Running", limit=PAGE_SIZE, _continue=token, _preload_content=False))
        pods.extend(p for p in page.get("items") or [] if isinstance(p, Mapping))
        token = (page.get("metadata") or {}).get("continue") or None
        if token is None:
            return pods


async def prewarm(
    api_client: Any,
    decide: Callable[[list[str], str], Awaitable[object]],
    *,
    concurrency: int = 4,
    exclude_namespaces: Iterable[str] = (),
) -> PrewarmResult:
    """Call ``decide(images, namespace)`` for each namespace's running images, ``concurrency`` at a time.

    Run it as a task (``asyncio.create_task(prewarm(...))``); cancelling the task stops it.
    """
    try:
        pods = await asyncio.to_thread(list_running_pods, api_client)
    except Exception as exc:  # noqa: BLE001 - pre-warming is an optimisation: log and give up
        _logger.warning("pre-warm: cannot list pods: %s", api_error(exc))
        return PrewarmResult(0, 0, 1)
    work = running_images(pods, exclude_namespaces)
    limit = asyncio.Semaphore(max(concurrency, 1))
    failures = 0

    async def one(namespace: str, images: list[str]) -> None:
        nonlocal failures
        async with limit:
            try:
                await decide(images, namespace)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one namespace failing must not stop the others
                failures += 1
                _logger.warning("pre-warm of %d image(s) in %s failed: %s", len(images), namespace, exc)

    await asyncio.gather(*(one(ns, images) for ns, images in work.items()))
    result = PrewarmResult(len(work), sum(len(i) for i in work.values()), failures)
    _logger.info("pre-warmed %d image(s) in %d namespace(s) (%d failure(s))", result.images, result.namespaces,
                 result.failures)
    return result
