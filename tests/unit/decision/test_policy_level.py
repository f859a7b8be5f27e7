"""``spec.policy`` over what the authorities matched, and policy texts from ConfigMaps and pinned URLs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.sigstore_kit import default_kit
from tests.unit.decision.attesting import attesting_policy, legacy, put_att, requirement
from tests.unit.engine_harness import ISSUER, REPO, SIGNER, Harness, policies, push_signed
from tests.unit.oci.fake_registry import HOST, OCI_MANIFEST, FakeRegistry, dumps
from webhook.decision import Engine, EngineSettings
from webhook.decision.policy_sources import ConfigMapReader, RemotePolicies
from webhook.oci import RegistryClient
from webhook.policy.matching import PolicySet
from webhook.verify.trustroot import TrustedRoot

pytestmark = pytest.mark.anyio

IMAGE = f"{HOST}/{REPO}:v1"
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w", "namespace": "team-a"},
       "spec": {"serviceAccountName": "builder", "containers": [{"name": "app", "image": IMAGE}]}}
DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "namespace": "team-a"},
              "spec": {"template": {"spec": {"containers": [{"name": "app", "image": IMAGE}]}}}}

ONLY_PODS_REGO = """package sigstore
import rego.v1
default isCompliant := false
isCompliant if input.typemeta.kind == "Pod"
"""


def static_policy(level: str) -> str:
    return (f"apiVersion: policy.signet.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {{name: pods}}\n"
            f"spec:\n  images: [{{glob: '{HOST}/acme/**'}}]\n  authorities:\n"
            f"    - name: anyone\n      static: {{action: pass}}\n  policy:\n{level}")


def level(text: str, language: str = "cel", **flags: bool) -> str:
    lines = [f"    type: {language}"] + [f"    {name}: {str(value).lower()}" for name, value in flags.items()]
    body = "\n".join(f"      {line}" for line in text.splitlines())
    return "\n".join(lines) + f"\n    data: |\n{body}\n"


@asynccontextmanager
async def engine(policy_set: PolicySet, fake: FakeRegistry, **options: Any) -> AsyncIterator[Engine]:
    root = TrustedRoot.from_json(default_kit().trusted_root_json())
    async with RegistryClient(transport=fake.transport()) as client:
        built = Engine(policies=lambda: policy_set, trust_root=lambda: root, registry=client,
                       settings=EngineSettings(key_ttl=30.0), **options)
        try:
            yield built
        finally:
            await built.aclose()


@pytest.mark.parametrize(("text", "language"), [(ONLY_PODS_REGO, "rego"), ('typemeta.kind == "Pod"', "cel")])
async def test_policy_controller_allow_only_pods_in_rego_and_cel(make: Callable[..., Harness], text: str,
                                                                language: str) -> None:
    h = make(policies(static_policy(level(text, language, includeTypeMeta=True))))
    h.fake.put_image(REPO, "v1")
    [pod] = await h.engine.decide([IMAGE], "team-a", workload=POD)
    [deployment] = await h.engine.decide([IMAGE], "team-a", workload=DEPLOYMENT)
    assert pod.outcome.verdict == "allow", pod.outcome.reason
    assert deployment.outcome.verdict == "deny"
    assert "spec.policy denied the image" in deployment.outcome.reason


async def test_without_the_workload_a_policy_that_needs_it_denies(make: Callable[..., Harness]) -> None:
    h = make(policies(static_policy(level('typemeta.kind == "Pod"', includeTypeMeta=True))))
    h.fake.put_image(REPO, "v1")
    [decision] = await h.engine.decide([IMAGE], "team-a")
    assert decision.outcome.verdict == "deny"


async def test_include_spec_and_object_meta(make: Callable[..., Harness]) -> None:
    text = 'spec.serviceAccountName == "builder" && metadata.namespace == "team-a"'
    h = make(policies(static_policy(level(text, includeSpec=True, includeObjectMeta=True))))
    h.fake.put_image(REPO, "v1")
    [ok] = await h.engine.decide([IMAGE], "team-a", workload=POD)
    other = {**POD, "spec": {**POD["spec"], "serviceAccountName": "default"}}  # type: ignore[dict-item]
    [refused] = await h.engine.decide([IMAGE], "team-a", workload=other)
    assert (ok.outcome.verdict, refused.outcome.verdict) == ("allow", "deny")


async def test_the_policy_sees_authority_matches_with_signatures_and_attestations(
        make: Callable[..., Harness]) -> None:
    matches = ('authorityMatches.signer.signatures.exists(s, s.subject == "' + SIGNER + '" && s.issuer == "'
               + ISSUER + '") && authorityMatches.signer.attestations.provenance.size() == 1'
               ' && authorityMatches.signer.attestations.provenance[0].predicateType == "https://slsa.dev/provenance/v1"')
    text = attesting_policy(requirement(), extra="  policy:\n" + level(matches).replace("\n    ", "\n    "))
    h = make(policies(text))
    digest = push_signed(h.fake, default_kit())
    put_att(h.fake, digest, legacy(default_kit(), digest))
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "allow", outcome.reason


async def test_fetch_config_file_gives_the_config_by_platform(make: Callable[..., Harness]) -> None:
    h = make(policies(static_policy(level('config["linux/amd64"].config.User == "1000"', fetchConfigFile=True))))
    config = h.fake.put_blob(json.dumps({"os": "linux", "architecture": "amd64", "config": {"User": "1000"}}).encode())
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                "layers": [h.fake.put_blob(b"layer")]}
    h.fake.put_manifest(REPO, dumps(manifest), tag="v1")
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "allow", outcome.reason
    root_user = make(policies(static_policy(level('config["linux/amd64"].config.User == "0"', fetchConfigFile=True))),
                     fake=h.fake)
    [outcome] = await root_user.decide(IMAGE)
    assert outcome.verdict == "deny" and "spec.policy denied" in outcome.reason


CONFIG_MAP_POLICY = attesting_policy(
    "        - name: provenance\n          predicateType: slsaprovenance1\n          policy:\n"
    "            type: cel\n            configMapRef: {name: build-policies, key: provenance.cel}\n")


async def test_a_config_map_policy_is_read_through_the_cluster_and_keys_the_verdict() -> None:
    fake = FakeRegistry()
    digest = push_signed(fake, default_kit())
    put_att(fake, digest, legacy(default_kit(), digest))
    texts = {"provenance.cel": 'predicate.buildDefinition.externalParameters.workflow.ref == "refs/tags/v1.2.3"'}
    reads: list[tuple[str | None, str, str]] = []

    async def reader(namespace: str | None, name: str, key: str) -> str:
        reads.append((namespace, name, key))
        return texts[key]

    config_map: ConfigMapReader = reader
    async with engine(policies(CONFIG_MAP_POLICY), fake, config_map=config_map) as e:
        [first] = await e.decide([IMAGE], "team-a")
        assert first.outcome.verdict == "allow", first.outcome.reason
        assert reads == [(None, "build-policies", "provenance.cel")]
        texts["provenance.cel"] = 'predicate.buildDefinition.externalParameters.workflow.ref == "refs/tags/v2"'
        e.caches.policy_texts.clear()  # as the read's TTL running out would
        [second] = await e.decide([IMAGE], "team-a")
        assert second.outcome.verdict == "deny" and "CEL expression is false" in second.outcome.reason


async def test_a_config_map_policy_without_the_cluster_fails_closed() -> None:
    fake = FakeRegistry()
    digest = push_signed(fake, default_kit())
    put_att(fake, digest, legacy(default_kit(), digest))
    async with engine(policies(CONFIG_MAP_POLICY), fake) as e:
        [decision] = await e.decide([IMAGE], "team-a")
    assert decision.outcome.verdict == "deny" and "needs the cluster integration" in decision.outcome.reason


REMOTE_TEXT = b'predicate.buildDefinition.externalParameters.workflow.ref.startsWith("refs/tags/")'


def remote_policy(pin: str) -> str:
    return attesting_policy(
        "        - name: provenance\n          predicateType: slsaprovenance1\n          policy:\n"
        "            type: cel\n            remote:\n              url: https://policies.example/tags.cel\n"
        f"              sha256sum: {pin}\n")


@pytest.mark.parametrize(("served", "verdict", "said"), [
    (REMOTE_TEXT, "allow", "verified"),
    (REMOTE_TEXT + b" && false", "deny", "policy body has sha256"),
    (None, "deny", "could not be fetched"),
])
async def test_a_remote_policy_is_used_only_with_its_pinned_digest(served: bytes | None, verdict: str,
                                                                   said: str) -> None:
    fake = FakeRegistry()
    digest = push_signed(fake, default_kit())
    put_att(fake, digest, legacy(default_kit(), digest))
    fetched: list[str] = []

    def serve(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        return httpx.Response(200, content=served) if served is not None else httpx.Response(503)

    remote = RemotePolicies(transport=httpx.MockTransport(serve))
    pin = hashlib.sha256(REMOTE_TEXT).hexdigest()
    async with engine(policies(remote_policy(pin)), fake, remote_policies=remote) as e:
        [decision] = await e.decide([IMAGE], "team-a")
        [_again] = await e.decide([IMAGE], "team-a")
    await remote.aclose()
    assert decision.outcome.verdict == verdict and said in decision.outcome.reason, decision.outcome.reason
    assert fetched[0] == "https://policies.example/tags.cel"
    if verdict == "allow":
        assert len(fetched) == 1  # cached by URL and pin
    else:
        assert decision.infrastructure == (served is None)


async def test_a_plain_http_remote_policy_is_refused() -> None:
    fake = FakeRegistry()
    digest = push_signed(fake, default_kit())
    put_att(fake, digest, legacy(default_kit(), digest))
    text = remote_policy(hashlib.sha256(REMOTE_TEXT).hexdigest()).replace("https://policies.example",
                                                                           "http://policies.example")
    async with engine(policies(text), fake) as e:
        [decision] = await e.decide([IMAGE], "team-a")
    assert decision.outcome.verdict == "deny" and "only HTTPS is fetched" in decision.outcome.reason


async def test_the_sandbox_starts_ahead_only_for_policies_with_cel_or_rego() -> None:
    from webhook.policy.loader import load_text

    plain = load_text(attesting_policy(requirement()), "plain.yaml").policies
    with_cel = load_text(attesting_policy(requirement(policy="true")), "cel.yaml").policies
    async with engine(policies(attesting_policy(requirement())), FakeRegistry()) as e:
        services = e.policy_services
        e.start_sandbox(plain)
        assert services._starting is None  # no worker processes for policies without CEL/Rego
        e.start_sandbox(with_cel)
        assert services._starting is not None
        await services._starting
        assert len(services.sandbox()._idle) == 2
