"""Which policies apply: AND across matching policies, namespaced ones only add, noMatchPolicy."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import pytest

from tests.unit.policy.policy_docs import make_cip, make_ip
from webhook.errors import InputError
from webhook.oci.reference import ImageReference, parse_reference
from webhook.policy import NoMatchPolicy, PolicySet, PolicyStore, load_documents, load_object
from webhook.policy.matching import MatchTarget
from webhook.policy.models import ClusterImagePolicy, ImagePolicy, TrustRoot

DIGEST = "sha256:" + "ef" * 32


def _set(*docs: dict[str, Any], no_match: NoMatchPolicy = NoMatchPolicy.DENY) -> PolicySet:
    result = load_documents(list(docs))
    assert result.ok, [str(p) for p in result.problems]
    return PolicySet.from_load_result(result, no_match_policy=no_match)


def _names(policy_set: PolicySet, image: str | ImageReference, namespace: str | None = None) -> list[str]:
    return [p.key for p in policy_set.policies_for(image, namespace)]


@pytest.fixture
def policies() -> PolicySet:
    return _set(
        make_cip("acme", ("ghcr.io/acme/**",)),
        make_cip("everything", ("**",), mode="warn"),
        make_cip("nginx", ("nginx",)),
        make_cip("acme-app-v1", ("ghcr.io/acme/app:v1",)),
        make_cip("pinned", (f"ghcr.io/acme/pinned@{DIGEST}",)),
        make_ip("team-a-extra", "team-a", ("ghcr.io/acme/**",)),
        make_ip("team-a-all", "team-a", ("**",)),
        make_ip("team-b-extra", "team-b", ("ghcr.io/acme/**",)),
    )


def test_every_matching_cluster_policy_applies(policies: PolicySet) -> None:
    assert _names(policies, "ghcr.io/acme/web") == ["ClusterImagePolicy/acme", "ClusterImagePolicy/everything"]
    assert _names(policies, "index.docker.io/library/nginx") == [
        "ClusterImagePolicy/everything", "ClusterImagePolicy/nginx"]


def test_unnormalised_names_are_normalised(policies: PolicySet) -> None:
    assert _names(policies, "nginx") == _names(policies, "index.docker.io/library/nginx")
    assert _names(policies, "docker.io/library/nginx:1.25") == _names(policies, "index.docker.io/library/nginx")


def test_namespaced_policies_add_to_cluster_policies_of_their_namespace_only(policies: PolicySet) -> None:
    assert _names(policies, "ghcr.io/acme/web", "team-a") == [
        "ClusterImagePolicy/acme", "ClusterImagePolicy/everything",
        "ImagePolicy/team-a/team-a-all", "ImagePolicy/team-a/team-a-extra"]
    assert _names(policies, "ghcr.io/acme/web", "team-b") == [
        "ClusterImagePolicy/acme", "ClusterImagePolicy/everything", "ImagePolicy/team-b/team-b-extra"]
    assert _names(policies, "ghcr.io/acme/web", "team-c") == _names(policies, "ghcr.io/acme/web")
    assert _names(policies, "ghcr.io/acme/web", None) == _names(policies, "ghcr.io/acme/web")


def test_tag_and_digest_globs_need_the_full_reference(policies: PolicySet) -> None:
    assert "ClusterImagePolicy/acme-app-v1" in _names(policies, "ghcr.io/acme/app:v1")
    assert "ClusterImagePolicy/acme-app-v1" in _names(policies, f"ghcr.io/acme/app:v1@{DIGEST}")
    assert "ClusterImagePolicy/acme-app-v1" not in _names(policies, "ghcr.io/acme/app:v2")
    assert "ClusterImagePolicy/acme-app-v1" not in _names(policies, "ghcr.io/acme/app")
    assert "ClusterImagePolicy/pinned" in _names(policies, f"ghcr.io/acme/pinned@{DIGEST}")
    assert "ClusterImagePolicy/pinned" not in _names(policies, "ghcr.io/acme/pinned:latest")


def test_or_across_authorities_is_kept_inside_one_policy() -> None:
    doc = make_cip("two-ways")
    doc["spec"]["authorities"].append({"name": "break-glass", "static": {"action": "pass"}})
    (policy,) = _set(doc).policies_for("ghcr.io/acme/app")
    assert [a.name for a in policy.spec.authorities] == ["release-workflow", "break-glass"]


@pytest.mark.parametrize("setting", list(NoMatchPolicy))
def test_no_match_policy_applies_when_no_cluster_policy_matches(setting: NoMatchPolicy) -> None:
    policies = _set(make_cip("acme", ("ghcr.io/acme/**",)), make_ip("ns-all", "ns", ("**",)), no_match=setting)
    unmatched = policies.select("quay.io/other/app", "ns")
    assert unmatched.cluster == ()
    # a namespace cannot turn the cluster's "no policy" answer into a pass: it only adds requirements
    assert unmatched.unmatched_action is setting
    assert [p.key for p in unmatched.namespaced] == ["ImagePolicy/ns/ns-all"]
    matched = policies.select("ghcr.io/acme/app", "ns")
    assert matched.unmatched_action is None
    assert [p.key for p in matched.policies] == ["ClusterImagePolicy/acme", "ImagePolicy/ns/ns-all"]


def test_no_match_policy_defaults_to_deny() -> None:
    empty = PolicySet()
    assert empty.no_match_policy is NoMatchPolicy.DENY
    assert empty.policies_for("nginx") == []
    assert empty.select("nginx").unmatched_action is NoMatchPolicy.DENY


def test_selection_is_cached_and_consistent(policies: PolicySet) -> None:
    first = policies.select("ghcr.io/acme/web", "team-a")
    for _ in range(3):
        again = policies.select("ghcr.io/acme/web", "team-a")
        assert [id(p) for p in again.policies] == [id(p) for p in first.policies]
    info = policies._cluster_by_name.cache_info()
    assert info.hits >= 3


def test_selection_under_concurrency(policies: PolicySet) -> None:
    expected = _names(policies, "ghcr.io/acme/web", "team-a")
    failures: list[list[str]] = []

    def worker() -> None:
        for _ in range(200):
            got = _names(policies, "ghcr.io/acme/web", "team-a")
            if got != expected:
                failures.append(got)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_many_policies_stay_fast() -> None:
    import time

    docs = [make_cip(f"p{i}", (f"registry{i}.example.com/**",)) for i in range(300)]
    policies = _set(*docs)
    start = time.perf_counter()
    for i in range(2000):
        policies.policies_for(f"registry{i % 300}.example.com/app")
    assert time.perf_counter() - start < 2.0


def test_missing_trust_roots_are_reported_for_fail_closed_handling() -> None:
    doc = make_cip("private")
    doc["spec"]["authorities"][0]["keyless"]["trustRootRef"] = "corp"
    trust_root = {"apiVersion": "policy.signet.dev/v1alpha1", "kind": "TrustRoot", "metadata": {"name": "other"},
                  "spec": {"trustedRoot": {"mediaType": "x"}}}
    policies = _set(doc, trust_root)
    assert policies.trust_root("corp") is None
    assert policies.trust_root("other") is not None
    assert policies.missing_trust_roots() == {"corp": ("ClusterImagePolicy/private",)}


def test_store_updates_object_by_object() -> None:
    store = PolicyStore()
    assert store.current.policies_for("ghcr.io/acme/app") == []
    cip = load_object(make_cip("acme"))
    assert isinstance(cip, ClusterImagePolicy)
    snapshot = store.put(cip)
    assert [p.key for p in snapshot.policies_for("ghcr.io/acme/app")] == ["ClusterImagePolicy/acme"]
    replaced = load_object(make_cip("acme", ("quay.io/acme/**",)))
    store.put(replaced)
    assert store.current.policies_for("ghcr.io/acme/app") == []
    assert snapshot.policies_for("ghcr.io/acme/app")  # old snapshots stay consistent for in-flight requests
    ip = load_object(make_ip("extra", "ns"))
    assert isinstance(ip, ImagePolicy)
    store.put(ip)
    assert [p.key for p in store.current.policies_for("quay.io/acme/x", "ns")] == [
        "ClusterImagePolicy/acme", "ImagePolicy/ns/extra"]
    store.remove("ImagePolicy/ns/extra")
    store.remove("ClusterImagePolicy/absent")
    assert [p.key for p in store.current.policies_for("quay.io/acme/x", "ns")] == ["ClusterImagePolicy/acme"]
    trust_root = load_object({"apiVersion": "policy.signet.dev/v1alpha1", "kind": "TrustRoot",
                              "metadata": {"name": "corp"}, "spec": {"trustedRoot": {"mediaType": "x"}}})
    assert isinstance(trust_root, TrustRoot)
    store.replace_all([trust_root], "cluster")
    assert store.current.cluster_policies == () and store.current.trust_root("corp") is trust_root


def test_every_spelling_of_a_location_gets_its_policies() -> None:
    # issue 9: `ghcr.io:443/...` is pulled from where `ghcr.io/...` is; it must not escape to noMatchPolicy
    policies = _set(make_cip("prod", ("ghcr.io/acme/prod/**",)), make_cip("hub", ("docker.io/acme/*",)),
                    make_cip("nginx", ("nginx",)), no_match=NoMatchPolicy.WARN)
    for image in ("ghcr.io:443/acme/prod/app", "GHCR.IO/acme/prod/app:v1", "ghcr.io:0443/acme/prod/app"):
        assert _names(policies, image) == ["ClusterImagePolicy/prod"], image
    for image in ("acme/app", "index.docker.io/acme/app", "registry-1.docker.io:443/acme/app", "DOCKER.IO/acme/app"):
        assert _names(policies, image) == ["ClusterImagePolicy/hub"], image
    for image in ("nginx:1", "docker.io/library/nginx", "index.docker.io/nginx", "Docker.io/nginx"):
        assert _names(policies, image) == ["ClusterImagePolicy/nginx"], image


def test_selection_names_the_canonical_reference(policies: PolicySet) -> None:
    assert policies.select("docker.io/nginx:1").image == "index.docker.io/library/nginx:1"
    ref = parse_reference(f"GHCR.io:443/acme/app:v1@{DIGEST}")
    selection = policies.select(ref)
    assert selection.image == f"ghcr.io/acme/app:v1@{DIGEST}"
    assert selection == policies.select(str(ref))


def test_malformed_images_are_refused_not_matched(policies: PolicySet) -> None:
    with pytest.raises(InputError, match="whitespace, control"):
        policies.select("ghcr.io/acme/app\n:v1")


def test_policy_controller_config_table() -> None:
    # policy-controller's GetMatchingPolicies cases (pkg/apis/config testdata), as a policy set here
    policies = _set(make_cip("cip-0", ("rando",)), make_cip("cip-1", ("randomstuff*",)),
                    make_cip("cip-2", ("rando3",)), make_cip("cip-4", ("regexstring*",)),
                    make_cip("cip-5", ("regexstringtoo*",)), make_cip("json", ("ghcr.io/example/*",)))
    assert _names(policies, "rando") == ["ClusterImagePolicy/cip-0"]
    assert _names(policies, "randomstuffhere") == ["ClusterImagePolicy/cip-1"]
    assert _names(policies, "rando3") == ["ClusterImagePolicy/cip-2"]
    assert _names(policies, "regexstringstuff") == ["ClusterImagePolicy/cip-4"]
    assert _names(policies, "regexstringtoo") == ["ClusterImagePolicy/cip-4", "ClusterImagePolicy/cip-5"]
    assert _names(policies, "ghcr.io/example/foo") == ["ClusterImagePolicy/json"]
    assert _names(policies, "ghcr.io/example/foo/bar") == []


def test_catch_all_written_policy_controller_style_catches_everything() -> None:
    fail = {"authorities": [{"name": "deny", "static": {"action": "fail"}}]}
    policies = _set(make_cip("catch-all", ("*/**",), **fail), no_match=NoMatchPolicy.ALLOW)
    for image in ("ghcr.io/foo", "ghcr.io/foo/bar", "nginx", "acme/app", "localhost:5000/x", f"quay.io/a/b@{DIGEST}"):
        assert _names(policies, image) == ["ClusterImagePolicy/catch-all"], image


def test_digest_globs_apply_once_the_digest_is_known() -> None:
    policies = _set(make_cip("pinned-only", ("ghcr.io/acme/app@sha256:*",)), make_cip("acme", ("ghcr.io/acme/**",)))
    assert policies.digest_sensitive
    written = parse_reference("ghcr.io/acme/app:v1")
    assert _names(policies, written) == ["ClusterImagePolicy/acme"]
    # the engine selects again with the resolved digest: a superset, the tag kept
    assert _names(policies, written.with_digest(DIGEST)) == [
        "ClusterImagePolicy/acme", "ClusterImagePolicy/pinned-only"]
    assert not _set(make_cip("acme", ("ghcr.io/acme/**", "ghcr.io/acme/app:v1"))).digest_sensitive


def test_tag_and_digest_globs_are_memoised_per_reference(policies: PolicySet) -> None:
    for _ in range(3):
        assert "ClusterImagePolicy/acme-app-v1" in _names(policies, "ghcr.io/acme/app:v1")
    assert policies._cluster_by_ref.cache_info().hits >= 2


def test_warm_selection_is_fast_with_hub_images_and_qualified_globs() -> None:
    import time

    docs = [make_cip(f"p{i}", (f"registry{i}.example.com/**", f"*/team{i}/*:v*", f"acme{i}/*")) for i in range(100)]
    policies = _set(*docs)
    images = [parse_reference(f"acme{i % 100}/app:v{i}") for i in range(200)]
    for image in images:
        policies.select(image)
    start = time.perf_counter()
    for _ in range(10):
        for image in images:
            policies.select(image)
    per_call = (time.perf_counter() - start) / 2000
    assert per_call < 50e-6, f"{per_call * 1e6:.1f} us per warm selection"


# -- trustRootRef means the TrustRoot of the referring object's API group ---------------------------

PC_GROUP = "policy.sigstore.dev"


def _trust_root(name: str, api_version: str = "policy.signet.dev/v1alpha1",
                spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": "TrustRoot", "metadata": {"name": name},
            "spec": spec or {"trustedRoot": {"mediaType": "x"}}}


def _referring(name: str, ref: str, api_version: str = "policy.signet.dev/v1alpha1") -> dict[str, Any]:
    doc = make_cip(name)
    doc["apiVersion"] = api_version
    doc["spec"]["authorities"][0]["keyless"]["trustRootRef"] = ref
    return doc


def test_trust_roots_of_one_name_in_both_groups_are_both_kept_and_told_apart() -> None:
    ours = load_object(_trust_root("corp"))
    signed_root = base64.b64encode(json.dumps({"signed": {"_type": "root"},
                                               "signatures": [{"keyid": "k", "sig": "00"}]}).encode()).decode()
    theirs = load_object(_trust_root("corp", f"{PC_GROUP}/v1alpha1",
                                     {"remote": {"mirror": "https://tuf.example", "root": signed_root}}))
    assert isinstance(ours, TrustRoot) and isinstance(theirs, TrustRoot)
    store = PolicyStore([ours], source="file")
    store.put(theirs)
    assert store.current.trust_root("corp") is ours
    assert store.current.trust_root("corp", PC_GROUP) is theirs
    assert {t.key for t in store.current.trust_roots} == {"TrustRoot/corp", f"TrustRoot.{PC_GROUP}/corp"}


def test_a_file_wins_over_the_cluster_only_within_one_group() -> None:
    from_file = load_object(_trust_root("corp"))
    from_cluster = load_object(_trust_root("corp"))
    assert isinstance(from_file, TrustRoot) and isinstance(from_cluster, TrustRoot)
    store = PolicyStore([from_file], source="file")
    store.put(from_cluster)
    assert store.current.trust_root("corp") is from_file
    assert store.current.trust_root("corp", PC_GROUP) is None


def test_missing_trust_roots_are_looked_up_in_the_referring_group() -> None:
    policies = _set(_referring("signets", "corp"), _referring("pcs", "corp", f"{PC_GROUP}/v1alpha1"),
                    _trust_root("corp"))
    assert policies.missing_trust_roots() == {"corp": (f"ClusterImagePolicy.{PC_GROUP}/pcs",)}


# -- spec.match --------------------------------------------------------------------------------------

def test_select_applies_match_only_when_the_object_is_known() -> None:
    pods = make_cip("pods")
    pods["spec"]["match"] = [{"group": "", "version": "v1", "resource": "pods"}]
    policies = _set(pods, make_cip("all"))
    pod = MatchTarget.of("", "v1", "pods", {})
    deployment = MatchTarget.of("apps", "v1", "deployments", {})
    assert [p.name for p in policies.select("ghcr.io/acme/app", target=pod).cluster] == ["all", "pods"]
    assert [p.name for p in policies.select("ghcr.io/acme/app", target=deployment).cluster] == ["all"]
    assert [p.name for p in policies.select("ghcr.io/acme/app").cluster] == ["all", "pods"]
    assert policies.uses_match and not _set(make_cip("all")).uses_match
