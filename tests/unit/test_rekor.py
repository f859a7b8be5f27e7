"""The Rekor v1 client against httpx.MockTransport: lookups, UUID check, caching, failures."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography import x509

from tests.sigstore_kit import SigstoreKit
from tests.sigstore_kit.cosign import LegacyImageSignature
from webhook.errors import TransparencyLogError, VerificationError
from webhook.oci import RequestLimiter
from webhook.oci.discovery import SIMPLE_SIGNING
from webhook.oci.manifest import Manifest
from webhook.rekor import MAX_RESPONSE_BYTES, RekorClient, issuer_key_ids, proposed_hashedrekord, rekor_v1_url
from webhook.verify.cosign import CosignSignature, verify_cosign_material
from webhook.verify.trustroot import TrustedRoot
from webhook.verify.verifier import Verifier

pytestmark = pytest.mark.anyio

BASE = "https://rekor.example"
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return SigstoreKit.create(seed_entries=3)


@pytest.fixture(scope="module")
def signed(kit: SigstoreKit) -> LegacyImageSignature:
    """A legacy signature that is in the log, but pushed without its bundle annotation."""
    sig = kit.sign_image_legacy(DIGEST, tlog=True)
    annotations = {k: v for k, v in sig.annotations.items() if k != "dev.sigstore.cosign/bundle"}
    return LegacyImageSignature(sig.payload, sig.signature, annotations, sig.entry)


def parsed(sig: LegacyImageSignature) -> CosignSignature:
    return CosignSignature.from_layer(sig.payload, sig.annotations)


def lookup_args(sig: LegacyImageSignature) -> tuple[bytes, object, bytes]:
    cosign = parsed(sig)
    assert cosign.certificate is not None
    return cosign.signature, cosign.certificate, hashlib.sha256(sig.payload).digest()


async def find(client: RekorClient, sig: LegacyImageSignature) -> object:
    signature, cert, digest = lookup_args(sig)
    return await client.find_entry(BASE, signature, cert, digest)  # type: ignore[arg-type]


async def test_retrieve_found_is_verifiable(kit: SigstoreKit, signed: LegacyImageSignature) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        assert signed.entry is not None
        return httpx.Response(200, json=[kit.rekor_v1.api_entry(signed.entry)])

    async with RekorClient(transport=httpx.MockTransport(handler)) as client:
        entry = await find(client, signed)
    assert entry is not None
    assert seen[0].method == "POST" and seen[0].url.path == "/api/v1/log/entries/retrieve"
    query = json.loads(seen[0].content)
    signature, cert, digest = lookup_args(signed)
    assert query == {"entries": [proposed_hashedrekord(signature, cert, digest)]}  # type: ignore[arg-type]
    verifier = Verifier(TrustedRoot.from_json(kit.trusted_root_json()))
    result = verify_cosign_material(verifier, parsed(signed), DIGEST, log_entry=entry)  # type: ignore[arg-type]
    assert signed.entry is not None and result.log_index == signed.entry.log_index


async def test_not_found_empty_list_and_404(signed: LegacyImageSignature) -> None:
    for response in (httpx.Response(200, json=[]), httpx.Response(404, json={"code": 404})):
        async with RekorClient(transport=httpx.MockTransport(lambda _r, resp=response: resp)) as client:
            assert await find(client, signed) is None


async def test_uuid_not_matching_body_is_rejected(kit: SigstoreKit, signed: LegacyImageSignature) -> None:
    assert signed.entry is not None
    api = kit.rekor_v1.api_entry(signed.entry)
    (inner,) = api.values()
    forged = {"24296fb24b8ad77a" + "00" * 32: inner}

    async with RekorClient(transport=httpx.MockTransport(lambda _r: httpx.Response(200, json=[forged]))) as client:
        with pytest.raises(VerificationError, match=r"does not match the entry body"):
            await find(client, signed)


async def test_cache_hit_makes_no_request(kit: SigstoreKit, signed: LegacyImageSignature) -> None:
    calls = 0

    def handler(_request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        assert signed.entry is not None
        return httpx.Response(200, json=[kit.rekor_v1.api_entry(signed.entry)])

    async with RekorClient(transport=httpx.MockTransport(handler)) as client:
        first = await find(client, signed)
        second = await find(client, signed)
        assert first is second and calls == 1
        # concurrent lookups of a new key share one request (single-flight)
        other = kit.sign_image_legacy("sha256:" + "cd" * 32)
        results = await asyncio.gather(*(find(client, other) for _ in range(5)))
        assert calls == 2 and len({id(r) for r in results}) == 1


async def test_not_found_is_cached_until_ttl(signed: LegacyImageSignature) -> None:
    calls = 0
    now = [0.0]

    def handler(_request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, json=[])

    async with RekorClient(transport=httpx.MockTransport(handler), not_found_ttl=10, clock=lambda: now[0]) as c:
        assert await find(c, signed) is None
        assert await find(c, signed) is None
        assert calls == 1
        now[0] = 11
        assert await find(c, signed) is None
        assert calls == 2


async def test_server_error_is_transparency_log_error(signed: LegacyImageSignature) -> None:
    async with RekorClient(transport=httpx.MockTransport(lambda _r: httpx.Response(500, text="boom"))) as client:
        with pytest.raises(TransparencyLogError, match=r"Rekor at https://rekor\.example answered 500"):
            await find(client, signed)


async def test_timeout_is_transparency_log_error(signed: LegacyImageSignature) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    async with RekorClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(TransparencyLogError, match=r"Rekor at https://rekor\.example unreachable"):
            await find(client, signed)


async def test_errors_are_not_cached(kit: SigstoreKit, signed: LegacyImageSignature) -> None:
    answers = [httpx.Response(503), httpx.Response(200, json=[kit.rekor_v1.api_entry(signed.entry)])]  # type: ignore[arg-type]

    async with RekorClient(transport=httpx.MockTransport(lambda _r: answers.pop(0))) as client:
        with pytest.raises(TransparencyLogError):
            await find(client, signed)
        assert await find(client, signed) is not None


async def test_entry_by_index(kit: SigstoreKit, signed: LegacyImageSignature) -> None:
    assert signed.entry is not None
    entry_json = kit.rekor_v1.api_entry(signed.entry)

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["logIndex"] == str(signed.entry.log_index)  # type: ignore[union-attr]
        return httpx.Response(200, json=entry_json)

    async with RekorClient(transport=httpx.MockTransport(handler)) as client:
        entry = await client.get_entry_by_index(BASE, signed.entry.log_index)
    assert entry is not None and entry.log_index == signed.entry.log_index


def test_rekor_url_from_trust_root(kit: SigstoreKit) -> None:
    root = TrustedRoot.from_json(kit.trusted_root_json())
    assert rekor_v1_url(root) == kit.rekor_v1.base_url


async def test_an_endless_answer_is_not_read_past_the_bound(signed: LegacyImageSignature) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(10_000):
            sent += 1
            yield b" " * 65536

    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())  # chunked: no Content-Length to refuse up front

    async with RekorClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(TransparencyLogError, match=r"answered with more than 4194304 bytes"):
            await find(client, signed)
    assert sent * 65536 <= MAX_RESPONSE_BYTES + 65536


async def test_rekor_requests_share_the_registry_clients_limiter(kit: SigstoreKit) -> None:
    limiter = RequestLimiter(2)
    now = peak = 0

    async def handler(_request: httpx.Request) -> httpx.Response:
        nonlocal now, peak
        now += 1
        peak = max(peak, now)
        await asyncio.sleep(0.01)
        now -= 1
        return httpx.Response(200, json=[])

    async with RekorClient(transport=httpx.MockTransport(handler), limiter=limiter) as client:
        signatures = [kit.sign_image_legacy("sha256:" + f"{i:02x}" * 32) for i in range(8)]
        async with limiter.slot():  # a registry request in flight holds one of the two slots
            results = await asyncio.gather(*(find(client, s) for s in signatures))
    assert results == [None] * 8
    assert peak == 1 and limiter.peak == 2


# --- ahead of time --------------------------------------------------------------------------------


def issuers(sig: LegacyImageSignature) -> frozenset[bytes]:
    certificate = parsed(sig).certificate
    assert certificate is not None
    key_id = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert key_id is not None
    return frozenset({key_id})


def sig_manifest(layers: list[tuple[LegacyImageSignature, bool]]) -> Manifest:
    """A ``.sig`` manifest listing these signatures' layers (with or without their bundle annotation)."""
    entries = []
    for sig, keep_bundle in layers:
        annotations = dict(sig.annotations)
        if not keep_bundle:
            annotations.pop("dev.sigstore.cosign/bundle", None)
        entries.append({"mediaType": SIMPLE_SIGNING, "digest": "sha256:" + hashlib.sha256(sig.payload).hexdigest(),
                        "size": len(sig.payload), "annotations": annotations})
    raw = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": "sha256:" + "00" * 32, "size": 2},
                      "layers": entries}).encode()
    return Manifest.parse(raw, digest="sha256:" + hashlib.sha256(raw).hexdigest(), content_type=None,
                          max_layers=100, source="test")


