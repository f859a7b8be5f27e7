"""Trust through the real server: private instances as TrustRoot objects, and a TUF mirror going away.

``signet serve`` runs as a subprocess over TLS; images live in the session's docker-registry and
are signed by the test signing kit, a private Sigstore instance the public-good root knows nothing of.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e.servers import SignetServer
from tests.integration.registry import LocalRegistry
from tests.sigstore_kit import SigstoreKit
from tests.tuf_repo import TufTestRepository, serve
from tests.unit.admission.reviews import UID, pod_spec, review_dict, workload
from tests.unit.server.tls_certs import TestCA

SIGNER, ISSUER = "signer@example.com", "https://oidc.example"
PROD_ROOT = Path(__file__).resolve().parents[2] / "webhook" / "trust" / "embedded" / "prod" / "trusted_root.json"


def cluster_policy(name: str, glob: str, trust_root: str | None) -> str:
    ref = f"        trustRootRef: {trust_root}\n" if trust_root else ""
    return (f"apiVersion: policy.signet.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {{name: {name}}}\n"
            f"spec:\n  images: [{{glob: '{glob}'}}]\n  authorities:\n    - name: kit\n      keyless:\n{ref}"
            f"        identities: [{{issuer: '{ISSUER}', subject: '{SIGNER}'}}]\n")


def trust_roots(kit: SigstoreKit) -> str:
    repo = TufTestRepository()
    repo.add_target("trusted_root.json", kit.trusted_root_json())
    repo.commit()
    inline = json.dumps(kit.trusted_root_json().decode())
    return (f"apiVersion: policy.signet.dev/v1alpha1\nkind: TrustRoot\nmetadata: {{name: private-inline}}\n"
            f"spec:\n  trustedRoot: {inline}\n---\n"
            f"apiVersion: policy.signet.dev/v1alpha1\nkind: TrustRoot\nmetadata: {{name: private-airgap}}\n"
            f"spec:\n  repository:\n    root: {base64.b64encode(repo.root_json(1)).decode()}\n"
            f"    mirrorFS: {base64.b64encode(repo.tarball()).decode()}\n")


def push_signed(registry: LocalRegistry, kit: SigstoreKit, repo: str) -> str:
    digest = registry.push_random_image(repo, None)
    sig = kit.sign_image_legacy(digest, repository=f"{registry.host}/{repo}", identity=SIGNER, issuer=ISSUER)
    registry.push_legacy_signature(repo, digest, [(sig.payload, sig.annotations)])
    return f"{registry.host}/{repo}@{digest}"


def admit(server: SignetServer, image: str) -> dict[str, Any]:
    obj = workload("Pod", pod_spec(image))
    obj["metadata"]["namespace"] = "team-a"
    response = server.client.post("/validate", content=orjson.dumps(review_dict(obj, "Pod")))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()["response"]
    assert answer["uid"] == UID
    return answer


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return SigstoreKit.create(seed_entries=2)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    work = tmp_path_factory.mktemp("trust-tls")
    ca = TestCA()
    ca.issue(work / "tls.crt", work / "tls.key")
    return work / "tls.crt", work / "tls.key", ca.write_ca(work / "ca.pem")


@pytest.fixture(scope="module")
def public_good_server(kit: SigstoreKit, tls: tuple[Path, Path, Path],
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignetServer]:
    work = tmp_path_factory.mktemp("trust-e2e")
    policies = work / "policies"
    policies.mkdir()
    (policies / "trust-roots.yaml").write_text(trust_roots(kit))
    (policies / "policies.yaml").write_text("---\n".join([
        cluster_policy("private-inline", "127.0.0.1:*/inline/**", "private-inline"),
        cluster_policy("private-airgap", "127.0.0.1:*/airgap/**", "private-airgap"),
        cluster_policy("public-good", "127.0.0.1:*/public/**", None),
    ]))
    cert, key, ca = tls
    server = SignetServer(work, ca, "--tls-cert", str(cert), "--tls-key", str(key), "--policies", str(policies),
                          "--trusted-root", str(PROD_ROOT), "--allow-http-registry")
    yield server
    server.stop()


@pytest.mark.parametrize("repo", ["inline/app", "airgap/app"])
def test_private_instance_signatures_are_admitted_by_its_trust_root(
        public_good_server: SignetServer, registry: LocalRegistry, kit: SigstoreKit, repo: str) -> None:
    answer = admit(public_good_server, push_signed(registry, kit, repo))
    assert answer["allowed"] is True, answer.get("status")


def test_the_same_signature_is_denied_under_the_public_good_root(
        public_good_server: SignetServer, registry: LocalRegistry, kit: SigstoreKit) -> None:
    answer = admit(public_good_server, push_signed(registry, kit, "public/app"))
    assert answer["allowed"] is False
    assert "public-good" in answer["status"]["message"]


def test_tuf_mirror_trust_root_keeps_serving_when_the_mirror_goes_away(
        kit: SigstoreKit, registry: LocalRegistry, tls: tuple[Path, Path, Path], tmp_path: Path) -> None:
    repo = TufTestRepository()
    repo.add_target("trusted_root.json", kit.trusted_root_json())
    repo.commit()
    (tmp_path / "root.json").write_bytes(repo.root_json(1))
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(cluster_policy("kit", "127.0.0.1:*/tuf/**", None))
    cert, key, ca = tls
    with serve(repo.publish(tmp_path / "mirror")) as mirror:
        server = SignetServer(tmp_path, ca, "--tls-cert", str(cert), "--tls-key", str(key), "--policies",
                              str(policies), "--tuf-mirror", mirror.url, "--tuf-root", str(tmp_path / "root.json"),
                              "--allow-http-registry")
        try:
            assert admit(server, push_signed(registry, kit, "tuf/one"))["allowed"] is True
            mirror.stop()
            # The mirror is gone: the trust root already obtained stays in force.
            assert admit(server, push_signed(registry, kit, "tuf/two"))["allowed"] is True
            assert server.client.get("/readyz").status_code == 200
        finally:
            server.stop()
