"""signet serve in a (stand-in) cluster: policies applied with the API take effect, denials become Events.

The API server is tests/k8s_apiserver.py (see its docstring for what it does not cover); signet
serve reaches it through a kubeconfig, as it would reach a real one from outside a pod.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e.servers import SignetServer
from tests.k8s_apiserver import FakeApiServer
from tests.unit.admission.reviews import pod_spec, review_dict, workload
from tests.unit.server.tls_certs import TestCA

API = "policy.signet.dev/v1alpha1"
IMAGE = "ghcr.io/acme/app@sha256:" + "ab" * 32


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def static_policy(name: str, action: str) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "ClusterImagePolicy", "metadata": {"name": name, "generation": 1},
            "spec": {"images": [{"glob": "ghcr.io/acme/**"}], "authorities": [
                {"name": "gate", "static": {"action": action, "message": f"{name} says {action}"}}]}}


def admit(server: SignetServer) -> dict[str, Any]:
    obj = workload("Pod", pod_spec(IMAGE))
    obj["metadata"]["namespace"] = "team-a"
    response = server.client.post("/validate", content=orjson.dumps(review_dict(obj, "Pod")))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()["response"]
    return answer


@pytest.fixture
def cluster_server(tmp_path: Path) -> Iterator[tuple[FakeApiServer, SignetServer]]:
    apiserver = FakeApiServer()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: stand-in\n"
        f"clusters: [{{name: stand-in, cluster: {{server: '{apiserver.url}'}}}}]\n"
        "contexts: [{name: stand-in, context: {cluster: stand-in, user: nobody}}]\n"
        "users: [{name: nobody, user: {}}]\n")
    policies = tmp_path / "policies"
    policies.mkdir()
    ca = TestCA()
    ca.issue(tmp_path / "tls.crt", tmp_path / "tls.key")
    server = SignetServer(tmp_path, ca.write_ca(tmp_path / "ca.pem"), "--tls-cert", str(tmp_path / "tls.crt"),
                          "--tls-key", str(tmp_path / "tls.key"), "--policies", str(policies),
                          "--kubeconfig", str(kubeconfig), "--no-match-policy", "deny")
    try:
        yield apiserver, server
    finally:
        server.stop()
        apiserver.stop()


def test_policies_applied_in_the_cluster_take_effect_and_denials_become_events(
        cluster_server: tuple[FakeApiServer, SignetServer]) -> None:
    apiserver, server = cluster_server
    assert "no policy matches" in admit(server)["status"]["message"]

    apiserver.put("clusterimagepolicies", static_policy("gate", "pass"))
    wait_for(lambda: admit(server)["allowed"] is True)

    apiserver.put("clusterimagepolicies", {**static_policy("gate", "fail"),
                                           "metadata": {"name": "gate", "generation": 2}})
    wait_for(lambda: admit(server)["allowed"] is False)
    answer = admit(server)
    assert "gate says fail" in answer["status"]["message"]

    def events() -> list[dict[str, Any]]:
        return [obj for (resource, _ns, _name), obj in apiserver.objects.items() if resource == "events"]

    wait_for(lambda: any("gate says fail" in e["message"] for e in events()))
    event = next(e for e in events() if "gate says fail" in e["message"])
    assert event["reason"] == "ImageDenied" and event["type"] == "Warning"
    assert event["involvedObject"]["kind"] == "Pod" and event["involvedObject"]["namespace"] == "team-a"
