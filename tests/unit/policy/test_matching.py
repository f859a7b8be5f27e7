"""Which policies apply: AND across matching policies, namespaced ones only add, noMatchPolicy."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.unit.policy.policy_docs import make_cip, make_ip
from webhook.policy import NoMatchPolicy, PolicySet, PolicyStore, load_documents, load_object
from webhook.policy.models import ClusterImagePolicy, ImagePolicy, TrustRoot

DIGEST = "sha256:" + "ef" * 32


def _set(*docs: dict[str, Any], no_match: NoMatchPolicy = NoMatchPolicy.DENY) -> PolicySet:
    result = load_documents(list(docs))
    assert result.ok, [str(p) for p in result.problems]
    return PolicySet.from_load_result(result, no_match_policy=no_match)


def _names(policy_set: PolicySet, image: str, namespace: str | None = None) -> list[str]:
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
    store.replace_all([trust_root])
    assert store.current.cluster_policies == () and store.current.trust_root("corp") is trust_root
