"""Where a RegistryClient sends a registry's API calls: its mirror, Docker Hub's API host, https unless allowed.

Every request asks, so each answer is computed once per registry (bounded: registries come from
image references).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import httpx

from webhook.errors import InputError
from webhook.oci.reference import DOCKER_HUB, DOCKER_HUB_API_HOST, normalise_registry
from webhook.oci.transport import RepositoryLike, is_loopback_host

MEMO: Final = 1024


class RegistryAddresses:
    """Base URLs of registries for one client: mirrors, plain HTTP only where allowed, display names."""

    def __init__(self, *, allow_http: bool, insecure_registries: Iterable[str],
                 mirrors: Mapping[str, str] | None) -> None:
        self.allow_http = allow_http
        self._insecure = frozenset(h.lower() for h in insecure_registries)
        self._mirrors: dict[str, str] = {}
        for registry, url in (mirrors or {}).items():
            parsed = httpx.URL(url)
            if parsed.scheme not in ("http", "https") or not parsed.host:
                raise InputError(f"mirror {url!r} for {registry} must be an http(s) URL")
            if parsed.scheme == "http" and not self.http_allowed(parsed.netloc.decode()):
                raise InputError(
                    f"mirror {url} for {registry} is plain http, allowed only on loopback with allow_http "
                    "or for insecure_registries"
                )
            self._mirrors[normalise_registry(registry)] = url.rstrip("/")
        self.configured = frozenset(httpx.URL(u).netloc.decode() for u in self._mirrors.values()) | self._insecure
        """Hosts named in the configuration (mirrors, insecure registries): they may be on loopback."""
        self._bases: dict[str, str] = {}
        self._parsed: dict[str, httpx.URL] = {}
        self._displays: dict[str, str] = {}

    def http_allowed(self, host: str) -> bool:
        hostname = httpx.URL(f"http://{host}").host
        if host.lower() in self._insecure or hostname in self._insecure:
            return True
        return self.allow_http and is_loopback_host(host)

    def base_url(self, registry: str) -> str:
        """Where API calls for ``registry`` go: its mirror, Docker Hub's API host, https unless allowed."""
        base = self._bases.get(registry)
        if base is None:
            if len(self._bases) >= MEMO:
                self._bases.clear()
            base = self._bases[registry] = self._base_url(registry)
        return base

    def base(self, registry: str) -> httpx.URL:
        """``base_url`` parsed."""
        parsed = self._parsed.get(registry)
        if parsed is None:
            if len(self._parsed) >= MEMO:
                self._parsed.clear()
            parsed = self._parsed[registry] = httpx.URL(self.base_url(registry))
        return parsed

    def _base_url(self, registry: str) -> str:
        registry = normalise_registry(registry)
        if registry in self._mirrors:
            return self._mirrors[registry]
        host = DOCKER_HUB_API_HOST if registry == DOCKER_HUB else registry
        return f"{'http' if self.http_allowed(host) else 'https'}://{host}"

    def display(self, registry: str) -> str:
        """How messages name the registry: its host, and what it mirrors when it is a mirror."""
        shown = self._displays.get(registry)
        if shown is None:
            if len(self._displays) >= MEMO:
                self._displays.clear()
            host = self.base(registry).netloc.decode()
            mirrored = normalise_registry(registry) in self._mirrors
            shown = self._displays[registry] = f"{host} (mirror of {registry})" if mirrored else host
        return shown

    def url(self, repo: RepositoryLike, kind: str, reference: str) -> str:
        return f"{self.base_url(repo.registry)}/v2/{repo.repository}/{kind}/{reference}"
