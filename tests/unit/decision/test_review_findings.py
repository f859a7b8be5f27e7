"""Defects found reviewing the decision path adversarially: each test failed before its fix.

The registry is the in-memory fake (the seam); signatures are real (the signing kit).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest

from tests.unit.engine_harness import Harness, policies, policy_yaml
from tests.unit.oci.fake_registry import HOST, FakeRegistry
from webhook.policy.models import NoMatchPolicy

pytestmark = pytest.mark.anyio

IMAGE = f"{HOST}/acme/app:v1"


def _static(name: str, glob: str, action: str, *, mode: str = "enforce", kind: str = "ClusterImagePolicy",
            namespace: str | None = None) -> str:
    meta = f"{{name: {name}, namespace: {namespace}}}" if namespace else f"{{name: {name}}}"
    return (f"apiVersion: policy.signet.dev/v1alpha1\nkind: {kind}\nmetadata: {meta}\n"
            f"spec:\n  images: [{{glob: '{glob}'}}]\n  mode: {mode}\n  authorities:\n"
            f"    - {{name: {action}, static: {{action: {action}, message: '{name} says {action}'}}}}\n")


def _failing_registry() -> FakeRegistry:
    fake = FakeRegistry()
    fake.faults["/manifests/"] = lambda _r: httpx.Response(500)
    return fake


# -- warn mode is only "every policy that applies" once what applies is known -----------------------------


async def test_an_unresolvable_tag_is_not_warned_past_an_enforcing_digest_glob(make: Callable[..., Harness]) -> None:
    # The tag alone matches a warn-mode policy; once resolved, an enforcing `@sha256:*` policy applies too.
    # A registry that fails (or stalls) for signet must not turn that enforcement into a warning.
    pinned = _static("pinned", f"{HOST}/acme/app@sha256:*", "fail")
    h = make(policies(pinned, policy_yaml(mode="warn")), fake=_failing_registry())
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "deny", outcome.reason
    assert "onError: deny" in outcome.reason


async def test_a_tenant_warn_policy_does_not_turn_an_unresolvable_tag_into_a_warning(
        make: Callable[..., Harness]) -> None:
    # noMatchPolicy deny and no cluster policy for evil.test: a namespace's own warn-mode ImagePolicy
    # must not make a registry failure (which the tenant's registry can cause at will) admit the image.
    somewhere = _static("pinned", f"{HOST}/acme/app@sha256:*", "fail")  # makes selection digest-sensitive
    tenant = _static("mine", "evil.test/**", "pass", mode="warn", kind="ImagePolicy", namespace="team-a")
    h = make(policies(somewhere, tenant), fake=_failing_registry())
    [outcome] = await h.decide("evil.test/x/y:v1", namespace="team-a")
    assert outcome.verdict == "deny", outcome.reason
    hanging = make(policies(somewhere, tenant), deadline=0.3, transport=_Hanging())
    [outcome] = await hanging.decide("evil.test/x/y:v1", namespace="team-a")
    assert outcome.verdict == "deny", outcome.reason


class _Hanging(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(500)


# -- bounded work per request ----------------------------------------------------------------------------


async def test_an_object_a_policy_sees_is_hashed_once_per_review_not_once_per_image(
        make: Callable[..., Harness]) -> None:
    # A namespace's ImagePolicy may have a spec.policy that includes the object's spec: the verdict key
    # then carries the object's fingerprint. Computed per image, a 3 MiB Pod with 256 images held the event
    # loop for half a second on every (even fully cached) admission.
    level = ("  policy:\n    type: cel\n    includeSpec: true\n    data: 'true'\n")
    tenant = _static("mine", f"{HOST}/acme/**", "pass", kind="ImagePolicy", namespace="team-a") + level
    h = make(policies(_static("cluster", f"{HOST}/acme/**", "pass"), tenant))
    images = [f"{HOST}/acme/app{i}@sha256:{i:064x}" for i in range(256)]
    env = [{"name": f"V{i}", "value": "x" * 1000} for i in range(3000)]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w", "namespace": "team-a"},
           "spec": {"containers": [{"name": f"c{i}", "image": image, "env": env if i == 0 else []}
                                   for i, image in enumerate(images)]}}
    cold = await h.engine.decide(images, "team-a", workload=pod)
    assert {d.outcome.verdict for d in cold} == {"allow"}, cold[0].outcome.reason
    started = time.perf_counter()
    warm = await h.engine.decide(images, "team-a", workload=pod)
    elapsed = time.perf_counter() - started
    assert {d.outcome.verdict for d in warm} == {"allow"}
    assert elapsed < 0.15, f"a cached review of 256 images took {elapsed:.3f} s on the event loop"


async def test_invalid_references_are_not_kept_once_decided(make: Callable[..., Harness]) -> None:
    # Anyone who can reach the Service may send reviews naming long invalid image strings (a 16 MiB body
    # holds 256 of 60 KiB): memoised plans kept each one (and its quoted copy in the reason) for good.
    import gc
    import tracemalloc

    h = make(policies(policy_yaml()))
    await h.decide(f"{HOST}/acme/warm up")  # the planner and its first memo exist before measuring
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for review in range(20):
            images = [f"{HOST}/acme/App{review}-{i}-" + "x" * 20_000 for i in range(8)]
            outcomes = await h.decide(*images)
            assert {o.verdict for o in outcomes} == {"deny"}
            assert all("invalid image reference" in o.reason for o in outcomes)
            del images, outcomes
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    retained = after - before
    assert retained < 1_000_000, f"{retained} bytes kept after deciding 3 MB of invalid references"


# -- tenants ---------------------------------------------------------------------------------------------


async def test_a_digest_glob_in_one_namespace_does_not_send_every_namespace_to_the_registry(
        make: Callable[..., Harness]) -> None:
    # A digest glob makes a tag wait for its digest before policies are chosen. Written in one namespace's
    # ImagePolicy, it must not do that to other namespaces: their catch-all keeps deciding without the
    # registry (a registry outage must not turn into onError for them, nor cost them a round trip).
    catch_all = _static("catch-all", "**", "fail")
    tenant = _static("mine", "**@sha256:*", "pass", kind="ImagePolicy", namespace="team-b")
    h = make(policies(catch_all, tenant), on_error="allow", deadline=0.5, transport=_Hanging())
    started = time.perf_counter()
    [outcome] = await h.decide(IMAGE, namespace="team-a")
    assert outcome.verdict == "deny" and outcome.reason == "catch-all says fail", outcome.reason
    assert time.perf_counter() - started < 0.2


async def test_a_policy_that_can_only_fail_denies_a_tag_without_waiting_for_its_digest(
        make: Callable[..., Harness]) -> None:
    # With a digest glob anywhere, tags are resolved before policies are chosen; a resolution that
    # fails then follows onError. But what the digest could add never loosens an enforcing static
    # fail that already applies: with onError allow, a hanging registry must not admit the image.
    catch_all = _static("catch-all", "**", "fail")
    pinned = _static("pinned", f"{HOST}/acme/app@sha256:*", "pass")
    h = make(policies(catch_all, pinned), on_error="allow", deadline=0.5, transport=_Hanging())
    [outcome] = await h.decide("evil.test/x/y:v1")
    assert outcome.verdict == "deny" and outcome.reason == "catch-all says fail", outcome.reason


async def test_a_tag_no_digest_glob_can_reach_is_not_held_for_its_digest(make: Callable[..., Harness]) -> None:
    # A digest glob for one repository must not make every other tag wait for the registry: with
    # noMatchPolicy deny and onError allow, a hanging registry admitted images no policy covers.
    pinned = _static("pinned", f"{HOST}/acme/app@sha256:*", "pass")
    h = make(policies(pinned), on_error="allow", deadline=0.5, transport=_Hanging())
    [outcome] = await h.decide("evil.test/x/y:v1")
    assert outcome.verdict == "deny" and "no policy matches" in outcome.reason, outcome.reason


# -- spellings -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("glob", ["*.example.com:443/**", "*.example.com:0443/**", "*.EXAMPLE.com:443/**"])
@pytest.mark.parametrize("image", ["reg.example.com:443/a/b:v1", "reg.example.com/a/b:v1", "REG.example.com/a/b:v1"])
async def test_a_wildcard_host_glob_with_the_default_port_covers_every_spelling(
        make: Callable[..., Harness], glob: str, image: str) -> None:
    # References drop the default port; a glob whose host has a wildcard kept `:443` as written, so it
    # matched nothing at all and its images went to noMatchPolicy (here: allow).
    h = make(policies(_static("registry", glob, "fail"), no_match=NoMatchPolicy.ALLOW))
    [outcome] = await h.decide(image)
    assert outcome.verdict == "deny" and outcome.reason == "registry says fail", outcome.reason


async def test_label_values_no_api_server_sends_are_not_kept_per_plan(make: Callable[..., Harness]) -> None:
    # With a label selector in some policy, plans are memoised per label value: a caller reaching the
    # Service directly could pin a megabyte-long value (the API server allows 63 characters) per plan.
    import gc
    import tracemalloc

    from webhook.decision.workload import Workload

    selector = ("  match:\n    - {group: '', version: v1, resource: pods, selector: {matchLabels: {tier: web}}}\n")
    web_pods = _static("web", f"{HOST}/acme/**", "pass").replace("  mode: enforce\n", "  mode: enforce\n" + selector)
    h = make(policies(web_pods))
    image = f"{HOST}/acme/app@sha256:{'a' * 64}"

    def pod(tier: str) -> Workload:
        document = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w", "labels": {"tier": tier}}}
        return Workload.of(document, group="", version="v1", resource="pods")

    [web] = await h.engine.decide([image], "team-a", workload=pod("web"))
    assert web.outcome.verdict == "allow", web.outcome.reason
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for n in range(20):
            [other] = await h.engine.decide([image], "team-a", workload=pod(f"{n}" + "x" * 200_000))
            assert other.outcome.verdict == "deny" and "no policy matches" in other.outcome.reason
            del other
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 1_000_000, f"{after - before} bytes kept for 4 MB of label values"


# -- spec.policy with fetchConfigFile: every config a runtime may pick is seen, or the image is denied -----

NO_ROOT = "config.all(p, config[p].config.User != \"0\")"


def _config_policy() -> str:
    return (f"apiVersion: policy.signet.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {{name: no-root}}\n"
            f"spec:\n  images: [{{glob: '{HOST}/acme/**'}}]\n  authorities:\n"
            f"    - name: anyone\n      static: {{action: pass}}\n  policy:\n    type: cel\n"
            f"    fetchConfigFile: true\n    data: '{NO_ROOT}'\n")


def _platform_manifest(fake: FakeRegistry, os_arch: str, user: str) -> dict[str, object]:
    import json

    from tests.unit.oci.fake_registry import OCI_MANIFEST, dumps

    os_name, arch = os_arch.split("/")
    config = fake.put_blob(json.dumps({"os": os_name, "architecture": arch, "config": {"User": user}}).encode())
    manifest = dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                      "layers": [fake.put_blob(f"{os_arch}{user}".encode())]})
    digest = fake.put_manifest("acme/app", manifest)
    return {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest),
            "platform": {"os": os_name, "architecture": arch}}


def _index(fake: FakeRegistry, children: list[dict[str, object]]) -> None:
    from tests.unit.oci.fake_registry import OCI_INDEX, dumps

    fake.put_manifest("acme/app", dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}),
                      OCI_INDEX, tag="v1")


async def test_an_index_does_not_hide_a_platform_from_a_config_policy(make: Callable[..., Harness]) -> None:
    h = make(policies(_config_policy()))
    benign = [_platform_manifest(h.fake, f"linux/arch{i}", "1000") for i in range(40)]
    _index(h.fake, [*benign, _platform_manifest(h.fake, "linux/amd64", "0")])
    # Only the first 32 configs reached the policy: a root image listed 41st was admitted.
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "deny", outcome.reason


async def test_two_manifests_for_one_platform_are_not_judged_by_the_last_one(make: Callable[..., Harness]) -> None:
    h = make(policies(_config_policy()))
    # The runtime picks the first linux/amd64 manifest; the policy saw only the last one's config.
    _index(h.fake, [_platform_manifest(h.fake, "linux/amd64", "0"), _platform_manifest(h.fake, "linux/amd64", "1000")])
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "deny", outcome.reason


async def test_a_nested_index_does_not_hide_its_platforms_from_a_config_policy(make: Callable[..., Harness]) -> None:
    from tests.unit.oci.fake_registry import OCI_INDEX, dumps

    h = make(policies(_config_policy()))
    inner = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                   "manifests": [_platform_manifest(h.fake, "linux/amd64", "0")]})
    inner_digest = h.fake.put_manifest("acme/app", inner, OCI_INDEX)
    _index(h.fake, [_platform_manifest(h.fake, "linux/arm64", "1000"),
                    {"mediaType": OCI_INDEX, "digest": inner_digest, "size": len(inner)}])
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "deny", outcome.reason


async def test_buildkit_attestation_manifests_do_not_count_as_platforms(make: Callable[..., Harness]) -> None:
    # Several `unknown/unknown` manifests (buildkit's attestations) are normal: no runtime runs them.
    h = make(policies(_config_policy()))
    _index(h.fake, [_platform_manifest(h.fake, "linux/amd64", "1000"),
                    _platform_manifest(h.fake, "linux/arm64", "1000"),
                    _platform_manifest(h.fake, "unknown/unknown", "a"),
                    _platform_manifest(h.fake, "unknown/unknown", "b")])
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "allow", outcome.reason


async def test_a_config_is_judged_under_the_platform_the_runtime_picks_it_for(make: Callable[..., Harness]) -> None:
    # The runtime selects by the index's descriptor; the policy keys configs by what each config says.
    # A root manifest listed as linux/amd64 whose config claims linux/arm64 passed a policy about amd64.
    policy = _config_policy().replace(NO_ROOT, 'config["linux/amd64"].config.User != "0"')
    h = make(policies(policy))
    root = _platform_manifest(h.fake, "linux/arm64", "0")
    safe = _platform_manifest(h.fake, "linux/amd64", "1000")
    root["platform"], safe["platform"] = safe["platform"], root["platform"]
    _index(h.fake, [root, safe])
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == "deny", outcome.reason
