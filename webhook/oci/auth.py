"""Registry authentication: credentials, challenges, and the Bearer-token dance as an httpx ``Auth`` flow.

The flow is kept out of the client (httpx's own design): the client sends plain requests and
``RegistryAuth`` answers 401 challenges. It learns per host which scheme the registry wants, so
later requests authenticate up front and cost no extra 401 round trip, and caches tokens per
(host, scope) until shortly before they expire.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from webhook.errors import InputError, RegistryError
from webhook.oci.errors import RegistryAuthError
from webhook.oci.reference import DOCKER_HUB, DOCKER_HUB_ALIASES

_logger = logging.getLogger(__name__)

_MAX_TOKEN_RESPONSE = 64 * 1024
_DEFAULT_TOKEN_LIFETIME = 60  # seconds; the Docker token spec's default when expires_in is absent
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


# --- credentials ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and password (or registry token used as a password)."""

    username: str
    password: str = field(repr=False)

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def normalise_auth_host(key: str) -> str:
    """Auth entry key to host: ``https://index.docker.io/v1/`` → ``index.docker.io`` (no scheme/path/case)."""
    host = key.strip()
    for prefix in ("https://", "http://"):
        if host.lower().startswith(prefix):
            host = host[len(prefix) :]
            break
    host = host.split("/", 1)[0].lower()
    return DOCKER_HUB if host in DOCKER_HUB_ALIASES else host


class CredentialStore:
    """Credentials by registry host, as read from Docker config JSON (Kubernetes pull secrets)."""

    def __init__(self, entries: Mapping[str, Credentials] | None = None) -> None:
        self._by_host: dict[str, Credentials] = {}
        for host, creds in (entries or {}).items():
            self.add(host, creds)

    def add(self, host: str, credentials: Credentials) -> None:
        self._by_host[normalise_auth_host(host)] = credentials

    def lookup(self, host: str) -> Credentials | None:
        """Credentials for a registry host (with or without scheme/port as configured)."""
        return self._by_host.get(normalise_auth_host(host))

    def hosts(self) -> list[str]:
        return sorted(self._by_host)

    def merged(self, other: CredentialStore) -> CredentialStore:
        """A new store with ``other``'s entries winning on conflicts."""
        store = CredentialStore()
        store._by_host = {**self._by_host, **other._by_host}
        return store

    @classmethod
    def from_docker_config(cls, document: bytes | str | Mapping[str, Any]) -> CredentialStore:
        """Parse ``{"auths": {host: {"auth": b64(user:pass)} | {"username", "password"}}}``.

        Also accepts the older ``.dockercfg`` shape (the host map at the top level). Entries
        with only an ``identitytoken`` (OAuth refresh tokens) are skipped with a log line.
        """
        if isinstance(document, bytes | str):
            try:
                document = json.loads(document)
            except ValueError as exc:
                raise InputError(f"docker config is not valid JSON: {exc}") from exc
        if not isinstance(document, Mapping):
            raise InputError("docker config must be a JSON object")
        auths = document.get("auths", document)
        if not isinstance(auths, Mapping):
            raise InputError('docker config "auths" must be an object')
        store = cls()
        for host, entry in auths.items():
            if not isinstance(entry, Mapping):
                raise InputError(f"docker config entry for {host!r} must be an object")
            creds = _entry_credentials(str(host), entry)
            if creds is not None:
                store.add(str(host), creds)
        return store


def _entry_credentials(host: str, entry: Mapping[str, Any]) -> Credentials | None:
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise InputError(
                f"docker config entry for {host!r}: 'auth' is not base64 of user:password"
            ) from exc
        username, sep, password = decoded.partition(":")
        if not sep:
            raise InputError(f"docker config entry for {host!r}: 'auth' has no ':' between user and password")
        return Credentials(username, password)
    user, secret = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(secret, str) and user:
        return Credentials(user, secret)
    if entry.get("identitytoken"):
        _logger.warning("docker config entry for %s has only an identitytoken; not supported, ignored", host)
        return None
    raise InputError(f"docker config entry for {host!r} has neither 'auth' nor 'username'/'password'")


# --- WWW-Authenticate -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header; ``scheme`` is lower case."""

    scheme: str
    params: Mapping[str, str]


_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')


def parse_www_authenticate(values: str | list[str]) -> list[Challenge]:
    """Parse RFC 7235 challenges: several per header, several headers, quoted params with commas."""
    text = ", ".join(values) if isinstance(values, list) else values
    challenges: list[tuple[str, dict[str, str]]] = []
    pos, end = 0, len(text)
    while pos < end:
        if text[pos] in " \t,":
            pos += 1
            continue
        match = _TOKEN_RE.match(text, pos)
        if match is None:  # garbage: skip a character rather than give up on the rest
            pos += 1
            continue
        word, pos = match.group(0), match.end()
        probe = pos
        while probe < end and text[probe] in " \t":
            probe += 1
        if probe < end and text[probe] == "=" and challenges:
            probe += 1
            while probe < end and text[probe] in " \t":
                probe += 1
            quoted = _QUOTED_RE.match(text, probe)
            if quoted is not None:
                value, pos = re.sub(r"\\(.)", r"\1", quoted.group(1)), quoted.end()
            else:
                bare = _TOKEN_RE.match(text, probe)
                value, pos = (bare.group(0), bare.end()) if bare else ("", probe)
            challenges[-1][1][word.lower()] = value
        else:
            challenges.append((word.lower(), {}))
    return [Challenge(scheme, params) for scheme, params in challenges]


# --- tokens -----------------------------------------------------------------------------------


