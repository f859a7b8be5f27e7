from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.unit.oci.fake_registry import OCI_INDEX, FakeRegistry, digest_of, dumps
from webhook.errors import InfrastructureError, InputError, RegistryError
from webhook.oci import (
    DigestMismatchError,
    ImageNotFoundError,
    ManifestNotFoundError,
    RegistryClient,
    RegistryLimits,
    RegistryStatusError,
    RegistryTimeoutError,
    Repository,
    SizeLimitError,
    index_covers,
    parse_reference,
    platform_digests,
)

pytestmark = pytest.mark.anyio
REPO = Repository("registry.test", "acme/app")


def client_for(fake: FakeRegistry, **kwargs: object) -> RegistryClient:
    return RegistryClient(transport=fake.transport(), **kwargs)  # type: ignore[arg-type]


async def test_resolve_tag_with_one_head() -> None:
    fake = FakeRegistry()
    digest = fake.put_image("acme/app")
    async with client_for(fake) as client:
        assert await client.resolve_digest(parse_reference("registry.test/acme/app")) == digest
        assert client.request_count == 1
    assert fake.log == ["HEAD registry.test/v2/acme/app/manifests/latest"]


async def test_head_offers_index_types_first() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["accept"])
        return httpx.Response(200, headers={"Docker-Content-Digest": "sha256:" + "a" * 64})

    async with RegistryClient(transport=httpx.MockTransport(handler)) as client:
        await client.resolve_digest(parse_reference("registry.test/acme/app:v1"))
    assert seen[0].split(", ") == [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]


async def test_digest_reference_needs_no_request() -> None:
    fake = FakeRegistry()
    async with client_for(fake) as client:
        d = "sha256:" + "1" * 64
        assert await client.resolve_digest(parse_reference(f"registry.test/acme/app:v1@{d}")) == d
        assert client.request_count == 0


async def test_missing_digest_header_falls_back_to_get_and_hashes() -> None:
    fake = FakeRegistry(send_digest_header=False)
    digest = fake.put_image("acme/app")
    async with client_for(fake) as client:
        assert await client.resolve_digest(parse_reference("registry.test/acme/app")) == digest
        assert client.request_count == 2


async def test_unknown_tag_is_a_verdict_not_an_outage() -> None:
    async with client_for(FakeRegistry()) as client:
        with pytest.raises(ImageNotFoundError) as caught:
            await client.resolve_digest(parse_reference("registry.test/acme/app:nope"))
    assert str(caught.value) == "image registry.test/acme/app:nope does not exist (registry registry.test answered 404)"
    assert not isinstance(caught.value, InfrastructureError)  # onError must not turn a typo into an admission


async def test_unknown_tag_without_digest_header_is_a_verdict_too() -> None:
    async with client_for(FakeRegistry(send_digest_header=False)) as client:
        with pytest.raises(ImageNotFoundError, match=r"does not exist \(registry registry.test answered 404\)"):
            await client.resolve_digest(parse_reference("registry.test/acme/app:nope"))


async def test_missing_manifest_by_digest_stays_a_registry_error() -> None:
    # A digest the caller got from the registry (a referrer, an index child) vanishing is the registry's fault.
    async with client_for(FakeRegistry()) as client:
        with pytest.raises(ManifestNotFoundError, match=r"answered 404 to GET manifest"):
            await client.get_manifest(REPO, "sha256:" + "1" * 64)


async def test_get_manifest_checks_digest() -> None:
    fake = FakeRegistry()
    digest = fake.put_image("acme/app")
    other = fake.put_image("acme/app", tag=None, seed=b"other")
    fake.manifests[("acme/app", digest)] = fake.manifests[("acme/app", other)]  # registry serves the wrong bytes
    async with client_for(fake) as client:
        with pytest.raises(DigestMismatchError) as caught:
            await client.get_manifest(REPO, digest)
    assert caught.value.expected == digest and caught.value.actual == other
    assert "does not match its digest" in str(caught.value)


