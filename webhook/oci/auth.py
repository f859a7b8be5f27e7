"""Registry authentication: the Bearer-token dance and HTTP Basic as an httpx ``Auth`` flow.

The flow is kept out of the client (httpx's own design): the client sends plain requests and
``RegistryAuth`` answers 401 challenges. Which scheme a host wants is remembered
(``RegistryKnowledge``, shared by every client), so later requests authenticate up front and cost
no 401 round trip; tokens are cached per (host, scope) until shortly before they expire, and one
fetch per (host, scope) serves every request waiting for it, while different scopes are fetched
at once. Token requests go out through the client's sender, which applies the egress rules to the realm.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass

import httpx

from webhook.errors import RegistryError
from webhook.oci.challenges import Challenge, parse_www_authenticate
from webhook.oci.credentials import Credentials, CredentialStore, normalise_auth_host
from webhook.oci.egress import peer_address
from webhook.oci.errors import RegistryAuthError, RegistryTimeoutError
from webhook.oci.knowledge import BASIC, BearerEndpoint, RegistryKnowledge

__all__ = [
    "Challenge",
    "CredentialStore",
    "Credentials",
    "HitCount",
    "RegistryAuth",
    "TokenCache",
    "TokenRequest",
    "TokenSender",
    "normalise_auth_host",
    "parse_www_authenticate",
    "scope_for",
]

_MAX_TOKEN_RESPONSE = 64 * 1024
_DEFAULT_TOKEN_LIFETIME = 60  # seconds; the Docker token spec's default when expires_in is absent


@dataclass
class HitCount:
    """Lookups that found something, and those that did not (may be shared by several caches)."""

    hits: int = 0
    misses: int = 0


class TokenCache:
    """Bearer tokens per (host, scope) until shortly before expiry; LRU-bounded."""

    def __init__(
        self,
        *,
        max_entries: int = 256,
        margin: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        counts: HitCount | None = None,
    ) -> None:
        self._entries: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self._max_entries = max_entries
        self._margin = margin
        self._clock = clock
        self.counts = counts if counts is not None else HitCount()

    def get(self, host: str, scope: str) -> str | None:
        key = (host, scope)
        entry = self._entries.get(key)
        if entry is not None and self._clock() >= entry[1]:
            del self._entries[key]
            entry = None
        if entry is None:
            self.counts.misses += 1
            return None
        self._entries.move_to_end(key)
        self.counts.hits += 1
        return entry[0]

    def put(self, host: str, scope: str, token: str, expires_in: float) -> None:
        # Renew early (at most a quarter of the lifetime early) so a token never expires in flight.
        lifetime = max(0.0, expires_in - min(self._margin, expires_in / 4))
        self._entries[(host, scope)] = (token, self._clock() + lifetime)
        self._entries.move_to_end((host, scope))
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def discard(self, host: str, scope: str) -> None:
        self._entries.pop((host, scope), None)

    def __len__(self) -> int:
        return len(self._entries)


_SCOPE_PATH_RE = re.compile(r"/v2/(.+)/(?:manifests|blobs|referrers|tags)/[^/]*$")


def scope_for(url: httpx.URL) -> str:
    """The pull scope a registry API URL needs (``repository:<name>:pull``), or "" for ``/v2/``."""
    match = _SCOPE_PATH_RE.search(url.path)
    return f"repository:{match.group(1)}:pull" if match else ""


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """A token fetch for the registry request ``registry``: where, with which headers, and who asked.

    ``peer`` is the address the challenging registry answered from (None when unknown); the
    sender decides from it and ``registry`` whether the realm may be contacted at all.
    """

    url: httpx.URL
    headers: Mapping[str, str]
    registry: httpx.URL
    peer: str | None


TokenSender = Callable[[TokenRequest], Awaitable[httpx.Response]]


class RegistryAuth(httpx.Auth):
    """Answers registry 401 challenges: anonymous or Basic-authenticated Bearer tokens, or HTTP Basic."""

    def __init__(
        self,
        credentials: CredentialStore | None = None,
        *,
        token_cache: TokenCache | None = None,
        send: TokenSender,
        knowledge: RegistryKnowledge | None = None,
        token_timeout: float = 8.0,
    ) -> None:
        """``send`` sends a token request (unauthenticated, streaming) through the client's egress
        rules, connection pool, timeouts and request counter. ``knowledge`` (each host's scheme) may
        be shared by every client of a process; tokens are this client's own."""
        self.credentials = credentials if credentials is not None else CredentialStore()
        self.tokens = token_cache if token_cache is not None else TokenCache()
        self.knowledge = knowledge if knowledge is not None else RegistryKnowledge()
        self._send = send
        self._timeout = token_timeout
        self._fetching: dict[tuple[str, frozenset[str]], asyncio.Task[str]] = {}

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("RegistryAuth is for httpx.AsyncClient only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        host = request.url.netloc.decode("ascii")
        scope = scope_for(request.url)
        creds = self.credentials.lookup(host)
        known = self.knowledge.scheme(host)
        sent: str | None = None

        if known == BASIC and creds is not None:
            request.headers["Authorization"] = creds.basic_header()
        elif isinstance(known, BearerEndpoint):
            # The realm is known: a token for this scope first, so the request itself is not refused.
            sent = await self._token(request, known, [scope], creds, scope, refused=None)
            request.headers["Authorization"] = f"Bearer {sent}"

        response = yield request
        if response.status_code != 401:
            return
        challenges = parse_www_authenticate(response.headers.get_list("www-authenticate"))
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.params.get("realm")), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)

        if bearer is not None:
            endpoint = BearerEndpoint(bearer.params["realm"], bearer.params.get("service"), peer_address(response))
            self.knowledge.learn_scheme(host, endpoint)
            # A challenge may ask for more than we guessed (e.g. another repository): ask for both.
            scopes = [scope, *bearer.params.get("scope", "").split(" ")]
            token = await self._token(request, endpoint, scopes, creds, scope, refused=sent)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request
        elif basic is not None:
            self.knowledge.learn_scheme(host, BASIC)
            if creds is None or known == BASIC:
                return  # nothing (new) to offer: the client reports the 401
            request.headers["Authorization"] = creds.basic_header()
            yield request

    async def _token(
        self,
        request: httpx.Request,
        endpoint: BearerEndpoint,
        scopes: list[str],
        creds: Credentials | None,
        scope: str,
        *,
        refused: str | None,
    ) -> str:
        """A token for ``scope``: cached (unless it is the one just ``refused``), or fetched once for
        every concurrent request that needs it (the requests of one image, or of a Pod's images)."""
        host = request.url.netloc.decode("ascii")
        cached = self.tokens.get(host, scope)
        if cached is not None and cached != refused:
            return cached
        if cached is not None:
            self.tokens.discard(host, scope)
        key = (host, frozenset(s for s in scopes if s))
        task = self._fetching.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fetch_token(request, endpoint, scopes, creds, scope))
            self._fetching[key] = task

            def forget(done: asyncio.Task[str]) -> None:
                if self._fetching.get(key) is done:
                    del self._fetching[key]
                if not done.cancelled():
                    done.exception()  # retrieved: a fetch every waiter gave up on must not warn

            task.add_done_callback(forget)
        # shield: a request giving up (its deadline) must not cancel the fetch others wait for.
        return await asyncio.shield(task)

    def _token_request(
        self, request: httpx.Request, endpoint: BearerEndpoint, scopes: list[str], creds: Credentials | None
    ) -> TokenRequest:
        try:
            realm = httpx.URL(endpoint.realm)
        except httpx.InvalidURL:
            realm = httpx.URL()
        if realm.scheme not in ("http", "https") or not realm.host:
            raise RegistryError(
                f"registry {request.url.netloc.decode()} sent an unusable token realm {endpoint.realm[:200]!r}"
            )
        params: list[tuple[str, str | int | float | bool | None]] = []
        if endpoint.service:
            params.append(("service", endpoint.service))
        params.extend(("scope", s) for s in dict.fromkeys(scopes) if s)
        headers = {"Accept": "application/json"}
        if creds is not None:
            headers["Authorization"] = creds.basic_header()
        return TokenRequest(realm.copy_merge_params(params), headers, request.url, endpoint.peer)

    async def _fetch_token(
        self,
        request: httpx.Request,
        endpoint: BearerEndpoint,
        scopes: list[str],
        creds: Credentials | None,
        scope: str,
    ) -> str:
        # Sent outside the flow (not yielded): httpx would read every yielded response whole,
        # and a token response must stay bounded like everything else a registry sends. Its own
        # task, so its own time bound: no request's operation timeout covers it.
        host = request.url.netloc.decode("ascii")
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._send(self._token_request(request, endpoint, scopes, creds))
                try:
                    return await self._accept_token(response, host, scope, creds)
                finally:
                    await response.aclose()
        except TimeoutError as exc:
            raise RegistryTimeoutError(
                f"token endpoint of registry {host} did not answer in time ({self._timeout} s)",
                registry=host, operation="GET token",
            ) from exc

    async def _accept_token(
        self, response: httpx.Response, host: str, scope: str, creds: Credentials | None
    ) -> str:
        realm = f"{response.request.url.scheme}://{response.request.url.netloc.decode()}{response.request.url.path}"
        if response.status_code in (401, 403):
            why = (
                "credentials were rejected"
                if creds
                else f"anonymous access refused and no credentials are configured for {host}"
            )
            raise RegistryAuthError(
                f"token endpoint {realm} of registry {host} answered {response.status_code}: {why}",
                registry=host,
                operation="GET token",
                status=response.status_code,
            )
        if response.status_code != 200:
            raise RegistryAuthError(
                f"token endpoint {realm} of registry {host} answered {response.status_code}",
                registry=host,
                operation="GET token",
                status=response.status_code,
            )
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > _MAX_TOKEN_RESPONSE:
                raise RegistryError(
                    f"token endpoint {realm} of registry {host} sent more than {_MAX_TOKEN_RESPONSE} bytes"
                )
        try:
            document = json.loads(bytes(body))
        except ValueError as exc:
            raise RegistryError(f"token endpoint {realm} of registry {host} sent invalid JSON") from exc
        token = (
            (document.get("token") or document.get("access_token")) if isinstance(document, dict) else None
        )
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token endpoint {realm} of registry {host} sent no token")
        expires_in = document.get("expires_in", _DEFAULT_TOKEN_LIFETIME)
        if not isinstance(expires_in, int | float) or isinstance(expires_in, bool) or expires_in <= 0:
            expires_in = _DEFAULT_TOKEN_LIFETIME
        self.tokens.put(host, scope, token, float(expires_in))
        return token
