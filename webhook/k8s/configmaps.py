"""Policy texts from ConfigMaps (``configMapRef``), read on demand through the API.

The engine caches what it reads (``EngineSettings.key_ttl``) and puts the text's digest into the
verdict key, so nothing is cached here. A ConfigMap that is missing, unreadable or lacks the key
raises :class:`ConfigMapError` naming it (never its content); the policy that needs it then fails
closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from kubernetes import client as k8s_client

from webhook.errors import InputError
from webhook.k8s.client import api_error, raw_json
from webhook.k8s.secrets import READ_TIMEOUT

HTTP_NOT_FOUND = 404


class ConfigMapError(InputError):
    """A ConfigMap named by a policy's ``configMapRef`` is missing or lacks the key."""


class ConfigMaps:
    """Reads one ``data`` entry of a ConfigMap; namespace None is Signet's own."""

    def __init__(self, api_client: Any, *, own_namespace: str = "default") -> None:
        self._core: Any = k8s_client.CoreV1Api(api_client)
        self._own_namespace = own_namespace

    def text(self, namespace: str | None, name: str, key: str) -> str:
        """The entry ``key`` of ConfigMap ``namespace/name``; raises :class:`ConfigMapError`."""
        where = f"ConfigMap {namespace or self._own_namespace}/{name}"
        try:
            response = self._core.read_namespaced_config_map(name, namespace or self._own_namespace,
                                                             _preload_content=False, _request_timeout=READ_TIMEOUT)
            document = raw_json(response)
        except k8s_client.ApiException as exc:
            if exc.status == HTTP_NOT_FOUND:
                raise ConfigMapError(f"{where} does not exist") from None
            raise ConfigMapError(f"{where} cannot be read: {api_error(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - network and decoding failures: said so, by name only
            raise ConfigMapError(f"{where} cannot be read: {type(exc).__name__}") from None
        data = document.get("data") if isinstance(document, Mapping) else None
        value = data.get(key) if isinstance(data, Mapping) else None
        if isinstance(value, str):
            return value
        raise ConfigMapError(f"{where} has no entry {key!r}")

    async def text_async(self, namespace: str | None, name: str, key: str) -> str:
        """:meth:`text` off the event loop (the client is synchronous)."""
        return await asyncio.to_thread(self.text, namespace, name, key)
