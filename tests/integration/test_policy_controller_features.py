"""policy-controller's features against Debian's docker-registry and the Kubernetes API stand-in.

``source`` with ``signaturePullSecrets`` (signatures in an htpasswd-protected registry, the Secret
read through the cluster integration from the workload's namespace), ``multiArch: everyPlatform``
over a real index, and ``keyless.ca-cert`` / ``configMapRef`` read from a Secret and a ConfigMap
of the API stand-in. Signatures are made by the signing kit; nothing is faked below the engine.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from kubernetes import client as k8s_client

from tests.integration.conftest import BASIC_USER
from tests.integration.registry import OCI_INDEX, OCI_MANIFEST, LocalRegistry, canonical_json
from tests.k8s_apiserver import FakeApiServer
from tests.sigstore_kit import SigstoreKit
from tests.sigstore_kit.attestations import attest_image_legacy
from tests.sigstore_kit.ca import FulcioCA
from tests.sigstore_kit.ctlog import CTLog
from webhook.admission.outcome import ImageOutcome
from webhook.cluster import ClusterIntegration
from webhook.decision import Engine, EngineSettings
from webhook.oci import CredentialStore, RegistryClient
from webhook.policy.loader import load_text
from webhook.policy.matching import PolicySet, PolicyStore
from webhook.verify.trustroot import TrustedRoot

pytestmark = pytest.mark.anyio

SIGNER, ISSUER = "builder@example.com", "https://oidc.example"
SYSTEM = "signet-system"
DSSE = "application/vnd.dsse.envelope.v1+json"


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return SigstoreKit.create(seed_entries=1)


@pytest.fixture
def apiserver() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    yield server
    server.stop()


@pytest.fixture
async def cluster(apiserver: FakeApiServer) -> AsyncIterator[ClusterIntegration]:
    api = k8s_client.ApiClient(k8s_client.Configuration(host=apiserver.url))
    integration = ClusterIntegration(api, PolicyStore(), pull_secrets=False, prewarm_images=False, namespace=SYSTEM)
    yield integration
    await integration.stop()


def policy(host: str, extra_spec: str = "", keyless_extra: str = "", authority_extra: str = "",
           api_version: str = "policy.signet.dev/v1alpha1") -> str:
    return (f"apiVersion: {api_version}\nkind: ClusterImagePolicy\nmetadata: {{name: release}}\n"
            f"spec:\n  images: [{{glob: '{host}/**'}}]\n{extra_spec}  authorities:\n"
            f"    - name: builder\n      keyless:\n{keyless_extra}        identities:\n"
            f"          - {{issuer: '{ISSUER}', subject: '{SIGNER}'}}\n{authority_extra}")


async def decide(text: str, image: str, kit: SigstoreKit, *, cluster: ClusterIntegration | None = None,
                 namespace: str = "team-a") -> ImageOutcome:
    """A fresh engine over the real registries, reading the cluster through ``cluster``."""
    result = load_text(text, "test.yaml")
    assert not result.problems, [str(p) for p in result.problems]
    policy_set = PolicySet.from_load_result(result)
    root = TrustedRoot.from_json(kit.trusted_root_json())
    clients: list[RegistryClient] = []

    def registry_for(credentials: CredentialStore) -> RegistryClient:
        made = RegistryClient(credentials=credentials, allow_http=True)
        clients.append(made)
        return made

    async with RegistryClient(allow_http=True) as registry:
        engine = Engine(policies=lambda: policy_set, trust_root=lambda: root, registry=registry,
                        settings=EngineSettings(deadline=20.0), registry_for=registry_for,
                        secret_key=cluster.public_key if cluster else None,
                        ca_certificates=cluster.ca_certificates if cluster else None,
                        pull_secrets=cluster.registry_credentials if cluster else None,
                        config_map=cluster.config_map if cluster else None)
        try:
            [decision] = await engine.decide([image], namespace)
        finally:
            await engine.aclose()
            for client in clients:
                await client.aclose()
    return decision.outcome


def sign_into(target: LocalRegistry, repo: str, image_host: str, image_repo: str, digest: str, kit: SigstoreKit,
              *, tag_prefix: str = "") -> None:
    sig = kit.sign_image_legacy(digest, repository=f"{image_host}/{image_repo}", identity=SIGNER, issuer=ISSUER)
    target.push_legacy_signature(repo, digest, [(sig.payload, sig.annotations)])
    if tag_prefix:  # cosign's tag prefix: the same manifest under the prefixed tag
        body, media_type = _manifest(target, repo, digest.replace(":", "-") + ".sig")
        target.push_manifest(repo, tag_prefix + digest.replace(":", "-") + ".sig", body, media_type)


def _manifest(target: LocalRegistry, repo: str, tag: str) -> tuple[bytes, str]:
    """A manifest as the (open) registry serves it."""
    response = httpx.get(f"{target.url}/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
    assert response.status_code == 200, response.text
    return response.content, response.headers["content-type"]


def docker_secret(name: str, namespace: str, host: str, user: str, password: str) -> dict[str, Any]:
    config = {"auths": {host: {"username": user, "password": password}}}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}


# -- source ------------------------------------------------------------------------------------------

async def test_signatures_in_a_private_registry_are_read_with_the_namespaces_pull_secret(
        registry: LocalRegistry, basic_registry: LocalRegistry, kit: SigstoreKit, apiserver: FakeApiServer,
        cluster: ClusterIntegration) -> None:
    digest = registry.push_random_image("pc/sourced", None)
    sign_into(basic_registry, "signatures/sourced", registry.host, "pc/sourced", digest, kit)
    apiserver.put("secrets", docker_secret("sig-reader", "team-a", basic_registry.host, *BASIC_USER))
    text = policy(registry.host, authority_extra=f"      source:\n        - oci: {basic_registry.host}/signatures/"
                  "sourced\n          signaturePullSecrets: [{name: sig-reader}]\n")
    image = f"{registry.host}/pc/sourced@{digest}"
    allowed = await decide(text, image, kit, cluster=cluster)
    assert allowed.verdict == "allow", allowed.reason
    # team-b has no such Secret: the signature registry answers 401, which is not "unsigned"
    refused = await decide(text, image, kit, cluster=cluster, namespace="team-b")
    assert refused.verdict == "deny" and "infrastructure failure" in refused.reason
    assert f"no credentials are configured for {basic_registry.host}" in refused.reason
    # without a source the image's own repository has nothing
    assert (await decide(policy(registry.host), image, kit, cluster=cluster)).verdict == "deny"


async def test_a_policy_controller_document_reads_prefixed_tags_in_another_repository(
        registry: LocalRegistry, kit: SigstoreKit) -> None:
    digest = registry.push_random_image("pc/prefixed", None)
    sign_into(registry, "pc/prefixed-sigs", registry.host, "pc/prefixed", digest, kit, tag_prefix="team-")
    source = f"      source:\n        - {{oci: '{registry.host}/pc/prefixed-sigs', tagPrefix: team-}}\n"
    text = policy(registry.host, authority_extra=source, api_version="policy.sigstore.dev/v1beta1")
    image = f"{registry.host}/pc/prefixed@{digest}"
    assert (await decide(text, image, kit)).verdict == "allow"
    other = source.replace("team-", "other-")
    assert (await decide(policy(registry.host, authority_extra=other), image, kit)).verdict == "deny"


# -- multiArch: everyPlatform --------------------------------------------------------------------------

def push_index(target: LocalRegistry, repo: str, children: list[str]) -> str:
    manifests = []
    for number, digest in enumerate(children):
        body, media_type = _manifest(target, repo, digest)
        manifests.append({"mediaType": media_type, "digest": digest, "size": len(body),
                          "platform": {"os": "linux", "architecture": ("amd64", "arm64")[number]}})
    index = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
    return target.push_manifest(repo, "v1", index, OCI_INDEX)


async def test_every_platform_of_a_real_index_must_be_signed(registry: LocalRegistry, kit: SigstoreKit) -> None:
    repo = "pc/multi"
    amd64, arm64 = (registry.push_random_image(repo, None) for _ in range(2))
    index = push_index(registry, repo, [amd64, arm64])
    for digest in (index, amd64):
        sign_into(registry, repo, registry.host, repo, digest, kit)
    every = policy(registry.host, extra_spec="  multiArch: everyPlatform\n")
    denied = await decide(every, f"{registry.host}/{repo}:v1", kit)
    assert denied.verdict == "deny" and f"platform manifest {arm64} (linux/arm64)" in denied.reason
    assert (await decide(policy(registry.host), f"{registry.host}/{repo}:v1", kit)).verdict == "allow"
    sign_into(registry, repo, registry.host, repo, arm64, kit)
    allowed = await decide(every, f"{registry.host}/{repo}:v1", kit)
    assert allowed.verdict == "allow" and allowed.digest == index
    assert "every platform manifest (2) verified" in allowed.reason


# -- Secrets and ConfigMaps through the cluster integration ----------------------------------------

async def test_ca_certificates_come_from_a_secret_in_signets_namespace(
        registry: LocalRegistry, kit: SigstoreKit, apiserver: FakeApiServer, cluster: ClusterIntegration) -> None:
    corp = FulcioCA.create(CTLog(base_url="https://ct.corp.example"), organization="corp.example")
    repo = "pc/byo-ca"
    digest = registry.push_random_image(repo, None)
    sig = kit.sign_image_legacy(digest, repository=f"{registry.host}/{repo}", tlog=False,
                                leaf=corp.issue_leaf(SIGNER, ISSUER, sct="none"))
    registry.push_legacy_signature(repo, digest, [(sig.payload, sig.annotations)])
    chain = "".join(c.public_bytes(Encoding.PEM).decode() for c in (corp.intermediate, corp.root))
    apiserver.put("secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "corp-ca",
                                                                                 "namespace": SYSTEM},
                              "data": {"ca.crt": base64.b64encode(chain.encode()).decode()}})
    extra = "        caCert: {secretRef: {name: corp-ca}}\n        insecureIgnoreSCT: true\n"
    image = f"{registry.host}/{repo}@{digest}"
    allowed = await decide(policy(registry.host, keyless_extra=extra), image, kit, cluster=cluster)
    assert allowed.verdict == "allow", allowed.reason
    missing = extra.replace("corp-ca", "absent")
    denied = await decide(policy(registry.host, keyless_extra=missing), image, kit, cluster=cluster)
    assert denied.verdict == "deny" and "caCert.secretRef are not available" in denied.reason


async def test_a_config_map_policy_is_read_through_the_api(
        registry: LocalRegistry, kit: SigstoreKit, apiserver: FakeApiServer, cluster: ClusterIntegration) -> None:
    repo = "pc/config-map"
    digest = registry.push_random_image(repo, None)
    sign_into(registry, repo, registry.host, repo, digest, kit)
    made = attest_image_legacy(kit, digest, predicate={"buildType": "release"}, identity=SIGNER, issuer=ISSUER,
                               repository=f"{registry.host}/{repo}")
    registry.push_legacy_signature(repo, digest, [(made.envelope, made.annotations)], suffix="att",
                                   layer_media_type=DSSE)
    apiserver.put("configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "build-policies", "namespace": SYSTEM},
                                 "data": {"release.cel": 'predicate.buildType == "release"',
                                          "nightly.cel": 'predicate.buildType == "nightly"'}})
    image = f"{registry.host}/{repo}@{digest}"

    def requiring(key: str) -> str:
        return policy(registry.host, authority_extra=(
            "      attestations:\n        - name: provenance\n          predicateType: slsaprovenance1\n"
            f"          policy: {{type: cel, configMapRef: {{name: build-policies, key: {key}}}}}\n"))

    allowed = await decide(requiring("release.cel"), image, kit, cluster=cluster)
    assert allowed.verdict == "allow", allowed.reason
    assert (await decide(requiring("nightly.cel"), image, kit, cluster=cluster)).verdict == "deny"
    absent = await decide(requiring("absent.cel"), image, kit, cluster=cluster)
    assert absent.verdict == "deny" and "cannot be read" in absent.reason
