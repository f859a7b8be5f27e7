"""Attestation requirements in the decision engine: every layout, keyless and keyed, each check passing and failing.

The registry is the in-memory fake; attestations are real, made by the signing kit and verified
against its trust root; CEL and Rego policies run in the policy sandbox.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.sigstore_kit import default_kit
from tests.sigstore_kit.attestations import attestation_statement
from tests.sigstore_kit.keys import new_p256, public_pem
from tests.unit.decision.attesting import (
    BRANCH_PROVENANCE,
    PROVENANCE,
    SPDX,
    attesting_policy,
    legacy,
    put_att,
    put_bundle,
    requirement,
)
from tests.unit.engine_harness import ISSUER, REPO, SIGNER, Harness, policies, push_signed
from tests.unit.oci.fake_registry import HOST, FakeRegistry

pytestmark = pytest.mark.anyio

IMAGE = f"{HOST}/{REPO}:v1"
TAGS_ONLY = 'predicate.buildDefinition.externalParameters.workflow.ref.startsWith("refs/tags/")'


def signed_image(h: Harness) -> str:
    return push_signed(h.fake, default_kit())


async def test_signed_image_with_a_passing_legacy_attestation_is_allowed(make: Callable[..., Harness]) -> None:
    h = make(policies(attesting_policy(requirement(policy=TAGS_ONLY))))
    digest = signed_image(h)
    put_att(h.fake, digest, legacy(default_kit(), digest))
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "allow", outcome.reason
    assert "attestations verified: provenance" in outcome.reason
    assert (outcome.signer, outcome.issuer) == (SIGNER, ISSUER)


async def test_a_missing_attestation_denies_naming_it_and_its_type(make: Callable[..., Harness]) -> None:
    h = make(policies(attesting_policy(requirement())))
    signed_image(h)
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "deny"
    assert (outcome.attestation, outcome.predicate_type) == ("provenance", PROVENANCE)
    assert f'attestation "provenance" ({PROVENANCE}): no attestations found' in outcome.reason
    assert outcome.signer == SIGNER  # the signature was fine: the audit still says who signed


async def test_an_attestation_of_another_predicate_type_denies_naming_what_was_found(
        make: Callable[..., Harness]) -> None:
    h = make(policies(attesting_policy(requirement())))
    digest = signed_image(h)
    put_att(h.fake, digest, legacy(default_kit(), digest, SPDX, {"spdxVersion": "SPDX-2.3"}))
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "deny" and outcome.predicate_type == PROVENANCE
    assert f"its attestations are of type {SPDX}" in outcome.reason


async def test_the_registry_predicate_type_annotation_is_never_trusted(make: Callable[..., Harness]) -> None:
    h = make(policies(attesting_policy(requirement())))
    digest = signed_image(h)
    sbom = legacy(default_kit(), digest, SPDX, {}).with_annotations({"predicateType": PROVENANCE})
    put_att(h.fake, digest, sbom)
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "deny" and f"of type {SPDX}" in outcome.reason


async def test_a_cel_policy_that_says_no_denies_with_its_expression(make: Callable[..., Harness]) -> None:
    h = make(policies(attesting_policy(requirement(policy=TAGS_ONLY))))
    digest = signed_image(h)
    put_att(h.fake, digest, legacy(default_kit(), digest, predicate=BRANCH_PROVENANCE))
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "deny" and outcome.attestation == "provenance"
    assert "the policy denied it" in outcome.reason and "CEL expression is false" in outcome.reason
    assert 'startsWith("refs/tags/")' in outcome.reason


async def test_one_passing_attestation_of_the_type_is_enough(make: Callable[..., Harness]) -> None:
    h = make(policies(attesting_policy(requirement(policy=TAGS_ONLY))))
    digest = signed_image(h)
    kit = default_kit()
    put_att(h.fake, digest, legacy(kit, digest, predicate=BRANCH_PROVENANCE), legacy(kit, digest))
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "allow", outcome.reason


@pytest.mark.parametrize(("expression", "said"), [
    ("predicate.noSuchField == 1", "Key not found in map"),
    ("predicate.buildDefinition.externalParameters.workflow.ref", "returned string"),
    ("1 / (size(predicate.buildDefinition) - 1) == 1", "divide by zero"),
])
async def test_cel_errors_and_non_bools_are_clean_denials(make: Callable[..., Harness], expression: str,
                                                         said: str) -> None:
    h = make(policies(attesting_policy(requirement(policy=expression))))
    digest = signed_image(h)
    put_att(h.fake, digest, legacy(default_kit(), digest))
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "deny" and outcome.attestation == "provenance"
    assert said in outcome.reason, outcome.reason


REGO_TAGS = """package sigstore
import rego.v1
default isCompliant := false
isCompliant if startswith(input.predicate.buildDefinition.externalParameters.workflow.ref, "refs/tags/")
errors contains msg if {
  not isCompliant
  msg := sprintf("built from %s, not a tag", [input.predicate.buildDefinition.externalParameters.workflow.ref])
}"""


async def test_a_rego_policy_passes_and_refuses_with_its_errors(make: Callable[..., Harness]) -> None:
    h = make(policies(attesting_policy(requirement(policy=REGO_TAGS, language="rego"))))
    digest = signed_image(h)
    put_att(h.fake, digest, legacy(default_kit(), digest))
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "allow", outcome.reason
    fake = FakeRegistry()
    other = make(policies(attesting_policy(requirement(policy=REGO_TAGS, language="rego"))), fake=fake)
    digest = push_signed(fake, default_kit())
    put_att(fake, digest, legacy(default_kit(), digest, predicate=BRANCH_PROVENANCE))
    [outcome] = await other.decide(IMAGE)
    assert outcome.verdict == "deny" and "built from refs/heads/main, not a tag" in outcome.reason


async def test_a_rego_runtime_error_is_a_clean_denial(make: Callable[..., Harness]) -> None:
    failing = 'package sigstore\nimport rego.v1\nisCompliant if { x := 1 / 0; x > 0 }'
    h = make(policies(attesting_policy(requirement(policy=failing, language="rego"))))
    digest = signed_image(h)
    put_att(h.fake, digest, legacy(default_kit(), digest))
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "deny" and outcome.attestation == "provenance" and outcome.reason


async def test_an_attestation_by_another_signer_does_not_count(make: Callable[..., Harness]) -> None:
    h = make(policies(attesting_policy(requirement())))
    digest = signed_image(h)
    put_att(h.fake, digest, legacy(default_kit(), digest, identity="mallory@example.com"))
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "deny"
    assert "signed by this authority" in outcome.reason and "mallory@example.com" in outcome.reason


async def test_a_statement_about_another_image_does_not_count(make: Callable[..., Harness]) -> None:
    h = make(policies(attesting_policy(requirement())))
    digest = signed_image(h)
    other = "sha256:" + "1" * 64
    put_att(h.fake, digest, legacy(default_kit(), other))
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "deny" and "signed by this authority" in outcome.reason
    assert f"does not name {digest} among its subjects" in outcome.reason


async def test_a_cel_policy_that_cannot_return_a_bool_is_refused_when_it_loads() -> None:
    from webhook.policy.loader import load_text

    result = load_text(attesting_policy(requirement(policy="predicateType")), "p.yaml")
    assert [p.message for p in result.problems] == ["CEL expression returns string; it must return a bool"]
    assert result.problems[0].path == "spec.authorities[0].attestations[0].policy"


async def test_a_tampered_statement_does_not_verify(make: Callable[..., Harness]) -> None:
    h = make(policies(attesting_policy(requirement(policy=TAGS_ONLY))))
    digest = signed_image(h)
    kit = default_kit()
    honest = legacy(kit, digest, predicate=BRANCH_PROVENANCE)
    forged = honest.with_statement(attestation_statement(digest, PROVENANCE, {
        "buildDefinition": {"externalParameters": {"workflow": {"ref": "refs/tags/v9"}}}},
        repository=f"{HOST}/{REPO}"))
    put_att(h.fake, digest, forged)
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "deny" and "signed by this authority" in outcome.reason


async def test_attestations_do_not_replace_the_signature_by_default(make: Callable[..., Harness]) -> None:
    h = make(policies(attesting_policy(requirement())))
    digest = h.fake.put_image(REPO, "v1")
    put_att(h.fake, digest, legacy(default_kit(), digest))
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "deny" and "no signatures found" in outcome.reason


async def test_require_signature_false_lets_the_attestations_stand_alone(make: Callable[..., Harness]) -> None:
    h = make(policies(attesting_policy(requirement(), authority_extra="      requireSignature: false\n")))
    digest = h.fake.put_image(REPO, "v1")
    put_att(h.fake, digest, legacy(default_kit(), digest))
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "allow", outcome.reason
    assert outcome.reason == "attestations verified: provenance" and outcome.signer == SIGNER


async def test_every_listed_attestation_is_required(make: Callable[..., Harness]) -> None:
    both = requirement() + requirement("sbom", "spdxjson")
    h = make(policies(attesting_policy(both)))
    digest = signed_image(h)
    put_att(h.fake, digest, legacy(default_kit(), digest))
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "deny" and (outcome.attestation, outcome.predicate_type) == ("sbom", SPDX)
    put_att(h.fake, digest, legacy(default_kit(), digest), legacy(default_kit(), digest, SPDX, {}))
    h.engine.invalidate()
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "allow", outcome.reason


@pytest.mark.parametrize("fallback", [False, True], ids=["referrers-api", "referrers-fallback-tag"])
async def test_bundle_attestations_found_as_referrers(make: Callable[..., Harness], fallback: bool) -> None:
    fake = FakeRegistry(referrers_api=not fallback)
    h = make(policies(attesting_policy(requirement(policy=TAGS_ONLY))), fake=fake)
    digest = signed_image(h)
    put_bundle(fake, default_kit(), digest, fallback=fallback)
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "allow", outcome.reason


async def test_a_failing_bundle_attestation_is_reported_as_an_attestation(make: Callable[..., Harness]) -> None:
    fake = FakeRegistry(referrers_api=True)
    h = make(policies(attesting_policy(requirement())), fake=fake)
    digest = signed_image(h)
    put_bundle(fake, default_kit(), "sha256:" + "2" * 64)  # subject: another image, listed for this one
    descriptor = put_bundle(fake, default_kit(), digest, identity="mallory@example.com")
    assert descriptor
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "deny" and "mallory@example.com" in outcome.reason
    assert "signature 2" not in outcome.reason  # an attestation bundle is not counted as a bad signature


async def test_signature_format_legacy_counts_att_layers_only(make: Callable[..., Harness]) -> None:
    fake = FakeRegistry(referrers_api=True)
    h = make(policies(attesting_policy(requirement(), authority_extra="      signatureFormat: legacy\n")), fake=fake)
    digest = signed_image(h)
    put_bundle(fake, default_kit(), digest)
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "deny" and "signatureFormat: legacy" in outcome.reason


KEYED = """apiVersion: policy.signet.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {{name: keyed}}
spec:
  images: [{{glob: '{glob}'}}]
  authorities:
    - name: key
      key:
        data: |
{pem}
      requireSignature: false
      attestations:
        - name: sbom
          predicateType: spdxjson
          policy:
            type: cel
            data: 'signer.keyFingerprint.size() == 64 && predicate.spdxVersion == "SPDX-2.3"'
