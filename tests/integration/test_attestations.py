"""Attestation requirements against Debian's docker-registry: every layout, keyless and keyed, Rekor lookups,
and the real ``cosign attest --new-bundle-format`` attestation from ../shared/fixtures served as a referrer.

The registry has no referrers API, so bundles are found through the referrers fallback tag (the
unit tests cover the API). ``.att`` layers without a Rekor bundle annotation are looked up in the
Rekor stand-in, which canonicalizes proposed ``intoto`` 0.0.1 and ``dsse`` 0.0.1 entries as Rekor
does (``intoto`` 0.0.2 proposals need Rekor's own re-serialization of the envelope, which the
stand-in does not reproduce).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import rfc8785

from tests.fixtures_path import shared_fixture
from tests.integration.registry import LocalRegistry
from tests.integration.rekor_server import RekorServer
from tests.sigstore_kit import SigstoreKit
from tests.sigstore_kit.attestations import (
    LegacyImageAttestation,
    LegacyLogEntry,
    attest_image_bundle,
    attest_image_legacy,
)
from tests.sigstore_kit.keys import new_p256, public_pem
from tests.sigstore_kit.tlog import LogEntry, RekorV1Log
from webhook.decision import Engine
from webhook.images import RekorLookup, check_image
from webhook.oci import RegistryClient, parse_reference
from webhook.policy.loader import load_text
from webhook.policy.matching import PolicySet
from webhook.policy.models import NoMatchPolicy
from webhook.rekor import RekorClient
from webhook.trust.embedded import production_trusted_root
from webhook.verify.trustroot import TrustedRoot
from webhook.verify.verifier import Verifier

pytestmark = pytest.mark.anyio

SIGNER, ISSUER = "builder@example.com", "https://oidc.example"
PROVENANCE = "https://slsa.dev/provenance/v1"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
DSSE = "application/vnd.dsse.envelope.v1+json"
TAGS = {"buildDefinition": {"externalParameters": {"workflow": {"ref": "refs/tags/v1.0.0"}}}}
BRANCH = {"buildDefinition": {"externalParameters": {"workflow": {"ref": "refs/heads/dev"}}}}
TAGS_ONLY = 'predicate.buildDefinition.externalParameters.workflow.ref.startsWith("refs/tags/")'
REAL = ("cosign", "oci-attestation-new-bundle-format", "oci-attestation.sigstore.json")
REAL_SUBJECT = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"


class AttestationRekor(RekorServer):
    """The Rekor stand-in, also answering proposed ``intoto`` 0.0.1 and ``dsse`` 0.0.1 entries as Rekor does."""

    def __init__(self, log: RekorV1Log) -> None:
        super().__init__(log)
        self.proposals: list[str] = []

    def by_proposed(self, proposed: Any) -> LogEntry | None:
        kind = f"{proposed.get('kind')} {proposed.get('apiVersion')}" if isinstance(proposed, dict) else "?"
        self.proposals.append(kind)
        body = _canonical(proposed)
        if body is None:
            return super().by_proposed(proposed)
        return next((e for e in self.log.entries if e.body == body), None)


def _canonical(proposed: Any) -> bytes | None:
    """The canonical body Rekor would log for a proposed intoto 0.0.1 or dsse 0.0.1 entry."""
    try:
        spec = proposed["spec"]
        if (proposed["kind"], proposed["apiVersion"]) == ("intoto", "0.0.1"):
            envelope = spec["content"]["envelope"].encode()
            payload = base64.b64decode(json.loads(envelope)["payload"])
            return rfc8785.dumps({"apiVersion": "0.0.1", "kind": "intoto", "spec": {
                "content": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(envelope).hexdigest()},
                            "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
                "publicKey": spec["publicKey"]}})
        if (proposed["kind"], proposed["apiVersion"]) == ("dsse", "0.0.1"):
            envelope = spec["proposedContent"]["envelope"].encode()
            parsed = json.loads(envelope)
            payload = base64.b64decode(parsed["payload"])
            [verifier] = spec["proposedContent"]["verifiers"]
            return rfc8785.dumps({"apiVersion": "0.0.1", "kind": "dsse", "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(envelope).hexdigest()},
                "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
                "signatures": [{"signature": s["sig"], "verifier": verifier} for s in parsed["signatures"]]}})
    except (KeyError, TypeError, ValueError):
        return None
    return None


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return SigstoreKit.create(seed_entries=3)


@pytest.fixture(scope="module")
def rekor(kit: SigstoreKit) -> Iterator[AttestationRekor]:
    server = AttestationRekor(kit.rekor_v1)
    yield server
    server.stop()


@pytest.fixture
async def client() -> AsyncIterator[RegistryClient]:
    async with RegistryClient(allow_http=True) as registry_client:
        yield registry_client


def push_att(registry: LocalRegistry, repo: str, digest: str, *attestations: LegacyImageAttestation) -> None:
    registry.push_legacy_signature(repo, digest, [(a.envelope, a.annotations) for a in attestations], suffix="att",
                                   layer_media_type=DSSE)


def image(registry: LocalRegistry, kit: SigstoreKit, repo: str, *, signed: bool = True) -> str:
    digest = registry.push_random_image(repo, None)
    if signed:
        sig = kit.sign_image_legacy(digest, repository=f"{registry.host}/{repo}", identity=SIGNER, issuer=ISSUER)
        registry.push_legacy_signature(repo, digest, [(sig.payload, sig.annotations)])
    return digest


def keyless_policy(registry: LocalRegistry, policy: str | None = TAGS_ONLY, *, subject: str = SIGNER,
                   issuer: str = ISSUER, predicate_type: str = "slsaprovenance1",
                   require_signature: bool = True) -> str:
    text = (f"apiVersion: policy.signet.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {{name: provenance}}\n"
            f"spec:\n  images: [{{glob: '{registry.host}/**'}}]\n  authorities:\n    - name: builder\n"
            f"      keyless:\n        identities: [{{issuer: '{issuer}', subject: '{subject}'}}]\n"
            f"      requireSignature: {str(require_signature).lower()}\n"
            f"      attestations:\n        - name: provenance\n          predicateType: {predicate_type}\n")
    if policy is not None:
        text += f"          policy: {{type: cel, data: '{policy}'}}\n"
    return text


def keyed_policy(registry: LocalRegistry, pem: bytes) -> str:
    key = "\n".join(f"          {line}" for line in pem.decode().strip().splitlines())
    return (f"apiVersion: policy.signet.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {{name: keyed}}\n"
            f"spec:\n  images: [{{glob: '{registry.host}/**'}}]\n  authorities:\n    - name: key\n"
            f"      key:\n        data: |\n{key}\n      requireSignature: false\n"
            f"      attestations:\n        - name: provenance\n          predicateType: {PROVENANCE}\n"
            f"          policy: {{type: cel, data: '{TAGS_ONLY}'}}\n")


async def decide(policy_text: str, ref: str, client: RegistryClient, root: TrustedRoot) -> Any:
    result = load_text(policy_text, "test.yaml")
    assert not result.problems, result.problems
    policy_set = PolicySet.from_load_result(result, no_match_policy=NoMatchPolicy.DENY)
    engine = Engine(policies=lambda: policy_set, trust_root=lambda: root, registry=client)
    try:
        [decision] = await engine.decide([ref], "default")
    finally:
        await engine.aclose()
    return decision.outcome


# --- layouts, keyless ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["intoto", "intoto-0.0.2", "dsse"])
async def test_legacy_att_layers_pass_and_fail_on_their_policy(registry: LocalRegistry, kit: SigstoreKit,
                                                              client: RegistryClient, entry: LegacyLogEntry) -> None:
    root = TrustedRoot.from_json(kit.trusted_root_json())
    repo = f"att/legacy-{entry}"
    good = image(registry, kit, repo)
    push_att(registry, repo, good, attest_image_legacy(kit, good, predicate=TAGS, identity=SIGNER, issuer=ISSUER,
                                                       log_entry=entry, repository=f"{registry.host}/{repo}"))
    outcome = await decide(keyless_policy(registry), f"{registry.host}/{repo}@{good}", client, root)
    assert outcome.verdict == "allow", outcome.reason
    bad = image(registry, kit, repo)
    push_att(registry, repo, bad, attest_image_legacy(kit, bad, predicate=BRANCH, identity=SIGNER, issuer=ISSUER,
                                                      log_entry=entry))
    outcome = await decide(keyless_policy(registry), f"{registry.host}/{repo}@{bad}", client, root)
    assert outcome.verdict == "deny" and outcome.attestation == "provenance"
    assert "CEL expression is false" in outcome.reason


async def test_bundle_attestation_through_the_referrers_fallback_tag(registry: LocalRegistry, kit: SigstoreKit,
                                                                    client: RegistryClient) -> None:
    root = TrustedRoot.from_json(kit.trusted_root_json())
    repo = "att/bundle"
    digest = image(registry, kit, repo)
    bundle = attest_image_bundle(kit, digest, predicate=TAGS, identity=SIGNER, issuer=ISSUER)
    registry.push_bundle_referrer(repo, digest, bundle.to_json(), predicate_type=PROVENANCE)
    outcome = await decide(keyless_policy(registry), f"{registry.host}/{repo}@{digest}", client, root)
    assert outcome.verdict == "allow", outcome.reason
    other = await decide(keyless_policy(registry, subject="someone@example.com"), f"{registry.host}/{repo}@{digest}",
                         client, root)
    assert other.verdict == "deny"


@pytest.mark.parametrize("layout", ["legacy", "bundle"])
async def test_keyed_attestations_without_a_signature(registry: LocalRegistry, kit: SigstoreKit,
                                                     client: RegistryClient, layout: str) -> None:
    root = TrustedRoot.from_json(kit.trusted_root_json())
    key, other = new_p256(), new_p256()
    repo = f"att/keyed-{layout}"
    digest = image(registry, kit, repo, signed=False)
    if layout == "legacy":
        push_att(registry, repo, digest, attest_image_legacy(kit, digest, predicate=TAGS, key=key, log_entry=None))
    else:
        bundle = attest_image_bundle(kit, digest, predicate=TAGS, key=key)
        registry.push_bundle_referrer(repo, digest, bundle.to_json(), predicate_type=PROVENANCE)
    ref = f"{registry.host}/{repo}@{digest}"
    assert (await decide(keyed_policy(registry, public_pem(key.public_key())), ref, client, root)).verdict == "allow"
    refused = await decide(keyed_policy(registry, public_pem(other.public_key())), ref, client, root)
    assert refused.verdict == "deny" and refused.attestation == "provenance"


# --- Rekor lookups for .att layers without a bundle annotation ---------------------------------------------


@pytest.mark.parametrize("entry", ["intoto", "dsse"])
async def test_att_layer_without_bundle_annotation_is_found_in_rekor_once(
        registry: LocalRegistry, kit: SigstoreKit, client: RegistryClient, rekor: AttestationRekor,
        entry: LegacyLogEntry) -> None:
    repo = f"att/nobundle-{entry}"
    digest = image(registry, kit, repo, signed=False)
    made = attest_image_legacy(kit, digest, predicate=TAGS, identity=SIGNER, issuer=ISSUER,
                               log_entry=entry)
    push_att(registry, repo, digest, made.with_annotations({BUNDLE_ANNOTATION: None}))
    verifier = Verifier(TrustedRoot.from_json(kit.trusted_root_json()))
    ref = parse_reference(f"{registry.host}/{repo}@{digest}")
    before = rekor.retrieve_count
    async with RekorClient() as rekor_client:
        lookup = RekorLookup(rekor_client, rekor.url)
        for _ in range(2):
            found = await check_image(ref, registry_client=client, verifier=verifier, rekor=lookup,
                                      include_attestations=True)
            [checked] = found.attestations
            assert checked.verified is not None, checked.error
            assert checked.verified.log_index == made.entry.log_index  # type: ignore[union-attr]
    assert rekor.retrieve_count == before + 1  # the second run was answered from the client's cache
    offline = await check_image(ref, registry_client=client, verifier=verifier, include_attestations=True)
    [checked] = offline.attestations
    assert checked.verified is None and "no transparency log entry" in str(checked.error)


async def test_att_layer_not_in_rekor_does_not_verify(registry: LocalRegistry, kit: SigstoreKit,
                                                     client: RegistryClient, rekor: AttestationRekor) -> None:
    repo = "att/unlogged"
    digest = image(registry, kit, repo, signed=False)
    made = attest_image_legacy(kit, digest, identity=SIGNER, issuer=ISSUER, log_entry=None)
    push_att(registry, repo, digest, made)
    verifier = Verifier(TrustedRoot.from_json(kit.trusted_root_json()))
    async with RekorClient() as rekor_client:
        found = await check_image(parse_reference(f"{registry.host}/{repo}@{digest}"), registry_client=client,
                                  verifier=verifier, rekor=RekorLookup(rekor_client, rekor.url),
                                  include_attestations=True)
    [checked] = found.attestations
    assert checked.verified is None and "no transparency log entry" in str(checked.error)
    assert {"intoto 0.0.1", "dsse 0.0.1"} <= set(rekor.proposals)


# --- the real cosign attestation ------------------------------------------------------------------------------


@pytest.mark.fixtures
async def test_real_cosign_attestation_served_as_an_oci_referrer(registry: LocalRegistry,
                                                                client: RegistryClient) -> None:
    bundle = shared_fixture(*REAL).read_bytes()
    repo = "att/real-cosign"
    registry.push_bundle_referrer(repo, REAL_SUBJECT, bundle,
                                  predicate_type="https://cosign.sigstore.dev/attestation/v1")
    ref = f"{registry.host}/{repo}@{REAL_SUBJECT}"
    root = production_trusted_root()
    policy = ('predicateType == "https://cosign.sigstore.dev/attestation/v1" && '
              'predicate.Data.contains("foo") && signer.subject == "cody@soyland.com"')
    cody = keyless_policy(registry, policy, subject="cody@soyland.com", issuer="https://github.com/login/oauth",
                          predicate_type="custom", require_signature=False)
    outcome = await decide(cody, ref, client, root)
    assert outcome.verdict == "allow", outcome.reason
    assert (outcome.signer, outcome.issuer) == ("cody@soyland.com", "https://github.com/login/oauth")
    someone = await decide(cody.replace("cody@soyland.com'", "someone@soyland.com'"), ref, client, root)
    assert someone.verdict == "deny" and "cody@soyland.com" in someone.reason
    slsa = await decide(keyless_policy(registry, None, subject="cody@soyland.com",
                                       issuer="https://github.com/login/oauth", require_signature=False),
                        ref, client, root)
    assert slsa.verdict == "deny" and "https://cosign.sigstore.dev/attestation/v1" in slsa.reason
