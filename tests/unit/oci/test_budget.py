"""Bounded work: the per-image byte budget, concurrent fetches per image, and the process-wide request limiter."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.unit.oci.fake_registry import OCI_MANIFEST, SIMPLE_SIGNING, FakeRegistry, digest_of, dumps
from webhook.errors import InputError
from webhook.oci import (
    DigestMismatchError,
    ImageBudgetError,
    RegistryClient,
    RegistryLimits,
    Repository,
    RequestLimiter,
    SizeLimitError,
    discover_signatures,
    parse_reference,
)

pytestmark = pytest.mark.anyio
REPO = Repository("registry.test", "acme/app")
KiB = 1024


class Concurrency:
    """Wraps a FakeRegistry in an async handler that counts requests in flight per path kind."""

    def __init__(self, fake: FakeRegistry, delay: float = 0.01) -> None:
        self.fake, self.delay = fake, delay
        self.now = 0
        self.peak = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(self.delay)
            return self.fake.handle(request)
        finally:
            self.now -= 1


def blob_gets(fake: FakeRegistry) -> int:
    return sum(1 for line in fake.log if "/blobs/" in line)


async def test_an_image_with_too_much_signature_data_stops_at_its_budget() -> None:
    fake = FakeRegistry()
    digest = fake.put_image("acme/app")
    fake.put_legacy_sig("acme/app", digest, [os.urandom(200 * KiB) for _ in range(40)])  # 8 MB of "signatures"
    limits = RegistryLimits(max_image_bytes=1024 * KiB)
    ref = parse_reference(f"registry.test/acme/app@{digest}")
    async with RegistryClient(transport=fake.transport(), limits=limits) as client:
        found = await discover_signatures(client, ref)
    assert blob_gets(fake) == len(found.legacy) == 5  # what fits; the rest was refused before any request
    [overrun] = found.errors
    assert isinstance(overrun, ImageBudgetError)
    assert str(overrun).startswith(f"signature data of image {ref} exceeds the budget of 1 MiB per image: ")
    assert overrun.image == str(ref) and overrun.limit == 1024 * KiB


async def test_an_image_whose_first_signature_exceeds_the_budget_is_an_error() -> None:
    fake = FakeRegistry()
    digest = fake.put_image("acme/app")
    fake.put_legacy_sig("acme/app", digest, [os.urandom(2048 * KiB)])
    async with RegistryClient(transport=fake.transport(), limits=RegistryLimits(max_image_bytes=1024 * KiB)) as c:
        with pytest.raises(ImageBudgetError, match=r"exceeds the budget of 1 MiB per image"):
            await discover_signatures(c, parse_reference(f"registry.test/acme/app@{digest}"))
    assert blob_gets(fake) == 0


async def test_signatures_within_the_budget_cost_what_they_did() -> None:
    fake = FakeRegistry()
    digest = fake.put_image("acme/app")
    fake.put_legacy_sig("acme/app", digest, [b"sig-1", b"sig-2"])
    async with RegistryClient(transport=fake.transport()) as client:
        found = await discover_signatures(client, parse_reference(f"registry.test/acme/app@{digest}"))
        assert client.request_count == 5  # referrers API, fallback tag, .sig manifest, two payloads
    assert sorted(s.payload for s in found.legacy) == [b"sig-1", b"sig-2"] and found.errors == []


async def test_concurrent_fetches_per_image_are_bounded() -> None:
    fake = FakeRegistry()
    digest = fake.put_image("acme/app")
    payloads = [f"sig-{i}".encode() for i in range(12)]
    fake.put_legacy_sig("acme/app", digest, payloads)
    wire = Concurrency(fake)
    limits = RegistryLimits(max_concurrent_fetches=3)
    async with RegistryClient(transport=httpx.MockTransport(wire.handle), limits=limits) as client:
        found = await discover_signatures(client, parse_reference(f"registry.test/acme/app@{digest}"))
    assert sorted(s.payload for s in found.legacy) == sorted(payloads)
    assert wire.peak <= 3


async def test_a_blob_declared_larger_than_the_limit_is_not_requested() -> None:
    fake = FakeRegistry()
    digest = fake.put_image("acme/app")
    small = fake.put_blob(b"small")
    layers = [{**small, "mediaType": SIMPLE_SIGNING},
              {"mediaType": SIMPLE_SIGNING, "digest": digest_of(b"big"), "size": 5 * 1024 * KiB}]
    fake.put_manifest("acme/app", dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": layers}),
                      tag=digest.replace(":", "-") + ".sig")
    async with RegistryClient(transport=fake.transport()) as client:
        found = await discover_signatures(client, parse_reference(f"registry.test/acme/app@{digest}"))
    assert [s.payload for s in found.legacy] == [b"small"]
    assert [type(e) for e in found.errors] == [SizeLimitError]
    assert "by its descriptor, more than the limit" in str(found.errors[0])
    assert not any(digest_of(b"big") in line for line in fake.log)


async def test_content_longer_than_its_descriptor_is_not_read_past_it() -> None:
    sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(1000):
            sent.append(1)
            yield b"x" * 1024

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    async with RegistryClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(DigestMismatchError, match=r"does not match its descriptor: longer than the 10 bytes"):
            await client.get_blob(REPO, digest_of(b"0123456789"), size=10)
    assert len(sent) < 5


async def test_a_referrers_list_repeating_one_digest_costs_one_fetch() -> None:
    fake = FakeRegistry()
    digest = fake.put_image("acme/app")
    referrer = fake.put_referrer("acme/app", digest, b'{"bundle":1}')
    fake.put_fallback_index("acme/app", digest, [referrer] * 500)
    async with RegistryClient(transport=fake.transport()) as client:
        found = await discover_signatures(client, parse_reference(f"registry.test/acme/app@{digest}"))
    assert [s.bundle for s in found.bundles] == [b'{"bundle":1}']
    assert sum(1 for line in fake.log if referrer["digest"] in line) == 1


async def test_one_limiter_bounds_requests_in_flight_across_clients() -> None:
    fake = FakeRegistry()
    blobs = [fake.put_blob(f"blob-{i}".encode())["digest"] for i in range(40)]
    wire = Concurrency(fake)
    limiter = RequestLimiter(4)
    first = RegistryClient(transport=httpx.MockTransport(wire.handle), limiter=limiter)
    second = RegistryClient(transport=httpx.MockTransport(wire.handle), limiter=limiter)
    async with first, second:
        fetched = await asyncio.gather(*(
            (first if i % 2 else second).get_blob(REPO, blob) for i, blob in enumerate(blobs)
        ))
    assert fetched == [f"blob-{i}".encode() for i in range(40)]
    assert wire.peak == 4 and limiter.peak == 4 and limiter.in_flight == 0


def test_limiter_bound_must_be_positive() -> None:
    with pytest.raises(InputError, match="at least 1"):
        RequestLimiter(0)


async def test_a_signature_found_within_the_budget_still_counts() -> None:
    fake = FakeRegistry()
    digest = fake.put_image("acme/app")
    signature = fake.put_referrer("acme/app", digest, b'{"signature":1}')
    sboms = [fake.put_referrer("acme/app", digest, os.urandom(300 * KiB), predicate="https://spdx.dev/Document")
             for _ in range(10)]
    fake.put_fallback_index("acme/app", digest, [*sboms, signature])  # the signature listed last
    limits = RegistryLimits(max_image_bytes=1024 * KiB)
    async with RegistryClient(transport=fake.transport(), limits=limits) as client:
        found = await discover_signatures(client, parse_reference(f"registry.test/acme/app@{digest}"))
    assert b'{"signature":1}' in [s.bundle for s in found.bundles]
    assert len(found.bundles) < 5
    [overrun] = found.errors  # reported once, not once per refused fetch
    assert isinstance(overrun, ImageBudgetError)
    assert sum("budget" in note for note in found.notes) == 1
