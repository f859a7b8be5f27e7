"""Walking around the policies, tried against a real ``signet serve`` and the real registry.

Each test is one finding of the security review, as an attacker (a tenant who writes Pods and
namespaced ImagePolicies, or a registry operator) would try it: verdicts that outlive a moved
tag, spellings of a registry that match no policy, tenants replacing an administrator's policy
or reading another namespace's Secret, policies that silently drop out, a permissive default,
and warn mode or a typo turning into something else.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e.servers import SignetServer
from tests.integration.registry import LocalRegistry, free_port
from tests.k8s_apiserver import FakeApiServer
from tests.sigstore_kit import SigstoreKit
from tests.unit.admission.reviews import UID, pod_spec, review_dict, workload
from tests.unit.server.tls_certs import TestCA

SIGNER, ISSUER = "signer@example.com", "https://oidc.example"
API = "policy.signet.dev/v1alpha1"


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return SigstoreKit.create(seed_entries=2)


def start(work: Path, *args: str, policies: str | None = None, ready: bool = True) -> SignetServer:
    ca = TestCA()
    ca.issue(work / "tls.crt", work / "tls.key")
    flags = ["--tls-cert", str(work / "tls.crt"), "--tls-key", str(work / "tls.key"), *args]
    if policies is not None:
        (work / "policies").mkdir(exist_ok=True)
        (work / "policies" / "p.yaml").write_text(policies)
        flags += ["--policies", str(work / "policies")]
    return SignetServer(work, ca.write_ca(work / "ca.pem"), *flags, wait_ready=ready)


def admit(server: SignetServer, *images: str, namespace: str = "team-a") -> dict[str, Any]:
    obj = workload("Pod", pod_spec(*images))
    obj["metadata"]["namespace"] = namespace
    review = review_dict(obj, "Pod")
    review["request"]["namespace"] = namespace
    response = server.client.post("/validate", content=orjson.dumps(review))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()["response"]
    assert answer["uid"] == UID
    return answer


def message(answer: dict[str, Any]) -> str:
    return str(answer.get("status", {}).get("message", ""))


def images_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(answer["auditAnnotations"]["images"])
    return records


def keyless_policy(glob: str, *, name: str = "release", mode: str = "enforce") -> str:
    return (f"apiVersion: {API}\nkind: ClusterImagePolicy\nmetadata: {{name: {name}}}\nspec:\n"
            f"  images: [{{glob: '{glob}'}}]\n  mode: {mode}\n  authorities:\n    - name: kit-signer\n"
            f"      keyless:\n        identities: [{{issuer: '{ISSUER}', subject: '{SIGNER}'}}]\n")


def sign(registry: LocalRegistry, kit: SigstoreKit, repo: str, digest: str) -> None:
    sig = kit.sign_image_legacy(digest, repository=f"{registry.host}/{repo}", identity=SIGNER, issuer=ISSUER)
    registry.push_legacy_signature(repo, digest, [(sig.payload, sig.annotations)])


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


# -- 1. verdicts outliving what they judged ------------------------------------------------------

def test_a_tag_moved_to_an_unsigned_image_is_denied_once_its_digest_expires(
        registry: LocalRegistry, kit: SigstoreKit, tmp_path: Path) -> None:
    (tmp_path / "root.json").write_bytes(kit.trusted_root_json())
    server = start(tmp_path, "--trusted-root", str(tmp_path / "root.json"), "--allow-http-registry",
                   "--digest-ttl", "1", policies=keyless_policy("127.0.0.1:*/moving/**"))
    try:
        repo = "moving/app"
        sign(registry, kit, repo, registry.push_random_image(repo, "v1"))
        image = f"{registry.host}/{repo}:v1"
        assert admit(server, image)["allowed"] is True
        unsigned = registry.push_random_image(repo, "v1")  # the tag now names an unsigned image
        time.sleep(1.2)  # past --digest-ttl; the allow verdict (1 h) must not follow the tag
        answer = admit(server, image)
        assert answer["allowed"] is False, answer
        assert images_of(answer)[0]["digest"] == unsigned and "no signatures found" in answer["status"]["message"]
    finally:
        server.stop()


# -- 2. spellings of one registry ----------------------------------------------------------------

@pytest.fixture
def mirrored(registry: LocalRegistry, kit: SigstoreKit, tmp_path: Path) -> Iterator[SignetServer]:
    """ghcr.io served by the local registry (a mirror), one policy for ghcr.io/acme, and warn for the rest."""
    (tmp_path / "root.json").write_bytes(kit.trusted_root_json())
    server = start(tmp_path, "--trusted-root", str(tmp_path / "root.json"), "--allow-http-registry",
                   "--registry-mirror", f"ghcr.io={registry.url}", "--no-match-policy", "warn",
                   policies=keyless_policy("ghcr.io/acme/**"))
    yield server
    server.stop()


def test_every_spelling_of_a_registry_meets_its_policy(mirrored: SignetServer, registry: LocalRegistry,
                                                       kit: SigstoreKit) -> None:
    repo = "acme/app"
    unsigned = registry.push_random_image(repo, None)
    signed = registry.push_random_image(repo, None)
    sign(registry, kit, repo, signed)
    for host in ("ghcr.io", "ghcr.io:443", "GHCR.IO", "Ghcr.Io:0443"):
        denied = admit(mirrored, f"{host}/{repo}@{unsigned}")
        # With noMatchPolicy warn, an alias that escaped the policy would be admitted with a warning.
        assert denied["allowed"] is False, (host, denied)
        assert images_of(denied)[0]["policy"] == "release", host
        assert admit(mirrored, f"{host}/{repo}@{signed}")["allowed"] is True, host


def test_every_spelling_of_docker_hub_meets_its_policy(tmp_path: Path) -> None:
    blocked = (f"apiVersion: {API}\nkind: ClusterImagePolicy\nmetadata: {{name: no-nginx}}\nspec:\n"
               "  images: [{glob: 'docker.io/library/nginx'}]\n  authorities:\n"
               "    - {name: gate, static: {action: fail, message: nginx is not allowed here}}\n")
    server = start(tmp_path, "--no-match-policy", "allow", policies=blocked)
    try:
        for image in ("nginx", "nginx:1.27", "library/nginx", "docker.io/nginx", "docker.io/library/nginx",
                      "index.docker.io/library/nginx", "registry-1.docker.io/library/nginx:latest",
                      "DOCKER.IO/library/nginx", "docker.io:443/library/nginx", f"nginx@sha256:{'ab' * 32}"):
            answer = admit(server, image)
            assert answer["allowed"] is False, image
            assert "nginx is not allowed here" in answer["status"]["message"], image
    finally:
        server.stop()


@pytest.mark.parametrize("image", ["ghcr.io/acme/app\n:v1", "ghcr.io/acme/app:v1\n", " ghcr.io/acme/app:v1",
                                   "ghcr.io/acme/app:v1\x00", "ghcr.io/acme/äpp:v1", "ghcr.io:99999/acme/app"])
def test_malformed_references_are_denied_whatever_no_match_policy_says(tmp_path: Path, image: str) -> None:
    server = start(tmp_path, "--no-match-policy", "allow", policies=keyless_policy("other.example/**"))
    try:
        answer = admit(server, image)
        assert answer["allowed"] is False and "invalid image reference" in answer["status"]["message"]
    finally:
        server.stop()


# -- 3. tenants loosening or reading what is not theirs ------------------------------------------

@pytest.fixture
def in_cluster(tmp_path: Path) -> Iterator[tuple[FakeApiServer, Callable[[str], SignetServer]]]:
    apiserver = FakeApiServer()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: stand-in\n"
        f"clusters: [{{name: stand-in, cluster: {{server: '{apiserver.url}'}}}}]\n"
        "contexts: [{name: stand-in, context: {cluster: stand-in, user: nobody}}]\n"
        "users: [{name: nobody, user: {}}]\n")
    servers: list[SignetServer] = []

    def serve(policies: str) -> SignetServer:
        server = start(tmp_path, "--kubeconfig", str(kubeconfig), "--no-match-policy", "allow", policies=policies)
        servers.append(server)
        return server

    yield apiserver, serve
    for server in servers:
        server.stop()
    apiserver.stop()


def gate(name: str, namespace: str, action: str, glob: str = "ghcr.io/acme/**") -> dict[str, Any]:
    return {"apiVersion": API, "kind": "ImagePolicy", "metadata": {"name": name, "namespace": namespace,
                                                                   "generation": 1},
            "spec": {"images": [{"glob": glob}],
                     "authorities": [{"name": "gate", "static": {"action": action, "message": f"{name} {action}"}}]}}


IMAGE = "ghcr.io/acme/app@sha256:" + "ab" * 32
MARKER = "ghcr.io/marker/app@sha256:" + "ab" * 32


def test_a_tenant_policy_named_like_the_administrators_neither_replaces_nor_removes_it(
        in_cluster: tuple[FakeApiServer, Callable[[str], SignetServer]]) -> None:
    apiserver, serve = in_cluster
    admin = (f"apiVersion: {API}\nkind: ImagePolicy\nmetadata: {{name: guard, namespace: team-a}}\nspec:\n"
             "  images: [{glob: 'ghcr.io/acme/**'}]\n  authorities:\n"
             "    - {name: gate, static: {action: fail, message: guard from the administrator}}\n")
    server = serve(admin)
    assert "guard from the administrator" in admit(server, IMAGE)["status"]["message"]
    apiserver.put("imagepolicies", gate("guard", "team-a", "pass"))
    # A marker applied after the tenant's policy shows when the watcher has caught up.
    apiserver.put("imagepolicies", gate("marker", "team-a", "fail", "ghcr.io/marker/**"))
    wait_for(lambda: "marker fail" in message(admit(server, MARKER)))
    assert "guard from the administrator" in admit(server, IMAGE)["status"]["message"]
    apiserver.delete("imagepolicies", "marker", namespace="team-a")
    wait_for(lambda: admit(server, MARKER)["allowed"] is True)
    apiserver.delete("imagepolicies", "guard", namespace="team-a")
    time.sleep(0.3)
    answer = admit(server, IMAGE)
    assert answer["allowed"] is False and "guard from the administrator" in answer["status"]["message"]


def test_a_tenant_policy_cannot_name_another_namespaces_secret_nor_learn_about_it(
        in_cluster: tuple[FakeApiServer, Callable[[str], SignetServer]]) -> None:
    apiserver, serve = in_cluster
    server = serve("")
    probe = {"apiVersion": API, "kind": "ImagePolicy",
             "metadata": {"name": "probe", "namespace": "team-a", "generation": 1},
             "spec": {"images": [{"glob": "ghcr.io/acme/**"}], "authorities": [
                 {"name": "k", "key": {"secretRef": {"name": "signing-key", "namespace": "kube-system"}}}]}}
    apiserver.put("imagepolicies", probe)
    wait_for(lambda: admit(server, IMAGE)["allowed"] is False)
    message = admit(server, IMAGE)["status"]["message"]
    # Refused as written, it still covers its images (fails closed) and the denial says nothing of the Secret.
    assert "cannot be enforced" in message and "signing-key" not in message.replace("kube-system", "")
    condition = apiserver.objects[("imagepolicies", "team-a", "probe")]["status"]["conditions"][0]
    assert condition["status"] == "False" and "own namespace" in condition["message"]


# -- 3b. a policy that cannot be enforced does not drop out ----------------------------------------

def test_an_unenforceable_policy_keeps_denying_its_images_and_the_server_is_not_ready(
        registry: LocalRegistry, tmp_path: Path) -> None:
    kms = ("apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata: {name: kms-only}\n"
           "spec:\n  images: [{glob: 'ghcr.io/acme/**'}]\n  authorities:\n"
           "    - key: {kms: 'awskms:///arn:aws:kms:us-east-1:1:key/1'}\n")
    server = start(tmp_path, "--no-match-policy", "allow", policies=kms, ready=False)
    try:
        ready = server.client.get("/readyz")
        assert ready.status_code == 503 and "kms" in ready.text.lower()
        answer = admit(server, IMAGE)
        assert answer["allowed"] is False and "cannot be enforced" in answer["status"]["message"]
        assert admit(server, "quay.io/other/app@sha256:" + "cd" * 32)["allowed"] is True  # noMatchPolicy allow
    finally:
        server.stop()


# -- 6. the default ------------------------------------------------------------------------------

def test_serve_with_no_policy_flags_denies_an_unsigned_image_from_anywhere(registry: LocalRegistry,
                                                                           tmp_path: Path) -> None:
    server = start(tmp_path)
    try:
        repo = "anywhere/app"
        answer = admit(server, f"{registry.host}/{repo}@{registry.push_random_image(repo, None)}", "nginx:latest")
        assert answer["allowed"] is False and "no policy matches" in answer["status"]["message"]
    finally:
        server.stop()


# -- 7. warn mode and missing images ---------------------------------------------------------------

def test_warn_mode_warns_when_the_registry_is_unreachable(tmp_path: Path) -> None:
    closed = f"127.0.0.1:{free_port()}"
    server = start(tmp_path, "--allow-http-registry", "--deadline", "3",
                   policies=keyless_policy("127.0.0.1:*/**", mode="warn"))
    try:
        answer = admit(server, f"{closed}/rollout/app:v1")
        assert answer["allowed"] is True and answer.get("warnings"), answer
        (record,) = images_of(answer)
        assert record["verdict"] == "warn" and "every matching policy is in warn mode" in record["reason"]
    finally:
        server.stop()


def test_a_tag_the_registry_does_not_have_is_denied_even_with_on_error_allow(
        registry: LocalRegistry, kit: SigstoreKit, tmp_path: Path) -> None:
    (tmp_path / "root.json").write_bytes(kit.trusted_root_json())
    server = start(tmp_path, "--trusted-root", str(tmp_path / "root.json"), "--allow-http-registry",
                   "--on-error", "allow", policies=keyless_policy("127.0.0.1:*/typo/**"))
    try:
        registry.push_random_image("typo/app", "v1")
        answer = admit(server, f"{registry.host}/typo/app:v1-typo")
        assert answer["allowed"] is False, answer
        assert "does not exist" in answer["status"]["message"]
        assert "infrastructure" not in answer["status"]["message"]
    finally:
        server.stop()
