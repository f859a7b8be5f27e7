"""``signet evaluate``: manifests like ``kubectl apply -f``, several --policies, and --explain without a registry."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tests.unit.cli.helpers import DIGEST, STATIC_POLICIES, document, pod, signet

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "policies" / "examples"
CONTROLLER = """\
apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata: {name: hub}
spec:
  images: [{glob: "index.docker.io/library/**"}]
  authorities:
    - keyless:
        identities: [{issuer: "https://accounts.google.com", subjectRegExp: '@example\\.com$'}]
"""


@pytest.fixture
def no_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """--explain must not touch a registry, Rekor or a trust root: any attempt fails the test."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("--explain reached for the network or the trust root")

    monkeypatch.setattr("webhook.oci.RegistryClient.__init__", refuse)
    monkeypatch.setattr("webhook.commands.evaluate.trusted_root_from_args", refuse)


@pytest.mark.usefixtures("no_registry")
def test_explain_shows_policies_authorities_identities_keys_and_attestations(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "controller.yaml").write_text(CONTROLLER)
    manifests = tmp_path / "k8s"
    manifests.mkdir()
    (manifests / "payments.yaml").write_text(pod("api", "ghcr.io/acme/payments/api:v2"))
    (manifests / "platform.json").write_text(json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"generateName": "tools-", "namespace": "ops"},
        "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "registry.example.com/platform/x:1"},
                                                      {"name": "b", "image": "nginx:1.27"}]}}}}))
    run = signet(capsys, "evaluate", "-f", manifests, "--policies", EXAMPLES, "--policies",
                 tmp_path / "controller.yaml", "--explain")
    assert run.code == 0, run.err
    out = run.out
    assert "Pod/team-a/api" in out and "Deployment/ops/tools-…" in out
    assert 'ClusterImagePolicy "payments-break-glass"' in out and 'ClusterImagePolicy "acme-release-images"' in out
    regexp = r"^https://github\.com/acme/payments/\.github/workflows/release\.yml@refs/tags/v.*$"
    assert f"subject matching regexp {regexp} (full match)" in out  # as written: no doubled backslashes
    assert 'authority "on-call-key": public key from inline key sha256:' in out
    assert 'attestation "sbom": https://spdx.dev/Document' in out
    assert "image nginx:1.27 (as index.docker.io/library/nginx:1.27)" in out
    assert r"subject matching regexp @example\.com$ (search)" in out  # policy-controller's reading
    assert out.rstrip().endswith("3 images to verify (run without --explain to check the signatures)")


@pytest.mark.usefixtures("no_registry")
def test_explain_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "p.yaml").write_text(STATIC_POLICIES)
    monkeypatch.setattr("sys.stdin", io.StringIO(pod("web", f"registry.example.com/bad/app@{DIGEST}", "other:1")))
    parsed = document(signet(capsys, "evaluate", "-f", "-", "--policies", tmp_path / "p.yaml", "--explain",
                             "-o", "json"))
    assert parsed["exitCode"] == 1  # both images are denied whatever their signatures
    bad, other = parsed["workloads"][0]["images"]
    assert bad["decidedWithoutSignatures"] == {"verdict": "deny", "policy": "bad",
                                               "reason": "images from bad/ are forbidden"}
    assert bad["policies"][0]["authorities"] == [{"name": "nope", "type": "static", "action": "fail",
                                                  "message": "images from bad/ are forbidden"}]
    assert other["reference"] == "index.docker.io/library/other:1" and other["policies"] == []
    assert other["decidedWithoutSignatures"]["reason"].startswith("no policy matches")


def test_manifests_from_files_directories_and_stdin(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "p.yaml").write_text(STATIC_POLICIES)
    nested = tmp_path / "m" / "deeper"
    nested.mkdir(parents=True)
    (tmp_path / "m" / "a.yaml").write_text(pod("a", f"registry.example.com/good/a@{DIGEST}"))
    (nested / "b.yml").write_text(pod("b", f"registry.example.com/good/b@{DIGEST}"))
    (tmp_path / "m" / "notes.txt").write_text("not a manifest")
    monkeypatch.setattr("sys.stdin", io.StringIO(pod("c", f"registry.example.com/good/c@{DIGEST}")))
    flat = document(signet(capsys, "evaluate", "-f", tmp_path / "m", "-", "--policies", tmp_path / "p.yaml",
                           "-o", "json"))
    assert [w["name"] for w in flat["workloads"]] == ["a", "c"]
    deep = document(signet(capsys, "evaluate", "-R", "-f", tmp_path / "m", "--policies", tmp_path / "p.yaml",
                           "-o", "json"))
    assert [w["name"] for w in deep["workloads"]] == ["a", "b"] and deep["exitCode"] == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    assert signet(capsys, "evaluate", "-f", empty, "--policies", tmp_path / "p.yaml").code == 2
