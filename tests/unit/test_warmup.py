"""Warm-up: which registries the policies name, what a warm registry saves, and that it never holds too long."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from tests.sigstore_kit import SigstoreKit
from tests.unit.oci.fake_registry import FakeRegistry
from webhook.decision.clients import UpstreamClients
from webhook.oci import RegistryClient, RequestLimiter, parse_reference
from webhook.oci.knowledge import RegistryKnowledge
from webhook.policy.loader import load_text
from webhook.policy.matching import PolicySet
from webhook.rekor import RekorClient
from webhook.verify.trustroot import TrustedRoot
from webhook.warmup import policy_registries, prepare_locally, warm_registry, warm_server, warm_up

pytestmark = pytest.mark.anyio

POLICY = """
apiVersion: policy.signet.dev/v1alpha1
kind: {kind}
metadata: {{name: {name}{namespace}}}
spec:
  images: [{globs}]
  authorities: [{{name: a, keyless: {{identities: [{{issuer: "https://i", subject: "s"}}]}}}}]
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def policy_set(*documents: tuple[str, str, list[str]]) -> PolicySet:
    text = "\n---\n".join(
        POLICY.format(kind=kind, name=name, namespace=", namespace: team" if kind == "ImagePolicy" else "",
                      globs=", ".join(f'{{glob: "{g}"}}' for g in globs))
        for kind, name, globs in documents)
    result = load_text(text)
    assert not result.problems, result.problems
    return PolicySet.from_load_result(result)


def test_the_registries_are_the_literal_ones_cluster_policies_first() -> None:
    policies = policy_set(
        ("ImagePolicy", "tenant", ["tenant.example/**", "ghcr.io/team/*"]),
        ("ClusterImagePolicy", "b", ["ghcr.io/acme/**", "*.gcr.io/**", "**"]),
        ("ClusterImagePolicy", "a", ["docker.io/library/*", "GHCR.IO/other/x"]),
    )
    assert policy_registries(policies) == ["index.docker.io", "ghcr.io", "tenant.example"]
    assert policy_registries(policies, limit=1) == ["index.docker.io"]
    assert policy_registries(PolicySet()) == []


async def test_a_warm_registry_costs_the_first_review_no_challenge() -> None:
    fake = FakeRegistry(auth="bearer")
    fake.put_image("acme/app")
    async with RegistryClient(transport=fake.transport()) as client:
        result = await warm_registry(client, fake.host, connections=1)
        assert result.startswith("http/1.1")  # a mock transport negotiates nothing
        before = client.request_count
        await client.resolve_digest(parse_reference(f"{fake.host}/acme/app"))
        assert client.request_count - before == 2  # a token for the repository, then the request: no 401
    assert [line.split()[1] for line in fake.log[:3]] == ["registry.test/v2/", "auth.test/token", "registry.test/v2/"]


async def test_an_unreachable_registry_is_reported_not_raised() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with RegistryClient(transport=httpx.MockTransport(down)) as client:
        assert (await warm_registry(client, "down.example", connections=3)).startswith("failed: ")


async def test_warm_up_does_everything_at_once_and_reports_it() -> None:
    fake = FakeRegistry()
    prepared: list[str] = []
    rekor_seen: list[str] = []

    def rekor(request: httpx.Request) -> httpx.Response:
        rekor_seen.append(request.url.path)
        return httpx.Response(200, json={"treeSize": 1})

    async def registries() -> list[str]:
        return [fake.host]

    async def rekor_url() -> str:
        return "https://rekor.example"

    async with RegistryClient(transport=fake.transport()) as client, \
            RekorClient(transport=httpx.MockTransport(rekor)) as rekor_client:
        report = await warm_up(registry=client, registries=registries, connections=2, timeout=5, rekor=rekor_client,
                               rekor_url=rekor_url, prepare=lambda: prepared.append(threading.current_thread().name))
    assert report.registries == {fake.host: "http/1.1 ×2 (404)"} and report.rekor == "ok"  # the fake has no /v2/
    assert not report.timed_out and rekor_seen == ["/api/v1/log"]
    assert prepared and prepared[0] != threading.main_thread().name  # CPU work: not on the event loop


async def test_warm_up_gives_up_at_its_timeout_and_says_so() -> None:
    async def never() -> list[str]:
        await asyncio.Event().wait()
        return []

    fake = FakeRegistry()
    async with RegistryClient(transport=fake.transport()) as client:
        started = time.monotonic()
        report = await warm_up(registry=client, registries=never, connections=1, timeout=0.2)
    assert report.timed_out and report.registries == {}
    assert time.monotonic() - started < 1


async def test_a_failing_preparation_is_logged_and_the_rest_still_warms(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeRegistry()

    def broken() -> None:
        raise RuntimeError("boom")

    async def registries() -> list[str]:
        return [fake.host]

    async with RegistryClient(transport=fake.transport()) as client:
        report = await warm_up(registry=client, registries=registries, connections=1, timeout=5, prepare=broken)
    assert report.registries[fake.host].startswith("http/1.1")
    assert "warm-up step failed unexpectedly" in caplog.text


def test_local_preparation_uses_the_engines_warm_hook_when_it_has_one() -> None:
    class Engine:
        warmed = 0

        def warm(self) -> None:
            self.warmed += 1

    engine = Engine()
    prepare_locally(None, engine)
    assert engine.warmed == 1
    prepare_locally(TrustedRoot.from_json(SigstoreKit.create(seed_entries=1).trusted_root_json()), object())


async def test_with_network_warm_up_off_only_the_local_part_runs() -> None:
    fake = FakeRegistry()
    upstream = UpstreamClients(RequestLimiter(4), fake.transport(), RegistryKnowledge(),
                               RekorClient(transport=httpx.MockTransport(lambda r: httpx.Response(500))))
    prepared: list[object] = []

    class Engine:
        def warm(self) -> None:
            prepared.append(self)

    root = TrustedRoot.from_json(SigstoreKit.create(seed_entries=1).trusted_root_json())
    report = await warm_server(clients=upstream, policies=lambda: policy_set(
        ("ClusterImagePolicy", "a", [f"{fake.host}/**"])), settled=lambda: True, root=lambda: root,
        engine=Engine(), connections=2, timeout=0)
    assert report.registries == {} and report.rekor is None and len(prepared) == 1
    assert fake.log == []  # no request at all
    await upstream.aclose()
