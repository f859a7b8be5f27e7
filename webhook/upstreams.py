"""What Signet waits for: every request to a registry, Rekor or TUF, timed and classified.

Two views of the same requests. Per process, an ``UpstreamObserver`` (``webhook.metrics`` implements
it) is told each request's duration and outcome and each connection opened and closed. Per review,
``ReviewWaits`` (carried by a context variable, so tasks a review starts inherit it) adds up the
wall time during which the review had at least one request outstanding to each upstream host: the
figure the audit line reports. Work shared between reviews (a single-flight cache computation)
counts for the review that started it.

The transports here wrap any httpx transport, so the unit tests' ``MockTransport`` is observed
the same way the network is.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, Protocol

import httpx

from webhook.errors import SignetError

REGISTRY: Final = "registry"
REKOR: Final = "rekor"
TUF: Final = "tuf"
MAX_AUDITED_HOSTS: Final = 16


class UpstreamObserver(Protocol):
    """Told about every upstream request and connection (may be called from any thread)."""

    def request_done(self, upstream: str, host: str, seconds: float, outcome: str) -> None: ...

    def connection_opened(self, upstream: str, host: str, protocol: str) -> None: ...

    def connection_closed(self, upstream: str, host: str) -> None: ...


class NullObserver:
    """Observes nothing (clients built outside the server: the CLI, tests)."""

    def request_done(self, upstream: str, host: str, seconds: float, outcome: str) -> None:
        return None

    def connection_opened(self, upstream: str, host: str, protocol: str) -> None:
        return None

    def connection_closed(self, upstream: str, host: str) -> None:
        return None


NULL_OBSERVER: Final = NullObserver()


class DeferredObserver:
    """Forwards to ``target`` once it is set (a client built before the app whose metrics it feeds)."""

    def __init__(self) -> None:
        self.target: UpstreamObserver = NULL_OBSERVER

    def request_done(self, upstream: str, host: str, seconds: float, outcome: str) -> None:
        self.target.request_done(upstream, host, seconds, outcome)

    def connection_opened(self, upstream: str, host: str, protocol: str) -> None:
        self.target.connection_opened(upstream, host, protocol)

    def connection_closed(self, upstream: str, host: str) -> None:
        self.target.connection_closed(upstream, host)


def outcome_of_status(status: int) -> str:
    """A bounded label for an answer's status."""
    if status < 300:
        return "ok"
    if status < 400:
        return "redirect"
    if status in (401, 403):
        return "denied"
    if status == 404:
        return "not_found"
    if status == 429:
        return "rate_limited"
    return "client_error" if status < 500 else "server_error"


def outcome_of_error(error: BaseException) -> str:
    """A bounded label for a request that got no answer."""
    if isinstance(error, httpx.TimeoutException | TimeoutError):
        return "timeout"
    if isinstance(error, SignetError):  # raised by a transport only when egress rules refuse a connection
        return "refused"
    if not isinstance(error, Exception):
        return "cancelled"
    return "error"


@dataclass(slots=True)
class _Wait:
    in_flight: int = 0
    since: float = 0.0
    total: float = 0.0
    requests: int = 0


