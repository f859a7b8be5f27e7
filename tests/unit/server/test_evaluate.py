"""``signet evaluate``: manifests in, per-workload decisions out, exit codes (no network: static policies)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from webhook.cli import main

DIGEST = "sha256:" + "ab" * 32
GOOD = f"registry.example.com/good/app@{DIGEST}"
BAD = f"registry.example.com/bad/app@{DIGEST}"
ROLLOUT = f"registry.example.com/rollout/app@{DIGEST}"
POLICIES = """\
apiVersion: policy.signet.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {name: good}
spec:
  images: [{glob: "registry.example.com/good/**"}]
  authorities: [{name: ok, static: {action: pass}}]
---
apiVersion: policy.signet.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {name: bad}
spec:
  images: [{glob: "registry.example.com/bad/**"}]
  authorities: [{name: nope, static: {action: fail, message: "images from bad/ are forbidden"}}]
---
apiVersion: policy.signet.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {name: rollout}
spec:
  images: [{glob: "registry.example.com/rollout/**"}]
  mode: warn
  authorities: [{name: nope, static: {action: fail, message: "not signed yet"}}]
"""


def manifest(kind: str, name: str, *images: str) -> str:
    containers = "".join(f"\n        - name: c{i}\n          image: {img}" for i, img in enumerate(images))
    if kind == "Pod":
        containers = containers.replace("\n    ", "\n")
        return f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:{containers}\n"
    return (f"apiVersion: apps/v1\nkind: {kind}\nmetadata: {{name: {name}, namespace: team-a}}\nspec:\n"
            f"  template:\n    spec:\n      containers:{containers}\n")


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "p.yaml").write_text(POLICIES)
    return directory


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["evaluate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_all_allowed_is_exit_0(tmp_path: Path, policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    documents = manifest("Deployment", "web", GOOD) + "---\n" + manifest("Pod", "p", GOOD, ROLLOUT)
    (tmp_path / "m.yaml").write_text(documents)
    code, out, _ = run(capsys, "-f", str(tmp_path / "m.yaml"), "--policies", str(policies))
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["WORKLOAD", "IMAGE", "VERDICT", "POLICY", "REASON"]
    assert "Deployment/team-a/web" in rows[0] and " allow " in rows[0] and "good (ok)" in rows[0]
    assert any(" warn " in row and "not signed yet" in row for row in rows)
    assert "2 of 2 workloads would be admitted, 0 denied" in out


def test_a_denial_is_exit_1_and_says_why(tmp_path: Path, policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.yaml").write_text(manifest("Deployment", "web", GOOD, BAD))
    code, out, _ = run(capsys, "-f", str(tmp_path / "m.yaml"), "--policies", str(policies), "--output", "json")
    assert code == 1
    report = json.loads(out)
    (workload,) = report["workloads"]
    assert report["allowed"] is False and workload["verdict"] == "deny" and workload["kind"] == "Deployment"
    verdicts = {i["reference"]: (i["verdict"], i["policy"]) for i in workload["images"]}
    assert verdicts == {GOOD: ("allow", "good"), BAD: ("deny", "bad")}
    assert "forbidden" in workload["images"][1]["reason"]


def test_unmatched_images_follow_no_match_policy(tmp_path: Path, policies: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.yaml").write_text(manifest("Pod", "p", f"elsewhere.example/x@{DIGEST}"))
    args = ["-f", str(tmp_path / "m.yaml"), "--policies", str(policies)]
    assert run(capsys, *args)[0] == 1
    assert run(capsys, *args, "--no-match-policy", "warn")[0] == 0


def test_non_workloads_are_listed_not_checked(tmp_path: Path, policies: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n"
                                     + manifest("Pod", "p", GOOD))
    code, out, _ = run(capsys, "-f", str(tmp_path / "m.yaml"), "--policies", str(policies))
    assert code == 0 and "ConfigMap is not a workload" in out and "1 not checked" in out


def test_unreadable_workload_is_denied(tmp_path: Path, policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: 3}\n")
    code, out, _ = run(capsys, "-f", str(tmp_path / "m.yaml"), "--policies", str(policies))
    assert code == 1 and "cannot read the images" in out


@pytest.mark.parametrize(("content", "message"), [
    ("a: [unclosed", r"invalid YAML"),
    ("- just\n- a list\n", r"not a mapping"),
])
def test_bad_manifests_are_exit_2(tmp_path: Path, policies: Path, capsys: pytest.CaptureFixture[str],
                                  content: str, message: str) -> None:
    (tmp_path / "m.yaml").write_text(content)
    code, _, err = run(capsys, "-f", str(tmp_path / "m.yaml"), "--policies", str(policies))
    assert code == 2 and message.replace("\\", "") in err


def test_missing_file_and_bad_policies_are_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "-f", str(tmp_path / "absent.yaml"), "--policies", str(tmp_path))
    assert code == 2 and "cannot read manifest" in err
    (tmp_path / "m.yaml").write_text(manifest("Pod", "p", GOOD))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "p.yaml").write_text("apiVersion: policy.signet.dev/v1alpha1\nkind: ClusterImagePolicy\n"
                                "metadata: {name: broken}\nspec: {images: []}\n")
    code, _, err = run(capsys, "-f", str(tmp_path / "m.yaml"), "--policies", str(bad))
    assert code == 2 and "invalid policies" in err and 'ClusterImagePolicy "broken"' in err
