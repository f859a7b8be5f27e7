"""Pull secrets end to end: an image in an htpasswd-protected docker-registry, verified with the pod's secret.

The credentials come from a ``kubernetes.io/dockerconfigjson`` Secret in the API stand-in, read
through :class:`PullSecrets`; without them, the registry's 401 becomes a clear denial reason.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s_client

from tests.integration.conftest import BASIC_USER
from tests.integration.registry import LocalRegistry
from tests.k8s_apiserver import FakeApiServer
from tests.sigstore_kit import SigstoreKit
from webhook.images import verify_image
from webhook.k8s import PullSecrets
from webhook.oci import RegistryClient, parse_reference
from webhook.oci.auth import CredentialStore
from webhook.verify.identity import Identity
from webhook.verify.trustroot import TrustedRoot
from webhook.verify.verifier import Verifier

pytestmark = pytest.mark.anyio

SIGNER, ISSUER = "signer@example.com", "https://oidc.example"


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return SigstoreKit.create(seed_entries=1)


@pytest.fixture
def apiserver() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    yield server
    server.stop()


@pytest.fixture
def signed_private_image(basic_registry: LocalRegistry, kit: SigstoreKit) -> str:
    repo = "private/app"
    digest = basic_registry.push_random_image(repo, "v1")
    sig = kit.sign_image_legacy(digest, repository=f"{basic_registry.host}/{repo}")
    basic_registry.push_legacy_signature(repo, digest, [(sig.payload, sig.annotations)])
    return f"{basic_registry.host}/{repo}@{digest}"


def pull_secret(host: str) -> dict[str, Any]:
    user, password = BASIC_USER
    config = {"auths": {host: {"username": user, "password": password}}}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "regcred", "namespace": "team-a"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}


async def verify_with(credentials: CredentialStore, reference: str, kit: SigstoreKit) -> Any:
    verifier = Verifier(TrustedRoot.from_json(kit.trusted_root_json()))
    async with RegistryClient(credentials=credentials, allow_http=True) as registry_client:
        return await verify_image(parse_reference(reference), registry_client=registry_client, verifier=verifier,
                                  policy=Identity(subject=SIGNER, issuer=ISSUER))


async def test_private_image_verified_with_the_pods_pull_secret(
    apiserver: FakeApiServer, basic_registry: LocalRegistry, signed_private_image: str, kit: SigstoreKit
) -> None:
    apiserver.put("secrets", pull_secret(basic_registry.host))
    api = k8s_client.ApiClient(k8s_client.Configuration(host=apiserver.url))
    secrets = PullSecrets(api)
    pod_spec = {"imagePullSecrets": [{"name": "regcred"}], "containers": [{"name": "app", "image": "x"}]}

    credentials = await secrets.credentials_for_async("team-a", pod_spec)
    result = await verify_with(credentials, signed_private_image, kit)
    assert result.ok, result.explain()
    assert result.signatures[0].signer is not None and result.signatures[0].signer.subject == SIGNER

    # Same image, a pod without the secret: denied, and the reason says why.
    anonymous = await secrets.credentials_for_async("team-a", {"containers": [{"name": "app", "image": "x"}]})
    denied = await verify_with(anonymous, signed_private_image, kit)
    assert not denied.ok and denied.infrastructure_failure
    explanation = denied.explain()
    assert f"authentication required and no credentials are configured for {basic_registry.host}" in explanation
