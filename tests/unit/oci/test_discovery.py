from __future__ import annotations

import httpx
import pytest

from tests.unit.oci.fake_registry import OCI_MANIFEST, SIMPLE_SIGNING, FakeRegistry, dumps
from webhook.errors import InputError, RegistryError
from webhook.oci import (
    COSIGN_ARTIFACT_SIG,
    DigestMismatchError,
    RegistryClient,
    Repository,
    discover_signatures,
    parse_reference,
)

pytestmark = pytest.mark.anyio
REPO = Repository("registry.test", "acme/app")


def image(digest: str) -> str:
    return f"registry.test/acme/app@{digest}"


async def test_referrers_api_with_pagination() -> None:
    fake = FakeRegistry(referrers_api=True, referrers_page_size=2)
    digest = fake.put_image("acme/app")
    bundles = [f'{{"n":{i}}}'.encode() for i in range(5)]
    for bundle in bundles:
        fake.put_referrer("acme/app", digest, bundle)
    async with RegistryClient(transport=fake.transport()) as client:
        referrers = await client.referrers(REPO, digest)
        assert referrers.source == "api" and len(referrers.descriptors) == 5
        # Pages of 2, 2, 1, and the fallback tag asked alongside the first page (support unknown yet).
        assert client.request_count == 4
        found = await discover_signatures(client, parse_reference(image(digest)))
    assert sorted(s.bundle for s in found.bundles) == sorted(bundles)
    assert {s.source for s in found.bundles} == {"referrers-api"}
    assert {s.predicate_type for s in found.bundles} == {"https://sigstore.dev/cosign/sign/v1"}
    assert found.legacy == [] and found.errors == []
    assert not any("fallback" in note for note in found.notes)


async def test_pagination_link_to_another_host_is_refused() -> None:
    fake = FakeRegistry(referrers_api=True)
    digest = fake.put_image("acme/app")
    fake.faults["/referrers/"] = lambda _r: httpx.Response(
        200,
        headers={
            "Content-Type": "application/vnd.oci.image.index.v1+json",
            "Link": '<https://evil.test/next>; rel="next"',
        },
        content=b'{"schemaVersion":2,"manifests":[]}',
    )
    async with RegistryClient(transport=fake.transport()) as client:
        with pytest.raises(RegistryError, match=r"registry.test sent a referrers page link to evil.test: refused"):
            await client.referrers(REPO, digest)


@pytest.mark.parametrize("status", [400, 404, 406])
async def test_fallback_tag_when_api_missing(status: int) -> None:
    fake = FakeRegistry()
    fake.faults["/referrers/"] = lambda _r: httpx.Response(status)
    digest = fake.put_image("acme/app")
    fake.put_fallback_index("acme/app", digest, [fake.put_referrer("acme/app", digest, b'{"b":1}')])
    async with RegistryClient(transport=fake.transport()) as client:
        found = await discover_signatures(client, parse_reference(image(digest)))
        assert [s.bundle for s in found.bundles] == [b'{"b":1}']
        assert found.bundles[0].source == "referrers-fallback-tag"
        assert any(f"answered {status}" in n and "used fallback tag" in n for n in found.notes)
        # referrers API + fallback index + referrer manifest + bundle blob + .sig 404
        assert client.request_count == 5
        before = client.request_count
        await discover_signatures(client, parse_reference(image(digest)))
        assert client.request_count - before == 4  # the missing API is remembered


async def test_non_index_answer_from_referrers_api_falls_back() -> None:
    fake = FakeRegistry()
    fake.faults["/referrers/"] = lambda _r: httpx.Response(200, json={"hello": "world"})
    digest = fake.put_image("acme/app")
    async with RegistryClient(transport=fake.transport()) as client:
        referrers = await client.referrers(REPO, digest)
    assert referrers.source == "fallback-tag" and referrers.descriptors == []


async def test_legacy_sig_tag_layers_in_order() -> None:
    fake = FakeRegistry()
    digest = fake.put_image("acme/app")
    fake.put_legacy_sig("acme/app", digest, [b"payload-0", b"payload-1", b"payload-2"])
    async with RegistryClient(transport=fake.transport()) as client:
        found = await discover_signatures(client, parse_reference(image(digest)))
        # referrers 404, fallback tag 404, .sig manifest, 3 blobs (concurrently)
        assert client.request_count == 6
    assert [s.payload for s in found.legacy] == [b"payload-0", b"payload-1", b"payload-2"]
    assert [s.annotations for s in found.legacy] == [{"n": "0"}, {"n": "1"}, {"n": "2"}]
    assert len(found) == 3 and found.signatures == found.legacy


