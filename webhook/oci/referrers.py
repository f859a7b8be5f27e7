"""Referrers of a digest: the OCI 1.1 referrers API, else the ``<alg>-<hex>`` fallback tag index.

A registry that showed it has no referrers API is remembered for a while, so later lookups skip
the probe and cost one request. Pagination links must stay on the registry's own origin.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Protocol

import httpx

from webhook.oci.errors import SizeLimitError
from webhook.oci.limits import ImageBudget
from webhook.oci.manifest import OCI_INDEX, Descriptor, Manifest, media_type_of
from webhook.oci.session import RegistrySession
from webhook.oci.transport import Referrers, RepositoryLike, next_page_url

_UNSUPPORTED_TTL = 600.0  # registries get upgraded; re-probe the referrers API now and then

class TagManifest(Protocol):
    async def __call__(
        self, repo: RepositoryLike, tag: str, *, budget: ImageBudget | None = None
    ) -> Manifest | None: ...


class ReferrersLookup:
    """Finds referrers for one RegistryClient (``tag_manifest`` is its ``get_tag_manifest``)."""

    def __init__(
        self, session: RegistrySession, tag_manifest: TagManifest, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._session = session
        self._tag_manifest = tag_manifest
        self._clock = clock
        self._unsupported: dict[str, float] = {}

    async def find(self, repo: RepositoryLike, digest: str, budget: ImageBudget | None) -> Referrers:
        """Referrers of ``digest``, from the API when the registry has one, else the fallback tag."""
        host = self._session.base_url(repo.registry)
        notes: list[str] = []
        unsupported_until = self._unsupported.get(host)
        if unsupported_until is None or self._clock() >= unsupported_until:
            async with (budget.slot() if budget is not None else nullcontext()):
                descriptors = await self._referrers_api(repo, digest, notes, budget)
            if descriptors is not None:
                return Referrers(descriptors, "api", notes)
            self._unsupported[host] = self._clock() + _UNSUPPORTED_TTL
        else:
            notes.append("referrers API not supported by this registry (remembered); used fallback tag")
        algorithm, _, hex_digest = digest.partition(":")
        tag = f"{algorithm[:32]}-{hex_digest[:64]}"
        index = await self._tag_manifest(repo, tag, budget=budget)
        if index is None:
            return Referrers([], "fallback-tag", notes)
        if not index.is_index:
            notes.append(f"fallback tag {tag} holds a {index.media_type}, not an index; ignored")
            return Referrers([], "fallback-tag", notes)
        return Referrers(list(index.manifests), "fallback-tag", notes)

    async def _referrers_api(
        self, repo: RepositoryLike, digest: str, notes: list[str], budget: ImageBudget | None
    ) -> list[Descriptor] | None:
        limits = self._session.limits
        url: str | None = self._session.url(repo, "referrers", digest)
        base = httpx.URL(self._session.base_url(repo.registry))
        descriptors: list[Descriptor] = []
        source = f"{self._session.display(repo.registry)}/{repo.repository}"
        for page in range(limits.max_referrer_pages):
            if url is None:
                return descriptors
            operation = f"GET referrers {digest} of {repo.repository}"
            async with self._session.request(repo, "GET", url, operation, accept=OCI_INDEX) as r:
                content_type = media_type_of(r.headers.get("content-type"))
                if page == 0 and (
                    r.status_code in (400, 404, 406) or (r.status_code == 200 and content_type != OCI_INDEX)
                ):
                    notes.append(
                        f"referrers API not supported (answered {r.status_code} {content_type or ''}".rstrip()
                        + "); used fallback tag"
                    )
                    return None
                if r.status_code != 200:
                    raise self._session.status_error(repo, r, operation)
                what = f"referrers list of {digest} from {source}"
                raw = await self._session.read(r, limits.max_manifest_bytes, what, budget)
                link = r.headers.get("link", "")
            index = Manifest.parse(
                raw,
                digest="sha256:" + hashlib.sha256(raw).hexdigest(),
                content_type=content_type,
                max_layers=limits.max_referrers,
                source=source,
            )
            descriptors.extend(index.manifests)
            if len(descriptors) > limits.max_referrers:
                raise SizeLimitError(
                    f"{digest} in {source} has more than {limits.max_referrers} referrers",
                    limit=limits.max_referrers,
                )
            url = next_page_url(link, httpx.URL(url), base)
        raise SizeLimitError(
            f"referrers list of {digest} in {source} has more than {limits.max_referrer_pages} pages",
            limit=limits.max_referrer_pages,
        )