class TokenCache:
    """Bearer tokens per (host, scope) until shortly before expiry; LRU-bounded."""

    def __init__(
        self, *, max_entries: int = 256, margin: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self._max_entries = max_entries
        self._margin = margin
        self._clock = clock

    def get(self, host: str, scope: str) -> str | None:
        key = (host, scope)
        entry = self._entries.get(key)
        if entry is None:
            return None
        token, expires_at = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return token

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


@dataclass(frozen=True, slots=True)
class _BearerEndpoint:
    realm: str
    service: str | None


_BASIC = "basic"
_SCOPE_PATH_RE = re.compile(r"/v2/(.+)/(?:manifests|blobs|referrers|tags)/[^/]*$")


def scope_for(url: httpx.URL) -> str:
    """The pull scope a registry API URL needs (``repository:<name>:pull``), or "" for ``/v2/``."""
    match = _SCOPE_PATH_RE.search(url.path)
    return f"repository:{match.group(1)}:pull" if match else ""


def _is_loopback(host: str) -> bool:
    return host in _LOOPBACK_HOSTS or host.startswith("127.")


TokenSender = Callable[[httpx.Request], Awaitable[httpx.Response]]


async def _send_with_fresh_client(request: httpx.Request) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10.0) as client:
        return await client.send(request)  # read whole, then closed: the caller only needs the body


class RegistryAuth(httpx.Auth):
    """Answers registry 401 challenges: anonymous or Basic-authenticated Bearer tokens, or HTTP Basic."""

    def __init__(
        self,
        credentials: CredentialStore | None = None,
        *,
        token_cache: TokenCache | None = None,
        send: TokenSender | None = None,
    ) -> None:
        """``send`` sends a token request (unauthenticated, streaming); RegistryClient passes its own
        so token fetches share its connection pool, timeouts and request counter."""
        self.credentials = credentials if credentials is not None else CredentialStore()
        self.tokens = token_cache if token_cache is not None else TokenCache()
        self._send = send or _send_with_fresh_client
        self._schemes: dict[str, str | _BearerEndpoint] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("RegistryAuth is for httpx.AsyncClient only")

    def _lock(self, host: str) -> asyncio.Lock:
        # One token fetch per host at a time, so concurrent first requests share one token.
        return self._locks.setdefault(host, asyncio.Lock())

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        host = request.url.netloc.decode("ascii")
        scope = scope_for(request.url)
        creds = self.credentials.lookup(host)
        known = self._schemes.get(host)

        if known == _BASIC and creds is not None:
            request.headers["Authorization"] = creds.basic_header()
        elif isinstance(known, _BearerEndpoint):
            token = self.tokens.get(host, scope)
            if token is None:
                async with self._lock(host):
                    token = self.tokens.get(host, scope)
                    if token is None:
                        token = await self._fetch_token(request, known, [scope], creds, scope)
            request.headers["Authorization"] = f"Bearer {token}"

        response = yield request
        if response.status_code != 401:
            return
        challenges = parse_www_authenticate(response.headers.get_list("www-authenticate"))
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.params.get("realm")), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)

        if bearer is not None:
            endpoint = _BearerEndpoint(bearer.params["realm"], bearer.params.get("service"))
            self._remember(host, endpoint)
            # A challenge may ask for more than we guessed (e.g. another repository): ask for both.
            scopes = [scope, *bearer.params.get("scope", "").split(" ")]
            self.tokens.discard(host, scope)
            async with self._lock(host):
                token = await self._fetch_token(request, endpoint, scopes, creds, scope)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request
        elif basic is not None:
            self._remember(host, _BASIC)
            if creds is None or known == _BASIC:
                return  # nothing (new) to offer: the client reports the 401
            request.headers["Authorization"] = creds.basic_header()
            yield request

    def _remember(self, host: str, scheme: str | _BearerEndpoint) -> None:
        if len(self._schemes) > 1024:  # bounded: hosts come from configuration and references
            self._schemes.clear()
        self._schemes[host] = scheme

    def _token_request(
        self, request: httpx.Request, endpoint: _BearerEndpoint, scopes: list[str], creds: Credentials | None
    ) -> httpx.Request:
        realm = httpx.URL(endpoint.realm)
        if realm.scheme not in ("http", "https") or not realm.host:
            raise RegistryError(
                f"registry {request.url.netloc.decode()} sent an unusable token realm {endpoint.realm!r}"
            )
        if realm.scheme == "http" and request.url.scheme == "https" and not _is_loopback(realm.host):
            # Never downgrade: a TLS registry must not make us send credentials or fetch tokens in clear.
            raise RegistryError(
                f"registry {request.url.netloc.decode()} points to plain-http token realm {endpoint.realm}"
            )
        params: list[tuple[str, str | int | float | bool | None]] = []
        if endpoint.service:
            params.append(("service", endpoint.service))
        params.extend(("scope", s) for s in dict.fromkeys(scopes) if s)
        headers = {"Accept": "application/json"}
        if creds is not None:
            headers["Authorization"] = creds.basic_header()
        return httpx.Request("GET", realm.copy_merge_params(params), headers=headers)

    async def _fetch_token(
        self,
        request: httpx.Request,
        endpoint: _BearerEndpoint,
        scopes: list[str],
        creds: Credentials | None,
        scope: str,
    ) -> str:
        # Sent outside the flow (not yielded): httpx would read every yielded response whole,
        # and a token response must stay bounded like everything else a registry sends.
        response = await self._send(self._token_request(request, endpoint, scopes, creds))
        try:
            return await self._accept_token(response, request.url.netloc.decode("ascii"), scope, creds)
        finally:
            await response.aclose()

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