async def test_no_signatures_anywhere() -> None:
    fake = FakeRegistry()
    digest = fake.put_image("acme/app")
    async with RegistryClient(transport=fake.transport()) as client:
        found = await discover_signatures(client, parse_reference(image(digest)))
    assert len(found) == 0 and found.errors == []
    assert any(".sig: not found" in note for note in found.notes)


async def test_attestations_only_when_asked() -> None:
    fake = FakeRegistry()
    digest = fake.put_image("acme/app")
    fake.put_legacy_sig(
        "acme/app", digest, [b"envelope"], suffix="att", media_type="application/vnd.dsse.envelope.v1+json"
    )
    async with RegistryClient(transport=fake.transport()) as client:
        assert len(await discover_signatures(client, parse_reference(image(digest)))) == 0
        found = await discover_signatures(client, parse_reference(image(digest)), include_attestations=True)
    assert [a.envelope for a in found.attestations] == [b"envelope"]


async def test_referrer_with_other_subject_or_type_is_ignored() -> None:
    fake = FakeRegistry()
    digest = fake.put_image("acme/app")
    other = fake.put_image("acme/app", tag=None, seed=b"other")
    wrong_subject = fake.put_referrer("acme/app", other, b'{"x":1}')
    sbom = {
        "mediaType": OCI_MANIFEST,
        "digest": "sha256:" + "e" * 64,
        "size": 5,
        "artifactType": "application/spdx+json",
    }
    fake.put_fallback_index("acme/app", digest, [wrong_subject, sbom])
    async with RegistryClient(transport=fake.transport()) as client:
        found = await discover_signatures(client, parse_reference(image(digest)))
        assert client.request_count == 4  # the SBOM manifest is not even fetched
    assert len(found) == 0
    assert any("subject is not" in n for n in found.notes)
    assert any("1 not Sigstore/cosign" in n for n in found.notes)


async def test_experimental_cosign_referrer_with_simple_signing() -> None:
    fake = FakeRegistry(referrers_api=True)
    digest = fake.put_image("acme/app")
    layer = {**fake.put_blob(b"simple"), "mediaType": SIMPLE_SIGNING, "annotations": {"k": "v"}}
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": COSIGN_ARTIFACT_SIG,
        "config": {**fake.put_blob(b"{}"), "mediaType": COSIGN_ARTIFACT_SIG},
        "layers": [layer],
        "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": 1},
    }
    fake.put_manifest("acme/app", dumps(manifest))
    async with RegistryClient(transport=fake.transport()) as client:
        found = await discover_signatures(client, parse_reference(image(digest)))
    assert [(s.payload, s.source, dict(s.annotations)) for s in found.legacy] == [
        (b"simple", "referrers-api", {"k": "v"})
    ]


async def test_partial_failure_is_recorded_total_failure_raises() -> None:
    fake = FakeRegistry(referrers_api=True)
    digest = fake.put_image("acme/app")
    fake.put_referrer("acme/app", digest, b'{"ok":1}')
    fake.put_legacy_sig("acme/app", digest, [b"p"])
    fake.faults[".sig"] = lambda _r: httpx.Response(503)
    async with RegistryClient(transport=fake.transport()) as client:
        found = await discover_signatures(client, parse_reference(image(digest)))
    assert len(found.bundles) == 1 and len(found.errors) == 1
    assert any("legacy .sig tag: failed: registry registry.test answered 503" in n for n in found.notes)

    fake.faults["/referrers/"] = lambda _r: httpx.Response(500)
    async with RegistryClient(transport=fake.transport()) as client:
        with pytest.raises(RegistryError, match=r"answered 50[03]"):
            await discover_signatures(client, parse_reference(image(digest)))


async def test_tampered_signature_blob_is_an_error_not_a_signature() -> None:
    fake = FakeRegistry()
    digest = fake.put_image("acme/app")
    fake.put_legacy_sig("acme/app", digest, [b"good", b"evil"])
    evil = next(d for d, b in fake.blobs.items() if b == b"evil")
    fake.blobs[evil] = b"changed"
    async with RegistryClient(transport=fake.transport()) as client:
        found = await discover_signatures(client, parse_reference(image(digest)))
    assert [s.payload for s in found.legacy] == [b"good"]
    assert [type(e) for e in found.errors] == [DigestMismatchError]


async def test_needs_a_digest() -> None:
    async with RegistryClient(transport=FakeRegistry().transport()) as client:
        with pytest.raises(InputError, match=r"resolve the tag first"):
            await discover_signatures(client, parse_reference("registry.test/acme/app:v1"))
