"""The decision engine: policies × signatures → per-image verdicts, with caches and a deadline.

The registry is the in-memory fake behind httpx.MockTransport (the seam); signatures are real,
made by the test signing kit and verified against its trust root.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.sigstore_kit import default_kit
from tests.unit.engine_harness import ISSUER, REPO, SIGNER, Harness, policies, policy_yaml, push_signed
from tests.unit.oci.fake_registry import HOST, OCI_MANIFEST, SIMPLE_SIGNING, FakeRegistry
from webhook.decision import NOT_IN_TIME, OnError
from webhook.oci import CredentialStore
from webhook.policy.models import NoMatchPolicy

pytestmark = pytest.mark.anyio


async def test_signed_image_is_allowed_with_signer_recorded(make: Callable[..., Harness]) -> None:
    h = make(policies(policy_yaml()))
    digest = push_signed(h.fake, default_kit())
    [outcome] = await h.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == "allow", outcome.reason
    assert outcome.digest == digest
    assert (outcome.policy, outcome.authority, outcome.signer, outcome.issuer) == ("release", "signer", SIGNER, ISSUER)
    assert outcome.log_index is not None


async def test_wrong_identity_is_denied_naming_found_and_expected(make: Callable[..., Harness]) -> None:
    h = make(policies(policy_yaml("someone-else@example.com")))
    push_signed(h.fake, default_kit())
    [outcome] = await h.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == "deny"
    assert SIGNER in outcome.reason and "someone-else@example.com" in outcome.reason
    assert outcome.signer == SIGNER


async def test_unsigned_image_is_denied_with_no_signatures(make: Callable[..., Harness]) -> None:
    h = make(policies(policy_yaml()))
    h.fake.put_image(REPO, "v1")
    [outcome] = await h.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == "deny" and "no signatures found" in outcome.reason


@pytest.mark.parametrize(("no_match", "verdict"), [(NoMatchPolicy.DENY, "deny"), (NoMatchPolicy.WARN, "warn"),
                                                   (NoMatchPolicy.ALLOW, "allow")])
async def test_no_matching_policy_follows_no_match_policy(make: Callable[..., Harness], no_match: NoMatchPolicy,
                                                         verdict: str) -> None:
    h = make(policies(policy_yaml(), no_match=no_match))
    [outcome] = await h.decide("other.example/x/y:1")
    assert outcome.verdict == verdict and "no policy matches" in outcome.reason
    assert h.client.request_count == 0


async def test_warn_mode_warns_but_an_enforcing_failure_still_denies(make: Callable[..., Harness]) -> None:
    warn_only = make(policies(policy_yaml("nobody@example.com", mode="warn")))
    push_signed(warn_only.fake, default_kit())
    [outcome] = await warn_only.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == "warn"
    both = make(policies(policy_yaml("nobody@example.com", mode="warn", name="a"),
                         policy_yaml("other@example.com", name="b")), fake=warn_only.fake)
    [outcome] = await both.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == "deny" and outcome.policy == "b"


async def test_every_matching_policy_must_pass(make: Callable[..., Harness]) -> None:
    h = make(policies(policy_yaml(name="a"), policy_yaml("other@example.com", name="b")))
    push_signed(h.fake, default_kit())
    [outcome] = await h.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == "deny" and outcome.policy == "b"


async def test_any_authority_of_a_policy_suffices(make: Callable[..., Harness]) -> None:
    extra = "  authorities:\n    - name: nobody\n      static: {action: fail, message: closed}\n"
    text = policy_yaml().replace("  authorities:\n", extra, 1)
    h = make(policies(text))
    push_signed(h.fake, default_kit())
    [outcome] = await h.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == "allow" and outcome.authority == "signer"


async def test_static_fail_denies_with_its_message(make: Callable[..., Harness]) -> None:
    text = (f"apiVersion: policy.signet.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {{name: frozen}}\n"
            f"spec:\n  images: [{{glob: '{HOST}/**'}}]\n  authorities:\n"
            f"    - name: freeze\n      static: {{action: fail, message: change freeze}}\n")
    h = make(policies(text))
    h.fake.put_image(REPO, "v1")
    [outcome] = await h.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == "deny" and "change freeze" in outcome.reason


async def test_missing_trust_root_fails_closed(make: Callable[..., Harness]) -> None:
    text = policy_yaml().replace("        identities:", "        trustRootRef: private\n        identities:")
    h = make(policies(text))
    push_signed(h.fake, default_kit())
    [outcome] = await h.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == "deny" and "TrustRoot 'private' does not exist" in outcome.reason


async def test_invalid_reference_is_denied_without_requests(make: Callable[..., Harness]) -> None:
    h = make(policies(policy_yaml()))
    [outcome] = await h.decide("UPPER//bad@@ref")
    assert outcome.verdict == "deny" and "invalid image reference" in outcome.reason
    assert h.client.request_count == 0


@pytest.mark.parametrize(("on_error", "verdict"), [("deny", "deny"), ("warn", "warn"), ("allow", "allow")])
async def test_registry_failure_follows_on_error(make: Callable[..., Harness], on_error: OnError,
                                                 verdict: str) -> None:
    fake = FakeRegistry()
    fake.faults["/manifests/"] = lambda _r: httpx.Response(500)
    h = make(policies(policy_yaml()), fake=fake, on_error=on_error)
    [outcome] = await h.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == verdict
    assert "infrastructure failure" in outcome.reason and "500" in outcome.reason


async def test_second_admission_makes_no_registry_request(make: Callable[..., Harness]) -> None:
    h = make(policies(policy_yaml()))
    push_signed(h.fake, default_kit())
    await h.decide(f"{HOST}/{REPO}:v1", f"{HOST}/{REPO}:v1")
    before = h.client.request_count
    [outcome] = await h.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == "allow" and h.client.request_count == before


async def test_concurrent_admissions_of_a_new_image_verify_once(make: Callable[..., Harness]) -> None:
    h = make(policies(policy_yaml()))
    push_signed(h.fake, default_kit())
    results = await asyncio.gather(*(h.decide(f"{HOST}/{REPO}:v1") for _ in range(50)))
    assert all(r[0].verdict == "allow" for r in results)
    assert h.engine.caches.signatures.stats.misses == 1
    single = make(policies(policy_yaml()), fake=h.fake)
    await single.decide(f"{HOST}/{REPO}:v1")
    assert h.client.request_count == single.client.request_count


async def test_deny_is_rechecked_after_its_ttl(make: Callable[..., Harness]) -> None:
    h = make(policies(policy_yaml()), deny_ttl=0.05)
    digest = h.fake.put_image(REPO, "v1")
    [first] = await h.decide(f"{HOST}/{REPO}:v1")
    assert first.verdict == "deny"
    # Signed meanwhile: neither the verdict nor the "no signatures" result may outlive the deny TTL.
    sig = default_kit().sign_image_legacy(digest, repository=f"{HOST}/{REPO}", identity=SIGNER, issuer=ISSUER)
    layer = {**h.fake.put_blob(sig.payload), "mediaType": SIMPLE_SIGNING, "annotations": dict(sig.annotations)}
    body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": h.fake.put_blob(b"{}"), "layers": [layer]}
    h.fake.put_manifest(REPO, json.dumps(body).encode(), tag=digest.replace(":", "-") + ".sig")
    [cached] = await h.decide(f"{HOST}/{REPO}:v1")
    assert cached.verdict == "deny"
    await asyncio.sleep(0.1)
    [again] = await h.decide(f"{HOST}/{REPO}:v1")
    assert again.verdict == "allow"


class Hanging(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(500)


async def test_hanging_registry_is_not_verified_in_time(make: Callable[..., Harness]) -> None:
    h = make(policies(policy_yaml()), deadline=0.3, transport=Hanging())
    loop = asyncio.get_running_loop()
    start = loop.time()
    [outcome] = await h.decide(f"{HOST}/{REPO}:v1")
    assert loop.time() - start < 1.0
    assert outcome.verdict == "deny" and NOT_IN_TIME in outcome.reason and "infrastructure" in outcome.reason


async def test_pin_digest_is_requested_only_by_asking_policies(make: Callable[..., Harness]) -> None:
    pinning = policy_yaml(extra="  mutate: {pinDigest: true}\n")
    h = make(policies(pinning))
    push_signed(h.fake, default_kit())
    [decision] = await h.engine.decide([f"{HOST}/{REPO}:v1"], "team-a")
    assert decision.pin_digest
    plain = make(policies(policy_yaml()), fake=h.fake)
    [decision] = await plain.engine.decide([f"{HOST}/{REPO}:v1"], "team-a")
    assert not decision.pin_digest


async def test_pull_secret_credentials_reach_a_private_registry(make: Callable[..., Harness]) -> None:
    fake = FakeRegistry(auth="basic", credentials=("puller", "s3cret"))
    h = make(policies(policy_yaml()), fake=fake)
    push_signed(fake, default_kit())
    [without] = await h.decide(f"{HOST}/{REPO}:v1")
    assert without.verdict == "deny" and "no credentials" in without.reason and "infrastructure" in without.reason
    # The infrastructure denial was not cached: the same image with the pod's pull secret is admitted.
    secret = CredentialStore.from_docker_config({"auths": {HOST: {"username": "puller", "password": "s3cret"}}})
    [with_secret] = await h.decide(f"{HOST}/{REPO}:v1", credentials=secret)
    assert with_secret.verdict == "allow", with_secret.reason
    assert "s3cret" not in with_secret.reason + without.reason


def key_policy(secret: str, namespace_field: str = "") -> str:
    return (f"apiVersion: policy.signet.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {{name: keyed}}\n"
            f"spec:\n  images: [{{glob: '{HOST}/**'}}]\n  authorities:\n"
            f"    - name: release-key\n      key:\n        secretRef: {{name: {secret}{namespace_field}}}\n")


def push_keyed(fake: FakeRegistry, private_key: ec.EllipticCurvePrivateKey) -> None:
    digest = fake.put_image(REPO, "v1")
    sig = default_kit().sign_image_legacy(digest, repository=f"{HOST}/{REPO}", key=private_key, tlog=False)
    layer = {**fake.put_blob(sig.payload), "mediaType": SIMPLE_SIGNING, "annotations": dict(sig.annotations)}
    body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": fake.put_blob(b"{}"), "layers": [layer]}
    fake.put_manifest(REPO, json.dumps(body).encode(), tag=digest.replace(":", "-") + ".sig")


async def test_key_from_a_secret_verifies_and_an_unreadable_secret_denies(make: Callable[..., Harness]) -> None:
    private_key = ec.generate_private_key(ec.SECP256R1())
    pem = private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    asked: list[tuple[str | None, str]] = []

    async def secret_key(namespace: str | None, name: str) -> str:
        asked.append((namespace, name))
        if name != "release-key":
            raise LookupError(f"Secret {name} not found")
        return pem

    h = make(policies(key_policy("release-key", ", namespace: signet-keys")), secret_key=secret_key)
    push_keyed(h.fake, private_key)
    [outcome] = await h.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == "allow", outcome.reason
    assert asked == [("signet-keys", "release-key")]

    missing = make(policies(key_policy("gone")), fake=h.fake, secret_key=secret_key)
    [outcome] = await missing.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == "deny"
    # Whether the Secret exists, and what it holds, is not the business of whoever submitted the Pod.
    assert "key.secretRef is not available" in outcome.reason and "gone" not in outcome.reason

    offline = make(policies(key_policy("release-key")), fake=h.fake)
    [outcome] = await offline.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == "deny" and "needs the cluster integration" in outcome.reason


@pytest.mark.parametrize(("url", "verdict"), [("https://rekor.example", "allow"),
                                              ("https://rekor.other.example", "deny")])
async def test_rekor_selection_requires_an_entry_in_that_log(make: Callable[..., Harness], url: str,
                                                             verdict: str) -> None:
    text = policy_yaml().replace("        identities:", f"        rekor: {{url: '{url}'}}\n        identities:")
    h = make(policies(text))
    push_signed(h.fake, default_kit())
    [outcome] = await h.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == verdict, outcome.reason
    if verdict == "deny":
        assert f"not recorded in the Rekor log {url}" in outcome.reason and outcome.signer == SIGNER


async def test_key_rekor_requires_a_log_entry_for_key_signatures(make: Callable[..., Harness]) -> None:
    private_key = ec.generate_private_key(ec.SECP256R1())
    pem = private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    indented = "\n".join("          " + line for line in pem.strip().splitlines())
    text = (f"apiVersion: policy.signet.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {{name: keyed}}\n"
            f"spec:\n  images: [{{glob: '{HOST}/**'}}]\n  authorities:\n    - name: release-key\n      key:\n"
            f"        data: |\n{indented}\n")
    h = make(policies(text))
    push_keyed(h.fake, private_key)  # signed without a transparency log entry
    [outcome] = await h.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == "allow", outcome.reason
    logged = make(policies(text.replace("      key:\n", "      key:\n        rekor: {}\n")), fake=h.fake)
    [outcome] = await logged.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == "deny" and "not recorded in a transparency log" in outcome.reason


@pytest.mark.parametrize(("edit", "verdict", "phrase"), [
    # a single-platform manifest has no children: its own signature is all there is
    (("  mode: enforce\n", "  mode: enforce\n  multiArch: everyPlatform\n"), "allow", "verified"),
    (("        identities:", "        ctlog: {url: 'https://ct.example'}\n        identities:"), "deny",
     "no CT log at https://ct.example"),
    (("        identities:", "        ctlog: {url: 'https://ctfe.example/test/'}\n        identities:"), "allow",
     "verified"),
])
async def test_requirements_once_refused_are_enforced(make: Callable[..., Harness], edit: tuple[str, str],
                                                     verdict: str, phrase: str) -> None:
    h = make(policies(policy_yaml().replace(*edit)))
    push_signed(h.fake, default_kit())
    [outcome] = await h.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == verdict and phrase in outcome.reason, outcome.reason


@pytest.mark.parametrize("fault", ["500", "hang"])
async def test_warn_mode_means_warn_also_when_the_registry_fails(make: Callable[..., Harness], fault: str) -> None:
    # The README rollout: every matching policy in warn mode, onError at its default (deny).
    fake = FakeRegistry()
    fake.faults["/manifests/"] = lambda _r: httpx.Response(500)
    warn = policy_yaml(mode="warn")
    if fault == "500":
        h = make(policies(warn), fake=fake)
    else:
        h = make(policies(warn), deadline=0.3, transport=Hanging())
    [outcome] = await h.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == "warn", outcome.reason
    assert "infrastructure failure" in outcome.reason and "warn mode" in outcome.reason
    # One enforcing policy among them: onError decides again.
    both = make(policies(warn.replace("name: release", "name: a"), policy_yaml(name="b")), fake=fake)
    [outcome] = await both.decide(f"{HOST}/{REPO}:v1")
    assert outcome.verdict == "deny" and "onError: deny" in outcome.reason


@pytest.mark.parametrize("on_error", ["deny", "warn", "allow"])
async def test_a_missing_image_is_a_verdict_not_an_infrastructure_failure(make: Callable[..., Harness],
                                                                          on_error: OnError) -> None:
    h = make(policies(policy_yaml()), on_error=on_error)
    push_signed(h.fake, default_kit())
    for missing in (f"{HOST}/{REPO}:v1-typo", f"{HOST}/{REPO}@sha256:{'ab' * 32}"):
        [outcome] = await h.decide(missing)
        # onError allow must not admit a typo: the registry answered, and it said "no such image".
        assert outcome.verdict == "deny", (missing, outcome.reason)
        assert "does not exist" in outcome.reason or "no signatures found" in outcome.reason
        assert "infrastructure" not in outcome.reason
    warn = make(policies(policy_yaml(mode="warn")), fake=h.fake, on_error=on_error)
    [outcome] = await warn.decide(f"{HOST}/{REPO}:v1-typo")
    assert outcome.verdict == "warn" and "does not exist" in outcome.reason


async def test_a_static_fail_policy_denies_without_asking_the_registry(make: Callable[..., Harness]) -> None:
    catch_all = ("apiVersion: policy.signet.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: catch-all}\n"
                 "spec:\n  images: [{glob: '**'}]\n  authorities:\n"
                 "    - {name: nope, static: {action: fail, message: 'unreviewed registry'}}\n")
    h = make(policies(catch_all, policy_yaml()), on_error="allow", transport=Hanging())
    [outcome] = await h.decide(f"{HOST}/{REPO}:v1")
    # With the registry down and onError allow, the catch-all must still deny, and at once.
    assert outcome.verdict == "deny" and outcome.reason == "unreviewed registry"
    assert outcome.policy == "catch-all"


async def test_clients_for_many_credential_sets_are_never_closed_under_a_running_check(
        make: Callable[..., Harness]) -> None:
    fake = FakeRegistry(auth="basic", credentials=("puller", "s3cret"))
    h = make(policies(policy_yaml()), fake=fake)
    digest = push_signed(fake, default_kit())
    sets = [CredentialStore.from_docker_config({"auths": {HOST: {"username": "puller", "password": "s3cret"},
                                                          f"other{n}.test": {"username": "u", "password": str(n)}}})
            for n in range(80)]
    # 80 distinct credential sets at once: more than the pool keeps, all with work in flight.
    results = await asyncio.gather(*(h.engine.decide([f"{HOST}/{REPO}@{digest}"], "team-a", creds) for creds in sets))
    reasons = [r[0].outcome.reason for r in results]
    assert all(r[0].outcome.verdict == "allow" for r in results), [x for x in reasons if x != "verified"][:3]


async def test_a_digest_glob_applies_to_a_tag_once_it_is_resolved(make: Callable[..., Harness]) -> None:
    # As policy-controller: the tag is resolved first, so `…@sha256:*` covers `:v1` too.
    pinned_only = ("apiVersion: policy.signet.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: pinned}\n"
                   f"spec:\n  images: [{{glob: '{HOST}/acme/app@sha256:*'}}]\n  authorities:\n"
                   "    - {name: nope, static: {action: fail, message: 'no digest-pinned app'}}\n")
    h = make(policies(pinned_only, policy_yaml()))
    digest = push_signed(h.fake, default_kit())
    for image in (f"{HOST}/{REPO}:v1", f"{HOST}/{REPO}@{digest}"):
        [outcome] = await h.decide(image)
        assert outcome.verdict == "deny" and outcome.reason == "no digest-pinned app", image
        assert outcome.digest == digest
    [warm] = await h.decide(f"{HOST}/{REPO}:v1")
    assert warm.verdict == "deny" and warm.reason == "no digest-pinned app"
