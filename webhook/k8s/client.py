"""The Kubernetes API client: how to build one, raw JSON calls, and the reconnect backoff.

Calls go through the official client with ``_preload_content=False`` and are parsed here as plain
JSON: the code reads a handful of fields, and plain dicts do not break on a field the generated
models do not know.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from webhook.errors import InputError

GROUP = "policy.signet.dev"
VERSION = "v1alpha1"


def load_api_client(kubeconfig: str | None = None, *, context: str | None = None) -> Any:
    """An ``ApiClient``: from ``kubeconfig`` when given, else in-cluster, else the default kubeconfig.

    A configuration that cannot be loaded is an :class:`InputError` naming where it looked.
    """
    if kubeconfig is None:
        try:
            configuration = k8s_client.Configuration()
            load_incluster: Any = k8s_config.load_incluster_config  # untyped
            load_incluster(client_configuration=configuration)
            return k8s_client.ApiClient(configuration)
        except k8s_config.ConfigException:
            pass  # not in a pod: fall back to ~/.kube/config or $KUBECONFIG
    try:
        new_client: Any = k8s_config.new_client_from_config  # untyped
        return new_client(config_file=kubeconfig, context=context)
    except (k8s_config.ConfigException, OSError, ValueError) as exc:
        where = kubeconfig or "the in-cluster service account or the default kubeconfig"
        raise InputError(f"cannot load a Kubernetes configuration from {where}: {exc}") from exc


def raw_json(response: Any) -> Any:
    """The JSON body of a call made with ``_preload_content=False``."""
    return json.loads(response.data or b"null")


def api_error(exc: Exception) -> str:
    """A short description of a failed call that never includes the response body.

    ``ApiException.__str__`` appends the body, which for a Secret read could be the secret itself.
    """
    status = getattr(exc, "status", None)
    if isinstance(exc, k8s_client.ApiException) and status:
        return f"HTTP {status} {exc.reason or ''}".rstrip()
    return type(exc).__name__ + (f": {exc}" if not isinstance(exc, k8s_client.ApiException) else "")


@dataclass
class Backoff:
    """Exponential, bounded, with jitter: ``initial`` doubling up to ``maximum`` seconds."""

    initial: float = 0.5
    maximum: float = 30.0
    jitter: float = 0.2
    random: Callable[[], float] = field(default=random.random, repr=False)
    _next: float | None = field(default=None, init=False, repr=False)

    def next(self) -> float:
        """The delay before the next attempt (and double the one after)."""
        base = self.initial if self._next is None else self._next
        self._next = min(base * 2, self.maximum)
        return min(base * (1 + self.jitter * self.random()), self.maximum)

    def reset(self) -> None:
        """After a success: start again from ``initial``."""
        self._next = None
