"""The cluster side (``webhook.k8s``) with the official client against the loopback API stand-in.

Policy watch (list, watch, drop, 410 Gone, outage, status), pull secrets, denial Events, pre-warm.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client as k8s_client

from tests.k8s_apiserver import FakeApiServer
from webhook.admission.outcome import ImageOutcome
from webhook.cluster import ClusterIntegration
from webhook.config import add_serve_arguments, from_args
from webhook.errors import InputError
from webhook.k8s import KINDS, EventRecorder, PolicyWatcher, PullSecrets, SecretKeyError, prewarm
from webhook.k8s.configmaps import ConfigMapError, ConfigMaps
from webhook.k8s.events import IMAGES_ANNOTATION, USER_ANNOTATION
from webhook.k8s.watch import POLICY_CONTROLLER_KINDS
from webhook.policy import PolicyStore, load_text
from webhook.policy.loader import FAIL_CLOSED_AUTHORITY

API = "policy.signet.dev/v1alpha1"
CIP = "clusterimagepolicies"
PASSWORD = "s3cr3t-pa55w0rd"  # must never show up in a log


@pytest.fixture
def apiserver() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    yield server
    server.stop()


@pytest.fixture
def api(apiserver: FakeApiServer) -> Iterator[Any]:
    api_client = k8s_client.ApiClient(k8s_client.Configuration(host=apiserver.url))
    yield api_client
    api_client.rest_client.pool_manager.clear()


def policy(name: str, glob: str = "ghcr.io/acme/**", *, valid: bool = True, namespace: str | None = None
           ) -> dict[str, Any]:
    authority: dict[str, Any] = {"name": "allow", "static": {"action": "pass"}}
    if not valid:
        authority = {"name": "broken", "keyless": {"identities": [{"subject": "a@example.com"}]}}
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": API, "kind": "ImagePolicy" if namespace else "ClusterImagePolicy", "metadata": metadata,
            "spec": {"images": [{"glob": glob}], "authorities": [authority]}}


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


class Changes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def watched(api: Any) -> Iterator[tuple[PolicyStore, Changes, Callable[..., PolicyWatcher]]]:
    store, changes = PolicyStore(), Changes()
    watchers: list[PolicyWatcher] = []

    def start(**options: Any) -> PolicyWatcher:
        watcher = PolicyWatcher(api, store, on_change=changes, backoff_initial=0.01, backoff_max=0.05, **options)
        watchers.append(watcher)
        watcher.start()
        assert watcher.wait_ready(5)
        return watcher

    yield store, changes, start
    for watcher in watchers:
        watcher.stop()


def names(store: PolicyStore) -> set[str]:
    current = store.current
    return ({p.key for p in current.cluster_policies} | {p.key for p in current.image_policies}
            | {t.key for t in current.trust_roots})


def watch_calls(apiserver: FakeApiServer, plural: str = CIP) -> list[str]:
    return [p for m, p in apiserver.requests if m == "GET" and f"/{plural}?" in p and "watch=true" in p]


def list_calls(apiserver: FakeApiServer, plural: str = CIP) -> list[str]:
    return [p for m, p in apiserver.requests if m == "GET" and p.endswith(f"/{plural}")]


def ready_condition(apiserver: FakeApiServer, name: str, resource: str = CIP, namespace: str = "") -> dict[str, Any]:
    obj = apiserver.objects[(resource, namespace, name)]
    (condition,) = obj.get("status", {}).get("conditions", [{}])
    assert isinstance(condition, dict)
    return condition


# --- policy watch -----------------------------------------------------------------------------


def test_policies_created_modified_deleted_take_effect(apiserver: FakeApiServer, watched: Any) -> None:
    store, changes, start = watched
    apiserver.put(CIP, policy("listed"))
    start()
    assert names(store) == {"ClusterImagePolicy/listed"}

    apiserver.put(CIP, policy("added", "docker.io/library/*"))
    apiserver.put("imagepolicies", policy("team", namespace="team-a"))
    wait_for(lambda: names(store) == {"ClusterImagePolicy/listed", "ClusterImagePolicy/added",
                                      "ImagePolicy/team-a/team"})
    assert store.current.select("docker.io/library/nginx:1").cluster[0].name == "added"
    before = changes.count

    apiserver.put(CIP, policy("added", "quay.io/**"))
    wait_for(lambda: bool(store.current.select("quay.io/x/y").cluster))
    assert not store.current.select("docker.io/library/nginx:1").cluster
    assert changes.count > before

    apiserver.delete(CIP, "added")
    wait_for(lambda: "ClusterImagePolicy/added" not in names(store))
    assert "ClusterImagePolicy/listed" in names(store)


def denied_by_stand_in(store: Any, image: str) -> bool:
    """The image is covered by a fail-closed stand-in (a policy that cannot be enforced as written)."""
    return any(a.name == FAIL_CLOSED_AUTHORITY and a.static is not None and a.static.action == "fail"
               for p in store.current.select(image).policies for a in p.spec.authorities)


def test_invalid_policy_is_reported_in_status_and_never_loosens_what_is_in_force(
    apiserver: FakeApiServer, watched: Any
) -> None:
    store, _, start = watched
    apiserver.put(CIP, policy("good"))
    apiserver.put(CIP, policy("bad", valid=False))
    start()
    # The invalid policy's images stay covered, and denied, instead of falling to noMatchPolicy.
    assert names(store) == {"ClusterImagePolicy/good", "ClusterImagePolicy/bad"}
    assert denied_by_stand_in(store, "ghcr.io/acme/app:1")
    wait_for(lambda: "status" in apiserver.objects[(CIP, "", "bad")])
    bad = ready_condition(apiserver, "bad")
    assert (bad["status"], bad["reason"], bad["observedGeneration"]) == ("False", "Invalid", 1)
    assert "spec.authorities[0].keyless.identities[0]" in bad["message"]
    assert "issuer" in bad["message"]
    wait_for(lambda: "status" in apiserver.objects[(CIP, "", "good")])
    assert ready_condition(apiserver, "good")["status"] == "True"

    # A valid policy edited into one that cannot be enforced denies its images until fixed.
    apiserver.put(CIP, policy("good", valid=False))
    wait_for(lambda: ready_condition(apiserver, "good")["status"] == "False")
    assert "every image it covers is denied" in ready_condition(apiserver, "good")["message"]
    apiserver.put(CIP, policy("bad", "quay.io/**"))
    wait_for(lambda: ready_condition(apiserver, "bad")["status"] == "True")
    assert not denied_by_stand_in(store, "quay.io/acme/app:1")
    assert denied_by_stand_in(store, "ghcr.io/acme/app:1")
    assert ready_condition(apiserver, "bad")["observedGeneration"] == 2


def test_status_is_written_once_per_generation_no_write_loop(apiserver: FakeApiServer, watched: Any) -> None:
    _, changes, start = watched
    apiserver.put(CIP, policy("p"))
    apiserver.put("imagepolicies", policy("ns-p", namespace="team-a"))
    start()
    wait_for(lambda: apiserver.count("PATCH", "/apis/") == 2)
    assert apiserver.count("PATCH", "/apis/policy.signet.dev/v1alpha1/namespaces/team-a/imagepolicies/ns-p/status")
    seen = changes.count
    time.sleep(0.3)  # our own status writes came back as MODIFIED events: ignored
    assert apiserver.count("PATCH", "/apis/") == 2
    assert changes.count == seen

    # A label change (no new generation) changes nothing either; a restart rewrites nothing.
    obj = json.loads(json.dumps(apiserver.objects[(CIP, "", "p")]))
    obj["metadata"]["labels"] = {"team": "a"}
    apiserver.put(CIP, obj)
    start()
    time.sleep(0.2)
    assert apiserver.count("PATCH", "/apis/") == 2


def test_dropped_watch_reconnects_from_its_resource_version(apiserver: FakeApiServer, watched: Any) -> None:
    store, _, start = watched
    start()
    apiserver.put("trustroots", {"metadata": {"name": "unrelated"}}, announce=False)  # resourceVersion 101
    apiserver.bookmark()  # tells the watchers they are at 101 now
    time.sleep(0.2)
    apiserver.drop_watches()
    wait_for(lambda: len(watch_calls(apiserver)) == 2)
    assert "resourceVersion=101" in watch_calls(apiserver)[-1]
    apiserver.put(CIP, policy("after-drop"))
    wait_for(lambda: names(store) == {"ClusterImagePolicy/after-drop"})
    assert len(list_calls(apiserver)) == 1  # a drop resumes the watch, it does not list again


@pytest.mark.parametrize("as_http", [False, True], ids=["error-event", "http-410"])
def test_410_gone_lists_again_and_catches_up(apiserver: FakeApiServer, watched: Any, as_http: bool) -> None:
    store, changes, start = watched
    apiserver.gone_as_http = as_http
    apiserver.put(CIP, policy("kept"))
    apiserver.put(CIP, policy("deleted-meanwhile"))
    start()
    before = changes.count
    # Changes the watch never saw, then history compacted: only a new list can find them.
    apiserver.delete(CIP, "deleted-meanwhile", announce=False)
    apiserver.put(CIP, policy("created-meanwhile"), announce=False)
    apiserver.compact()
    wait_for(lambda: names(store) == {"ClusterImagePolicy/kept", "ClusterImagePolicy/created-meanwhile"})
    assert changes.count == before + 1  # one re-list, one notification
    assert len(list_calls(apiserver)) == 2


def test_outage_keeps_the_last_policies_and_recovers(apiserver: FakeApiServer, watched: Any,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    store, _, start = watched
    apiserver.put(CIP, policy("in-force"))
    watcher = start()
    with caplog.at_level(logging.WARNING, logger="webhook.k8s.watch"):
        apiserver.outage = True
        apiserver.drop_watches()
        wait_for(lambda: "retrying" in caplog.text)
        assert names(store) == {"ClusterImagePolicy/in-force"} and watcher.ready
        time.sleep(0.2)
        apiserver.outage = False
    apiserver.put(CIP, policy("after-outage"))
    wait_for(lambda: "ClusterImagePolicy/after-outage" in names(store))


def test_cluster_policies_combine_with_directory_policies(apiserver: FakeApiServer, api: Any) -> None:
    from_files = load_text(json.dumps(policy("from-file")), "policies/a.yaml")
    store = PolicyStore(from_files.cluster_policies)
    apiserver.put(CIP, policy("from-cluster"))
    watcher = PolicyWatcher(api, store, on_change=lambda: None, backoff_initial=0.01)
    watcher.start()
    try:
        assert watcher.wait_ready(5)
        assert names(store) == {"ClusterImagePolicy/from-file", "ClusterImagePolicy/from-cluster"}
        apiserver.delete(CIP, "from-cluster", announce=False)
        apiserver.compact()  # the re-list removes only what came from the cluster
        wait_for(lambda: names(store) == {"ClusterImagePolicy/from-file"})
    finally:
        watcher.stop()


# --- pull secrets -----------------------------------------------------------------------------


def docker_config_secret(name: str, host: str, user: str, *, legacy: bool = False) -> dict[str, Any]:
    auth = base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
    config: dict[str, Any] = {host: {"auth": auth}} if legacy else {"auths": {host: {"auth": auth}}}
    encoded = base64.b64encode(json.dumps(config).encode()).decode()
    kind, field = (("kubernetes.io/dockercfg", ".dockercfg") if legacy
                   else ("kubernetes.io/dockerconfigjson", ".dockerconfigjson"))
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "team-a"},
            "type": kind, "data": {field: encoded}}


def service_account(name: str, *secrets: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": "team-a"},
            "imagePullSecrets": [{"name": s} for s in secrets]}


def test_credentials_from_pod_and_service_account_cached(apiserver: FakeApiServer, api: Any,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    apiserver.put("secrets", docker_config_secret("regcred", "registry.example:5000", "pod-user"))
    apiserver.put("secrets", docker_config_secret("sa-cred", "https://index.docker.io/v1/", "sa-user", legacy=True))
    apiserver.put("serviceaccounts", service_account("builder", "sa-cred", "sa-missing"))
    secrets = PullSecrets(api, ttl=60)
    spec = {"serviceAccountName": "builder", "imagePullSecrets": [{"name": "regcred"}, {"name": "missing"}],
            "containers": [{"name": "app", "image": "registry.example:5000/app"}]}
    with caplog.at_level(logging.DEBUG):
        store = secrets.credentials_for("team-a", spec)
        creds = store.lookup("registry.example:5000")
        assert creds is not None and (creds.username, creds.password) == ("pod-user", PASSWORD)
        hub = store.lookup("docker.io")
        assert hub is not None and hub.username == "sa-user"
        reads = len(apiserver.requests)
        again = asyncio.run(secrets.credentials_for_async("team-a", spec))
        assert again.hosts() == store.hosts()
        assert len(apiserver.requests) == reads  # cached: no API request
    assert "team-a/missing" in caplog.text and "team-a/sa-missing" in caplog.text
    assert PASSWORD not in caplog.text and base64.b64encode(PASSWORD.encode()).decode()[:12] not in caplog.text
    assert PASSWORD not in repr(creds)


def test_default_service_account_missing_secret_and_ttl(apiserver: FakeApiServer, api: Any,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    secrets = PullSecrets(api, ttl=60, clock=lambda: now[0])
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "x"}], "imagePullSecrets": [{"name": "later"}]}
    with caplog.at_level(logging.DEBUG):
        assert secrets.credentials_for("team-a", spec).hosts() == []  # no default SA, no secret: no credentials
    assert apiserver.count("GET", "/api/v1/namespaces/team-a/serviceaccounts/default")
    apiserver.put("secrets", docker_config_secret("later", "registry.example", "u"))
    assert secrets.credentials_for("team-a", spec).hosts() == []  # the absence is cached too
    now[0] = 61
    assert secrets.credentials_for("team-a", spec).hosts() == ["registry.example"]
    # A secret of another type is ignored, by name.
    apiserver.put("secrets", {"metadata": {"name": "opaque", "namespace": "team-a"}, "type": "Opaque",
                              "data": {"password": base64.b64encode(PASSWORD.encode()).decode()}})
    with caplog.at_level(logging.DEBUG):
        assert secrets.credentials_for("team-a", {"imagePullSecrets": [{"name": "opaque"}]}).hosts() == []
    assert "team-a/opaque is not a docker config secret" in caplog.text and PASSWORD not in caplog.text


def test_public_key_from_a_secret(apiserver: FakeApiServer, api: Any) -> None:
    pem = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"
    apiserver.put("secrets", {"metadata": {"name": "release-key", "namespace": "signet"}, "type": "Opaque",
                              "data": {"cosign.pub": base64.b64encode(pem.encode()).decode(),
                                       "cosign.key": base64.b64encode(b"private").decode()}})
    secrets = PullSecrets(api, own_namespace="signet")
    assert secrets.public_key(None, "release-key") == pem
    with pytest.raises(SecretKeyError, match=r"secret signet/absent named by key\.secretRef cannot be read"):
        secrets.public_key("signet", "absent")


def test_ca_certificates_from_a_secret(apiserver: FakeApiServer, api: Any) -> None:
    chain = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    b64 = base64.b64encode(chain.encode()).decode()
    apiserver.put("secrets", {"metadata": {"name": "corp-ca", "namespace": "signet"}, "type": "Opaque",
                              "data": {"ca.crt": b64, "tls.key": base64.b64encode(b"private").decode()}})
    apiserver.put("secrets", {"metadata": {"name": "two", "namespace": "team-a"}, "type": "Opaque",
                              "data": {"a": b64, "b": b64}})
    apiserver.put("secrets", {"metadata": {"name": "key", "namespace": "signet"}, "type": "Opaque",
                              "data": {"only": base64.b64encode(b"-----BEGIN PUBLIC KEY-----\n").decode()}})
    secrets = PullSecrets(api, own_namespace="signet")
    assert secrets.ca_certificates(None, "corp-ca") == chain
    with pytest.raises(SecretKeyError, match=r"secret team-a/two has no CA certificate entry"):
        secrets.ca_certificates("team-a", "two")
    with pytest.raises(SecretKeyError, match=r"secret signet/key: the entry is not a PEM CA certificate"):
        secrets.ca_certificates(None, "key")


def test_signature_pull_secrets_are_read_by_name_and_missing_ones_skipped(apiserver: FakeApiServer,
                                                                          api: Any) -> None:
    apiserver.put("secrets", docker_config_secret("sig-reader", "sigs.example", "u"))
    secrets = PullSecrets(api)
    assert secrets.registry_credentials("team-a", ["absent", "sig-reader"]).hosts() == ["sigs.example"]
    assert secrets.registry_credentials("team-b", ["sig-reader"]).hosts() == []  # another namespace's are not


def test_policy_texts_from_config_maps(apiserver: FakeApiServer, api: Any) -> None:
    apiserver.put("configmaps", {"metadata": {"name": "policies", "namespace": "signet"},
                                 "data": {"tags.cel": "true"}})
    config_maps = ConfigMaps(api, own_namespace="signet")
    assert config_maps.text(None, "policies", "tags.cel") == "true"
    with pytest.raises(ConfigMapError, match=r"ConfigMap signet/policies has no entry 'other.cel'"):
        config_maps.text("signet", "policies", "other.cel")
    with pytest.raises(ConfigMapError, match=r"ConfigMap team-a/policies does not exist"):
        config_maps.text("team-a", "policies", "tags.cel")
    apiserver.outage = True
    with pytest.raises(ConfigMapError, match=r"ConfigMap signet/policies cannot be read: HTTP 503"):
        config_maps.text(None, "policies", "tags.cel")


# --- events -----------------------------------------------------------------------------------


def outcome() -> ImageOutcome:
    return ImageOutcome("ghcr.io/acme/app:v1", "sha256:" + "a" * 64, "deny", "release-images", "release",
                        "certificate identity does not match", signer="eve@example.com",
                        issuer="https://oidc.example", log_index=42)


def events(apiserver: FakeApiServer) -> list[dict[str, Any]]:
    return [o for (r, _, _), o in apiserver.objects.items() if r == "events"]


def test_denial_event_created_in_the_background(apiserver: FakeApiServer, api: Any) -> None:
    recorder = EventRecorder(api, namespace_default="default")
    long_message = "image ghcr.io/acme/app:v1 denied: " + "x" * 2000
    assert recorder.denied("Deployment", "web", "team-a", "uid-1", long_message, api_version="apps/v1",
                           user="alice@example.com", images=[outcome()])
    assert recorder.flush(5)
    (event,) = events(apiserver)
    assert event["reason"] == "ImageDenied" and event["type"] == "Warning"
    assert event["involvedObject"] == {"kind": "Deployment", "name": "web", "namespace": "team-a", "uid": "uid-1",
                                       "apiVersion": "apps/v1"}
    assert event["source"] == {"component": "signet"} and len(event["message"]) == 1024
    assert event["metadata"]["namespace"] == "team-a" and event["metadata"]["name"].startswith("web.")
    annotations = event["metadata"]["annotations"]
    assert annotations[USER_ANNOTATION] == "alice@example.com"
    assert json.loads(annotations[IMAGES_ANNOTATION])[0]["logIndex"] == 42
    # Cluster-scoped object: the default namespace.
    assert recorder.denied("Namespace", "n", None, None, "denied")
    recorder.stop()
    assert {e["metadata"]["namespace"] for e in events(apiserver)} == {"team-a", "default"}


def test_denial_events_are_deduplicated_and_rate_limited(apiserver: FakeApiServer, api: Any) -> None:
    now = [0.0]
    recorder = EventRecorder(api, rate=1.0, burst=3, dedupe_window=60, clock=lambda: now[0])
    assert recorder.denied("Pod", "p", "ns", None, "image a denied")
    assert not recorder.denied("Pod", "p", "ns", None, "image a denied")  # same message: once per window
    assert recorder.denied("Pod", "p", "ns", None, "image b denied")
    assert recorder.denied("Pod", "q", "ns", None, "image a denied")
    assert not recorder.denied("Pod", "r", "ns", None, "image a denied")  # bucket empty
    now[0] = 61.0
    assert recorder.denied("Pod", "p", "ns", None, "image a denied")
    assert recorder.flush(5)
    assert len(events(apiserver)) == 4 and recorder.dropped == 2
    recorder.stop()


def test_event_errors_are_logged_never_raised(apiserver: FakeApiServer, api: Any,
                                              caplog: pytest.LogCaptureFixture) -> None:
    apiserver.outage = True
    recorder = EventRecorder(api)
    with caplog.at_level(logging.WARNING, logger="webhook.k8s.events"):
        assert recorder.denied("Pod", "p", "ns", None, "denied")
        assert recorder.flush(5)
    assert recorder.failed == 1 and "cannot create the ImageDenied event for Pod ns/p: HTTP 503" in caplog.text
    recorder.stop()


# --- pre-warm ---------------------------------------------------------------------------------


def pod(namespace: str, name: str, phase: str, *images: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"initContainers": [{"name": "init", "image": images[0]}],
                     "containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]},
            "status": {"phase": phase}}


def test_prewarm_decides_running_pods_images_by_namespace(apiserver: FakeApiServer, api: Any) -> None:
    apiserver.put("pods", pod("team-a", "a1", "Running", "ghcr.io/acme/app:v1", "ghcr.io/acme/sidecar:v2"))
    apiserver.put("pods", pod("team-a", "a2", "Running", "ghcr.io/acme/app:v1"))
    apiserver.put("pods", pod("team-b", "b1", "Running", "quay.io/b/app@sha256:" + "b" * 64))
    apiserver.put("pods", pod("team-c", "c1", "Pending", "docker.io/library/pending:1"))
    apiserver.put("pods", pod("kube-system", "k1", "Running", "registry.k8s.io/pause:3"))
    calls: list[tuple[str, list[str]]] = []
    active, peak = [0], [0]

    async def decide(images: list[str], namespace: str) -> object:
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        await asyncio.sleep(0.01)
        active[0] -= 1
        calls.append((namespace, images))
        if namespace == "team-b":
            raise RuntimeError("registry down")
        return None

    result = asyncio.run(prewarm(api, decide, concurrency=1, exclude_namespaces=["kube-system"]))
    assert sorted(calls) == [("team-a", ["ghcr.io/acme/app:v1", "ghcr.io/acme/sidecar:v2"]),
                             ("team-b", ["quay.io/b/app@sha256:" + "b" * 64])]
    assert peak[0] == 1
    assert (result.namespaces, result.images, result.failures) == (2, 3, 1)


# --- policy-controller's objects (--watch-policy-controller) -----------------------------------

PC_API = "policy.sigstore.dev/v1alpha1"
PC_CIP = "clusterimagepolicies.policy.sigstore.dev"
PC_TRUST_ROOTS = "trustroots.policy.sigstore.dev"
PC_KEY = "ClusterImagePolicy.policy.sigstore.dev"
ALL_KINDS = (*KINDS, *POLICY_CONTROLLER_KINDS)


def pc_policy(name: str, glob: str = "ghcr.io/acme/**", authority: dict[str, Any] | None = None) -> dict[str, Any]:
    """A policy-controller ClusterImagePolicy as kubectl would store it (no name: authority-0)."""
    return {"apiVersion": PC_API, "kind": "ClusterImagePolicy", "metadata": {"name": name},
            "spec": {"images": [{"glob": glob}], "authorities": [authority or {"static": {"action": "pass"}}]}}


def conditions(apiserver: FakeApiServer, resource: str, name: str) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in apiserver.objects[(resource, "", name)].get("status", {}).get("conditions", [])}


def test_policy_controller_objects_are_enforced_beside_signets_own(apiserver: FakeApiServer, watched: Any) -> None:
    store, _, start = watched
    apiserver.put(CIP, policy("release"))
    apiserver.put(PC_CIP, pc_policy("release", "docker.io/library/*", {"static": {"action": "fail"}}))
    start(kinds=ALL_KINDS)
    # the same name in both groups: two policies, both in force (neither replaces the other)
    assert names(store) == {"ClusterImagePolicy/release", f"{PC_KEY}/release"}
    (selected,) = store.current.select("docker.io/library/nginx:1").cluster
    assert selected.key == f"{PC_KEY}/release" and selected.regexp_mode == "search"
    assert selected.spec.authorities[0].name == "authority-0"

    apiserver.put(PC_CIP, pc_policy("release", "quay.io/**", {"static": {"action": "fail"}}))
    wait_for(lambda: bool(store.current.select("quay.io/x/y:1").cluster))
    apiserver.put(PC_TRUST_ROOTS, {"apiVersion": PC_API, "kind": "TrustRoot", "metadata": {"name": "corp"},
                                   "spec": {"trustedRoot": {"mediaType": "x"}}})  # not a pc field: refused
    wait_for(lambda: "SignetReady" in conditions(apiserver, PC_TRUST_ROOTS, "corp"))
    assert "spec.trustedRoot" in conditions(apiserver, PC_TRUST_ROOTS, "corp")["SignetReady"]["message"]
    assert not store.current.trust_roots
    apiserver.delete(PC_CIP, "release")
    wait_for(lambda: names(store) == {"ClusterImagePolicy/release"})
    assert store.current.select("ghcr.io/acme/app:1").cluster[0].key == "ClusterImagePolicy/release"


def test_status_gets_signets_condition_and_keeps_policy_controllers(apiserver: FakeApiServer, watched: Any) -> None:
    store, _, start = watched
    theirs = {"type": "Ready", "status": "True", "reason": "Reconciled", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    apiserver.put(PC_CIP, pc_policy("signed") | {"status": {"conditions": [theirs]}})
    apiserver.put(PC_CIP, pc_policy("kms", authority={"key": {"kms": "awskms:///arn:aws:kms:eu-west-1:1:key/k"}}))
    start(kinds=ALL_KINDS)
    wait_for(lambda: "SignetReady" in conditions(apiserver, PC_CIP, "signed"))
    signed = conditions(apiserver, PC_CIP, "signed")
    assert signed["Ready"] == theirs and signed["SignetReady"]["status"] == "True"
    assert apiserver.count("PATCH", "/apis/policy.sigstore.dev/v1alpha1/clusterimagepolicies/signed/status") == 1
    wait_for(lambda: "SignetReady" in conditions(apiserver, PC_CIP, "kms"))
    kms = conditions(apiserver, PC_CIP, "kms")["SignetReady"]
    assert (kms["status"], kms["reason"]) == ("False", "Invalid")
    assert "spec.authorities[0].key.kms" in kms["message"] and "every image it covers is denied" in kms["message"]
    assert denied_by_stand_in(store, "ghcr.io/acme/app:1")  # its images stay covered, and denied


def test_secrets_may_be_named_only_in_signets_namespace(apiserver: FakeApiServer, watched: Any) -> None:
    store, _, start = watched
    key = {"key": {"secretRef": {"name": "cosign-key", "namespace": "signet"}}}
    apiserver.put(PC_CIP, pc_policy("ours", authority=key))
    apiserver.put(PC_CIP, pc_policy("theirs", "quay.io/**", {"key": {"secretRef": {"name": "k", "namespace": "x"}}}))
    start(kinds=ALL_KINDS, system_namespace="signet")
    wait_for(lambda: "SignetReady" in conditions(apiserver, PC_CIP, "theirs"))
    assert conditions(apiserver, PC_CIP, "ours")["SignetReady"]["status"] == "True"
    theirs = conditions(apiserver, PC_CIP, "theirs")["SignetReady"]
    assert theirs["status"] == "False" and "spec.authorities[0].key.secretRef.namespace" in theirs["message"]
    assert denied_by_stand_in(store, "quay.io/acme/app:1")


def test_without_policy_controllers_crds_signet_is_ready_and_looks_again(caplog: pytest.LogCaptureFixture) -> None:
    server = FakeApiServer(pc_crds=False)
    api_client = k8s_client.ApiClient(k8s_client.Configuration(host=server.url))
    store = PolicyStore()
    server.put(CIP, policy("release"))
    watcher = PolicyWatcher(api_client, store, on_change=lambda: None, kinds=ALL_KINDS, backoff_initial=0.01,
                            backoff_max=0.05)
    try:
        with caplog.at_level(logging.INFO, logger="webhook.k8s.watch"):
            watcher.start()
            assert watcher.wait_ready(5)
            assert names(store) == {"ClusterImagePolicy/release"}
            wait_for(lambda: server.count("GET", "/apis/policy.sigstore.dev/v1alpha1/clusterimagepolicies") > 2)
        assert caplog.text.count("clusterimagepolicies.policy.sigstore.dev: no such resource") == 1
        assert "retrying" not in caplog.text  # an absent CRD is not a failure
        # installed later: its objects come into force
        server.pc_crds = True
        server.put(PC_CIP, pc_policy("late"))
        wait_for(lambda: f"{PC_KEY}/late" in names(store))
        # removed again: what came from it is no longer in force
        server.pc_crds = False
        server.drop_watches()
        wait_for(lambda: names(store) == {"ClusterImagePolicy/release"})
    finally:
        watcher.stop()
        server.stop()


def test_the_flag_watches_policy_controllers_objects_through_the_cluster_integration(apiserver: FakeApiServer,
                                                                                     api: Any) -> None:
    apiserver.put(PC_CIP, pc_policy("from-policy-controller"))
    store = PolicyStore()
    integration = ClusterIntegration(api, store, pull_secrets=False, prewarm_images=False, namespace="signet",
                                     policy_controller=True)

    async def run() -> None:
        integration.start(lambda images, namespace: asyncio.sleep(0))
        try:
            wait_for(lambda: integration.ready)
            assert names(store) == {f"{PC_KEY}/from-policy-controller"}
        finally:
            await integration.stop()

    asyncio.run(run())
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    with pytest.raises(InputError, match="--watch-policy-controller needs the cluster"):
        from_args(parser.parse_args(["--watch-policy-controller", "--cluster", "off"]), {})
    config = from_args(parser.parse_args(["--watch-policy-controller", "--kubeconfig", "k"]), {})
    assert config.watch_policy_controller and config.cluster
