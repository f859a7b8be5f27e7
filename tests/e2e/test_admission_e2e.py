"""``signet serve`` end to end: TLS on 127.0.0.1, the real registry, images signed with the signing kit.

One server for the module (``--deadline 2``, short deny and signature TTLs so re-checks are
observable), policies for: enforce with digest pinning, warn mode, a namespaced ImagePolicy that
adds a requirement, a policy-controller (policy.sigstore.dev) file; anything else is unmatched
(noMatchPolicy deny). Registry requests are counted through a proxy for the cache tests.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.servers import CountingProxy, SignetServer, counting_proxy
from tests.integration.registry import LocalRegistry, silent_server
from tests.sigstore_kit import SigstoreKit
from tests.unit.admission.reviews import KINDS, UID, pod_spec, review_dict, workload
from tests.unit.server.test_app import MALFORMED
from tests.unit.server.tls_certs import TestCA

BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
SIGNER, ISSUER = "signer@example.com", "https://oidc.example"
DENY_TTL = 1.0
DEADLINE = 2.0

POLICIES = f"""\
apiVersion: policy.signet.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {{name: release}}
spec:
  images: [{{glob: "127.0.0.1:*/e2e/signed/**"}}]
  mutate: {{pinDigest: true}}
  authorities:
    - name: kit-signer
      keyless:
        identities: [{{issuer: "{ISSUER}", subject: "{SIGNER}"}}]
---
apiVersion: policy.signet.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {{name: rollout}}
spec:
  images: [{{glob: "127.0.0.1:*/e2e/rollout/**"}}]
  mode: warn
  authorities:
    - name: release-bot
      keyless:
        identities: [{{issuer: "{ISSUER}", subject: release-bot@example.com}}]
---
apiVersion: policy.signet.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {{name: team}}
spec:
  images: [{{glob: "127.0.0.1:*/e2e/team/**"}}]
  authorities:
    - name: kit-signer
      keyless:
        identities: [{{issuer: "{ISSUER}", subjectRegExp: '.*@example\\.com'}}]
---
apiVersion: policy.signet.dev/v1alpha1
kind: ImagePolicy
metadata: {{name: strict-auditor, namespace: strict}}
spec:
  images: [{{glob: "**"}}]
  authorities:
    - name: auditor
      keyless:
        identities: [{{issuer: "{ISSUER}", subject: auditor@example.com}}]
"""

POLICY_CONTROLLER = f"""\
apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: pc-migrated
spec:
  images:
    - glob: "127.0.0.1:*/e2e/pc/**"
  authorities:
    - keyless:
        identities:
          - issuer: {ISSUER}
            subject: {SIGNER}
