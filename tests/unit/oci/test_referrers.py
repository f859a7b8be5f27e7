"""Referrers lookups: API and fallback tag at once while support is unknown, then only what answers."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.unit.oci.fake_registry import FakeRegistry
from webhook.errors import RegistryError
from webhook.oci import RegistryClient, Repository
from webhook.oci.knowledge import RegistryKnowledge

pytestmark = pytest.mark.anyio

REPO = Repository("registry.test", "acme/app")


class Gate(httpx.AsyncBaseTransport):
    """Holds every request until ``expected`` have arrived, so a test sees which went out at once."""

    def __init__(self, fake: FakeRegistry, expected: int) -> None:
        self.fake, self.expected = fake, expected
        self.arrived: list[str] = []
        self.all_in = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.arrived.append(request.url.path)
        if len(self.arrived) >= self.expected:
            self.all_in.set()
        await asyncio.wait_for(self.all_in.wait(), 1)
        return self.fake.handle(request)


def kinds(paths: list[str]) -> list[str]:
    return sorted("api" if "/referrers/" in p else "tag" for p in paths)


async def test_while_support_is_unknown_the_api_and_the_fallback_tag_go_out_at_once() -> None:
    fake = FakeRegistry(referrers_api=False)
    digest = fake.put_image("acme/app")
    bundle = fake.put_referrer("acme/app", digest, b'{"b":1}')
    fake.put_fallback_index("acme/app", digest, [bundle])
    transport = Gate(fake, expected=2)  # a lookup sending one, then the other, would time out here
    async with RegistryClient(transport=transport) as client:
        found = await client.referrers(REPO, digest)
    assert kinds(transport.arrived) == ["api", "tag"]
    assert found.source == "fallback-tag" and [d.digest for d in found.descriptors] == [bundle["digest"]]


async def test_a_registry_with_the_api_is_remembered_and_asked_only_there() -> None:
    fake = FakeRegistry(referrers_api=True)
    digest = fake.put_image("acme/app")
    fake.put_referrer("acme/app", digest, b'{"b":1}')
    knowledge = RegistryKnowledge()
    async with RegistryClient(transport=fake.transport(), knowledge=knowledge) as client:
        first = await client.referrers(REPO, digest)
        before = client.request_count
        again = await client.referrers(REPO, digest)
        assert client.request_count - before == 1  # the API only
    assert first.source == again.source == "api" and len(again.descriptors) == 1
    assert knowledge.referrers_api("https://registry.test") is True


async def test_a_registry_without_the_api_is_remembered_and_asked_only_for_the_tag() -> None:
    fake = FakeRegistry(referrers_api=False)
    digest = fake.put_image("acme/app")
    async with RegistryClient(transport=fake.transport()) as client:
        await client.referrers(REPO, digest)
        fake.log.clear()
        found = await client.referrers(REPO, digest)
    assert kinds(fake.log) == ["tag"]
    assert any("remembered" in note for note in found.notes)


async def test_the_fallback_tag_failing_does_not_matter_when_the_api_answers() -> None:
    fake = FakeRegistry(referrers_api=True)
    digest = fake.put_image("acme/app")
    fake.put_referrer("acme/app", digest, b'{"b":1}')
    fake.faults[f"/manifests/{digest.replace(':', '-')}"] = lambda _r: httpx.Response(500)
    async with RegistryClient(transport=fake.transport()) as client:
        found = await client.referrers(REPO, digest)
    assert found.source == "api" and len(found.descriptors) == 1


async def test_a_failing_api_is_reported_and_the_fallback_tag_is_not_used_instead() -> None:
    fake = FakeRegistry(referrers_api=True)
    digest = fake.put_image("acme/app")
    fake.faults["/referrers/"] = lambda _r: httpx.Response(500)
    async with RegistryClient(transport=fake.transport()) as client:
        with pytest.raises(RegistryError, match="answered 500"):
            await client.referrers(REPO, digest)


async def test_a_slow_fallback_tag_does_not_hold_up_an_api_answer() -> None:
    fake = FakeRegistry(referrers_api=True)
    digest = fake.put_image("acme/app")
    fake.put_referrer("acme/app", digest, b'{"b":1}')
    tag_path = f"/manifests/{digest.replace(':', '-')}"

    class SlowTag(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith(tag_path):
                await asyncio.sleep(5)
            return fake.handle(request)

    async with RegistryClient(transport=SlowTag()) as client:
        found = await asyncio.wait_for(client.referrers(REPO, digest), 2)
    assert found.source == "api"