async def test_get_manifest_size_bound() -> None:
    fake = FakeRegistry()
    digest = fake.put_image("acme/app")
    async with client_for(fake, limits=RegistryLimits(max_manifest_bytes=100)) as client:
        with pytest.raises(SizeLimitError, match=r"more than the limit of 100"):
            await client.get_manifest(REPO, digest)


async def test_size_bound_without_content_length() -> None:
    async def stream() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 1000

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=stream())

    async with RegistryClient(transport=httpx.MockTransport(handler), limits=RegistryLimits(max_blob_bytes=5000)) as c:
        with pytest.raises(SizeLimitError, match=r"larger than the limit of 5000"):
            await c.get_blob(REPO, "sha256:" + "0" * 64)


async def test_too_many_layers() -> None:
    fake = FakeRegistry()
    layers = [{"mediaType": "x", "digest": "sha256:" + "0" * 64, "size": 1}] * 3
    digest = fake.put_manifest("acme/app", dumps({"schemaVersion": 2, "layers": layers}))
    async with client_for(fake, limits=RegistryLimits(max_layers=2)) as client:
        with pytest.raises(SizeLimitError, match=r"lists 3 layers, more than the limit of 2"):
            await client.get_manifest(REPO, digest)


async def test_malformed_manifest() -> None:
    fake = FakeRegistry()
    digest = fake.put_manifest("acme/app", b"{not json")
    async with client_for(fake) as client:
        with pytest.raises(RegistryError, match=r"not valid JSON"):
            await client.get_manifest(REPO, digest)


async def test_blob_redirects_to_cdn_without_credentials() -> None:
    fake = FakeRegistry(blob_redirects=2)
    blob = fake.put_blob(b"payload")
    async with client_for(fake) as client:
        assert await client.get_blob(REPO, blob["digest"]) == b"payload"
        assert client.request_count == 3
    assert [line.split()[1].split("/")[0] for line in fake.log] == ["registry.test", "cdn.test", "cdn.test"]


async def test_blob_redirect_limit() -> None:
    fake = FakeRegistry(blob_redirects=10)
    blob = fake.put_blob(b"payload")
    async with client_for(fake, limits=RegistryLimits(max_redirects=3)) as client:
        with pytest.raises(RegistryError, match=r"redirected GET blob .* more than 3 times"):
            await client.get_blob(REPO, blob["digest"])


async def test_blob_digest_mismatch() -> None:
    fake = FakeRegistry()
    blob = fake.put_blob(b"payload")
    fake.blobs[blob["digest"]] = b"tampered"
    async with client_for(fake) as client:
        with pytest.raises(
            DigestMismatchError, match=f"asked for {blob['digest']}, content hashes to {digest_of(b'tampered')}"
        ):
            await client.get_blob(REPO, blob["digest"])


async def test_server_error_names_registry_operation_and_status() -> None:
    fake = FakeRegistry()
    fake.faults["manifests/"] = lambda _r: httpx.Response(500)
    async with client_for(fake) as client:
        with pytest.raises(RegistryStatusError) as caught:
            await client.get_tag_manifest(REPO, "sha256-abc.sig")
    assert str(caught.value) == "registry registry.test answered 500 to GET manifest sha256-abc.sig of acme/app"
    assert caught.value.status == 500


async def test_timeout_and_connection_errors() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with RegistryClient(transport=httpx.MockTransport(slow)) as client:
        with pytest.raises(
            RegistryTimeoutError, match=r"registry registry.test did not answer HEAD manifest v1 of acme/app"
        ):
            await client.resolve_digest(parse_reference("registry.test/acme/app:v1"))

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with RegistryClient(transport=httpx.MockTransport(refused)) as client:
        with pytest.raises(RegistryError, match=r"could not be reached for GET blob .*connection refused"):
            await client.get_blob(REPO, "sha256:" + "0" * 64)


