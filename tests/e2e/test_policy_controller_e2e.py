"""``signet serve`` end to end with ``spec.match``: which objects a policy covers, by kind and by their own labels.

One server (plain HTTP on 127.0.0.1) with a policy-controller document covering only Deployments
labelled ``tier: web`` and a Signet policy covering only Pods labelled ``verify: "yes"``; every
other object falls to ``--no-match-policy allow``. Images are real, in the session's docker-registry,
signed by the kit or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.e2e.servers import SignetServer
from tests.integration.registry import LocalRegistry
from tests.sigstore_kit import SigstoreKit
from tests.unit.admission.reviews import UID, pod_spec, review_dict, workload

SIGNER, ISSUER = "builder@example.com", "https://oidc.example"

WEB_DEPLOYMENTS = f"""\
apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata: {{name: web-deployments}}
spec:
  images: [{{glob: "127.0.0.1:*/e2e-match/**"}}]
  match:
    - group: apps
      version: v1
      resource: deployments
      selector:
        matchExpressions: [{{key: tier, operator: In, values: [web]}}]
  authorities:
    - keyless:
        identities: [{{issuer: "{ISSUER}", subjectRegExp: "^builder@"}}]
"""

VERIFIED_PODS = f"""\
apiVersion: policy.signet.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {{name: verified-pods}}
spec:
  images: [{{glob: "127.0.0.1:*/e2e-match/**"}}]
  match:
    - {{group: "", version: v1, resource: pods, selector: {{matchLabels: {{verify: "yes"}}}}}}
  authorities:
    - name: builder
      keyless:
        identities: [{{issuer: "{ISSUER}", subject: "{SIGNER}"}}]
"""


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return SigstoreKit.create(seed_entries=2)


@pytest.fixture(scope="module")
def server(kit: SigstoreKit, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignetServer]:
    work = tmp_path_factory.mktemp("signet-match-e2e")
    policies = work / "policies"
    policies.mkdir()
    (policies / "web-deployments.yaml").write_text(WEB_DEPLOYMENTS)
    (policies / "verified-pods.yaml").write_text(VERIFIED_PODS)
    (work / "trusted_root.json").write_bytes(kit.trusted_root_json())
    signet = SignetServer(work, None, "--policies", str(policies), "--trusted-root", str(work / "trusted_root.json"),
                          "--allow-http-registry", "--no-match-policy", "allow")
    yield signet
    signet.stop()


@pytest.fixture(scope="module")
def images(registry: LocalRegistry, kit: SigstoreKit) -> dict[str, str]:
    signed = registry.push_random_image("e2e-match/app", None)
    sig = kit.sign_image_legacy(signed, repository=f"{registry.host}/e2e-match/app", identity=SIGNER, issuer=ISSUER)
    registry.push_legacy_signature("e2e-match/app", signed, [(sig.payload, sig.annotations)])
    unsigned = registry.push_random_image("e2e-match/app", None)
    return {"signed": f"{registry.host}/e2e-match/app@{signed}",
            "unsigned": f"{registry.host}/e2e-match/app@{unsigned}"}


def admit(server: SignetServer, kind: str, image: str, labels: dict[str, str] | None = None,
          template_labels: dict[str, str] | None = None) -> dict[str, Any]:
    obj = workload(kind, pod_spec(image))
    if labels is not None:
        obj["metadata"]["labels"] = labels
    if template_labels is not None:
        obj["spec"]["template"]["metadata"]["labels"] = template_labels
    response = server.client.post("/validate", content=orjson.dumps(review_dict(obj, kind)))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()["response"]
    assert answer["uid"] == UID
    return answer


def test_a_deployment_labelled_for_the_policy_is_covered(server: SignetServer, images: dict[str, str]) -> None:
    denied = admit(server, "Deployment", images["unsigned"], {"tier": "web"})
    assert denied["allowed"] is False, denied
    assert 'denied by policy "web-deployments"' in denied["status"]["message"]
    assert admit(server, "Deployment", images["signed"], {"tier": "web"})["allowed"] is True


def test_other_labels_other_kinds_and_template_labels_are_not_covered(server: SignetServer,
                                                                       images: dict[str, str]) -> None:
    unsigned = images["unsigned"]
    assert admit(server, "Deployment", unsigned, {"tier": "db"})["allowed"] is True
    # the object's own labels count, not its pod template's
    assert admit(server, "Deployment", unsigned, None, template_labels={"tier": "web"})["allowed"] is True
    assert admit(server, "StatefulSet", unsigned, {"tier": "web"})["allowed"] is True
    assert admit(server, "Pod", unsigned, {"tier": "web"})["allowed"] is True


def test_pods_are_covered_by_their_own_policy(server: SignetServer, images: dict[str, str]) -> None:
    denied = admit(server, "Pod", images["unsigned"], {"verify": "yes"})
    assert denied["allowed"] is False and 'denied by policy "verified-pods"' in denied["status"]["message"]
    assert admit(server, "Pod", images["signed"], {"verify": "yes"})["allowed"] is True
    assert admit(server, "Pod", images["unsigned"], {"verify": "no"})["allowed"] is True
