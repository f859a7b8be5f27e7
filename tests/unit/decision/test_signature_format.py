"""``signatureFormat``: an authority counts cosign's ``.sig`` layers only (legacy) or Sigstore bundles only."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.sigstore_kit import default_kit
from tests.unit.engine_harness import ISSUER, REPO, SIGNER, Harness, policies, policy_yaml, push_signed
from tests.unit.oci.fake_registry import HOST, FakeRegistry

pytestmark = pytest.mark.anyio

IMAGE = f"{HOST}/{REPO}:v1"


def with_format(signature_format: str) -> str:
    return policy_yaml().replace("      keyless:\n", f"      signatureFormat: {signature_format}\n      keyless:\n")


def bundle_signed(fake: FakeRegistry) -> str:
    digest = fake.put_image(REPO, "v1")
    bundle = default_kit().sign_image_bundle(digest, identity=SIGNER, issuer=ISSUER)
    fake.put_referrer(REPO, digest, bundle.to_json())
    return digest


@pytest.mark.parametrize(("signature_format", "layout", "verdict"), [
    ("legacy", "legacy", "allow"), ("legacy", "bundle", "deny"),
    ("bundle", "bundle", "allow"), ("bundle", "legacy", "deny"),
])
async def test_only_signatures_of_the_format_count(make: Callable[..., Harness], signature_format: str,
                                                  layout: str, verdict: str) -> None:
    fake = FakeRegistry(referrers_api=True)
    h = make(policies(with_format(signature_format)), fake=fake)
    if layout == "legacy":
        push_signed(fake, default_kit())
    else:
        bundle_signed(fake)
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == verdict, outcome.reason
    if verdict == "deny":
        assert f"no signatures in the {signature_format} format (signatureFormat)" in outcome.reason