def test_the_trust_roots_issuers_are_its_fulcio_keys(kit: SigstoreKit, signed: LegacyImageSignature) -> None:
    assert issuers(signed) <= issuer_key_ids(TrustedRoot.from_json(kit.trusted_root_json()))


async def test_a_sig_manifest_starts_its_lookups_before_the_payloads_are_fetched(
    kit: SigstoreKit, signed: LegacyImageSignature
) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        assert signed.entry is not None
        return httpx.Response(200, json=[kit.rekor_v1.api_entry(signed.entry)])

    async with RekorClient(transport=httpx.MockTransport(handler)) as client:
        assert client.prefetch_legacy(BASE, sig_manifest([(signed, False)]), issuers(signed)) == 1
        await asyncio.sleep(0.01)  # the manifest's payload blob would be on its way now
        assert seen == ["/api/v1/log/entries/retrieve"]
        entry = await find(client, signed)  # what the verification asks later: already answered
        assert entry is not None and len(seen) == 1
        assert client.cache_stats() == {"hits": 1, "misses": 1, "size": 1}


async def test_a_lookup_asked_while_its_prefetch_is_in_flight_joins_it(
    kit: SigstoreKit, signed: LegacyImageSignature
) -> None:
    calls = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        assert signed.entry is not None
        return httpx.Response(200, json=[kit.rekor_v1.api_entry(signed.entry)])

    async with RekorClient(transport=httpx.MockTransport(slow)) as client:
        client.prefetch_legacy(BASE, sig_manifest([(signed, False)]), issuers(signed))
        assert await find(client, signed) is not None
    assert calls == 1


