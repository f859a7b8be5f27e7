"""The registry client: HEAD/GET manifests, blobs and referrers over one shared httpx.AsyncClient.

Pure transport: it checks that content hashes to the digest it was asked for and that sizes stay
inside ``RegistryLimits``; it does not judge signatures. Every failure is a ``RegistryError``
subclass (``webhook.oci.errors``) whose message names the registry, the operation and the status.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx

from webhook.errors import InputError, RegistryError, SignetError
from webhook.oci.auth import CredentialStore, RegistryAuth, TokenCache
from webhook.oci.errors import (
    DigestMismatchError,
    ManifestNotFoundError,
    RegistryAuthError,
    RegistryStatusError,
    RegistryTimeoutError,
    SizeLimitError,
)
from webhook.oci.manifest import MANIFEST_ACCEPT, OCI_INDEX, Descriptor, Manifest, media_type_of
from webhook.oci.reference import (
    DOCKER_HUB,
    DOCKER_HUB_API_HOST,
    ImageReference,
    is_valid_digest,
    normalise_registry,
)
from webhook.oci.transport import (
    CountingTransport,
    Referrers,
    RegistryLimits,
    RepositoryLike,
    is_loopback_host,
    next_page_url,
)

_logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_REFERRERS_UNSUPPORTED_TTL = 600.0  # registries get upgraded; re-probe the referrers API now and then


def _hash(algorithm: str, data: bytes) -> str:
    return f"{algorithm}:" + hashlib.new(algorithm, data).hexdigest()


class RegistryClient:
    """Async registry client; share one per process (connection pool, tokens, request counter)."""

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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits or RegistryLimits()
        self._allow_http = allow_http
        self._insecure = frozenset(h.lower() for h in insecure_registries)
        self._mirrors: dict[str, str] = {}
        for registry, url in (mirrors or {}).items():
            parsed = httpx.URL(url)
            if parsed.scheme not in ("http", "https") or not parsed.host:
                raise InputError(f"mirror {url!r} for {registry} must be an http(s) URL")
            if parsed.scheme == "http" and not self._http_allowed(parsed.netloc.decode()):
                raise InputError(
                    f"mirror {url} for {registry} is plain http, allowed only on loopback with allow_http "
                    "or for insecure_registries"
                )
            self._mirrors[normalise_registry(registry)] = url.rstrip("/")
        self._clock = clock
        self._counter = CountingTransport(
            transport
            or httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=self.limits.max_connections))
        )
        self.auth = RegistryAuth(credentials, token_cache=token_cache, send=self._send_token_request)
        self._http = httpx.AsyncClient(
            transport=self._counter,
            auth=self.auth,
            timeout=httpx.Timeout(self.limits.read_timeout, connect=self.limits.connect_timeout),
            max_redirects=self.limits.max_redirects,
            headers={"User-Agent": "signet", "Accept-Encoding": "identity"},
        )
        self._referrers_unsupported: dict[str, float] = {}
        self._inflight: dict[tuple[str, ...], asyncio.Task[Any]] = {}

    async def _send_token_request(self, request: httpx.Request) -> httpx.Response:
        # auth=None: a token request must not itself enter the registry auth flow.
        return await self._http.send(request, auth=None, stream=True, follow_redirects=True)

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def request_count(self) -> int:
        """HTTP requests sent so far by this client (benchmarks/tests assert on deltas)."""
        return self._counter.count

    # --- addressing -------------------------------------------------------------------------

    def _http_allowed(self, host: str) -> bool:
        hostname = httpx.URL(f"http://{host}").host
        if host.lower() in self._insecure or hostname in self._insecure:
            return True
        return self._allow_http and is_loopback_host(host)

    def base_url(self, registry: str) -> str:
        """Where API calls for ``registry`` go: its mirror, Docker Hub's API host, https unless allowed."""
        registry = normalise_registry(registry)
        if registry in self._mirrors:
            return self._mirrors[registry]
        host = DOCKER_HUB_API_HOST if registry == DOCKER_HUB else registry
        return f"{'http' if self._http_allowed(host) else 'https'}://{host}"

    def _display(self, registry: str) -> str:
        host = httpx.URL(self.base_url(registry)).netloc.decode()
        mirrored = normalise_registry(registry) in self._mirrors
        return f"{host} (mirror of {registry})" if mirrored else host

    def _url(self, repo: RepositoryLike, kind: str, reference: str) -> str:
        return f"{self.base_url(repo.registry)}/v2/{repo.repository}/{kind}/{reference}"

    # --- plumbing ----------------------------------------------------------------------------

    @asynccontextmanager
    async def _request(
        self, repo: RepositoryLike, method: str, url: str, operation: str, *, accept: str | None = None
    ) -> AsyncIterator[httpx.Response]:
        """Send one request (auth and redirects included) and yield the unread response."""
        registry = self._display(repo.registry)
        headers = {"Accept": accept} if accept else {}
        try:
            async with asyncio.timeout(self.limits.operation_timeout):
                request = self._http.build_request(method, url, headers=headers)
                response = await self._http.send(request, stream=True, follow_redirects=True)
                try:
                    yield response
                finally:
                    await response.aclose()
        except SignetError:
            raise
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise RegistryTimeoutError(
                f"registry {registry} did not answer {operation} in time ({type(exc).__name__}; "
                f"read timeout {self.limits.read_timeout} s, "
                f"operation timeout {self.limits.operation_timeout} s)",
                registry=registry,
                operation=operation,
            ) from exc
        except httpx.TooManyRedirects as exc:
            raise RegistryError(
                f"registry {registry} redirected {operation} more than {self.limits.max_redirects} times"
            ) from exc
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"registry {registry} could not be reached for {operation}: {type(exc).__name__}: {exc}"
            ) from exc

    def _status_error(
        self, repo: RepositoryLike, response: httpx.Response, operation: str
    ) -> RegistryStatusError:
        registry = self._display(repo.registry)
        status = response.status_code
        message = f"registry {registry} answered {status} to {operation}"
        if status in (401, 403):
            host = response.request.url.netloc.decode()
            if self.auth.credentials.lookup(host) is None:
                message += f": authentication required and no credentials are configured for {host}"
            else:
                message += f": the credentials configured for {host} were refused"
            return RegistryAuthError(message, registry=registry, operation=operation, status=status)
        if status == 404:
            return ManifestNotFoundError(
                message + ": not found", registry=registry, operation=operation, status=status
            )
        if status == 429:
            message += ": rate limited"
        return RegistryStatusError(message, registry=registry, operation=operation, status=status)

    async def _read(self, response: httpx.Response, limit: int, what: str) -> bytes:
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise SizeLimitError(
                f"{what} is {int(length)} bytes, more than the limit of {limit}", limit=limit
            )
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:  # stop reading: a lying or absent Content-Length must not cost memory
                raise SizeLimitError(f"{what} is larger than the limit of {limit} bytes", limit=limit)
        return bytes(body)

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

    # --- manifests ---------------------------------------------------------------------------

    async def resolve_digest(self, ref: ImageReference) -> str:
        """The manifest digest of ``ref``: no request for a digest reference, one HEAD for a tag."""
        if ref.digest is not None:
            return ref.digest
        descriptor = await self.head_manifest(ref, ref.identifier)
        if descriptor is None:
            registry = self._display(ref.registry)
            operation = f"HEAD manifest {ref.identifier} of {ref.repository}"
            raise ManifestNotFoundError(
                f"registry {registry} answered 404 to {operation}: image {ref} does not exist",
                registry=registry,
                operation=operation,
                status=404,
            )
        return descriptor.digest

    async def head_manifest(self, repo: RepositoryLike, reference: str) -> Descriptor | None:
        """Descriptor of a tag or digest by HEAD (None on 404); GET when Docker-Content-Digest is missing."""
        operation = f"HEAD manifest {reference} of {repo.repository}"
        async with self._request(
            repo, "HEAD", self._url(repo, "manifests", reference), operation, accept=MANIFEST_ACCEPT
        ) as r:
            if r.status_code == 404:
                return None
            if r.status_code != 200:
                raise self._status_error(repo, r, operation)
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

    async def get_manifest(self, repo: RepositoryLike, digest: str) -> Manifest:
        """The manifest with this digest, content checked against the digest; 404 → ManifestNotFoundError."""
        self._require_digest(digest)
        key = ("manifest", self.base_url(repo.registry), repo.repository, digest)
        return await self._shared(key, lambda: self._fetch_manifest_by_digest(repo, digest))

    async def _fetch_manifest_by_digest(self, repo: RepositoryLike, digest: str) -> Manifest:
        manifest = await self._fetch_manifest(repo, digest, by_digest=True)
        assert manifest is not None  # by_digest turns a 404 into an error
        return manifest

    async def get_tag_manifest(self, repo: RepositoryLike, tag: str) -> Manifest | None:
        """The manifest a tag points to, or None when the tag does not exist (404).

        GET directly rather than HEAD + GET: signature tags are read for their content, and a
        missing tag costs one request either way.
        """
        return await self._fetch_manifest(repo, tag, by_digest=False)

    async def _fetch_manifest(
        self, repo: RepositoryLike, reference: str, *, by_digest: bool
    ) -> Manifest | None:
        operation = f"GET manifest {reference} of {repo.repository}"
        source = f"{self._display(repo.registry)}/{repo.repository}"
        async with self._request(
            repo, "GET", self._url(repo, "manifests", reference), operation, accept=MANIFEST_ACCEPT
        ) as r:
            if r.status_code == 404 and not by_digest:
                return None
            if r.status_code != 200:
                raise self._status_error(repo, r, operation)
            what = f"manifest {reference} from {source}"
            raw = await self._read(r, self.limits.max_manifest_bytes, what)
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

    async def get_blob(self, repo: RepositoryLike, digest: str, max_size: int | None = None) -> bytes:
        """A blob, following redirects (CDNs) up to the limit, bounded and digest-checked."""
        self._require_digest(digest)
        limit = self.limits.max_blob_bytes if max_size is None else max_size
        key = ("blob", self.base_url(repo.registry), repo.repository, digest, str(limit))
        return await self._shared(key, lambda: self._fetch_blob(repo, digest, limit))

    async def _fetch_blob(self, repo: RepositoryLike, digest: str, limit: int) -> bytes:
        operation = f"GET blob {digest} of {repo.repository}"
        what = f"blob {digest} from {self._display(repo.registry)}/{repo.repository}"
        async with self._request(repo, "GET", self._url(repo, "blobs", digest), operation) as r:
            if r.status_code != 200:
                raise self._status_error(repo, r, operation)
            data = await self._read(r, limit, what)
        self._check_digest(data, digest, what)
        return data

    # --- referrers ---------------------------------------------------------------------------

    async def referrers(self, repo: RepositoryLike, digest: str) -> Referrers:
        """Referrers of ``digest``: the OCI 1.1 API, else the ``sha256-<hex>`` fallback tag index.

        The API is skipped for a while on a host that showed it has none, saving a request.
        """
        self._require_digest(digest)
        host = self.base_url(repo.registry)
        notes: list[str] = []
        unsupported_until = self._referrers_unsupported.get(host)
        if unsupported_until is None or self._clock() >= unsupported_until:
            descriptors = await self._referrers_api(repo, digest, notes)
            if descriptors is not None:
                return Referrers(descriptors, "api", notes)
            self._referrers_unsupported[host] = self._clock() + _REFERRERS_UNSUPPORTED_TTL
        else:
            notes.append("referrers API not supported by this registry (remembered); used fallback tag")
        algorithm, _, hex_digest = digest.partition(":")
        tag = f"{algorithm[:32]}-{hex_digest[:64]}"
        index = await self._fetch_manifest(repo, tag, by_digest=False)
        if index is None:
            return Referrers([], "fallback-tag", notes)
        if not index.is_index:
            notes.append(f"fallback tag {tag} holds a {index.media_type}, not an index; ignored")
            return Referrers([], "fallback-tag", notes)
        return Referrers(list(index.manifests), "fallback-tag", notes)

    async def _referrers_api(
        self, repo: RepositoryLike, digest: str, notes: list[str]
    ) -> list[Descriptor] | None:
        url: str | None = self._url(repo, "referrers", digest)
        base = httpx.URL(self.base_url(repo.registry))
        descriptors: list[Descriptor] = []
        source = f"{self._display(repo.registry)}/{repo.repository}"
        for page in range(self.limits.max_referrer_pages):
            if url is None:
                return descriptors
            operation = f"GET referrers {digest} of {repo.repository}"
            async with self._request(repo, "GET", url, operation, accept=OCI_INDEX) as r:
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
                    raise self._status_error(repo, r, operation)
                raw = await self._read(
                    r, self.limits.max_manifest_bytes, f"referrers list of {digest} from {source}"
                )
                link = r.headers.get("link", "")
            index = Manifest.parse(
                raw,
                digest=_hash("sha256", raw),
                content_type=content_type,
                max_layers=self.limits.max_referrers,
                source=source,
            )
            descriptors.extend(index.manifests)
            if len(descriptors) > self.limits.max_referrers:
                raise SizeLimitError(
                    f"{digest} in {source} has more than {self.limits.max_referrers} referrers",
                    limit=self.limits.max_referrers,
                )
            url = next_page_url(link, httpx.URL(url), base)
        raise SizeLimitError(
            f"referrers list of {digest} in {source} has more than {self.limits.max_referrer_pages} pages",
            limit=self.limits.max_referrer_pages,
        )
