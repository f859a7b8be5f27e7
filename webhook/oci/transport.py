"""Small pieces of the registry client: repository names, request counting, link paging."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

import httpx

from webhook.oci.errors import EgressRefusedError
from webhook.oci.limits import RegistryLimits
from webhook.oci.manifest import Descriptor

__all__ = [
    "CountingTransport",
    "Referrers",
    "RegistryLimits",
    "Repository",
    "RepositoryLike",
    "is_loopback_host",
    "next_page_url",
]

_LINK_NEXT_RE = re.compile(r'<([^>]*)>\s*;[^,]*rel="?next"?')


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
    """Counts requests that reach the wire (token fetches and redirects included).

    Closes ``inner`` only when ``owned``: a transport shared by several clients outlives each of them.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, *, owned: bool = True) -> None:
        self.inner = inner
        self.owned = owned
        self.count = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        if self.owned:
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
        # A pagination link must not send our token, or us, to another host.
        rule = "referrers pages must stay on the registry's own origin"
        raise EgressRefusedError(
            f"registry {base.netloc.decode()} sent a referrers page link to {url.netloc.decode() or url.scheme}: "
            f"refused, {rule}",
            host=url.netloc.decode(),
            rule=rule,
        )
    return str(url)