async def test_no_prefetch_for_layers_with_log_evidence_or_without_a_certificate(
    kit: SigstoreKit, signed: LegacyImageSignature
) -> None:
    with_bundle = kit.sign_image_legacy(DIGEST, tlog=True)
    async with RekorClient(transport=httpx.MockTransport(lambda r: httpx.Response(500))) as client:
        assert client.prefetch_legacy(BASE, sig_manifest([(with_bundle, True)]), issuers(signed)) == 0
        keyed = LegacyImageSignature(signed.payload, signed.signature, {
            k: v for k, v in signed.annotations.items() if k != "dev.sigstore.cosign/certificate"}, None)
        assert client.prefetch_legacy(BASE, sig_manifest([(keyed, False)]), issuers(signed)) == 0
        assert client.prefetch_legacy(None, sig_manifest([(signed, False)]), issuers(signed)) == 0  # no Rekor


async def test_no_prefetch_of_a_signature_another_trust_root_issued(signed: LegacyImageSignature) -> None:
    """A private deployment's signature is never shown to the default root's (public) Rekor ahead of time."""
    other = issuer_key_ids(TrustedRoot.from_json(SigstoreKit.create(seed_entries=1).trusted_root_json()))
    async with RekorClient(transport=httpx.MockTransport(lambda r: httpx.Response(500))) as client:
        assert client.prefetch_legacy(BASE, sig_manifest([(signed, False)]), other) == 0
        assert client.prefetch_legacy(BASE, sig_manifest([(signed, False)]), frozenset()) == 0


async def test_a_failed_prefetch_is_asked_again_by_the_lookup_that_needs_it(signed: LegacyImageSignature) -> None:
    calls = 0

    def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503 if calls == 1 else 404)

    async with RekorClient(transport=httpx.MockTransport(flaky)) as client:
        client.prefetch_legacy(BASE, sig_manifest([(signed, False)]), issuers(signed))
        await asyncio.sleep(0.01)
        assert await find(client, signed) is None
    assert calls == 2


async def test_warm_opens_the_connection_with_a_cheap_request() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        return httpx.Response(200, json={"treeSize": 3})

    async with RekorClient(transport=httpx.MockTransport(handler)) as client:
        await client.warm(BASE + "/")
    assert seen == ["GET /api/v1/log"]
