"""Engines over in-memory registries with the cluster readers policy-controller's features need.

Signatures are real (the signing kit); registries are ``FakeRegistry`` instances behind one
``httpx.MockTransport`` that routes by host, so a signature repository can live on another
registry with its own credentials.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.sigstore_kit import SigstoreKit, default_kit
from tests.sigstore_kit.cosign import LegacyImageSignature
from tests.unit.oci.fake_registry import HOST, OCI_INDEX, OCI_MANIFEST, SIMPLE_SIGNING, FakeRegistry, dumps
from webhook.admission.outcome import ImageOutcome
from webhook.decision import Engine, EngineSettings
from webhook.decision.workload import Workload
from webhook.oci import CredentialStore, RegistryClient, RegistryLimits
from webhook.policy.loader import load_text
from webhook.policy.matching import PolicySet
from webhook.policy.models import NoMatchPolicy
from webhook.verify.trustroot import TrustedRoot

SIGNER = "release@example.com"
ISSUER = "https://accounts.example.com"
REPO = "acme/app"
SIGS_HOST = "sigs.test"


def routing(*fakes: FakeRegistry) -> httpx.MockTransport:
    """One transport for several in-memory registries, each answering for its own ``host``."""
    by_host = {fake.host: fake for fake in fakes}

    def handle(request: httpx.Request) -> httpx.Response:
        fake = by_host.get(request.url.host, fakes[0])
        return fake.handle(request)

    return httpx.MockTransport(handle)


def put_sig(fake: FakeRegistry, digest: str, *signatures: LegacyImageSignature, repo: str = REPO,
            tag_prefix: str = "") -> str:
    """cosign's ``<prefix>sha256-<hex>.sig`` manifest in ``repo``: one layer per signature."""
    layers = [{**fake.put_blob(s.payload), "mediaType": SIMPLE_SIGNING, "annotations": dict(s.annotations)}
              for s in signatures]
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": fake.put_blob(b"{}"), "layers": layers}
    return fake.put_manifest(repo, dumps(manifest), tag=tag_prefix + digest.replace(":", "-") + ".sig")


def sign(kit: SigstoreKit, digest: str, **options: Any) -> LegacyImageSignature:
    options.setdefault("identity", SIGNER)
    options.setdefault("issuer", ISSUER)
    return kit.sign_image_legacy(digest, repository=f"{HOST}/{REPO}", **options)


def put_index(fake: FakeRegistry, children: Sequence[str], *, repo: str = REPO, tag: str | None = "v1",
              platforms: Sequence[str] | None = None) -> str:
    """An OCI index listing ``children`` (manifests or indexes already pushed), one platform each."""
    names = platforms or [f"linux/arch{i}" for i in range(len(children))]
    manifests = [{"mediaType": fake.manifests[(repo, d)][1], "digest": d, "size": len(fake.manifests[(repo, d)][0]),
                  "platform": {"os": name.split("/")[0], "architecture": name.split("/")[1]}}
                 for d, name in zip(children, names, strict=True)]
    return fake.put_manifest(repo, dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}),
                             OCI_INDEX, tag=tag)


def keyless_policy(*, name: str = "release", subject: str = SIGNER, glob: str = f"{HOST}/acme/**",
                   spec_extra: str = "", keyless_extra: str = "", authority_extra: str = "",
                   api_version: str = "policy.signet.dev/v1alpha1") -> str:
    """A ClusterImagePolicy with one keyless authority; extras are YAML lines at their indentation."""
    return (f"apiVersion: {api_version}\nkind: ClusterImagePolicy\nmetadata: {{name: {name}}}\n"
            f"spec:\n  images: [{{glob: '{glob}'}}]\n{spec_extra}  authorities:\n"
            f"    - name: signer\n      keyless:\n{keyless_extra}        identities:\n"
            f"          - {{issuer: '{ISSUER}', subject: '{subject}'}}\n{authority_extra}")


def trust_root_doc(name: str, document: Mapping[str, Any]) -> str:
    """A Signet TrustRoot holding a trusted_root.json."""
    return (f"apiVersion: policy.signet.dev/v1alpha1\nkind: TrustRoot\nmetadata: {{name: {name}}}\n"
            f"spec:\n  trustedRoot: {json.dumps(json.dumps(document))}\n")


def load_policies(*texts: str, no_match: NoMatchPolicy = NoMatchPolicy.DENY) -> PolicySet:
    result = load_text("---\n".join(texts), "test.yaml")
    assert not result.problems, [str(p) for p in result.problems]
    return PolicySet.from_load_result(result, no_match_policy=no_match)


SecretReader = Callable[[str | None, str], Awaitable[str]]
PullReader = Callable[[str, Sequence[str]], Awaitable[CredentialStore]]


@dataclass
class Rig:
    """An engine over fakes, and what its readers were asked."""

    engine: Engine
    fakes: tuple[FakeRegistry, ...]
    pull_reads: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    async def decide(self, *images: str, namespace: str | None = "team-a",
                     workload: Workload | Mapping[str, Any] | None = None) -> list[ImageOutcome]:
        return [d.outcome for d in await self.engine.decide(list(images), namespace, workload=workload)]

    async def one(self, image: str, **options: Any) -> ImageOutcome:
        [outcome] = await self.decide(image, **options)
        return outcome


async def rigs() -> AsyncIterator[Callable[..., Rig]]:
    """A factory of rigs whose engines and clients are closed afterwards."""
    engines: list[Engine] = []
    clients: list[RegistryClient] = []
    default_root = TrustedRoot.from_json(default_kit().trusted_root_json())

    def build(policy_set: PolicySet, *fakes: FakeRegistry, root: TrustedRoot | None = None,
              secret_key: SecretReader | None = None, ca_certificates: SecretReader | None = None,
              pull_secrets: Mapping[str, CredentialStore] | None = None,
              settings: EngineSettings | None = None) -> Rig:
        registries = fakes or (FakeRegistry(),)
        transport = routing(*registries)
        client = RegistryClient(transport=transport, limits=RegistryLimits(read_timeout=0.5, operation_timeout=1.0))
        clients.append(client)

        def registry_for(credentials: CredentialStore) -> RegistryClient:
            made = RegistryClient(transport=transport, credentials=credentials)
            clients.append(made)
            return made

        reads: list[tuple[str, tuple[str, ...]]] = []

        async def read_pull(namespace: str, names: Sequence[str]) -> CredentialStore:
            reads.append((namespace, tuple(names)))
            assert pull_secrets is not None
            store = CredentialStore()
            for name in names:
                if name in pull_secrets:
                    store = store.merged(pull_secrets[name])
            return store

        engine = Engine(policies=lambda: policy_set, trust_root=lambda: root or default_root, registry=client,
                        settings=settings or EngineSettings(deadline=5.0), registry_for=registry_for,
                        secret_key=secret_key, ca_certificates=ca_certificates,
                        pull_secrets=read_pull if pull_secrets is not None else None)
        engines.append(engine)
        return Rig(engine, registries, reads)

    yield build
    for engine in engines:
        await engine.aclose()
    for client in clients:
        await client.aclose()


def basic_credentials(host: str, user: str, password: str) -> CredentialStore:
    return CredentialStore.from_docker_config({"auths": {host: {"username": user, "password": password}}})


__all__ = ["HOST", "ISSUER", "REPO", "SIGNER", "SIGS_HOST", "Rig", "basic_credentials", "default_kit",
           "keyless_policy", "load_policies", "put_index", "put_sig", "rigs", "routing", "sign", "trust_root_doc"]