class ReviewWaits:
    """Per (upstream, host): wall time with a request outstanding, and requests sent, for one review."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._waits: dict[tuple[str, str], _Wait] = {}

    def begin(self, upstream: str, host: str) -> None:
        wait = self._waits.get((upstream, host))
        if wait is None:
            wait = self._waits[(upstream, host)] = _Wait()
        if wait.in_flight == 0:
            wait.since = self._clock()
        wait.in_flight += 1
        wait.requests += 1

    def end(self, upstream: str, host: str) -> None:
        wait = self._waits.get((upstream, host))
        if wait is None or wait.in_flight == 0:
            return
        wait.in_flight -= 1
        if wait.in_flight == 0:
            wait.total += self._clock() - wait.since

    def seconds(self, upstream: str, host: str) -> float:
        """The wait so far (a request still outstanding counts until now)."""
        wait = self._waits.get((upstream, host))
        if wait is None:
            return 0.0
        return wait.total + (self._clock() - wait.since if wait.in_flight else 0.0)

    def summary(self, limit: int = MAX_AUDITED_HOSTS) -> list[dict[str, Any]]:
        """The longest waits first, at most ``limit`` of them: ``upstream``, ``host``, ``waitMs``, ``requests``."""
        waits = sorted(((self.seconds(*key), key, wait.requests) for key, wait in self._waits.items()), reverse=True)
        return [{"upstream": upstream, "host": host, "waitMs": round(seconds * 1000, 1), "requests": requests}
                for seconds, (upstream, host), requests in waits[:limit]]


_REVIEW: ContextVar[ReviewWaits | None] = ContextVar("signet_review_waits", default=None)


@contextlib.contextmanager
def review_waits() -> Iterator[ReviewWaits]:
    """Count upstream waits of the code run in this block (and the tasks it starts) for one review."""
    waits = ReviewWaits()
    token = _REVIEW.set(waits)
    try:
        yield waits
    finally:
        _REVIEW.reset(token)


def current_waits() -> ReviewWaits | None:
    return _REVIEW.get()


class _Exchange:
    """One request in flight: ends once, when its response is closed or it failed."""

    __slots__ = ("_host", "_observer", "_started", "_upstream", "_waits", "ended")

    def __init__(self, upstream: str, host: str, observer: UpstreamObserver) -> None:
        self._upstream, self._host, self._observer = upstream, host, observer
        self._waits = _REVIEW.get()
        self._started = time.perf_counter()
        self.ended = False
        if self._waits is not None:
            self._waits.begin(upstream, host)

    def end(self, outcome: str) -> None:
        if self.ended:
            return
        self.ended = True
        if self._waits is not None:
            self._waits.end(self._upstream, self._host)
        self._observer.request_done(self._upstream, self._host, time.perf_counter() - self._started, outcome)


class _ObservedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, exchange: _Exchange, outcome: str) -> None:
        self._inner, self._exchange, self._outcome = inner, exchange, outcome

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except BaseException as exc:
            self._exchange.end(outcome_of_error(exc))
            raise

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._exchange.end(self._outcome)


class ObservedTransport(httpx.AsyncBaseTransport):
    """Times every exchange through ``inner`` (sending to the response closed) for ``upstream``.

    Closes ``inner`` only when ``owned``.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, upstream: str,
                 observer: UpstreamObserver = NULL_OBSERVER, *, owned: bool = True) -> None:
        self.inner, self.upstream, self.observer, self.owned = inner, upstream, observer, owned

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        exchange = _Exchange(self.upstream, request.url.netloc.decode("ascii"), self.observer)
        try:
            response = await self.inner.handle_async_request(request)
        except BaseException as exc:
            exchange.end(outcome_of_error(exc))
            raise
        outcome = outcome_of_status(response.status_code)
        if response.is_closed:  # already read whole (test transports): nothing more to wait for
            exchange.end(outcome)
        else:
            stream = response.stream
            assert isinstance(stream, httpx.AsyncByteStream)
            response.stream = _ObservedStream(stream, exchange, outcome)
        return response

    async def aclose(self) -> None:
        if self.owned:
            await self.inner.aclose()


class ObservedSyncTransport(httpx.BaseTransport):
    """``ObservedTransport`` for synchronous clients (TUF refreshes, in their own thread); time to headers."""

    def __init__(self, inner: httpx.BaseTransport, upstream: str, observer: UpstreamObserver) -> None:
        self.inner, self.upstream, self.observer = inner, upstream, observer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.netloc.decode("ascii")
        started = time.perf_counter()
        try:
            response = self.inner.handle_request(request)
        except BaseException as exc:
            self.observer.request_done(self.upstream, host, time.perf_counter() - started, outcome_of_error(exc))
            raise
        self.observer.request_done(self.upstream, host, time.perf_counter() - started,
                                   outcome_of_status(response.status_code))
        return response

    def close(self) -> None:
        self.inner.close()


def observed_tuf_client(observer: UpstreamObserver) -> httpx.Client:
    """The TUF fetcher's HTTP client (its timeouts, redirects and User-Agent), its requests observed."""
    from webhook.trust.fetchers import DEFAULT_TIMEOUT, USER_AGENT

    return httpx.Client(timeout=DEFAULT_TIMEOUT, follow_redirects=True, headers={"User-Agent": USER_AGENT},
                        transport=ObservedSyncTransport(httpx.HTTPTransport(), TUF, observer))
