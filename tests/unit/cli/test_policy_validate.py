"""``signet policy validate`` (``lint``): every problem located by file and line, suggestions, warnings, exit codes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tests.unit.cli.helpers import document, signet

GOOD = """\
apiVersion: policy.signet.dev/v1alpha1
kind: ClusterImagePolicy
metadata:
  name: release
spec:
  images:
    - glob: "ghcr.io/acme/**"
  authorities:
    - name: ci
      keyless:
        identities:
          - issuer: https://token.actions.githubusercontent.com
            subjectRegExp: '^https://github\\.com/acme/.+$'
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def test_a_misspelt_field_names_its_line_and_the_right_spelling(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "p.yaml", "# a comment\n---\n" + GOOD.replace("subjectRegExp", "subjectRegexp"))
    run = signet(capsys, "policy", "validate", path)
    assert run.code == 1
    first = run.out.splitlines()[0]
    assert first == (f'{path}:15: error: ClusterImagePolicy "release": '
                     "spec.authorities[0].keyless.identities[0].subjectRegexp: unknown field (not part of "
                     "policy.signet.dev/v1alpha1) (did you mean subjectRegExp?)")
    assert run.out.rstrip().endswith("1 error in 1 file")
    problem = document(signet(capsys, "policy", "lint", path, "-o", "json"))["problems"][0]
    assert (problem["line"], problem["document"], problem["suggestion"]) == (15, 1, "subjectRegExp")


def test_warnings_for_what_would_be_loaded_but_ignored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = GOOD.replace("  name: release\n", "  name: release\n  namespace: team-a\n  lables: {a: b}\n")
    controller = ("apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata: {name: pc}\n"
                  "spec:\n  images: [{glob: 'docker.io/**'}]\n  authorities:\n    - keyless:\n"
                  "        url: https://fulcio.sigstore.dev\n        identities: [{issuer: https://accounts.google.com,"
                  " subject: a@example.com}]\n")
    path = write(tmp_path, "p.yaml", text + "---\n" + controller)
    run = signet(capsys, "policy", "validate", path)
    assert run.code == 0, run.out
    assert f"{path}:5: warning: ClusterImagePolicy \"release\": metadata.namespace: ignored: a ClusterImagePolicy " \
           "is cluster-scoped" in run.out
    assert f"{path}:6: warning:" in run.out and "(did you mean labels?)" in run.out
    assert f"{path}:24: warning:" in run.out and "keyless.url: ignored" in run.out
    assert signet(capsys, "policy", "validate", "--strict", path).code == 1


def test_directories_stdin_and_duplicates_across_files(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "policies"
    directory.mkdir()
    write(directory, "a.yaml", GOOD)
    write(directory, ".hidden.yaml", "not: [valid")  # a mounted ConfigMap's old copies: skipped, as serve does
    other = write(tmp_path, "b.yaml", GOOD)
    run = signet(capsys, "policy", "validate", directory, other)
    assert run.code == 1
    assert f'{other}:4: error: ClusterImagePolicy "release": duplicate name: already defined in ' in run.out
    monkeypatch.setattr("sys.stdin", io.StringIO(GOOD))
    assert signet(capsys, "policy", "validate", "-").out.strip() == "1 file, 1 object valid"


def test_invalid_yaml_and_fail_closed_policies_are_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = write(tmp_path, "broken.yaml", GOOD + "---\nkind: [unclosed\n")
    run = signet(capsys, "policy", "validate", broken)
    assert run.code == 1 and "invalid YAML at line 16" in run.out
    unenforceable = write(tmp_path, "u.yaml", GOOD.replace("keyless:", "keyles:"))
    run = signet(capsys, "policy", "validate", unenforceable)
    assert "(did you mean keyless?)" in run.out
    assert 'signet serve denies every image ClusterImagePolicy "release" covers' in run.out
    objects = json.loads(signet(capsys, "policy", "validate", unenforceable, "-o", "json").out)["objects"]
    assert objects == [{"kind": "ClusterImagePolicy", "name": "release", "source": str(unenforceable),
                        "failClosed": True}]
