"""``multiArch: everyPlatform``: an index passes only when it and every manifest it lists carry an accepted signature.

As ``cosign sign --recursive`` signs them; real signatures in the in-memory registry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from tests.unit.decision.features import (
    HOST,
    REPO,
    Rig,
    default_kit,
    keyless_policy,
    load_policies,
    put_index,
    put_sig,
    rigs,
    sign,
)
from tests.unit.oci.fake_registry import FakeRegistry
from webhook.decision import EngineSettings
from webhook.decision.platforms import MAX_PLATFORMS

pytestmark = pytest.mark.anyio

EVERY = "  multiArch: everyPlatform\n"


@pytest.fixture
async def rig() -> AsyncIterator[Callable[..., Rig]]:
    async for build in rigs():
        yield build


def signed(fake: FakeRegistry, digest: str, *, signer: str = "release@example.com") -> str:
    put_sig(fake, digest, sign(default_kit(), digest, identity=signer))
    return digest


def platforms(fake: FakeRegistry, count: int, seed: str) -> list[str]:
    return [fake.put_image(REPO, None, seed=f"{seed}-{i}".encode()) for i in range(count)]


async def test_an_index_signed_with_every_platform_is_allowed(rig: Callable[..., Rig]) -> None:
    fake = FakeRegistry()
    children = [signed(fake, d) for d in platforms(fake, 2, "all")]
    index = signed(fake, put_index(fake, children))
    r = rig(load_policies(keyless_policy(spec_extra=EVERY)), fake)
    allowed = await r.one(f"{HOST}/{REPO}:v1")
    assert allowed.verdict == "allow" and allowed.digest == index
    assert "every platform manifest (2) verified" in allowed.reason


async def test_a_platform_nobody_signed_denies_the_index(rig: Callable[..., Rig]) -> None:
    fake = FakeRegistry()
    first, second = platforms(fake, 2, "one-missing")
    signed(fake, first)
    signed(fake, put_index(fake, [first, second]))
    r = rig(load_policies(keyless_policy(spec_extra=EVERY)), fake)
    denied = await r.one(f"{HOST}/{REPO}:v1")
    assert denied.verdict == "deny"
    assert f"platform manifest {second} (linux/arch1) is not signed as required" in denied.reason
    # referencedDigest (the default) is satisfied by the index's own signature
    default = rig(load_policies(keyless_policy()), fake)
    assert (await default.one(f"{HOST}/{REPO}:v1")).verdict == "allow"


async def test_a_platform_signed_by_someone_else_does_not_count(rig: Callable[..., Rig]) -> None:
    fake = FakeRegistry()
    first, second = platforms(fake, 2, "impostor")
    signed(fake, first)
    signed(fake, second, signer="mallory@example.com")
    signed(fake, put_index(fake, [first, second]))
    r = rig(load_policies(keyless_policy(spec_extra=EVERY)), fake)
    denied = await r.one(f"{HOST}/{REPO}:v1")
    assert denied.verdict == "deny" and second in denied.reason and "mallory@example.com" in denied.reason


async def test_the_index_itself_must_be_signed_too(rig: Callable[..., Rig]) -> None:
    fake = FakeRegistry()
    children = [signed(fake, d) for d in platforms(fake, 2, "unsigned-index")]
    put_index(fake, children)
    r = rig(load_policies(keyless_policy(spec_extra=EVERY)), fake)
    denied = await r.one(f"{HOST}/{REPO}:v1")
    assert denied.verdict == "deny" and "no signatures found" in denied.reason


async def test_the_index_signature_never_stands_for_its_platforms(rig: Callable[..., Rig]) -> None:
    fake = FakeRegistry()
    children = platforms(fake, 2, "fallback")
    signed(fake, put_index(fake, children))
    # even where a covering index's signature may stand for a platform manifest named directly
    settings = EngineSettings(deadline=5.0, include_index_signatures=True)
    r = rig(load_policies(keyless_policy(spec_extra=EVERY)), fake, settings=settings)
    assert (await r.one(f"{HOST}/{REPO}:v1")).verdict == "deny"


async def test_nested_indexes_are_walked(rig: Callable[..., Rig]) -> None:
    fake = FakeRegistry()
    leaf_a, leaf_b = platforms(fake, 2, "nested")
    signed(fake, leaf_a)
    inner = signed(fake, put_index(fake, [leaf_b], tag=None))
    signed(fake, put_index(fake, [leaf_a, inner]))
    r = rig(load_policies(keyless_policy(spec_extra=EVERY)), fake)
    denied = await r.one(f"{HOST}/{REPO}:v1")
    assert denied.verdict == "deny" and leaf_b in denied.reason
    signed(fake, leaf_b)
    fresh = rig(load_policies(keyless_policy(spec_extra=EVERY)), fake)
    assert (await fresh.one(f"{HOST}/{REPO}:v1")).verdict == "allow"


async def test_an_index_too_large_to_check_is_refused(rig: Callable[..., Rig]) -> None:
    fake = FakeRegistry()
    children = platforms(fake, MAX_PLATFORMS + 1, "huge")
    signed(fake, put_index(fake, children))
    r = rig(load_policies(keyless_policy(spec_extra=EVERY)), fake)
    denied = await r.one(f"{HOST}/{REPO}:v1")
    assert denied.verdict == "deny" and f"more than {MAX_PLATFORMS} manifests" in denied.reason


async def test_a_platform_manifest_named_directly_is_its_own_only_platform(rig: Callable[..., Rig]) -> None:
    fake = FakeRegistry()
    first, second = platforms(fake, 2, "direct")
    signed(fake, first)
    put_index(fake, [first, second])
    r = rig(load_policies(keyless_policy(spec_extra=EVERY)), fake)
    assert (await r.one(f"{HOST}/{REPO}@{first}")).verdict == "allow"
    assert (await r.one(f"{HOST}/{REPO}@{second}")).verdict == "deny"