"""


def keyed_policy(pem: bytes) -> str:
    indented = "\n".join(f"          {line}" for line in pem.decode().strip().splitlines())
    return KEYED.format(glob=f"{HOST}/acme/**", pem=indented)


@pytest.mark.parametrize("layout", ["legacy", "bundle"])
async def test_keyed_attestations_pass_with_their_key_and_fail_with_another(make: Callable[..., Harness],
                                                                           layout: str) -> None:
    key, other = new_p256(), new_p256()
    fake = FakeRegistry(referrers_api=True)
    h = make(policies(keyed_policy(public_pem(key.public_key()))), fake=fake)
    digest = fake.put_image(REPO, "v1")
    if layout == "legacy":
        put_att(fake, digest, legacy(default_kit(), digest, SPDX, {"spdxVersion": "SPDX-2.3"}, key=key,
                                     log_entry=None))
    else:
        put_bundle(fake, default_kit(), digest, SPDX, {"spdxVersion": "SPDX-2.3"}, key=key)
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "allow", outcome.reason
    assert outcome.signer == "(public key)"
    wrong = make(policies(keyed_policy(public_pem(other.public_key()))), fake=fake)
    [outcome] = await wrong.decide(IMAGE)
    assert outcome.verdict == "deny" and outcome.attestation == "sbom"


async def test_verdicts_and_policy_results_are_cached(make: Callable[..., Harness]) -> None:
    h = make(policies(attesting_policy(requirement(policy=TAGS_ONLY))))
    digest = signed_image(h)
    put_att(h.fake, digest, legacy(default_kit(), digest))
    [first] = await h.decide(IMAGE)
    requests = h.client.request_count
    [again] = await h.decide(IMAGE)
    assert first.verdict == again.verdict == "allow" and h.client.request_count == requests
    h.engine.caches.verdicts.clear()  # a verdict recomputed reuses the verified attestations and the policy result
    [third] = await h.decide(IMAGE)
    stats = h.engine.cache_stats()
    assert third.verdict == "allow" and h.client.request_count == requests
    assert stats["policy_results"]["hits"] >= 1 and stats["signatures"]["hits"] >= 1


async def test_nothing_found_while_the_registry_failed_follows_on_error(make: Callable[..., Harness]) -> None:
    import httpx

    fake = FakeRegistry()
    fake.faults[".att"] = lambda _request: httpx.Response(503)
    h = make(policies(attesting_policy(requirement())), fake=fake, on_error="warn")
    signed_image(h)
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "warn" and "infrastructure failure" in outcome.reason
    assert "could not look for attestations" in outcome.reason and "503" in outcome.reason


async def test_attestations_of_the_covering_index_count_when_the_engine_opts_in() -> None:
    from tests.unit.oci.fake_registry import OCI_INDEX, dumps
    from webhook.decision import Engine, EngineSettings
    from webhook.oci import RegistryClient
    from webhook.verify.trustroot import TrustedRoot

    kit = default_kit()
    fake = FakeRegistry()
    platform = fake.put_image(REPO, None, seed=b"amd64")
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": platform, "size": 1,
         "platform": {"os": "linux", "architecture": "amd64"}}]}
    index_digest = fake.put_manifest(REPO, dumps(index), OCI_INDEX, tag="v1")
    put_att(fake, index_digest, legacy(kit, index_digest))
    root = TrustedRoot.from_json(kit.trusted_root_json())
    policy_set = policies(attesting_policy(requirement(), authority_extra="      requireSignature: false\n"))
    for opt_in, verdict in ((False, "deny"), (True, "allow")):
        async with RegistryClient(transport=fake.transport()) as client:
            engine = Engine(policies=lambda: policy_set, trust_root=lambda: root, registry=client,
                            settings=EngineSettings(include_index_signatures=opt_in))
            try:
                [decision] = await engine.decide([f"{HOST}/{REPO}:v1@{platform}"], "team-a")
            finally:
                await engine.aclose()
        assert decision.outcome.verdict == verdict, decision.outcome.reason
