"""``signet serve`` end to end with attestation requirements: the real registry, attestations made by the kit.

One server (plain HTTP on 127.0.0.1) with a policy that requires SLSA provenance built from a tag;
what the admission response, the audit line and ``signet denials`` say about an attestation that
is missing, of another predicate type, or refused by its policy.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e.servers import SIGNET, SignetServer
from tests.integration.registry import LocalRegistry
from tests.sigstore_kit import SigstoreKit
from tests.sigstore_kit.attestations import attest_image_bundle, attest_image_legacy
from tests.unit.admission.reviews import UID, pod_spec, review_dict, workload

SIGNER, ISSUER = "builder@example.com", "https://oidc.example"
PROVENANCE = "https://slsa.dev/provenance/v1"
DSSE = "application/vnd.dsse.envelope.v1+json"
TAGS = {"buildDefinition": {"externalParameters": {"workflow": {"ref": "refs/tags/v1.0.0"}}}}
BRANCH = {"buildDefinition": {"externalParameters": {"workflow": {"ref": "refs/heads/dev"}}}}

POLICY = f"""\
apiVersion: policy.signet.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {{name: provenance}}
spec:
  images: [{{glob: "127.0.0.1:*/e2e-att/**"}}]
  authorities:
    - name: builder
      keyless:
        identities: [{{issuer: "{ISSUER}", subject: "{SIGNER}"}}]
      attestations:
        - name: provenance
          predicateType: {PROVENANCE}
          policy:
            type: cel
            data: predicate.buildDefinition.externalParameters.workflow.ref.startsWith("refs/tags/")
"""


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return SigstoreKit.create(seed_entries=2)


@pytest.fixture(scope="module")
def server(kit: SigstoreKit, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignetServer]:
    work = tmp_path_factory.mktemp("signet-att-e2e")
    policies = work / "policies"
    policies.mkdir()
    (policies / "provenance.yaml").write_text(POLICY)
    (work / "trusted_root.json").write_bytes(kit.trusted_root_json())
    signet = SignetServer(work, None, "--policies", str(policies), "--trusted-root", str(work / "trusted_root.json"),
                          "--allow-http-registry")
    yield signet
    signet.stop()


def image(registry: LocalRegistry, kit: SigstoreKit, repo: str, predicate: dict[str, Any] | None,
          predicate_type: str = PROVENANCE, *, bundle: bool = False) -> str:
    """A signed image, with an attestation unless ``predicate`` is None; ``host/repo@digest``."""
    digest = registry.push_random_image(repo, None)
    sig = kit.sign_image_legacy(digest, repository=f"{registry.host}/{repo}", identity=SIGNER, issuer=ISSUER)
    registry.push_legacy_signature(repo, digest, [(sig.payload, sig.annotations)])
    if predicate is not None and bundle:
        made = attest_image_bundle(kit, digest, predicate_type=predicate_type, predicate=predicate, identity=SIGNER,
                                   issuer=ISSUER)
        registry.push_bundle_referrer(repo, digest, made.to_json(), predicate_type=predicate_type)
    elif predicate is not None:
        layer = attest_image_legacy(kit, digest, predicate_type=predicate_type, predicate=predicate,
                                    identity=SIGNER, issuer=ISSUER)
        registry.push_legacy_signature(repo, digest, [(layer.envelope, layer.annotations)], suffix="att",
                                       layer_media_type=DSSE)
    return f"{registry.host}/{repo}@{digest}"


def admit(server: SignetServer, *images: str) -> dict[str, Any]:
    obj = workload("Pod", pod_spec(*images))
    obj["metadata"]["namespace"] = "team-a"
    response = server.client.post("/validate", content=orjson.dumps(review_dict(obj, "Pod")))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()["response"]
    assert answer["uid"] == UID
    return answer


@pytest.mark.parametrize("bundle", [False, True], ids=["att-layer", "bundle-referrer"])
def test_an_image_with_passing_provenance_is_admitted(server: SignetServer, registry: LocalRegistry,
                                                      kit: SigstoreKit, bundle: bool) -> None:
    answer = admit(server, image(registry, kit, f"e2e-att/ok-{int(bundle)}", TAGS, bundle=bundle))
    assert answer["allowed"] is True, answer


def test_denials_name_the_attestation_and_why(server: SignetServer, registry: LocalRegistry,
                                              kit: SigstoreKit) -> None:
    branch = image(registry, kit, "e2e-att/branch", BRANCH)
    missing = image(registry, kit, "e2e-att/missing", None)
    sbom = image(registry, kit, "e2e-att/sbom", {"spdxVersion": "SPDX-2.3"}, "https://spdx.dev/Document")
    answer = admit(server, branch, missing, sbom)
    assert answer["allowed"] is False and answer["status"]["code"] == 403
    message = answer["status"]["message"]
    assert message.startswith("3 of 3 images denied")
    assert 'attestation "provenance" (https://slsa.dev/provenance/v1): the policy denied it' in message
    assert "refs/tags/" in message  # the policy's own words
    assert "no attestations found" in message and "its attestations are of type https://spdx.dev/Document" in message
    records = json.loads(answer["auditAnnotations"]["images"])
    assert [(r["attestation"], r["predicateType"]) for r in records] == [("provenance", PROVENANCE)] * 3

    audit = _audit_lines(server, 3)
    [line] = [line for line in audit if line["decision"] == "deny"]
    assert {(i["attestation"], i["predicateType"]) for i in line["images"]} == {("provenance", PROVENANCE)}
    listed = subprocess.run([str(SIGNET), "denials", "--from-log", str(server.stdout), "-o", "json"],
                            capture_output=True, text=True, check=False, timeout=60)
    assert listed.returncode == 0, listed.stderr
    named = [row for row in json.loads(listed.stdout)["denials"] if row.get("attestation") == "provenance"]
    assert len(named) >= 3 and all(row["predicateType"] == PROVENANCE for row in named)


def _audit_lines(server: SignetServer, images: int) -> list[dict[str, Any]]:
    """The JSON audit lines written so far, once the one with ``images`` images is there."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [json.loads(x) for x in server.stdout.read_text().splitlines() if x.startswith("{")]
        if any(len(line.get("images") or []) == images for line in lines):
            return lines
        time.sleep(0.05)
    raise AssertionError(f"no audit line with {images} images: {server.stdout.read_text()[-2000:]}")


def test_the_policy_sandbox_starts_with_the_server(server: SignetServer) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(b"sandbox_worker" in _cmdline(pid) for pid in _descendants(server.proc.pid)):
            return
        time.sleep(0.05)
    raise AssertionError("no policy sandbox worker runs under signet serve")


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``: children are listed per thread (the sandbox starts from a worker thread)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return [*children, *(d for child in children for d in _descendants(child))]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