async def test_operation_timeout_bounds_a_slow_transport() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    limits = RegistryLimits(operation_timeout=0.05)
    async with RegistryClient(transport=httpx.MockTransport(handler), limits=limits) as client:
        with pytest.raises(RegistryTimeoutError):
            await client.get_tag_manifest(REPO, "v1")


async def test_tag_404_is_none() -> None:
    async with client_for(FakeRegistry()) as client:
        assert await client.get_tag_manifest(REPO, "sha256-x.sig") is None


async def test_concurrent_fetches_of_one_digest_share_a_request() -> None:
    fake = FakeRegistry()
    blob = fake.put_blob(b"shared")
    async with client_for(fake) as client:
        results = await asyncio.gather(*(client.get_blob(REPO, blob["digest"]) for _ in range(5)))
        assert results == [b"shared"] * 5
        assert client.request_count == 1


async def test_invalid_digest_is_input_error() -> None:
    async with client_for(FakeRegistry()) as client:
        with pytest.raises(InputError):
            await client.get_manifest(REPO, "latest")


# --- addressing -------------------------------------------------------------------------------


async def test_http_only_for_allowed_loopback() -> None:
    async with RegistryClient(allow_http=True) as client:
        assert client.base_url("127.0.0.1:5000") == "http://127.0.0.1:5000"
        assert client.base_url("127.3.4.5:80") == "http://127.3.4.5:80"
        assert client.base_url("localhost:5000") == "http://localhost:5000"
        assert client.base_url("[::1]:5000") == "http://[::1]:5000"
        assert client.base_url("10.0.0.1:5000") == "https://10.0.0.1:5000"
        assert client.base_url("ghcr.io") == "https://ghcr.io"
        assert client.base_url("index.docker.io") == "https://registry-1.docker.io"
    async with RegistryClient() as client:
        assert client.base_url("127.0.0.1:5000") == "https://127.0.0.1:5000"
    async with RegistryClient(insecure_registries=["reg.lan:5000"]) as client:
        assert client.base_url("reg.lan:5000") == "http://reg.lan:5000"


async def test_mirrors() -> None:
    async with RegistryClient(allow_http=True, mirrors={"docker.io": "http://127.0.0.1:5000/"}) as client:
        assert client.base_url("index.docker.io") == "http://127.0.0.1:5000"
    with pytest.raises(InputError, match=r"plain http"):
        RegistryClient(mirrors={"docker.io": "http://mirror.example"})
    fake = FakeRegistry(host="mirror.test")
    digest = fake.put_image("library/nginx")
    async with RegistryClient(transport=fake.transport(), mirrors={"docker.io": "https://mirror.test"}) as client:
        assert await client.resolve_digest(parse_reference("nginx")) == digest
    assert fake.log == ["HEAD mirror.test/v2/library/nginx/manifests/latest"]


# --- multi-arch -------------------------------------------------------------------------------


async def test_platform_digests_of_an_index() -> None:
    fake = FakeRegistry()
    amd = fake.put_image("acme/app", tag=None, seed=b"amd64")
    arm = fake.put_image("acme/app", tag=None, seed=b"arm64")
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": amd,
                "size": 1,
                "platform": {"os": "linux", "architecture": "amd64"},
            },
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": arm,
                "size": 1,
                "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
            },
        ],
    }
    digest = fake.put_manifest("acme/app", json.dumps(index).encode(), OCI_INDEX, tag="multi")
    async with client_for(fake) as client:
        assert await client.resolve_digest(parse_reference("registry.test/acme/app:multi")) == digest
        manifest = await client.get_manifest(REPO, digest)
        single = await client.get_manifest(REPO, amd)
    assert manifest.is_index
    assert [(p.digest, str(p.platform)) for p in platform_digests(manifest)] == [
        (amd, "linux/amd64"),
        (arm, "linux/arm64/v8"),
    ]
    assert index_covers(manifest, arm) and not index_covers(manifest, digest)
    assert platform_digests(single) == []
