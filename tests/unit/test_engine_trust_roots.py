"""Private Sigstore instances through TrustRoot objects: each verifies only its own signatures."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest

from tests.sigstore_kit import default_kit
from tests.tuf_repo import TufTestRepository
from tests.unit.engine_harness import REPO, Harness, policies, policy_yaml, push_signed
from tests.unit.oci.fake_registry import HOST
from webhook.policy.matching import PolicySet
from webhook.trust.embedded import production_trusted_root

pytestmark = pytest.mark.anyio


def inline_trust_root() -> str:
    document = json.loads(default_kit().trusted_root_json())
    return ("apiVersion: policy.signet.dev/v1alpha1\nkind: TrustRoot\nmetadata: {name: private}\n"
            f"spec:\n  trustedRoot: {json.dumps(json.dumps(document))}\n")


def airgapped_trust_root() -> str:
    repo = TufTestRepository()
    repo.add_target("trusted_root.json", default_kit().trusted_root_json())
    repo.commit()
    root = base64.b64encode(repo.root_json(1)).decode()
    tarball = base64.b64encode(repo.tarball()).decode()
    return ("apiVersion: policy.signet.dev/v1alpha1\nkind: TrustRoot\nmetadata: {name: private}\n"
            f"spec:\n  repository:\n    root: {root}\n    mirrorFS: {tarball}\n")


def private_policy() -> str:
    return policy_yaml().replace("        identities:", "        trustRootRef: private\n        identities:")


@pytest.mark.parametrize("trust_root", [inline_trust_root, airgapped_trust_root], ids=["inline", "air-gapped"])
async def test_private_instance_admits_its_own_signatures(make: Callable[..., Harness],
                                                         trust_root: Callable[[], str]) -> None:
    private = policies(trust_root(), private_policy())
    h = make(private, trust_root=production_trusted_root())  # the default trust root is the public-good one
    push_signed(h.fake, default_kit())
    [outcome] = await h.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == "allow", outcome.reason

    public = make(policies(policy_yaml()), fake=h.fake, trust_root=production_trusted_root())
    [outcome] = await public.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == "deny"


async def test_a_broken_trust_root_fails_closed_with_its_reason(make: Callable[..., Harness]) -> None:
    broken = ("apiVersion: policy.signet.dev/v1alpha1\nkind: TrustRoot\nmetadata: {name: private}\n"
              "spec:\n  trustedRoot: '{\"mediaType\": \"application/vnd.dev.sigstore.trustedroot+json;version=0.1\", "
              "\"tlogs\": [{\"baseUrl\": \"x\"}]}'\n")
    h = make(policies(broken, private_policy()))
    push_signed(h.fake, default_kit())
    [outcome] = await h.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == "deny" and "TrustRoot private" in outcome.reason


def test_policy_set_names_the_trust_root() -> None:
    assert isinstance(policies(inline_trust_root(), private_policy()), PolicySet)
