"""Verdicts are reused only for exactly what decided them (issue: verdicts outliving what they judged).

A long-lived engine is driven through tag moves, policy edits, Secret rotations, trust-root
changes, objects of other kinds and labels (``spec.match``) and credentials of a signature
repository (``source``); once the documented TTLs of what changed have passed (60 s for a tag's
digest, 30 s for what is read from a Secret; policies and trust roots at once), every decision
must equal the one a fresh engine makes of the same world. The registries are in-memory fakes;
signatures are real.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sigstore_kit import SigstoreKit, default_kit
from tests.unit.decision.features import SIGS_HOST, basic_credentials, routing
from tests.unit.engine_harness import ISSUER, REPO, SIGNER
from tests.unit.oci.fake_registry import HOST, OCI_MANIFEST, SIMPLE_SIGNING, FakeRegistry
from webhook.admission.outcome import ImageOutcome
from webhook.decision import Engine, EngineSettings
from webhook.decision.caches import EngineCaches
from webhook.decision.workload import Workload
from webhook.oci import CredentialStore, RegistryClient
from webhook.policy.loader import load_text
from webhook.policy.matching import PolicySet
from webhook.verify.trustroot import TrustedRoot

OTHER = "intruder@example.com"
DIGEST_TTL, KEY_TTL = 60.0, 30.0
SIGS = "acme/signatures"
PULL_USER, PULL_PASSWORD = "reader", "s3cret"


@functools.cache
def second_kit() -> SigstoreKit:
    return SigstoreKit.create()


@functools.cache
def signing_keys() -> tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey]:
    return ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())


def pem_of(key: ec.EllipticCurvePrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _attach(fake: FakeRegistry, digest: str, payload: bytes, annotations: dict[str, str], repo: str = REPO) -> None:
    layer = {**fake.put_blob(payload), "mediaType": SIMPLE_SIGNING, "annotations": annotations}
    body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": fake.put_blob(b"{}"), "layers": [layer]}
    fake.put_manifest(repo, json.dumps(body).encode(), tag=digest.replace(":", "-") + ".sig")


@functools.cache
def template() -> tuple[FakeRegistry, FakeRegistry, dict[str, str]]:
    """Images by what signed them, each pushed once (signing is the slow part); copied per world.

    ``sourced`` has its signature only in the signature repository of another registry, which
    wants credentials (``source`` with ``signaturePullSecrets``).
    """
    fake = FakeRegistry()
    sigs = FakeRegistry(host=SIGS_HOST, auth="basic", credentials=(PULL_USER, PULL_PASSWORD))
    images: dict[str, str] = {}
    for name, kit, identity in [("kit1-signer", default_kit(), SIGNER), ("kit1-other", default_kit(), OTHER),
                                ("kit2-signer", second_kit(), SIGNER)]:
        digest = images[name] = fake.put_image(REPO, None, seed=name.encode())
        sig = kit.sign_image_legacy(digest, repository=f"{HOST}/{REPO}", identity=identity, issuer=ISSUER)
        _attach(fake, digest, sig.payload, dict(sig.annotations))
    for number, key in enumerate(signing_keys(), start=1):
        digest = images[f"key{number}"] = fake.put_image(REPO, None, seed=f"key{number}".encode())
        sig = default_kit().sign_image_legacy(digest, repository=f"{HOST}/{REPO}", key=key, tlog=False)
        _attach(fake, digest, sig.payload, dict(sig.annotations))
    images["unsigned"] = fake.put_image(REPO, None, seed=b"unsigned")
    digest = images["sourced"] = fake.put_image(REPO, None, seed=b"sourced")
    sig = default_kit().sign_image_legacy(digest, repository=f"{HOST}/{REPO}", identity=SIGNER, issuer=ISSUER)
    _attach(sigs, digest, sig.payload, dict(sig.annotations), repo=SIGS)
    return fake, sigs, images


def keyless(subject: str, *, mode: str = "enforce", root: str = "", name: str = "release", spec: str = "",
            authority: str = "") -> str:
    ref = f"        trustRootRef: {root}\n" if root else ""
    return (f"apiVersion: policy.signet.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {{name: {name}}}\n"
            f"spec:\n  images: [{{glob: '{HOST}/acme/**'}}]\n  mode: {mode}\n{spec}  authorities:\n"
            f"    - name: signer\n      keyless:\n{ref}        identities:\n"
            f"          - {{issuer: '{ISSUER}', subject: '{subject}'}}\n{authority}")


WEB_PODS = ("  match:\n    - group: ''\n      version: v1\n      resource: pods\n"
            "      selector: {matchLabels: {tier: web}}\n")
SOURCED = (f"      source:\n        - oci: {SIGS_HOST}/{SIGS}\n"
           "          signaturePullSecrets: [{name: sig-reader}]\n")


def keyed(name: str = "keyed") -> str:
    return (f"apiVersion: policy.signet.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {{name: {name}}}\n"
            f"spec:\n  images: [{{glob: '{HOST}/acme/**'}}]\n  authorities:\n"
            f"    - name: release-key\n      key:\n        secretRef: {{name: release-key}}\n")


def private_root() -> str:
    document = json.loads(second_kit().trusted_root_json())
    return ("apiVersion: policy.signet.dev/v1alpha1\nkind: TrustRoot\nmetadata: {name: private}\n"
            f"spec:\n  trustedRoot: {json.dumps(json.dumps(document))}\n")


POLICIES: list[Callable[[], str]] = [
    lambda: keyless(SIGNER),
    lambda: keyless(OTHER),
    lambda: keyless(SIGNER, mode="warn"),
    keyed,
    lambda: keyless(SIGNER, root="private") + "---\n" + private_root(),
    lambda: keyless(SIGNER, name="a") + "---\n" + keyed(name="b"),
    # only web Pods must be signed by OTHER; everything else by SIGNER
    lambda: keyless(SIGNER) + "---\n" + keyless(OTHER, name="web-pods", spec=WEB_PODS),
    lambda: keyless(SIGNER, authority=SOURCED),
    lambda: keyless(SIGNER, name="sourced", authority=SOURCED, spec=WEB_PODS),
]
OBJECTS: list[Workload | None] = [
    None,
    Workload.of({"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"tier": "web"}}},
                group="", version="v1", resource="pods"),
    Workload.of({"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"tier": "db"}}},
                group="", version="v1", resource="pods"),
    Workload.of({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"labels": {"tier": "web"}}},
                group="apps", version="v1", resource="deployments"),
]


@functools.cache
def policy_set(index: int) -> PolicySet:
    result = load_text(POLICIES[index](), "test.yaml")
    assert not result.problems, result.problems
    return PolicySet.from_load_result(result)


@functools.cache
def trust_root(index: int) -> TrustedRoot:
    return TrustedRoot.from_json((default_kit(), second_kit())[index].trusted_root_json())


@dataclass
class World:
    """What the engine looks at, changeable; ``engine()`` builds an engine over it."""

    policy: int = 0
    root: int = 0
    secret: str | None = None
    pull_password: str | None = PULL_PASSWORD
    """The password the ``sig-reader`` Secret holds (None: the Secret does not exist)."""
    now: float = 1000.0
    fake: FakeRegistry = field(default_factory=FakeRegistry)
    sigs: FakeRegistry = field(default_factory=lambda: FakeRegistry(host=SIGS_HOST, auth="basic",
                                                                    credentials=(PULL_USER, PULL_PASSWORD)))
    images: dict[str, str] = field(default_factory=dict)
    clients: list[RegistryClient] = field(default_factory=list)

    @classmethod
    def create(cls) -> World:
        shared, shared_sigs, images = template()
        world = cls(images=images)
        world.fake.manifests, world.fake.blobs = dict(shared.manifests), dict(shared.blobs)
        world.sigs.manifests, world.sigs.blobs = dict(shared_sigs.manifests), dict(shared_sigs.blobs)
        return world

    def tag(self, tag: str, image: str) -> None:
        self.fake.manifests[(REPO, tag)] = self.fake.manifests[(REPO, self.images[image])]

    async def read_secret(self, namespace: str | None, name: str) -> str:
        if self.secret is None or name != "release-key":
            raise LookupError("no such Secret")
        return self.secret

    async def read_pull_secrets(self, namespace: str, names: Sequence[str]) -> CredentialStore:
        if self.pull_password is None or "sig-reader" not in names:
            return CredentialStore()
        return basic_credentials(SIGS_HOST, PULL_USER, self.pull_password)

    def engine(self) -> Engine:
        transport = routing(self.fake, self.sigs)
        client = RegistryClient(transport=transport)
        self.clients.append(client)
        settings_ = EngineSettings(digest_ttl=DIGEST_TTL, key_ttl=KEY_TTL)

        def registry_for(credentials: CredentialStore) -> RegistryClient:
            made = RegistryClient(transport=transport, credentials=credentials)
            self.clients.append(made)
            return made

        return Engine(policies=lambda: policy_set(self.policy), trust_root=lambda: trust_root(self.root),
                      registry=client, settings=settings_, caches=EngineCaches(settings_, clock=lambda: self.now),
                      secret_key=self.read_secret, registry_for=registry_for, pull_secrets=self.read_pull_secrets)

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


def summary(outcome: ImageOutcome) -> tuple[object, ...]:
    return (outcome.reference, outcome.digest, outcome.verdict, outcome.policy, outcome.authority, outcome.reason,
            outcome.signer, outcome.issuer, outcome.log_index)


async def decide(engine: Engine, image: str, workload: Workload | None = None) -> ImageOutcome:
    [decision] = await engine.decide([image], "team-a", workload=workload)
    return decision.outcome


IMAGE_NAMES = ["kit1-signer", "kit1-other", "kit2-signer", "key1", "key2", "unsigned", "sourced"]
actions = st.lists(st.one_of(
    st.tuples(st.just("tag"), st.sampled_from(["v1", "v2"]), st.sampled_from(IMAGE_NAMES)),
    st.tuples(st.just("policy"), st.integers(0, len(POLICIES) - 1)),
    st.tuples(st.just("secret"), st.sampled_from([None, "key1", "key2"])),
    st.tuples(st.just("pull"), st.sampled_from([None, PULL_PASSWORD, "wrong"])),
    st.tuples(st.just("root"), st.integers(0, 1)),
    # each query asks about every object under review, in some order
    st.tuples(st.just("query"), st.sampled_from(["v1", "v2", *IMAGE_NAMES]), st.permutations(range(len(OBJECTS)))),
), min_size=1, max_size=14)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(POLICIES) - 1), actions)
def test_a_long_lived_engine_decides_like_a_fresh_one(policy: int, steps: list[tuple[object, ...]]) -> None:
    asyncio.run(_differential(policy, steps))


async def _differential(policy: int, steps: list[tuple[object, ...]]) -> None:
    world = World.create()
    world.policy = policy
    world.tag("v1", "kit1-signer")
    world.tag("v2", "unsigned")
    pems = dict(zip(["key1", "key2"], [pem_of(k) for k in signing_keys()], strict=True))
    long_lived = world.engine()
    try:
        for step in steps:
            match step:
                case ("tag", str(tag), str(image)):
                    world.tag(tag, image)
                    world.now += DIGEST_TTL + 1  # the documented staleness of a tag's digest
                case ("secret", value):
                    world.secret = pems[value] if isinstance(value, str) else None
                    world.now += KEY_TTL + 1  # the documented staleness of a key read from a Secret
                case ("pull", value):
                    world.pull_password = value if isinstance(value, str) else None
                    world.now += KEY_TTL + 1  # as for keys: credentials read from a Secret
                case ("policy", int(index)):
                    world.policy = index
                case ("root", int(index)):
                    world.root = index
                case ("query", str(which), list(order)):
                    image = f"{HOST}/{REPO}:{which}" if which in ("v1", "v2") else \
                        f"{HOST}/{REPO}@{world.images[which]}"
                    for obj in order:
                        warm = await decide(long_lived, image, OBJECTS[obj])
                        fresh = await decide(world.engine(), image, OBJECTS[obj])
                        assert summary(warm) == summary(fresh), (step, world.policy, world.root, obj)
    finally:
        await world.aclose()


# -- the findings, one by one -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_moved_tag_is_judged_again_once_its_digest_expires() -> None:
    world = World.create()
    world.tag("v1", "kit1-signer")
    engine = world.engine()
    image = f"{HOST}/{REPO}:v1"
    try:
        assert (await decide(engine, image)).verdict == "allow"
        world.tag("v1", "unsigned")
        world.now += DIGEST_TTL + 1  # the allow verdict (1 h) is still cached: for the old digest only
        moved = await decide(engine, image)
        assert moved.verdict == "deny" and moved.digest == world.images["unsigned"]
        assert "no signatures found" in moved.reason
    finally:
        await world.aclose()


@pytest.mark.anyio
async def test_a_rotated_or_deleted_secret_key_is_not_trusted_past_its_ttl() -> None:
    world = World.create()
    world.policy = 3
    first, second = (pem_of(k) for k in signing_keys())
    world.secret = first
    engine = world.engine()
    image = f"{HOST}/{REPO}@{world.images['key1']}"
    try:
        assert (await decide(engine, image)).verdict == "allow"
        world.secret = second
        world.now += KEY_TTL + 1
        assert (await decide(engine, image)).verdict == "deny"
        world.secret = None
        world.now += KEY_TTL + 1
        deleted = await decide(engine, image)
        assert deleted.verdict == "deny" and "key.secretRef is not available" in deleted.reason
    finally:
        await world.aclose()


@pytest.mark.anyio
async def test_policy_and_trust_root_changes_apply_at_once() -> None:
    world = World.create()
    engine = world.engine()
    image = f"{HOST}/{REPO}@{world.images['kit1-signer']}"
    try:
        assert (await decide(engine, image)).verdict == "allow"
        world.policy = 1  # now only OTHER may sign
        denied = await decide(engine, image)
        assert denied.verdict == "deny" and OTHER in denied.reason
        world.policy = 0
        assert (await decide(engine, image)).verdict == "allow"
        world.root = 1  # a different Sigstore instance: kit1's signature no longer chains
        assert (await decide(engine, image)).verdict == "deny"
    finally:
        await world.aclose()


@pytest.mark.anyio
async def test_every_spelling_of_one_image_shares_one_verdict_reported_as_written() -> None:
    world = World.create()
    world.tag("v1", "kit1-signer")
    engine = world.engine()
    digest = world.images["kit1-signer"]
    try:
        spellings = [f"{HOST}/{REPO}:v1", f"{HOST}/{REPO}@{digest}", f"{HOST.upper()}/{REPO}@{digest}"]
        outcomes = [await decide(engine, image) for image in spellings]
        assert [o.verdict for o in outcomes] == ["allow"] * 3
        assert [o.reference for o in outcomes] == spellings
        assert engine.caches.verdicts.stats.misses == 1
    finally:
        await world.aclose()


@pytest.mark.anyio
async def test_each_object_gets_the_policies_its_kind_and_labels_match() -> None:
    world = World.create()
    world.policy = 6  # web Pods must be signed by OTHER, everything by SIGNER
    engine = world.engine()
    image = f"{HOST}/{REPO}@{world.images['kit1-signer']}"
    web_pod, db_pod, web_deployment = OBJECTS[1], OBJECTS[2], OBJECTS[3]
    try:
        for _ in range(2):  # cold, then from memoised plans and cached verdicts
            denied = await decide(engine, image, web_pod)
            assert denied.verdict == "deny" and denied.policy == "web-pods"
            assert (await decide(engine, image, db_pod)).verdict == "allow"
            assert (await decide(engine, image, web_deployment)).verdict == "allow"
    finally:
        await world.aclose()


@pytest.mark.anyio
async def test_signature_repository_credentials_are_not_trusted_past_their_ttl() -> None:
    world = World.create()
    world.policy = 7  # signatures in another registry, read with the workload namespace's pull secret
    engine = world.engine()
    image = f"{HOST}/{REPO}@{world.images['sourced']}"
    try:
        assert (await decide(engine, image)).verdict == "allow"
        for password in ("wrong", None):
            world.pull_password = password
            world.now += KEY_TTL + 1  # the allow verdict (1 h) is still cached: for the old credentials only
            refused = await decide(engine, image)
            assert refused.verdict == "deny" and "infrastructure failure" in refused.reason, password
        world.pull_password = PULL_PASSWORD
        world.now += KEY_TTL + 1
        assert (await decide(engine, image)).verdict == "allow"
    finally:
        await world.aclose()
