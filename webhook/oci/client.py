"""The registry client: HEAD/GET manifests, blobs and referrers, content-checked and bounded.

Pure transport: it checks that content hashes to the digest it was asked for and that sizes stay
inside ``RegistryLimits`` (and an ``ImageBudget`` when the caller gives one); it does not judge
signatures. HTTP, egress rules and redirects live in ``webhook.oci.session``. Every failure is a
``RegistryError`` subclass (``webhook.oci.errors``) naming the registry, the operation and the
status, except a missing image, which is ``ImageNotFoundError``: a fact about the reference.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, TypeVar

import httpx

from webhook.errors import InputError
from webhook.oci.auth import CredentialStore, RegistryAuth, TokenCache
from webhook.oci.egress import Resolver
from webhook.oci.errors import DigestMismatchError, ImageNotFoundError, SizeLimitError
from webhook.oci.knowledge import RegistryKnowledge
from webhook.oci.limits import ImageBudget, RegistryLimits, RequestLimiter
from webhook.oci.manifest import MANIFEST_ACCEPT, Descriptor, Manifest, media_type_of
from webhook.oci.reference import ImageReference, is_valid_digest
from webhook.oci.referrers import ReferrersLookup
from webhook.oci.session import RegistrySession
from webhook.oci.transport import Referrers, Repository, RepositoryLike
from webhook.upstreams import NULL_OBSERVER, UpstreamObserver

_logger = logging.getLogger(__name__)

_T = TypeVar("_T")
TagManifestHook = Callable[[RepositoryLike, str, Manifest], None]


def _hash(algorithm: str, data: bytes) -> str:
    return f"{algorithm}:" + hashlib.new(algorithm, data).hexdigest()


class RegistryClient:
    """Async registry client for one set of credentials.

    ``limiter`` (in-flight requests), ``transport`` (connection pools) and ``knowledge`` (what each
    registry supports) may be shared by every client of a process; a client closes only a transport
    it created itself. ``observer`` is told about every request and connection.
    """

    def __init__(
        self,
        *,
        limits: RegistryLimits | None = None,
        credentials: CredentialStore | None = None,
        allow_http: bool = False,
        insecure_registries: Iterable[str] = (),
        mirrors: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        token_cache: TokenCache | None = None,
        limiter: RequestLimiter | None = None,
        resolver: Resolver | None = None,
        clock: Callable[[], float] = time.monotonic,
        knowledge: RegistryKnowledge | None = None,
        observer: UpstreamObserver = NULL_OBSERVER,
        tag_manifest_hook: TagManifestHook | None = None,
    ) -> None:
        """``tag_manifest_hook`` is told every manifest read through a tag (say, to start the Rekor
        lookups a ``.sig`` manifest will need while its blobs are fetched); it must not block."""
        self.limits = limits or RegistryLimits()
        self._hook = tag_manifest_hook
        self.knowledge = knowledge if knowledge is not None else RegistryKnowledge(clock=clock)
        self._session = RegistrySession(
            limits=self.limits,
            credentials=credentials,
            token_cache=token_cache,
            allow_http=allow_http,
            insecure_registries=insecure_registries,
            mirrors=mirrors,
            transport=transport,
            limiter=limiter,
            resolver=resolver,
            knowledge=self.knowledge,
            observer=observer,
        )
        self._referrers = ReferrersLookup(self._session, self.get_tag_manifest, self.knowledge)
        self._inflight: dict[tuple[str, ...], asyncio.Task[Any]] = {}

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._session.aclose()

    @property
    def auth(self) -> RegistryAuth:
        return self._session.auth

    @property
    def limiter(self) -> RequestLimiter:
        return self._session.limiter

    @property
    def request_count(self) -> int:
        """HTTP requests sent so far by this client (benchmarks/tests assert on deltas)."""
        return self._session.counter.count

    def base_url(self, registry: str) -> str:
        """Where API calls for ``registry`` go: its mirror, Docker Hub's API host, https unless allowed."""
        return self._session.base_url(registry)

    def budget(self, image: ImageReference | str) -> ImageBudget:
        """A fresh per-image budget from this client's limits."""
        return ImageBudget(
            str(image), max_bytes=self.limits.max_image_bytes, max_concurrent=self.limits.max_concurrent_fetches
        )

    # --- plumbing ----------------------------------------------------------------------------

    @staticmethod
    def _check_digest(data: bytes, digest: str, what: str) -> None:
        algorithm = digest.split(":", 1)[0]
        actual = _hash(algorithm, data)
        if actual != digest:
            raise DigestMismatchError(
                f"{what} does not match its digest: asked for {digest}, content hashes to {actual}",
                expected=digest,
                actual=actual,
            )

    async def _shared(self, key: tuple[str, ...], make: Callable[[], Awaitable[_T]]) -> _T:
        """Content-addressed fetches in flight are shared, so concurrent callers cost one request."""
        task: asyncio.Task[_T] | None = self._inflight.get(key)
        if task is None:

            async def run() -> _T:
                return await make()

            task = asyncio.ensure_future(run())
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        # shield: one caller giving up (cancelled) must not cancel the fetch the others wait for.
        return await asyncio.shield(task)

    @staticmethod
    def _require_digest(digest: str) -> None:
        if not is_valid_digest(digest):
            raise InputError(f"invalid digest {digest!r}: expected sha256:<64 hex> or sha512:<128 hex>")

    @staticmethod
    def _reserve(budget: ImageBudget | None, limit: int, size: int | None, what: str) -> int:
        """The read limit for content of declared ``size``, charged to ``budget`` before any request."""
        if size is not None:
            if size > limit:
                raise SizeLimitError(f"{what} is {size} bytes by its descriptor, more than the limit of {limit}",
                                     limit=limit)
            limit = size  # content larger than its descriptor says is not read past that
        if budget is not None:
            budget.charge(limit, what)
        return limit

    @staticmethod
    def _slot(budget: ImageBudget | None) -> AbstractAsyncContextManager[None]:
        return budget.slot() if budget is not None else nullcontext()

    # --- warming ---------------------------------------------------------------------------------

    async def ping(self, registry: str) -> int:
        """``GET /v2/``: opens a connection, learns how the registry authenticates and, for a Bearer
        realm, fetches an anonymous token (warming the realm's connection too). Returns the status."""
        repo = Repository(registry, "")
        url = f"{self.base_url(registry)}/v2/"
        async with self._session.request(repo, "GET", url, f"GET /v2/ of {self._session.display(registry)}") as r:
            return r.status_code

    def speaks_h2(self, registry: str) -> bool:
        """Whether the registry's connections negotiated HTTP/2 (so one connection serves every request)."""
        url = httpx.URL(self.base_url(registry))
        return self._session.speaks_h2(url)

    # --- manifests ---------------------------------------------------------------------------

    async def resolve_digest(self, ref: ImageReference) -> str:
        """The manifest digest of ``ref``: no request for a digest reference, one HEAD for a tag.

        A tag the registry says does not exist raises ImageNotFoundError (not an infrastructure error).
        """
        if ref.digest is not None:
            return ref.digest
        descriptor = await self.head_manifest(ref, ref.identifier)
        if descriptor is None:
            registry = self._session.display(ref.registry)
            raise ImageNotFoundError(
                f"image {ref} does not exist (registry {registry} answered 404)", image=str(ref), registry=registry
            )
        return descriptor.digest

    async def head_manifest(self, repo: RepositoryLike, reference: str) -> Descriptor | None:
        """Descriptor of a tag or digest by HEAD (None on 404); GET when Docker-Content-Digest is missing."""
        operation = f"HEAD manifest {reference} of {repo.repository}"
        url = self._session.url(repo, "manifests", reference)
        async with self._session.request(repo, "HEAD", url, operation, accept=MANIFEST_ACCEPT) as r:
            if r.status_code == 404:
                return None
            if r.status_code != 200:
                raise self._session.status_error(repo, r, operation)
            digest = r.headers.get("docker-content-digest", "")
            media_type = media_type_of(r.headers.get("content-type")) or ""
            length = r.headers.get("content-length", "")
        size = int(length) if length.isdigit() else 0
        if is_valid_digest(reference):
            return Descriptor(media_type, reference, size)  # existence check only; content is checked on GET
        if is_valid_digest(digest):
            return Descriptor(media_type, digest, size)
        _logger.debug("no usable Docker-Content-Digest for %s; falling back to GET", reference)
        manifest = await self.get_tag_manifest(repo, reference)
        if manifest is None:
            return None
        return Descriptor(manifest.media_type, manifest.digest, len(manifest.raw))

    async def get_manifest(
        self, repo: RepositoryLike, digest: str, *, size: int | None = None, budget: ImageBudget | None = None
    ) -> Manifest:
        """The manifest with this digest, content checked; 404 → ManifestNotFoundError.

        ``size`` (from a descriptor) bounds the read; ``budget`` is charged before the request.
        """
        self._require_digest(digest)
        what = f"manifest {digest} from {self._source(repo)}"
        limit = self._reserve(budget, self.limits.max_manifest_bytes, size, what)
        key = ("manifest", self.base_url(repo.registry), repo.repository, digest, str(limit), str(size))
        async with self._slot(budget):
            return await self._shared(key, lambda: self._fetch_manifest_by_digest(repo, digest, limit, size))

    async def _fetch_manifest_by_digest(
        self, repo: RepositoryLike, digest: str, limit: int, size: int | None
    ) -> Manifest:
        try:
            manifest = await self._fetch_manifest(repo, digest, by_digest=True, limit=limit)
        except SizeLimitError as exc:
            what = f"manifest {digest} from {self._source(repo)}"
            raise self._longer_than_declared(exc, what, digest, size) from None
        assert manifest is not None  # by_digest turns a 404 into an error
        return manifest

    @staticmethod
    def _longer_than_declared(
        exc: SizeLimitError, what: str, digest: str, size: int | None
    ) -> SizeLimitError | DigestMismatchError:
        """Content longer than its descriptor declares is not the content the digest names: tampering."""
        if size is None:
            return exc
        return DigestMismatchError(
            f"{what} does not match its descriptor: longer than the {size} bytes declared",
            expected=digest,
            actual=f"content of more than {size} bytes",
        )

    async def get_tag_manifest(
        self, repo: RepositoryLike, tag: str, *, budget: ImageBudget | None = None
    ) -> Manifest | None:
        """The manifest a tag points to, or None when the tag does not exist (404).

        GET directly rather than HEAD + GET: signature tags are read for their content, and a
        missing tag costs one request either way. ``budget`` is charged as the body arrives.
        """
        async with self._slot(budget):
            manifest = await self._fetch_manifest(repo, tag, by_digest=False, budget=budget)
        if manifest is not None and self._hook is not None:
            try:
                self._hook(repo, tag, manifest)
            except Exception:  # a hook only ever saves time; it must not fail a fetch
                _logger.exception("tag manifest hook failed for %s", tag)
        return manifest

    def _source(self, repo: RepositoryLike) -> str:
        return f"{self._session.display(repo.registry)}/{repo.repository}"

    async def _fetch_manifest(
        self,
        repo: RepositoryLike,
        reference: str,
        *,
        by_digest: bool,
        limit: int | None = None,
        budget: ImageBudget | None = None,
    ) -> Manifest | None:
        operation = f"GET manifest {reference} of {repo.repository}"
        source = self._source(repo)
        url = self._session.url(repo, "manifests", reference)
        async with self._session.request(repo, "GET", url, operation, accept=MANIFEST_ACCEPT) as r:
            if r.status_code == 404 and not by_digest:
                return None
            if r.status_code != 200:
                raise self._session.status_error(repo, r, operation)
            what = f"manifest {reference} from {source}"
            raw = await self._session.read(r, limit or self.limits.max_manifest_bytes, what, budget)
            content_type = r.headers.get("content-type")
        if by_digest:
            self._check_digest(raw, reference, what)
            digest = reference
        else:
            # For tags the Docker-Content-Digest header is not trusted (go-containerregistry does the same).
            digest = _hash("sha256", raw)
        return Manifest.parse(
            raw, digest=digest, content_type=content_type, max_layers=self.limits.max_layers, source=source
        )

    # --- blobs -------------------------------------------------------------------------------

    async def get_blob(
        self,
        repo: RepositoryLike,
        digest: str,
        max_size: int | None = None,
        *,
        size: int | None = None,
        budget: ImageBudget | None = None,
    ) -> bytes:
        """A blob, following checked redirects (CDNs), bounded and digest-checked.

        ``size`` (from its descriptor) bounds the read; ``budget`` is charged before the request.
        """
        self._require_digest(digest)
        what = f"blob {digest} from {self._source(repo)}"
        limit = self._reserve(budget, self.limits.max_blob_bytes if max_size is None else max_size, size, what)
        key = ("blob", self.base_url(repo.registry), repo.repository, digest, str(limit), str(size))
        async with self._slot(budget):
            return await self._shared(key, lambda: self._fetch_blob(repo, digest, limit, size))

    async def _fetch_blob(self, repo: RepositoryLike, digest: str, limit: int, size: int | None) -> bytes:
        operation = f"GET blob {digest} of {repo.repository}"
        what = f"blob {digest} from {self._source(repo)}"
        url = self._session.url(repo, "blobs", digest)
        async with self._session.request(repo, "GET", url, operation) as r:
            if r.status_code != 200:
                raise self._session.status_error(repo, r, operation)
            try:
                data = await self._session.read(r, limit, what)
            except SizeLimitError as exc:
                raise self._longer_than_declared(exc, what, digest, size) from None
        self._check_digest(data, digest, what)
        return data

    # --- referrers ---------------------------------------------------------------------------

    async def referrers(self, repo: RepositoryLike, digest: str, *, budget: ImageBudget | None = None) -> Referrers:
        """Referrers of ``digest``: the OCI 1.1 API, else the ``sha256-<hex>`` fallback tag index."""
        self._require_digest(digest)
        return await self._referrers.find(repo, digest, budget)
