"""Defects found reviewing admission parsing adversarially: each test failed before its fix."""

from __future__ import annotations

import orjson
import pytest

from tests.unit.admission.reviews import pod_spec, review_dict, workload
from webhook.admission.review import MalformedReviewError, parse_review


@pytest.mark.parametrize("namespace", ["x" * 100_000, "Team-A", "team_a", "-team", "team/a", "a" * 64])
def test_a_namespace_kubernetes_could_not_have_sent_is_refused(namespace: str) -> None:
    # Namespaces key long-lived state (plans, pull-secret reads): a caller that reaches the Service
    # directly must not pin megabytes per review with names no API server sends.
    doc = review_dict(workload("Pod", pod_spec("ghcr.io/acme/app:v1")))
    doc["request"]["namespace"] = namespace
    with pytest.raises(MalformedReviewError, match=r"request\.namespace"):
        parse_review(orjson.dumps(doc))


@pytest.mark.parametrize("namespace", ["", "team-a", "a" * 63, "kube-system", "0"])
def test_namespaces_kubernetes_sends_are_read(namespace: str) -> None:
    doc = review_dict(workload("Pod", pod_spec("ghcr.io/acme/app:v1")))
    doc["request"]["namespace"] = namespace
    assert parse_review(orjson.dumps(doc)).namespace == namespace


class _CountingCoreApi:
    """CoreV1Api stand-in: every Secret and ServiceAccount is missing; reads are counted."""

    def __init__(self) -> None:
        self.reads = 0

    def read_namespaced_secret(self, name: str, namespace: str, **_: object) -> object:
        from kubernetes.client import ApiException

        self.reads += 1
        raise ApiException(status=404)

    read_namespaced_service_account = read_namespaced_secret


def test_a_pod_naming_thousands_of_pull_secrets_costs_a_bounded_number_of_reads() -> None:
    # Pull secrets are read before the engine's deadline starts, one API call each, in a worker thread:
    # a Pod naming 5,000 of them held a thread for minutes and, a few Pods later, every verification
    # that needs a thread (the cryptography) waited behind them.
    from kubernetes import client as k8s_client

    from webhook.k8s import PullSecrets

    secrets = PullSecrets(k8s_client.ApiClient(k8s_client.Configuration(host="http://127.0.0.1:9")))
    core = _CountingCoreApi()
    secrets._core = core  # the seam: no API server behind it
    spec = {"imagePullSecrets": [{"name": f"s{i}"} for i in range(5000)],
            "containers": [{"name": "c", "image": "ghcr.io/acme/app:v1"}]}
    secrets.credentials_for("team-a", spec)
    assert core.reads <= 64, f"{core.reads} API reads for one Pod"
