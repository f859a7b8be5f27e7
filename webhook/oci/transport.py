"""Small pieces of the registry client: limits, repository names, request counting, link paging."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

import httpx

from webhook.errors import RegistryError
from webhook.oci.manifest import Descriptor

MiB = 1024 * 1024
_LINK_NEXT_RE = re.compile(r'<([^>]*)>\s*;[^,]*rel="?next"?')


@dataclass(frozen=True, slots=True)
class RegistryLimits:
    """Bounds on what one registry may make us read or wait for; small by default (admission path)."""

    max_manifest_bytes: int = 4 * MiB
    max_blob_bytes: int = 4 * MiB
    max_layers: int = 1000
    max_redirects: int = 5
    max_referrers: int = 1000
    max_referrer_pages: int = 10
    connect_timeout: float = 3.0
    read_timeout: float = 5.0
    operation_timeout: float = 8.0
    max_connections: int = 32


class RepositoryLike(Protocol):
    """Anything naming a repository: an ImageReference, or ``Repository``."""

    @property
    def registry(self) -> str: ...

    @property
    def repository(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Repository:
    registry: str
    repository: str


@dataclass(frozen=True, slots=True)
class Referrers:
    """Referrer descriptors of one digest and where they came from."""

    descriptors: list[Descriptor]
    source: Literal["api", "fallback-tag"]
    notes: list[str] = field(default_factory=list)


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts requests that reach the wire (token fetches and redirects included)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.count = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def is_loopback_host(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 and ::1 (with or without brackets/port)."""
    hostname = httpx.URL(f"http://{host}").host
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def next_page_url(link: str, current: httpx.URL, base: httpx.URL) -> str | None:
    """The ``rel="next"`` target of a Link header, resolved against ``current``; same origin only."""
    match = _LINK_NEXT_RE.search(link)
    if match is None:
        return None
    url = current.join(match.group(1))
    if (url.scheme, url.netloc) != (base.scheme, base.netloc):
        # A pagination link must not send our token to another host.
        raise RegistryError(
            f"registry {base.netloc.decode()} sent a referrers page link to another host: {url}"
        )
    return str(url)
