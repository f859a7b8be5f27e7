"""How a RegistryClient talks HTTP: egress rules, redirects, auth, timeouts, bounded reads.

Requests go straight to the transport (no httpx client around it): redirects are followed here,
so every hop is judged before it is sent: the registry's own origin, or https to a public address
(or to a private one when the registry itself answered from a private address). Credentials go
only to the registry's origin (and, for token requests, to the realm's). An answer's unread body
is drained so its connection is reused, and a kept-alive connection the server dropped is retried
once. Every failure is a ``RegistryError`` naming the registry and operation. Where requests go is
``webhook.oci.addressing``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncIterator, Iterable, Mapping

import httpx

from webhook.errors import RegistryError, SignetError
from webhook.oci.addressing import MEMO, RegistryAddresses
from webhook.oci.auth import CredentialStore, RegistryAuth, TokenCache, TokenRequest
from webhook.oci.egress import (
    EGRESS,
    PUBLIC_ONLY,
    AddressClass,
    Allowance,
    EgressTransport,
    Resolver,
    address_class,
    ip_literal,
    peer_address,
    refusal,
)
from webhook.oci.errors import (
    EgressRefusedError,
    ManifestNotFoundError,
    RegistryAuthError,
    RegistryStatusError,
    RegistryTimeoutError,
    SizeLimitError,
)
from webhook.oci.knowledge import RegistryKnowledge
from webhook.oci.limits import ImageBudget, RegistryLimits, RequestLimiter
from webhook.oci.transport import CountingTransport, RepositoryLike
from webhook.upstreams import NULL_OBSERVER, REGISTRY, ObservedTransport, UpstreamObserver

_logger = logging.getLogger(__name__)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_FORWARDED_HEADERS = ("accept",)
_MAX_DISCARDED = 64 * 1024  # a redirect's body is never used; read this much at most to keep the connection
_STALE = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
_HEADERS = {"User-Agent": "signet", "Accept": "*/*", "Accept-Encoding": "identity"}


class Hop(enum.Enum):
    """Why we are about to contact a URL the registry handed us."""

    REDIRECT = "redirect"
    REALM = "token realm"


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


async def _discard(response: httpx.Response) -> None:
    """Read and drop a small body so the connection can be reused; a large one just closes it."""
    received = 0
    async for chunk in response.aiter_bytes():
        received += len(chunk)
        if received > _MAX_DISCARDED:
            break
    await response.aclose()


async def _drain(response: httpx.Response) -> None:
    """Best effort: read an unread small body so the connection is reused; a failure just closes it."""
    with contextlib.suppress(httpx.HTTPError):
        await _discard(response)


class RegistrySession:
    """The HTTP side of one RegistryClient (its credentials); the transport and limiter may be shared."""

    def __init__(
        self,
        *,
        limits: RegistryLimits,
        credentials: CredentialStore | None,
        token_cache: TokenCache | None,
        allow_http: bool,
        insecure_registries: Iterable[str],
        mirrors: Mapping[str, str] | None,
        transport: httpx.AsyncBaseTransport | None,
        limiter: RequestLimiter | None,
        resolver: Resolver | None,
        knowledge: RegistryKnowledge | None = None,
        observer: UpstreamObserver = NULL_OBSERVER,
    ) -> None:
        self.limits = limits
        self.limiter = limiter or RequestLimiter()
        self.addresses = RegistryAddresses(allow_http=allow_http, insecure_registries=insecure_registries,
                                           mirrors=mirrors)
        inner = transport or EgressTransport(max_connections=limits.max_connections, http2=True, resolver=resolver,
                                             observer=observer)
        self._inner = inner
        self.counter = CountingTransport(ObservedTransport(inner, REGISTRY, observer, owned=transport is None))
        self.auth = RegistryAuth(credentials, token_cache=token_cache, send=self._send_token_request,
                                 knowledge=knowledge, token_timeout=limits.operation_timeout)
        self._allowances: dict[str, Allowance] = {}
        self._timeout = httpx.Timeout(limits.read_timeout, connect=limits.connect_timeout).as_dict()

    async def aclose(self) -> None:
        await self.counter.aclose()

    # --- addressing -------------------------------------------------------------------------

    def base_url(self, registry: str) -> str:
        """Where API calls for ``registry`` go (``RegistryAddresses``)."""
        return self.addresses.base_url(registry)

    def base(self, registry: str) -> httpx.URL:
        return self.addresses.base(registry)

    def display(self, registry: str) -> str:
        return self.addresses.display(registry)

    def speaks_h2(self, base: httpx.URL) -> bool:
        """Whether connections to ``base`` negotiated HTTP/2 (known only on our own transport)."""
        port = base.port or (443 if base.scheme == "https" else 80)
        return isinstance(self._inner, EgressTransport) and self._inner.gates.speaks_h2(f"{base.host}:{port}")

    def url(self, repo: RepositoryLike, kind: str, reference: str) -> str:
        return self.addresses.url(repo, kind, reference)

    # --- egress rules -----------------------------------------------------------------------

    def registry_allowance(self, base: httpx.URL) -> Allowance:
        """What the registry's own origin may resolve to: public or private, loopback only when allowed."""
        netloc = base.netloc.decode()
        allowance = self._allowances.get(netloc)
        if allowance is None:
            if len(self._allowances) >= MEMO:
                self._allowances.clear()
            loopback = self.addresses.allow_http or bool({netloc, base.host} & self.addresses.configured)
            allowance = frozenset({AddressClass.PRIVATE, *([AddressClass.LOOPBACK] if loopback else [])})
            self._allowances[netloc] = allowance
        return allowance

    def handed_allowance(self, target: httpx.URL, base: httpx.URL, hop: Hop, peer: str | None) -> Allowance:
        """The allowance for a URL the registry at ``base`` (answering from ``peer``) handed us.

        Raises EgressRefusedError (naming the host and the rule) when it may not be contacted at all.
        """
        host = target.netloc.decode() or "(no host)"
        if target.scheme not in ("http", "https") or not target.host:
            self._refuse(host, f"a {hop.value} must be an http(s) URL with a host")
        if target.userinfo:
            self._refuse(host, f"a {hop.value} carrying credentials in the URL is not followed")
        if _origin(target) == _origin(base):
            return self.registry_allowance(base)
        same_host_realm = hop is Hop.REALM and base.scheme == "http" and target.host == base.host
        if target.scheme != "https" and not same_host_realm:
            self._refuse(host, f"a {hop.value} to another origin must use https")
        literal = ip_literal(peer) if peer else ip_literal(base.host)
        registry_class = address_class(literal) if literal is not None else None
        allowance = PUBLIC_ONLY
        if registry_class is AddressClass.PRIVATE:
            allowance = frozenset({AddressClass.PRIVATE})  # a private registry's own CDN or token service
        elif registry_class is AddressClass.LOOPBACK and hop is Hop.REALM and target.host == base.host:
            # A development registry with its token service beside it (allow_http only).
            allowance = self.registry_allowance(base) & {AddressClass.LOOPBACK}
        self._check_literal(target, allowance)
        return allowance

    @staticmethod
    def _refuse(host: str, rule: str) -> None:
        raise EgressRefusedError(rule, host=host, rule=rule)

    @staticmethod
    def _check_literal(url: httpx.URL, allowance: Allowance) -> None:
        literal = ip_literal(url.host)
        refused = refusal(url.host, literal, allowance, shown=url.netloc.decode()) if literal is not None else None
        if refused is not None:
            raise refused

    # --- sending ----------------------------------------------------------------------------

    def _build(self, method: str, url: httpx.URL | str, headers: Mapping[str, str], allowance: Allowance
               ) -> httpx.Request:
        # Straight to the transport, no httpx client around it: we follow redirects and answer
        # challenges ourselves, keep no cookies, and its per-request work was a sixth of a request's CPU.
        return httpx.Request(method, url, headers={**_HEADERS, **headers},
                             extensions={EGRESS: allowance, "timeout": self._timeout})

    async def _exchange(self, request: httpx.Request, auth: RegistryAuth | None) -> httpx.Response:
        """One request, and the retry the auth flow asks for when a challenge was answered with a token."""
        if auth is None:
            return await self._deliver(request)
        flow = auth.async_auth_flow(request)
        try:
            request = await flow.__anext__()
            while True:
                response = await self._deliver(request)
                try:
                    request = await flow.asend(response)
                except StopAsyncIteration:
                    return response
                except BaseException:
                    await response.aclose()  # the token fetch failed: the challenge must not hold its connection
                    raise
                await _drain(response)  # the challenge: only its headers mattered
        finally:
            await flow.aclose()

    async def _deliver(self, request: httpx.Request) -> httpx.Response:
        response = await self.counter.handle_async_request(request)
        response.request = request
        return response

    async def _send_one(self, request: httpx.Request, base: httpx.URL, *, authenticate: bool) -> httpx.Response:
        self._check_literal(request.url, request.extensions[EGRESS])
        same_origin = _origin(request.url) == _origin(base)
        auth = self.auth if authenticate and same_origin else None
        try:
            return await self._exchange(request, auth)
        except _STALE as exc:
            # A kept-alive connection the server closed as we reused it: nothing was answered, and
            # GET/HEAD may be sent again, once, on a fresh connection (as Go's net/http does).
            if request.method not in ("GET", "HEAD"):
                raise
            _logger.debug("registry connection to %s dropped before answering (%s); sending again",
                          request.url.netloc.decode(), exc)
            return await self._exchange(request, auth)

    async def follow(
        self,
        request: httpx.Request,
        base: httpx.URL,
        *,
        registry: str,
        operation: str,
        authenticate: bool,
        peer: str | None = None,
        context: str | None = None,
    ) -> httpx.Response:
        """Send ``request`` and follow redirects, each hop checked before it is sent.

        ``peer`` is the registry's address when already known (token requests); otherwise the
        registry's first answer tells it. Explicit credentials (a token request's Basic header)
        stay on their own origin; the auth flow only ever authenticates to the registry's origin.
        ``context`` names the first hop in a refusal (default: the registry and operation).
        """
        explicit = request.headers.get("authorization")
        first = _origin(request.url)
        try:
            response = await self._send_one(request, base, authenticate=authenticate)
        except EgressRefusedError as exc:
            raise exc.within(context or f"registry {registry}: {operation}") from None
        if peer is None and first == _origin(base):
            peer = peer_address(response)
        hops = 0
        while response.status_code in _REDIRECTS and "location" in response.headers:
            location = response.headers["location"]
            await _discard(response)
            if hops >= self.limits.max_redirects:
                raise RegistryError(
                    f"registry {registry} redirected {operation} more than {self.limits.max_redirects} times"
                )
            hops += 1
            try:
                target = response.url.join(location)
            except httpx.InvalidURL as exc:
                raise RegistryError(
                    f"registry {registry} redirected {operation} to an unusable location {location[:200]!r}"
                ) from exc
            try:
                allowance = self.handed_allowance(target, base, Hop.REDIRECT, peer)
                headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED_HEADERS}
                if explicit is not None and _origin(target) == first:
                    headers["Authorization"] = explicit
                method = "GET" if response.status_code == 303 and request.method != "HEAD" else request.method
                request = self._build(method, target, headers, allowance)
                response = await self._send_one(request, base, authenticate=authenticate)
            except EgressRefusedError as exc:
                where = target.netloc.decode() or target.scheme
                raise exc.within(f"registry {registry} redirected {operation} to {where}") from None
        return response

    async def _send_token_request(self, token: TokenRequest) -> httpx.Response:
        base = token.registry.copy_with(path="/", query=None, fragment=None)
        registry = token.registry.netloc.decode()
        realm = token.url.netloc.decode()
        context = f"registry {registry} named token realm {realm}"
        try:
            allowance = self.handed_allowance(token.url, base, Hop.REALM, token.peer)
        except EgressRefusedError as exc:
            raise exc.within(context) from None
        request = self._build("GET", token.url, token.headers, allowance)
        return await self.follow(request, base, registry=registry, operation=f"GET token from {realm}",
                                 authenticate=False, peer=token.peer, context=context)

    @contextlib.asynccontextmanager
    async def request(
        self, repo: RepositoryLike, method: str, url: str, operation: str, *, accept: str | None = None
    ) -> AsyncIterator[httpx.Response]:
        """Send one request (auth and redirects included) and yield the unread response."""
        registry = self.display(repo.registry)
        base = self.base(repo.registry)
        headers = {"Accept": accept} if accept else {}
        async with self.limiter.slot():
            try:
                async with asyncio.timeout(self.limits.operation_timeout):
                    request = self._build(method, url, headers, self.registry_allowance(base))
                    response = await self.follow(request, base, registry=registry, operation=operation,
                                                 authenticate=True)
                    try:
                        yield response
                    except BaseException:
                        await response.aclose()  # failed or cancelled: no reading more, just let go
                        raise
                    if not response.is_stream_consumed:
                        await _drain(response)  # an unread 404 body would cost the connection
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
            except httpx.HTTPError as exc:
                raise RegistryError(
                    f"registry {registry} could not be reached for {operation}: {type(exc).__name__}: {exc}"
                ) from exc

    # --- answers ----------------------------------------------------------------------------

    def status_error(self, repo: RepositoryLike, response: httpx.Response, operation: str) -> RegistryStatusError:
        registry = self.display(repo.registry)
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

    @staticmethod
    async def read(response: httpx.Response, limit: int, what: str, budget: ImageBudget | None = None) -> bytes:
        """The body, stopping at ``limit`` bytes (and charging ``budget`` as it arrives, when given)."""
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise SizeLimitError(f"{what} is {int(length)} bytes, more than the limit of {limit}", limit=limit)
        chunks: list[bytes] = []
        received = 0
        async for chunk in response.aiter_bytes():
            received += len(chunk)
            if received > limit:  # stop reading: a lying or absent Content-Length must not cost memory
                raise SizeLimitError(f"{what} is larger than the limit of {limit} bytes", limit=limit)
            if budget is not None:
                budget.charge(len(chunk), what)
            chunks.append(chunk)
        return b"".join(chunks)

