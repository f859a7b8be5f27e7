"""The server's upstream clients: shared pools and registry memory, own tokens, Rekor lookups started early."""

from __future__ import annotations

import asyncio
import hashlib
import json

import httpx
import pytest

from tests.sigstore_kit import SigstoreKit
from tests.unit.oci.fake_registry import SIMPLE_SIGNING, FakeRegistry, dumps
from webhook.decision.clients import UpstreamClients, build_upstream_clients
from webhook.oci import Credentials, CredentialStore, EgressTransport, RequestLimiter, parse_reference
from webhook.oci.knowledge import RegistryKnowledge
from webhook.rekor import RekorClient
from webhook.verify.trustroot import TrustedRoot

pytestmark = pytest.mark.anyio

@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return SigstoreKit.create(seed_entries=3)


def clients(fake: FakeRegistry, rekor: httpx.MockTransport, root: TrustedRoot | None = None) -> UpstreamClients:
    limiter = RequestLimiter(8)
    return UpstreamClients(limiter, fake.transport(), RegistryKnowledge(),
                           RekorClient(transport=rekor, limiter=limiter), trust_root=lambda: root)


def push_unbundled(fake: FakeRegistry, kit: SigstoreKit, digest: str) -> tuple[str, bytes]:
    """A keyless legacy signature pushed without its bundle annotation (Rekor must be asked); its tag, payload."""
    sig = kit.sign_image_legacy(digest, tlog=True)
    annotations = {k: v for k, v in sig.annotations.items() if k != "dev.sigstore.cosign/bundle"}
    layer = {**fake.put_blob(sig.payload), "mediaType": SIMPLE_SIGNING, "annotations": annotations}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": fake.put_blob(b"{}"), "layers": [layer]}
    tag = digest.replace(":", "-") + ".sig"
    fake.put_manifest("acme/app", dumps(manifest), tag=tag)
    return tag, sig.payload


async def test_a_sig_manifest_read_through_its_tag_starts_the_rekor_lookup_it_will_need(kit: SigstoreKit) -> None:
    fake = FakeRegistry()
    digest = fake.put_image("acme/app")
    tag, payload = push_unbundled(fake, kit, digest)
    searches: list[bytes] = []

    def rekor(request: httpx.Request) -> httpx.Response:
        searches.append(request.content)
        return httpx.Response(404)

    upstream = clients(fake, httpx.MockTransport(rekor), TrustedRoot.from_json(kit.trusted_root_json()))
    repo = parse_reference(f"{fake.host}/acme/app")
    await upstream.registry.get_tag_manifest(repo, tag)
    await asyncio.sleep(0.01)
    assert len(searches) == 1
    proposed = json.loads(searches[0])["entries"][0]["spec"]
    assert proposed["data"]["hash"]["value"] == hashlib.sha256(payload).hexdigest()  # from the layer digest
    await upstream.registry.get_tag_manifest(repo, "latest")
    await asyncio.sleep(0.01)
    assert len(searches) == 1  # only .sig manifests
    assert upstream.cache_stats()["rekor_entries"]["misses"] == 1
    await upstream.aclose()


async def test_no_lookup_ahead_of_time_without_a_trust_root_or_for_another_roots_signature(kit: SigstoreKit) -> None:
    fake = FakeRegistry()
    digest = fake.put_image("acme/app")
    tag, _ = push_unbundled(fake, kit, digest)
    searches: list[bytes] = []

    def rekor(request: httpx.Request) -> httpx.Response:
        searches.append(request.content)
        return httpx.Response(404)

    repo = parse_reference(f"{fake.host}/acme/app")
    for root in (None, TrustedRoot.from_json(SigstoreKit.create(seed_entries=1).trusted_root_json())):
        upstream = clients(fake, httpx.MockTransport(rekor), root)
        await upstream.registry.get_tag_manifest(repo, tag)
        await asyncio.sleep(0.01)
        await upstream.aclose()
    assert searches == []


async def test_clients_per_credentials_share_the_registry_memory_not_their_tokens() -> None:
    fake = FakeRegistry(auth="bearer")
    fake.put_image("acme/app")
    ref = parse_reference(f"{fake.host}/acme/app")
    upstream = clients(fake, httpx.MockTransport(lambda r: httpx.Response(404)))
    await upstream.registry.resolve_digest(ref)
    other = upstream.client_for(CredentialStore({"elsewhere.test": Credentials("u", "p")}))
    await other.resolve_digest(ref)
    assert other.request_count == 2  # token, then the request: the realm was known, no 401
    assert fake.tokens_issued == 2
    stats = upstream.cache_stats()["registry_tokens"]
    assert stats["misses"] >= 2 and set(stats) == {"hits", "misses", "size"}
    await other.aclose()
    await upstream.aclose()


async def test_the_server_builds_one_guarded_pool_with_http2_and_the_per_host_bound() -> None:
    upstream = build_upstream_clients(max_in_flight=48, max_per_host=7)
    assert isinstance(upstream.transport, EgressTransport)
    assert upstream.transport.gates.limit == 7
    assert upstream.limiter.max_in_flight == 48 and upstream.rekor.limiter is upstream.limiter
    assert upstream.client_for(None).knowledge is upstream.knowledge
    await upstream.aclose()
