"""``read_body``: the size, JSON-value and time bounds, checked as chunks arrive (chunked or not)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from tests.unit.admission.reviews import pod_spec, review_body, workload
from webhook.admission import MAX_BODY, MAX_JSON_VALUES, UnreadableBodyError, parse_review, read_body

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Source:
    """An async chunk stream that records how much of it was consumed."""

    def __init__(self, chunk: bytes, count: int, *, pause: float = 0.0) -> None:
        self.chunk, self.count, self.pause = chunk, count, pause
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            if self.pause:
                await asyncio.sleep(self.pause)
            self.sent += 1
            yield self.chunk


async def test_a_review_in_chunks_reads_whole() -> None:
    body = review_body(workload("Pod", pod_spec("registry.example.com/app:v1")))
    pieces = [body[i:i + 7] for i in range(0, len(body), 7)]

    async def chunks() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    read = await read_body(chunks(), declared_length=None, timeout=5)
    assert bytes(read) == body and parse_review(read).uid


async def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    source = Source(b"x", 1)
    with pytest.raises(UnreadableBodyError, match=r"body of 67108864 bytes is larger than the limit") as err:
        await read_body(source.__aiter__(), declared_length=str(64 * 1024 * 1024), timeout=5)
    assert err.value.code == 413 and source.sent == 0


async def test_an_endless_chunked_body_stops_at_the_limit() -> None:
    chunk = b" " * 65536
    source = Source(chunk, 512 * 16)  # 512 MiB if it were read whole
    with pytest.raises(UnreadableBodyError, match=r"larger than the limit of 16777216 bytes") as err:
        await read_body(source.__aiter__(), declared_length=None, timeout=30)
    assert err.value.code == 413 and source.sent * len(chunk) <= MAX_BODY + len(chunk)


async def test_a_body_of_tiny_json_values_is_refused_before_parsing() -> None:
    # 16 MiB of "[]," would cost orjson over a second with the GIL held; refused while streaming.
    source = Source(b"[]," * 20000, 1000)
    with pytest.raises(UnreadableBodyError, match=rf"more than {MAX_JSON_VALUES} JSON values") as err:
        await read_body(source.__aiter__(), declared_length=None, timeout=30)
    assert err.value.code == 413 and source.sent <= MAX_JSON_VALUES // 40000 + 1


async def test_a_large_real_review_is_within_the_value_bound() -> None:
    # ~3 MiB, the most the API server sends for one object: far below the bound.
    containers = {"containers": [{"name": f"c{i}", "image": f"registry.example.com/app{i % 50}:v1",
                                  "env": [{"name": f"VAR_{j}", "value": "x" * 120} for j in range(20)]}
                                 for i in range(1000)]}
    body = review_body(workload("Deployment", containers), "Deployment")
    assert len(body) > 2 * 1024 * 1024
    read = await read_body(Source(body, 1).__aiter__(), declared_length=str(len(body)), timeout=5)
    assert orjson.loads(read)["request"]["uid"]


async def test_a_body_that_stalls_is_refused_after_the_timeout() -> None:
    source = Source(b"{", 100, pause=0.1)
    started = asyncio.get_running_loop().time()
    with pytest.raises(UnreadableBodyError, match=r"body not received within 0.3 s \(\d+ bytes arrived\)") as err:
        await read_body(source.__aiter__(), declared_length="100", timeout=0.3)
    assert err.value.code == 408 and asyncio.get_running_loop().time() - started < 1
