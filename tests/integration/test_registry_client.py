"""The registry client and signature discovery against Debian's docker-registry (no referrers API)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

import pytest

from tests.integration.conftest import BASIC_USER, TOKEN_USER
from tests.integration.registry import (
    OCI_INDEX,
    OCI_MANIFEST,
    LocalRegistry,
    canonical_json,
    free_port,
    silent_server,
    status_server,
)
from webhook.errors import RegistryError
from webhook.oci import (
    Credentials,
    CredentialStore,
    DigestMismatchError,
    EgressTransport,
    ImageNotFoundError,
    RegistryAuthError,
    RegistryClient,
    RegistryLimits,
    RegistryStatusError,
    RegistryTimeoutError,
    RequestLimiter,
    SizeLimitError,
    discover_signatures,
    index_covers,
    parse_reference,
    platform_digests,
)

pytestmark = pytest.mark.anyio

SIG_ANNOTATIONS = {"dev.cosignproject.cosign/signature": "MEUCIQ==", "dev.sigstore.cosign/certificate": "PEM"}


def payload_for(digest: str) -> bytes:
    return canonical_json(
        {
            "critical": {
                "identity": {"docker-reference": "x"},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    )


async def test_resolve_tag_by_head_and_digest_without_request(registry: LocalRegistry) -> None:
    digest = registry.push_random_image("resolve/app", "v1")
    async with RegistryClient(allow_http=True) as client:
        ref = parse_reference(f"{registry.host}/resolve/app:v1")
        assert await client.resolve_digest(ref) == digest
        assert client.request_count == 1
        assert await client.resolve_digest(ref.with_digest(digest)) == digest
        assert client.request_count == 1
        with pytest.raises(ImageNotFoundError) as caught:
            await client.resolve_digest(parse_reference(f"{registry.host}/resolve/app:nope"))
        with pytest.raises(ImageNotFoundError):  # a repository the registry has never heard of (NAME_UNKNOWN)
            await client.resolve_digest(parse_reference(f"{registry.host}/never/pushed:v1"))
    assert str(caught.value) == (
        f"image {registry.host}/resolve/app:nope does not exist (registry {registry.host} answered 404)"
    )
    assert not isinstance(caught.value, RegistryError)


async def test_discover_legacy_signature_by_digest(registry: LocalRegistry) -> None:
    digest = registry.push_random_image("legacy/app")
    registry.push_legacy_signature("legacy/app", digest, [(payload_for(digest), SIG_ANNOTATIONS)])
    async with RegistryClient(allow_http=True) as client:
        ref = parse_reference(f"{registry.host}/legacy/app@{digest}")
        assert await client.resolve_digest(ref) == digest
        found = await discover_signatures(client, ref)
        first = client.request_count
        again = await discover_signatures(client, ref)
        second = client.request_count - first
    assert [s.payload for s in found.legacy] == [payload_for(digest)]
    assert found.legacy[0].annotations == SIG_ANNOTATIONS
    assert found.bundles == [] and found.errors == [] and again.legacy == found.legacy
    assert any("referrers API not supported" in n for n in found.notes)
    # referrers API (404), fallback tag (404), .sig manifest, payload blob; then the API is skipped
    assert (first, second) == (4, 3)


async def test_discover_bundle_via_referrers_fallback_tag(registry: LocalRegistry) -> None:
    digest = registry.push_random_image("bundle/app")
    bundle = json.dumps({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}).encode()
    referrer = registry.push_bundle_referrer("bundle/app", digest, bundle)
    registry.push_legacy_signature("bundle/app", digest, [(payload_for(digest), SIG_ANNOTATIONS)])
    async with RegistryClient(allow_http=True) as client:
        found = await discover_signatures(client, parse_reference(f"{registry.host}/bundle/app@{digest}"))
    assert [(s.bundle, s.manifest_digest, s.source) for s in found.bundles] == [
        (bundle, referrer, "referrers-fallback-tag")
    ]
    assert found.bundles[0].predicate_type == "https://sigstore.dev/cosign/sign/v1"
    assert len(found.legacy) == 1
    assert [type(s).__name__ for s in found.signatures] == ["BundleSignature", "LegacySignature"]


async def test_unsigned_image_has_no_signatures(registry: LocalRegistry) -> None:
    digest = registry.push_random_image("unsigned/app")
    async with RegistryClient(allow_http=True) as client:
        found = await discover_signatures(client, parse_reference(f"{registry.host}/unsigned/app@{digest}"))
    assert len(found) == 0 and found.errors == []
    assert any("not found" in n for n in found.notes)


async def test_docker_media_types_and_multi_arch_index(registry: LocalRegistry) -> None:
    amd = registry.push_random_image("multi/app", None)
    arm = registry.push_random_image("multi/app", None)
    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": d, "size": 100, "platform": {"os": "linux", "architecture": a}}
                for d, a in ((amd, "amd64"), (arm, "arm64"))
            ],
        }
    )
    index_digest = registry.push_manifest("multi/app", "v2", index, OCI_INDEX)
    # cosign with COSIGN_DOCKER_MEDIA_TYPES=1 writes Docker schema 2 signature manifests.
    payload = payload_for(index_digest)
    config = canonical_json({"rootfs": {"type": "layers", "diff_ids": []}})
    sig = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": registry.push_blob("multi/app", config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                    "digest": registry.push_blob("multi/app", payload),
                    "size": len(payload),
                    "annotations": SIG_ANNOTATIONS,
                }
            ],
        }
    )
    registry.push_manifest(
        "multi/app",
        index_digest.replace(":", "-") + ".sig",
        sig,
        "application/vnd.docker.distribution.manifest.v2+json",
    )
    async with RegistryClient(allow_http=True) as client:
        ref = parse_reference(f"{registry.host}/multi/app:v2")
        assert await client.resolve_digest(ref) == index_digest  # the index, not a platform manifest
        found = await discover_signatures(client, ref.with_digest(index_digest))
        fetched = await client.get_manifest(ref, index_digest)
    assert [s.payload for s in found.legacy] == [payload]
    assert [p.digest for p in platform_digests(fetched)] == [amd, arm]
    assert index_covers(fetched, arm)


async def test_basic_auth(basic_registry: LocalRegistry) -> None:
    digest = basic_registry.push_random_image("private/app")
    basic_registry.push_legacy_signature("private/app", digest, [(payload_for(digest), SIG_ANNOTATIONS)])
    ref = parse_reference(f"{basic_registry.host}/private/app@{digest}")
    async with RegistryClient(allow_http=True) as client:
        with pytest.raises(RegistryAuthError) as caught:
            await discover_signatures(client, ref)
    assert f"registry {basic_registry.host} answered 401" in str(caught.value)
    assert "no credentials are configured" in str(caught.value)
    creds = CredentialStore.from_docker_config(
        {"auths": {f"http://{basic_registry.host}": {"username": BASIC_USER[0], "password": BASIC_USER[1]}}}
    )
    async with RegistryClient(allow_http=True, credentials=creds) as client:
        found = await discover_signatures(client, ref)
    assert len(found.legacy) == 1
    wrong = CredentialStore({basic_registry.host: Credentials(BASIC_USER[0], "wrong")})
    async with RegistryClient(allow_http=True, credentials=wrong) as client:
        with pytest.raises(RegistryAuthError, match=r"were refused"):
            await client.resolve_digest(parse_reference(f"{basic_registry.host}/private/app:latest"))


async def test_token_auth_anonymous(token_registry: LocalRegistry) -> None:
    digest = token_registry.push_random_image("tok/app")
    token_registry.push_legacy_signature("tok/app", digest, [(payload_for(digest), SIG_ANNOTATIONS)])
    assert token_registry.token is not None
    before = len(token_registry.token.requests)
    async with RegistryClient(allow_http=True) as client:
        ref = parse_reference(f"{token_registry.host}/tok/app:latest")
        assert await client.resolve_digest(ref) == digest
        found = await discover_signatures(client, ref.with_digest(digest))
    assert len(found.legacy) == 1
    assert len(token_registry.token.requests) - before == 1  # one token, reused for every request


async def test_token_auth_with_login(token_registry_with_login: LocalRegistry) -> None:
    reg = token_registry_with_login
    digest = reg.push_random_image("login/app")
    ref = parse_reference(f"{reg.host}/login/app:latest")
    async with RegistryClient(allow_http=True) as client:
        with pytest.raises(RegistryAuthError, match=r"token endpoint .* answered 401: anonymous access refused"):
            await client.resolve_digest(ref)
    creds = CredentialStore({reg.host: Credentials(*TOKEN_USER)})
    async with RegistryClient(allow_http=True, credentials=creds) as client:
        assert await client.resolve_digest(ref) == digest


async def test_tampered_storage_is_a_digest_mismatch(registry: LocalRegistry) -> None:
    digest = registry.push_random_image("tamper/app", "v1")
    path = registry.blob_path(digest)
    original = path.read_bytes()
    path.write_bytes(original.replace(b'"schemaVersion":2', b'"schemaVersion":2 '))
    try:
        async with RegistryClient(allow_http=True) as client:
            with pytest.raises(DigestMismatchError, match=f"asked for {digest}"):
                await client.get_manifest(parse_reference(f"{registry.host}/tamper/app"), digest)
    finally:
        path.write_bytes(original)


async def test_tampered_signature_layer_is_reported(registry: LocalRegistry) -> None:
    digest = registry.push_random_image("tamper/sig")
    registry.push_legacy_signature("tamper/sig", digest, [(payload_for(digest), SIG_ANNOTATIONS)])
    layer_digest = "sha256:" + hashlib.sha256(payload_for(digest)).hexdigest()
    registry.blob_path(layer_digest).write_bytes(payload_for(digest).replace(b"cosign", b"c0sign"))
    async with RegistryClient(allow_http=True) as client:
        with pytest.raises(DigestMismatchError, match=r"does not match its digest"):
            await discover_signatures(client, parse_reference(f"{registry.host}/tamper/sig@{digest}"))


async def test_oversized_manifest(registry: LocalRegistry) -> None:
    digest = registry.push_random_image("big/app")
    annotations = {f"k{i}": "v" * 100 for i in range(30)}
    registry.push_legacy_signature("big/app", digest, [(payload_for(digest), annotations)])
    async with RegistryClient(allow_http=True, limits=RegistryLimits(max_manifest_bytes=2048)) as client:
        with pytest.raises(SizeLimitError, match=r"more than the limit of 2048"):
            await discover_signatures(client, parse_reference(f"{registry.host}/big/app@{digest}"))


async def test_registry_answering_500() -> None:
    with status_server(500) as host:
        async with RegistryClient(allow_http=True) as client:
            with pytest.raises(RegistryStatusError) as caught:
                await client.get_tag_manifest(parse_reference(f"{host}/acme/app"), "sha256-" + "a" * 64 + ".sig")
    assert str(caught.value) == f"registry {host} answered 500 to GET manifest sha256-{'a' * 64}.sig of acme/app"


async def test_hung_registry_times_out() -> None:
    limits = RegistryLimits(read_timeout=0.3, operation_timeout=2.0)
    with silent_server() as host:
        async with RegistryClient(allow_http=True, limits=limits) as client:
            started = time.monotonic()
            with pytest.raises(RegistryTimeoutError, match=f"registry {host} did not answer HEAD manifest v1"):
                await client.resolve_digest(parse_reference(f"{host}/acme/app:v1"))
            assert time.monotonic() - started < 1.5


async def test_refused_connection() -> None:
    host = f"127.0.0.1:{free_port()}"
    async with RegistryClient(allow_http=True) as client:
        with pytest.raises(RegistryError, match=f"registry {host} could not be reached for HEAD manifest") as caught:
            await client.resolve_digest(parse_reference(f"{host}/acme/app:v1"))
    assert type(caught.value) is RegistryError  # neither a timeout nor a status: the host is down


async def test_clients_share_one_transport_and_one_request_bound(
    registry: LocalRegistry, token_registry: LocalRegistry
) -> None:
    digests = [registry.push_random_image("shared/app", f"v{i}") for i in range(12)]
    token_digest = token_registry.push_random_image("shared/tok", "v1")
    limiter = RequestLimiter(3)
    transport = EgressTransport()
    try:
        first = RegistryClient(allow_http=True, transport=transport, limiter=limiter)
        second = RegistryClient(allow_http=True, transport=transport, limiter=limiter)
        resolved = await asyncio.gather(
            *(
                (first if i % 2 else second).resolve_digest(parse_reference(f"{registry.host}/shared/app:v{i}"))
                for i in range(12)
            ),
            second.resolve_digest(parse_reference(f"{token_registry.host}/shared/tok:v1")),
        )
        assert resolved == [*digests, token_digest]
        assert limiter.peak == 3 and limiter.in_flight == 0
        assert first.request_count + second.request_count == 12 + 3  # one HEAD each; 401, token, HEAD
        await first.aclose()  # a client closing leaves the shared connections to the others
        assert await second.resolve_digest(parse_reference(f"{registry.host}/shared/app:v0")) == digests[0]
        await second.aclose()
    finally:
        await transport.aclose()
