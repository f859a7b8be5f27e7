"""Upstream requests timed and classified: per process (an observer) and per review (the audit's waits)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx
import pytest

from webhook.oci.errors import EgressRefusedError
from webhook.upstreams import (
    DeferredObserver,
    ObservedSyncTransport,
    ObservedTransport,
    ReviewWaits,
    current_waits,
    outcome_of_error,
    outcome_of_status,
    review_waits,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Recorder:
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    connections: list[tuple[str, str, str]] = field(default_factory=list)
    closed: list[tuple[str, str]] = field(default_factory=list)

    def request_done(self, upstream: str, host: str, seconds: float, outcome: str) -> None:
        self.requests.append((upstream, host, outcome))
        self.seconds.append(seconds)

    def connection_opened(self, upstream: str, host: str, protocol: str) -> None:
        self.connections.append((upstream, host, protocol))

    def connection_closed(self, upstream: str, host: str) -> None:
        self.closed.append((upstream, host))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_waits_count_wall_time_with_a_request_outstanding_not_the_sum_of_requests() -> None:
    clock = Clock()
    waits = ReviewWaits(clock)
    waits.begin("registry", "ghcr.io")  # t=0: two requests at once, both answered at t=1
    waits.begin("registry", "ghcr.io")
    clock.now = 1.0
    waits.end("registry", "ghcr.io")
    waits.end("registry", "ghcr.io")
    clock.now = 3.0  # nothing outstanding from 1 to 3
    waits.begin("registry", "ghcr.io")
    clock.now = 3.5
    waits.end("registry", "ghcr.io")
    waits.begin("rekor", "rekor.example")
    clock.now = 4.0
    assert waits.seconds("registry", "ghcr.io") == pytest.approx(1.5)
    assert waits.seconds("rekor", "rekor.example") == pytest.approx(0.5)  # still outstanding: counts until now
    assert waits.summary() == [
        {"upstream": "registry", "host": "ghcr.io", "waitMs": 1500.0, "requests": 3},
        {"upstream": "rekor", "host": "rekor.example", "waitMs": 500.0, "requests": 1},
    ]
    assert len(waits.summary(limit=1)) == 1


def test_an_unmatched_end_changes_nothing() -> None:
    waits = ReviewWaits(Clock())
    waits.end("registry", "never.begun")
    assert waits.summary() == []


@pytest.mark.parametrize(("status", "outcome"), [
    (200, "ok"), (307, "redirect"), (401, "denied"), (403, "denied"), (404, "not_found"),
    (429, "rate_limited"), (400, "client_error"), (503, "server_error"),
])
def test_statuses_have_a_bounded_outcome(status: int, outcome: str) -> None:
    assert outcome_of_status(status) == outcome


def test_errors_have_a_bounded_outcome() -> None:
    assert outcome_of_error(httpx.ReadTimeout("slow")) == "timeout"
    assert outcome_of_error(TimeoutError()) == "timeout"
    assert outcome_of_error(EgressRefusedError("no", host="10.0.0.1", rule="public only")) == "refused"
    assert outcome_of_error(httpx.ConnectError("refused")) == "error"
    assert outcome_of_error(asyncio.CancelledError()) == "cancelled"


async def test_every_exchange_is_observed_once_when_its_response_is_closed() -> None:
    recorder = Recorder()

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404 if "missing" in request.url.path else 200, content=b"{}")

    transport = ObservedTransport(httpx.MockTransport(answer), "registry", recorder)
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get("https://ghcr.io/v2/a/manifests/missing")
        async with client.stream("GET", "https://ghcr.io:5000/v2/a/manifests/x") as response:
            await response.aread()
    assert recorder.requests == [("registry", "ghcr.io", "not_found"), ("registry", "ghcr.io:5000", "ok")]


async def test_a_failed_exchange_is_observed_with_its_error() -> None:
    recorder = Recorder()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    transport = ObservedTransport(httpx.MockTransport(refuse), "rekor", recorder)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("https://rekor.example/api/v1/log")
    assert recorder.requests == [("rekor", "rekor.example", "error")]


async def test_a_streamed_response_counts_until_it_is_closed() -> None:
    recorder = Recorder()
    release = asyncio.Event()

    class Slow(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            await release.wait()
            yield b"late"

    transport = ObservedTransport(httpx.MockTransport(lambda r: httpx.Response(200, stream=Slow())), "registry",
                                  recorder)
    with review_waits() as waits:
        async with httpx.AsyncClient(transport=transport) as client:
            async with client.stream("GET", "https://ghcr.io/v2/a/blobs/b") as response:
                assert recorder.requests == []  # headers are in, the body is not
                await asyncio.sleep(0.05)
                release.set()
                assert await response.aread() == b"late"
    assert recorder.requests == [("registry", "ghcr.io", "ok")] and recorder.seconds[0] >= 0.05
    assert waits.summary()[0]["waitMs"] >= 50


async def test_tasks_started_by_a_review_count_for_it_and_only_for_it() -> None:
    transport = ObservedTransport(httpx.MockTransport(lambda r: httpx.Response(200)), "registry")

    async def fetch(host: str) -> None:
        async with httpx.AsyncClient(transport=transport) as client:
            await client.get(f"https://{host}/v2/")

    async def review(host: str) -> list[dict[str, object]]:
        with review_waits() as waits:
            await asyncio.gather(*(asyncio.ensure_future(fetch(host)) for _ in range(3)))
            return waits.summary()

    first, second = await asyncio.gather(review("one.example"), review("two.example"))
    assert [(r["host"], r["requests"]) for r in first] == [("one.example", 3)]
    assert [(r["host"], r["requests"]) for r in second] == [("two.example", 3)]
    assert current_waits() is None
    await fetch("outside.example")  # no review: nothing to count, nothing breaks


def test_synchronous_requests_are_observed_too() -> None:
    recorder = Recorder()
    transport = ObservedSyncTransport(httpx.MockTransport(lambda r: httpx.Response(304)), "tuf", recorder)
    with httpx.Client(transport=transport) as client:
        client.get("https://tuf.example/root.json")
    assert recorder.requests == [("tuf", "tuf.example", "redirect")]


def test_a_deferred_observer_reports_to_its_target_once_set() -> None:
    recorder = Recorder()
    deferred = DeferredObserver()
    transport = ObservedSyncTransport(httpx.MockTransport(lambda r: httpx.Response(200)), "tuf", deferred)
    with httpx.Client(transport=transport) as client:
        client.get("https://tuf.example/1.root.json")  # before the app exists: dropped
        deferred.target = recorder
        client.get("https://tuf.example/2.root.json")
    assert recorder.requests == [("tuf", "tuf.example", "ok")]
