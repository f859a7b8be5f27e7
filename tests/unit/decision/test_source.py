"""``source``: an authority's signatures (and attestations) looked up elsewhere, as cosign's COSIGN_REPOSITORY.

Real signatures in the in-memory registries: the signature repository may be on another registry
that only ``signaturePullSecrets`` (Secrets of the workload's namespace) open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from tests.unit.decision.attesting import legacy, put_att
from tests.unit.decision.features import (
    HOST,
    REPO,
    SIGS_HOST,
    Rig,
    basic_credentials,
    default_kit,
    keyless_policy,
    load_policies,
    put_sig,
    rigs,
    sign,
)
from tests.unit.oci.fake_registry import FakeRegistry

pytestmark = pytest.mark.anyio

SIGS = "acme/signatures"


@pytest.fixture
async def rig() -> AsyncIterator[Callable[..., Rig]]:
    async for build in rigs():
        yield build


def with_source(source: str, **options: str) -> str:
    return keyless_policy(authority_extra=f"      source:\n        - {source}\n", **options)


async def test_signatures_in_another_repository_are_found_there_and_only_there(rig: Callable[..., Rig]) -> None:
    fake = FakeRegistry()
    elsewhere = fake.put_image(REPO, None, seed=b"elsewhere")
    put_sig(fake, elsewhere, sign(default_kit(), elsewhere), repo=SIGS)
    beside = fake.put_image(REPO, None, seed=b"beside")
    put_sig(fake, beside, sign(default_kit(), beside))
    r = rig(load_policies(with_source(f"{{oci: '{HOST}/{SIGS}'}}")), fake)
    assert (await r.one(f"{HOST}/{REPO}@{elsewhere}")).verdict == "allow"
    # the image's own repository is not consulted once a source names another
    missed = await r.one(f"{HOST}/{REPO}@{beside}")
    assert missed.verdict == "deny" and "no signatures found" in missed.reason
    plain = rig(load_policies(keyless_policy()), fake)
    assert (await plain.one(f"{HOST}/{REPO}@{elsewhere}")).verdict == "deny"
    assert (await plain.one(f"{HOST}/{REPO}@{beside}")).verdict == "allow"


async def test_a_tag_prefix_names_the_legacy_tags(rig: Callable[..., Rig]) -> None:
    fake = FakeRegistry()
    digest = fake.put_image(REPO, None, seed=b"prefixed")
    put_sig(fake, digest, sign(default_kit(), digest), tag_prefix="team-")
    r = rig(load_policies(with_source("{tagPrefix: team-}")), fake)
    assert (await r.one(f"{HOST}/{REPO}@{digest}")).verdict == "allow"
    other = rig(load_policies(with_source("{tagPrefix: other-}")), fake)
    assert (await other.one(f"{HOST}/{REPO}@{digest}")).verdict == "deny"
    both = FakeRegistry()
    at_source = both.put_image(REPO, None, seed=b"both")
    put_sig(both, at_source, sign(default_kit(), at_source), repo=SIGS, tag_prefix="v2-")
    combined = rig(load_policies(with_source(f"{{oci: '{HOST}/{SIGS}', tagPrefix: v2-}}")), both)
    assert (await combined.one(f"{HOST}/{REPO}@{at_source}")).verdict == "allow"


@pytest.mark.parametrize("referrers_api", [True, False], ids=["referrers-api", "fallback-tag"])
async def test_bundle_referrers_are_read_in_the_source_repository(rig: Callable[..., Rig], referrers_api: bool) -> None:
    fake = FakeRegistry(referrers_api=referrers_api)
    digest = fake.put_image(REPO, None, seed=b"bundle")
    signed = default_kit().sign_image_bundle(digest, identity="release@example.com",
                                             issuer="https://accounts.example.com")
    descriptor = fake.put_referrer(SIGS, digest, signed.to_json())
    if not referrers_api:
        fake.put_fallback_index(SIGS, digest, [descriptor])
    r = rig(load_policies(with_source(f"{{oci: '{HOST}/{SIGS}', tagPrefix: ignored-}}")), fake)
    # the tag prefix is cosign's, for legacy tags: the referrers fallback tag is the registry's convention
    assert (await r.one(f"{HOST}/{REPO}@{digest}")).verdict == "allow"


async def test_attestations_are_looked_up_in_the_source_too(rig: Callable[..., Rig]) -> None:
    fake = FakeRegistry()
    digest = fake.put_image(REPO, None, seed=b"attested")
    put_sig(fake, digest, sign(default_kit(), digest), repo=SIGS)
    put_att(fake, digest, legacy(default_kit(), digest), repo=SIGS)
    attestations = "      attestations:\n        - {name: provenance, predicateType: slsaprovenance1}\n"
    policy = keyless_policy(authority_extra=f"      source:\n        - {{oci: '{HOST}/{SIGS}'}}\n{attestations}")
    r = rig(load_policies(policy), fake)
    assert (await r.one(f"{HOST}/{REPO}@{digest}")).verdict == "allow"
    missing = fake.put_image(REPO, None, seed=b"unattested")
    put_sig(fake, missing, sign(default_kit(), missing), repo=SIGS)
    denied = await r.one(f"{HOST}/{REPO}@{missing}")
    assert denied.verdict == "deny" and denied.attestation == "provenance"


def private_signatures() -> tuple[FakeRegistry, FakeRegistry, str]:
    """An open image registry, and a signature registry that wants credentials; the image's reference."""
    images = FakeRegistry()
    sigs = FakeRegistry(host=SIGS_HOST, auth="basic", credentials=("reader", "s3cret"))
    digest = images.put_image(REPO, None, seed=b"private-sigs")
    put_sig(sigs, digest, sign(default_kit(), digest), repo=SIGS)
    return images, sigs, f"{HOST}/{REPO}@{digest}"