"""


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return SigstoreKit.create(seed_entries=2)


@pytest.fixture(scope="module")
def proxy(registry: LocalRegistry) -> Iterator[CountingProxy]:
    with counting_proxy(registry.url) as counting:
        yield counting


@pytest.fixture(scope="module")
def server(kit: SigstoreKit, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignetServer]:
    work = tmp_path_factory.mktemp("signet-e2e")
    ca = TestCA()
    ca.issue(work / "tls.crt", work / "tls.key")
    policies = work / "policies"
    policies.mkdir()
    (policies / "signet.yaml").write_text(POLICIES)
    (policies / "policy-controller.yaml").write_text(POLICY_CONTROLLER)
    (work / "trusted_root.json").write_bytes(kit.trusted_root_json())
    signet = SignetServer(
        work, ca.write_ca(work / "ca.pem"),
        "--tls-cert", str(work / "tls.crt"), "--tls-key", str(work / "tls.key"), "--policies", str(policies),
        "--trusted-root", str(work / "trusted_root.json"), "--allow-http-registry",
        "--deadline", str(DEADLINE), "--deny-ttl", str(DENY_TTL), "--signatures-ttl", str(DENY_TTL),
    )
    yield signet
    signet.stop()


def signed(registry: LocalRegistry, kit: SigstoreKit, repo: str, *, tag: str | None = None, host: str | None = None,
           identity: str = SIGNER, tamper: bool = False, bundle: bool = False) -> str:
    """Push an image and its signature; ``host/repo@digest`` (or ``:tag`` when given)."""
    digest = registry.push_random_image(repo, tag)
    if bundle:
        registry.push_bundle_referrer(repo, digest, kit.sign_image_bundle(digest, identity=identity).to_json())
    else:
        sig = kit.sign_image_legacy(digest, repository=f"{registry.host}/{repo}", identity=identity)
        payload = sig.payload.replace(b'"docker-reference":"', b'"docker-reference":"evil/') if tamper else sig.payload
        registry.push_legacy_signature(repo, digest, [(payload, sig.annotations)])
    return f"{host or registry.host}/{repo}" + (f":{tag}" if tag else f"@{digest}")


def admit(server: SignetServer, obj: Any, kind: str = "Pod", route: str = "/validate",
          namespace: str | None = None) -> dict[str, Any]:
    review = review_dict(obj, kind)
    if namespace is not None:
        review["request"]["namespace"] = namespace
    response = server.client.post(route, content=orjson.dumps(review))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()["response"]
    assert answer["uid"] == UID and "auditAnnotations" in answer
    return answer


def pod(*images: str, namespace: str = "team-a") -> dict[str, Any]:
    obj = workload("Pod", pod_spec(*images))
    obj["metadata"]["namespace"] = namespace
    return obj


def test_starts_fast_on_tls(server: SignetServer) -> None:
    assert server.startup_seconds < 5
    assert server.client.get("/healthz").json() == {"status": "ok"}
    ready = server.client.get("/readyz").json()
    assert ready["trustRoot"]["source"] == "file" and ready["policies"]["count"] == 5


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "Role"])
def test_every_kind_signed_is_allowed(server: SignetServer, registry: LocalRegistry, kit: SigstoreKit,
                                      kind: str) -> None:
    image = signed(registry, kit, f"e2e/signed/{kind.lower()}")
    answer = admit(server, workload(kind, pod_spec(image, init=(image,))), kind)
    assert answer["allowed"] is True, answer
    (record,) = json.loads(answer["auditAnnotations"]["images"])
    assert record["signer"] == SIGNER and record["policy"] == "release" and isinstance(record["logIndex"], int)


def test_non_workload_is_allowed(server: SignetServer) -> None:
    assert admit(server, workload("Role", {}), "Role")["allowed"] is True


@pytest.mark.parametrize(("case", "expected"), [
    ("wrong identity", "mallory@example.com"),
    ("unsigned", "no signature"),
    ("tampered", "does not verify"),
])
def test_denials_say_why(server: SignetServer, registry: LocalRegistry, kit: SigstoreKit, case: str,
                         expected: str) -> None:
    repo = f"e2e/signed/{case.replace(' ', '-')}"
    if case == "unsigned":
        image = f"{registry.host}/{repo}@{registry.push_random_image(repo, None)}"
    else:
        image = signed(registry, kit, repo, identity="mallory@example.com" if case == "wrong identity" else SIGNER,
                       tamper=case == "tampered")
    answer = admit(server, pod(image))
    message = answer["status"]["message"]
    assert answer["allowed"] is False and answer["status"]["code"] == 403
    assert repo in message and '"release"' in message and expected in message.lower(), message
    if case == "wrong identity":
        assert SIGNER in message  # what was expected, beside what was found


def test_bundle_layout_is_allowed(server: SignetServer, registry: LocalRegistry, kit: SigstoreKit) -> None:
    assert admit(server, pod(signed(registry, kit, "e2e/signed/bundle", bundle=True)))["allowed"] is True


def test_warn_mode_admits_with_a_warning(server: SignetServer, registry: LocalRegistry, kit: SigstoreKit) -> None:
    answer = admit(server, pod(signed(registry, kit, "e2e/rollout/app")))
    assert answer["allowed"] is True and answer["warnings"] and "rollout" in answer["warnings"][0]
    assert answer["auditAnnotations"]["decision"] == "warn"


def test_unmatched_image_is_denied_by_no_match_policy(server: SignetServer, registry: LocalRegistry,
                                                      kit: SigstoreKit) -> None:
    answer = admit(server, pod(signed(registry, kit, "e2e/nomatch/app")))
    assert answer["allowed"] is False and "no policy matches" in answer["status"]["message"]


def test_namespaced_policy_adds_a_requirement(server: SignetServer, registry: LocalRegistry,
                                              kit: SigstoreKit) -> None:
    image = signed(registry, kit, "e2e/team/app")
    assert admit(server, pod(image, namespace="team-a"))["allowed"] is True
    strict = admit(server, pod(image, namespace="strict"), namespace="strict")
    assert strict["allowed"] is False and "strict-auditor" in strict["status"]["message"]


def test_policy_controller_file(server: SignetServer, registry: LocalRegistry, kit: SigstoreKit) -> None:
    assert admit(server, pod(signed(registry, kit, "e2e/pc/app")))["allowed"] is True
    assert admit(server, pod(signed(registry, kit, "e2e/pc/other", identity="eve@example.com")))["allowed"] is False


def test_mutate_pins_the_verified_digest(server: SignetServer, registry: LocalRegistry, kit: SigstoreKit) -> None:
    image = signed(registry, kit, "e2e/signed/pinme", tag="v1")
    digest = json.loads(admit(server, pod(image))["auditAnnotations"]["images"])[0]["digest"]
    answer = admit(server, workload("Deployment", pod_spec(image)), "Deployment", route="/mutate")
    assert answer["allowed"] is True and answer["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(answer["patch"]))
    assert patch[-1] == {"op": "replace", "path": "/spec/template/spec/containers/0/image",
                         "value": f"{image}@{digest}"}


@pytest.mark.parametrize("body", MALFORMED, ids=lambda b: repr(b[:30]))
def test_broken_bodies_are_400(server: SignetServer, body: bytes) -> None:
    for route in ("/validate", "/mutate"):
        response = server.client.post(route, content=body)
        assert response.status_code == 400 and response.json()["code"] == 400


def test_connaisseur_reviews_never_500(server: SignetServer) -> None:
    directory = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "admission-review" / "connaisseur"
    if not directory.is_dir():
        pytest.skip(f"shared fixture {directory} is absent")
    for path in sorted(directory.glob("*.json")):
        response = server.client.post("/validate", content=path.read_bytes())
        assert response.status_code in (200, 400), (path.name, response.text)


# --- caches, concurrency, deadline ---------------------------------------------------------------------------


def test_second_admission_makes_no_registry_request(server: SignetServer, registry: LocalRegistry,
                                                    kit: SigstoreKit, proxy: CountingProxy) -> None:
    image = signed(registry, kit, "e2e/signed/cached", tag="v1", host=proxy.host)
    assert admit(server, pod(image))["allowed"] is True
    before = proxy.count("/e2e/signed/cached/")
    assert before > 0
    assert admit(server, pod(image))["allowed"] is True
    assert proxy.count("/e2e/signed/cached/") == before


def test_concurrent_admissions_of_a_new_image_verify_once(server: SignetServer, registry: LocalRegistry,
                                                          kit: SigstoreKit, proxy: CountingProxy) -> None:
    image = signed(registry, kit, "e2e/signed/crowd", tag="v1", host=proxy.host)
    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(lambda _: admit(server, pod(image)), range(50)))
    assert all(a["allowed"] for a in answers)
    paths = [path for _method, path in proxy.requests]
    tag_lookups = [p for p in paths if p.endswith("/e2e/signed/crowd/manifests/v1")]
    signature_fetches = [p for p in paths if "/e2e/signed/crowd/manifests/sha256-" in p and p.endswith(".sig")]
    assert len(tag_lookups) == 1 and len(signature_fetches) == 1, proxy.requests


def test_a_deny_is_rechecked_after_its_ttl(server: SignetServer, registry: LocalRegistry, kit: SigstoreKit,
                                           proxy: CountingProxy) -> None:
    repo = "e2e/signed/later"
    digest = registry.push_random_image(repo, None)
    image = f"{proxy.host}/{repo}@{digest}"
    assert admit(server, pod(image))["allowed"] is False
    # Signed now; within the TTL the cached denial stands (and costs no request).
    sig = kit.sign_image_legacy(digest, repository=f"{proxy.host}/{repo}")
    registry.push_legacy_signature(repo, digest, [(sig.payload, sig.annotations)])
    before = proxy.count(f"/{repo}/")
    assert admit(server, pod(image))["allowed"] is False and proxy.count(f"/{repo}/") == before
    time.sleep(DENY_TTL + 0.3)
    assert admit(server, pod(image))["allowed"] is True
    assert proxy.count(f"/{repo}/") > before


def test_hung_registry_is_not_verified_in_time(server: SignetServer) -> None:
    with silent_server() as host:
        started = time.monotonic()
        answer = admit(server, pod(f"{host}/e2e/signed/hung:v1"))
        elapsed = time.monotonic() - started
    assert answer["allowed"] is False and "not verified in time" in answer["status"]["message"]
    assert DEADLINE - 0.2 < elapsed < DEADLINE + 1.5


def test_audit_log_has_one_line_per_decision(server: SignetServer) -> None:
    before = len(server.stdout.read_text().splitlines())
    admit(server, workload("Role", {}), "Role")
    for _ in range(50):
        lines = server.stdout.read_text().splitlines()
        if len(lines) > before:
            break
        time.sleep(0.02)
    record = json.loads(lines[-1])
    assert record["uid"] == UID and record["kind"] == "Role" and record["decision"] == "allow"


def test_metrics_show_decisions_and_caches(server: SignetServer) -> None:
    text = server.client.get("/metrics").text
    assert 'signet_admission_decisions_total{reason="verified",result="allow",route="validate"}' in text
    assert 'signet_cache_hit_ratio{cache="verdicts"}' in text


def test_plain_http_and_tls_clients_are_separate(server: SignetServer) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url.replace("https", "http") + "/healthz", timeout=2)
