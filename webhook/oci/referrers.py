"""Referrers of a digest: the OCI 1.1 referrers API, else the ``<alg>-<hex>`` fallback tag index.

While a registry's support for the API is unknown, the API and the fallback tag are asked at
once (one round trip either way); what the registry showed is remembered (``RegistryKnowledge``)
so later lookups ask only the one that answers. Pagination links must stay on the registry's own origin.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from contextlib import nullcontext
from typing import Protocol

import httpx

from webhook.oci.errors import SizeLimitError
from webhook.oci.knowledge import RegistryKnowledge
from webhook.oci.limits import ImageBudget
from webhook.oci.manifest import OCI_INDEX, Descriptor, Manifest, media_type_of
from webhook.oci.session import RegistrySession
from webhook.oci.transport import Referrers, RepositoryLike, next_page_url

_MIN_GRACE = 0.05


class TagManifest(Protocol):
    async def __call__(
        self, repo: RepositoryLike, tag: str, *, budget: ImageBudget | None = None
    ) -> Manifest | None: ...


def fallback_tag(digest: str) -> str:
    algorithm, _, hex_digest = digest.partition(":")
    return f"{algorithm[:32]}-{hex_digest[:64]}"


async def _abandon(task: asyncio.Task[Manifest | None] | None, grace: float = 0.0) -> None:
    """Stop a fetch whose answer is not needed, after ``grace`` seconds to finish (a fetch stopped
    mid-answer costs its HTTP/1.1 connection), and wait until it has let go of the connection."""
    if task is None:
        return
    if grace > 0:
        await asyncio.wait([task], timeout=grace)
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # retrieved: a failure nobody needs is not an error


class ReferrersLookup:
    """Finds referrers for one RegistryClient (``tag_manifest`` is its ``get_tag_manifest``)."""

    def __init__(self, session: RegistrySession, tag_manifest: TagManifest, knowledge: RegistryKnowledge) -> None:
        self._session = session
        self._tag_manifest = tag_manifest
        self._knowledge = knowledge

    async def find(self, repo: RepositoryLike, digest: str, budget: ImageBudget | None) -> Referrers:
        """Referrers of ``digest``, from the API when the registry has one, else the fallback tag."""
        host = self._session.base_url(repo.registry)
        notes: list[str] = []
        supported = self._knowledge.referrers_api(host)
        if supported is False:
            notes.append("referrers API not supported by this registry (remembered); used fallback tag")
            return await self._fallback(repo, digest, budget, notes)
        tag: asyncio.Task[Manifest | None] | None = None
        if supported is None:
            tag = asyncio.ensure_future(self._tag_manifest(repo, fallback_tag(digest), budget=budget))
        started = time.monotonic()
        try:
            async with (budget.slot() if budget is not None else nullcontext()):
                descriptors = await self._referrers_api(repo, digest, notes, budget)
        except BaseException:
            await _abandon(tag)
            raise
        self._knowledge.learn_referrers_api(host, descriptors is not None)
        if descriptors is not None:
            # Asked only in case: it may take as long as the API took (its answer is due), no longer.
            await _abandon(tag, grace=max(time.monotonic() - started, _MIN_GRACE))
            return Referrers(descriptors, "api", notes)
        index = await tag if tag is not None else await self._tag_manifest(repo, fallback_tag(digest), budget=budget)
        return self._from_index(index, fallback_tag(digest), notes)

    async def _fallback(
        self, repo: RepositoryLike, digest: str, budget: ImageBudget | None, notes: list[str]
    ) -> Referrers:
        tag = fallback_tag(digest)
        return self._from_index(await self._tag_manifest(repo, tag, budget=budget), tag, notes)

    @staticmethod
    def _from_index(index: Manifest | None, tag: str, notes: list[str]) -> Referrers:
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
        base = self._session.base(repo.registry)
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
