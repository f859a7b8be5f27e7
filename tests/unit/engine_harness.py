"""A decision engine wired to an in-memory registry, for engine tests (the registry is the seam)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from tests.sigstore_kit import SigstoreKit, default_kit
from tests.unit.oci.fake_registry import HOST, OCI_MANIFEST, SIMPLE_SIGNING, FakeRegistry, dumps
from webhook.decision import Engine, EngineSettings, OnError
from webhook.oci import CredentialStore, RegistryClient, RegistryLimits
from webhook.policy.loader import load_text
from webhook.policy.matching import PolicySet
from webhook.policy.models import NoMatchPolicy
from webhook.verify.trustroot import TrustedRoot

SIGNER = "release@example.com"
ISSUER = "https://accounts.example.com"
REPO = "acme/app"

def policy_yaml(subject: str = SIGNER, *, glob: str = f"{HOST}/acme/**", mode: str = "enforce",
                name: str = "release", extra: str = "") -> str:
    return (f"apiVersion: policy.signet.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {{name: {name}}}\n"
            f"spec:\n  images: [{{glob: '{glob}'}}]\n  mode: {mode}\n{extra}  authorities:\n"
            f"    - name: signer\n      keyless:\n        identities:\n"
            f"          - {{issuer: '{ISSUER}', subject: '{subject}'}}\n")


def policies(*texts: str, no_match: NoMatchPolicy = NoMatchPolicy.DENY) -> PolicySet:
    result = load_text("---\n".join(texts), "test.yaml")
    assert not result.problems, result.problems
    return PolicySet.from_load_result(result, no_match_policy=no_match)


def push_signed(fake: FakeRegistry, kit: SigstoreKit, *, tag: str = "v1", identity: str = SIGNER,
                seed: bytes = b"layer") -> str:
    digest = fake.put_image(REPO, tag, seed=seed)
    sig = kit.sign_image_legacy(digest, repository=f"{HOST}/{REPO}", identity=identity, issuer=ISSUER)
    layer = {**fake.put_blob(sig.payload), "mediaType": SIMPLE_SIGNING, "annotations": dict(sig.annotations)}
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": fake.put_blob(b"{}"), "layers": [layer]}
    fake.put_manifest(REPO, dumps(manifest), tag=digest.replace(":", "-") + ".sig")
    return digest


class Harness:
    def __init__(self, fake: FakeRegistry, policy_set: PolicySet, client: RegistryClient, engine: Engine) -> None:
        self.fake, self.policy_set, self.client, self.engine = fake, policy_set, client, engine

    async def decide(self, *images: str, namespace: str | None = "team-a",
                     credentials: CredentialStore | None = None) -> list[Any]:
        return [d.outcome for d in await self.engine.decide(list(images), namespace, credentials)]


async def engine_harness() -> AsyncIterator[Callable[..., Harness]]:
    clients: list[RegistryClient] = []
    kit = default_kit()
    root = TrustedRoot.from_json(kit.trusted_root_json())

    def build(policy_set: PolicySet, *, fake: FakeRegistry | None = None, on_error: OnError = "deny",
              deadline: float = 5.0, deny_ttl: float = 30.0, transport: httpx.AsyncBaseTransport | None = None,
              trust_root: TrustedRoot | None = None,
              secret_key: Callable[[str | None, str], Awaitable[str]] | None = None) -> Harness:
        fake = fake or FakeRegistry()
        client = RegistryClient(transport=transport or fake.transport(),
                                limits=RegistryLimits(read_timeout=0.5, operation_timeout=1.0))
        clients.append(client)
        settings = EngineSettings(on_error=on_error, deadline=deadline, deny_ttl=deny_ttl)
        default_root = trust_root or root

        def registry_for(credentials: CredentialStore) -> RegistryClient:
            return RegistryClient(transport=transport or fake.transport(), credentials=credentials)

        engine = Engine(policies=lambda: policy_set, trust_root=lambda: default_root, registry=client,
                        settings=settings, registry_for=registry_for, secret_key=secret_key)
        engines.append(engine)
        return Harness(fake, policy_set, client, engine)

    engines: list[Engine] = []
    yield build
    for engine in engines:
        await engine.aclose()
    for client in clients:
        await client.aclose()