PRIVATE = keyless_policy(authority_extra=f"      source:\n        - oci: {SIGS_HOST}/{SIGS}\n"
                                         "          signaturePullSecrets: [{name: sig-reader}, {name: absent}]\n")


async def test_signature_pull_secrets_of_the_workloads_namespace_open_the_signature_repository(
        rig: Callable[..., Rig]) -> None:
    images, sigs, image = private_signatures()
    r = rig(load_policies(PRIVATE), images, sigs,
            pull_secrets={"sig-reader": basic_credentials(SIGS_HOST, "reader", "s3cret")})
    assert (await r.one(image, namespace="team-a")).verdict == "allow"
    assert r.pull_reads == [("team-a", ("sig-reader", "absent"))]
    # read once per namespace and TTL, and another namespace's Secrets are its own
    assert (await r.one(image, namespace="team-a")).verdict == "allow"
    assert (await r.one(image, namespace="team-b")).verdict == "allow"
    assert r.pull_reads == [("team-a", ("sig-reader", "absent")), ("team-b", ("sig-reader", "absent"))]


async def test_without_working_pull_secrets_the_signatures_cannot_be_read(rig: Callable[..., Rig]) -> None:
    images, sigs, image = private_signatures()
    wrong = rig(load_policies(PRIVATE), images, sigs,
                pull_secrets={"sig-reader": basic_credentials(SIGS_HOST, "reader", "wrong")})
    refused = await wrong.one(image)
    assert refused.verdict == "deny" and "infrastructure failure" in refused.reason
    no_cluster = rig(load_policies(PRIVATE), images, sigs)
    denied = await no_cluster.one(image)
    assert denied.verdict == "deny" and "signaturePullSecrets needs the cluster integration" in denied.reason
    nowhere = rig(load_policies(PRIVATE), images, sigs, pull_secrets={})
    outside = await nowhere.one(image, namespace=None)
    assert outside.verdict == "deny" and "workload's namespace" in outside.reason


async def test_a_policy_controller_document_with_a_source_means_the_same(rig: Callable[..., Rig]) -> None:
    fake = FakeRegistry()
    digest = fake.put_image(REPO, None, seed=b"pc-source")
    put_sig(fake, digest, sign(default_kit(), digest), repo=SIGS, tag_prefix="pc-")
    document = keyless_policy(api_version="policy.sigstore.dev/v1beta1", keyless_extra="",
                              authority_extra=f"      source:\n        - {{oci: '{HOST}/{SIGS}', tagPrefix: pc-}}\n")
    r = rig(load_policies(document), fake)
    assert (await r.one(f"{HOST}/{REPO}@{digest}")).verdict == "allow"
