"""Tenants can add requirements, never loosen or read what is not theirs (files vs cluster, Secrets)."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.policy import PolicyStore
from webhook.policy.loader import InvalidPolicyError, load_object


def cip(name: str, glob: str, action: str) -> dict[str, Any]:
    return {"apiVersion": "policy.signet.dev/v1alpha1", "kind": "ClusterImagePolicy", "metadata": {"name": name},
            "spec": {"images": [{"glob": glob}], "authorities": [{"name": "a", "static": {"action": action}}]}}


def ip(name: str, namespace: str, action: str) -> dict[str, Any]:
    return {"apiVersion": "policy.signet.dev/v1alpha1", "kind": "ImagePolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"images": [{"glob": "ghcr.io/**"}], "authorities": [{"name": "a", "static": {"action": action}}]}}


def test_a_cluster_object_named_like_a_file_object_neither_replaces_nor_removes_it() -> None:
    store = PolicyStore([load_object(cip("release", "ghcr.io/**", "fail")), load_object(ip("team", "team-a", "fail"))])
    tenant = load_object(ip("team", "team-a", "pass"))
    store.put(tenant, "cluster")
    store.put(load_object(cip("release", "ghcr.io/**", "pass")), "cluster")
    selected = store.current.select("ghcr.io/acme/app:v1", "team-a")
    # Both versions apply (AND): the file's `fail` still decides.
    assert sorted(a.static.action for p in selected.policies for a in p.spec.authorities if a.static) == \
        ["fail", "fail", "pass", "pass"]
    store.remove("ImagePolicy/team-a/team", "cluster")
    store.remove("ClusterImagePolicy/release", "cluster")
    selected = store.current.select("ghcr.io/acme/app:v1", "team-a")
    assert [p.key for p in selected.policies] == ["ClusterImagePolicy/release", "ImagePolicy/team-a/team"]
    assert all(a.static and a.static.action == "fail" for p in selected.policies for a in p.spec.authorities)


def test_replacing_the_cluster_objects_keeps_the_files() -> None:
    store = PolicyStore([load_object(cip("from-file", "ghcr.io/**", "fail"))])
    store.put(load_object(cip("from-cluster", "quay.io/**", "pass")), "cluster")
    store.replace_all([], "cluster")
    assert [p.key for p in store.current.cluster_policies] == ["ClusterImagePolicy/from-file"]


def keyed_ip(namespace: str, secret_namespace: str | None) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": "release-key"}
    if secret_namespace is not None:
        ref["namespace"] = secret_namespace
    return {"apiVersion": "policy.signet.dev/v1alpha1", "kind": "ImagePolicy",
            "metadata": {"name": "keyed", "namespace": namespace},
            "spec": {"images": [{"glob": "ghcr.io/**"}], "authorities": [{"name": "k", "key": {"secretRef": ref}}]}}


def test_an_image_policy_may_only_name_secrets_of_its_own_namespace() -> None:
    assert load_object(keyed_ip("team-a", None))
    assert load_object(keyed_ip("team-a", "team-a"))
    own_only = r"may only use Secrets of its own namespace \(team-a\), not kube-system"
    with pytest.raises(InvalidPolicyError, match=own_only):
        load_object(keyed_ip("team-a", "kube-system"))
