"""Exit codes 0/1/2 on every command, and with ``-o json`` one JSON document on stdout in every outcome."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sigstore_kit import default_kit
from tests.unit.cli.helpers import DIGEST, STATIC_POLICIES, Run, document, pod, signet

IDENTITY, ISSUER = "signer@example.com", "https://oidc.example"
DATA = b"the artifact\n"


@pytest.fixture(scope="module")
def blob(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    kit = default_kit()
    directory = tmp_path_factory.mktemp("blob")
    files = {"artifact": directory / "a.txt", "bundle": directory / "a.sigstore.json",
             "root": directory / "trusted_root.json"}
    files["artifact"].write_bytes(DATA)
    files["bundle"].write_bytes(kit.sign_blob(DATA).to_json())
    files["root"].write_bytes(kit.trusted_root_json())
    return files


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nobody listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    yield port


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text(STATIC_POLICIES)
    (tmp_path / "good.yaml").write_text(pod("good", f"registry.example.com/good/app@{DIGEST}"))
    (tmp_path / "bad.yaml").write_text(pod("bad", f"registry.example.com/bad/app@{DIGEST}"))
    return tmp_path


def both(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[Run, Run]:
    """The same command in text and in JSON: same exit code; the JSON run's stdout is one document."""
    text = signet(capsys, *argv)
    as_json = signet(capsys, *argv, "-o", "json")
    assert text.code == as_json.code, (text.err, as_json.err)
    document(as_json)
    return text, as_json


# --- verify-blob --------------------------------------------------------------------------------


def test_verify_blob_outcomes(blob: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    common: list[str | Path] = ["verify-blob", blob["artifact"], "--bundle", blob["bundle"], "--trusted-root",
                                blob["root"]]
    ok, ok_json = both(capsys, *common, "--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER)
    assert ok.code == 0 and json.loads(ok_json.out)["signer"] == IDENTITY

    wrong, wrong_json = both(capsys, *common, "--certificate-identity", "eve@example.com",
                             "--certificate-oidc-issuer", ISSUER)
    assert wrong.code == 1 and wrong.err.count("Error:") == 1 and IDENTITY in wrong.err
    assert json.loads(wrong_json.out)["error"]["type"] == "verification"

    malformed = tmp_path / "bad.json"
    malformed.write_text('{"mediaType": "not a bundle"}')
    bad, bad_json = both(capsys, "verify-blob", blob["artifact"], "--bundle", malformed, "--trusted-root", blob["root"],
                         "--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER)
    assert bad.code == 2 and json.loads(bad_json.out)["error"]["type"] == "input"

    usage, _ = both(capsys, "verify-blob", blob["artifact"], "--bundle", blob["bundle"])  # no identity, no key
    assert usage.code == 2 and "usage: signet verify-blob" in usage.err


def test_a_bad_sigstore_root_file_is_an_input_error(blob: dict[str, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    roots = tmp_path / "roots.pem"
    roots.write_text("-----BEGIN CERTIFICATE-----\nMIIBad==\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("SIGSTORE_ROOT_FILE", str(roots))
    run, as_json = both(capsys, "verify-blob", blob["artifact"], "--bundle", blob["bundle"],
                        "--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER)
    assert run.code == 2
    # Which certificate of which file, and what is wrong with it; no cryptography FAQ link.
    assert f"SIGSTORE_ROOT_FILE={roots}: certificate 1 (lines 1-3): not a valid X.509 certificate" in run.err
    assert "cryptography.io" not in run.err and json.loads(as_json.out)["error"]["type"] == "input"


# --- verify -------------------------------------------------------------------------------------


def test_verify_outcomes_without_a_registry(closed_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    identity: list[str | Path] = ["--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER]
    unreachable, as_json = both(capsys, "verify", f"127.0.0.1:{closed_port}/app@{DIGEST}", *identity,
                                "--allow-http-registry")
    assert unreachable.code == 1 and json.loads(as_json.out)["error"]["type"] == "infrastructure"
    refused, _ = both(capsys, "verify", f"127.0.0.1:{closed_port}/app@{DIGEST}", *identity)
    assert refused.code == 1 and "Hint:" in refused.err and "--allow-http-registry" in refused.err
    invalid, _ = both(capsys, "verify", "UPPER//bad@@ref", *identity)
    assert invalid.code == 2
    usage, _ = both(capsys, "verify", f"127.0.0.1:{closed_port}/app@{DIGEST}", "--certificate-identity", IDENTITY)
    assert usage.code == 2


# --- evaluate -----------------------------------------------------------------------------------


def test_evaluate_outcomes(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policies: list[str | Path] = ["--policies", workdir / "policies"]
    admitted, as_json = both(capsys, "evaluate", "-f", workdir / "good.yaml", *policies)
    assert admitted.code == 0 and json.loads(as_json.out)["allowed"] is True
    denied, as_json = both(capsys, "evaluate", "-f", workdir / "bad.yaml", *policies)
    assert denied.code == 1 and json.loads(as_json.out)["workloads"][0]["verdict"] == "deny"
    zero, as_json = both(capsys, "evaluate", "-f", workdir / "good.yaml", *policies, "--deadline", "0")
    assert zero.code == 2 and "--deadline" in json.loads(as_json.out)["error"]["message"]
    missing, _ = both(capsys, "evaluate", "-f", workdir / "absent.yaml", *policies)
    assert missing.code == 2


def test_evaluate_reports_invalid_policies_with_their_lines(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = workdir / "broken.yaml"
    broken.write_text("apiVersion: policy.signet.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: x}\n"
                      "spec:\n  images: [{glob: '**'}]\n  authorities: [{name: a, keyles: {}}]\n")
    run, _ = both(capsys, "evaluate", "-f", workdir / "good.yaml", "--policies", broken)
    assert run.code == 2 and f"{broken}:6:" in run.err and "did you mean keyless?" in run.err


# --- policy validate, denials, initialize, serve -------------------------------------------------


def test_policy_validate_outcomes(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    valid, as_json = both(capsys, "policy", "validate", workdir / "policies")
    assert valid.code == 0 and json.loads(as_json.out)["valid"] is True
    (workdir / "typo.yaml").write_text(STATIC_POLICIES.replace("images:", "imagse:", 1))
    invalid, _ = both(capsys, "policy", "lint", workdir / "typo.yaml")
    assert invalid.code == 1
    missing, _ = both(capsys, "policy", "validate", workdir / "absent")
    assert missing.code == 2


def test_denials_outcomes(tmp_path: Path, closed_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "empty.log"
    log.write_text("")
    listed, as_json = both(capsys, "denials", "--from-log", log)
    assert listed.code == 0 and json.loads(as_json.out)["denials"] == []
    bad_since, _ = both(capsys, "denials", "--from-log", log, "--since", "yesterday")
    assert bad_since.code == 2
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": f"http://127.0.0.1:{closed_port}"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}], "users": [{"name": "u", "user": {}}]}))
    unreachable, as_json = both(capsys, "denials", "--kubeconfig", kubeconfig)
    assert unreachable.code == 1 and json.loads(as_json.out)["error"]["type"] == "infrastructure"


def test_initialize_outcomes(tmp_path: Path, closed_port: int, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    root = tmp_path / "root.json"
    root.write_text("{}")
    unreachable, _ = both(capsys, "initialize", "--tuf-mirror", f"http://127.0.0.1:{closed_port}",
                          "--tuf-root", root)
    assert unreachable.code == 1
    missing, _ = both(capsys, "initialize", "--mirror", f"http://127.0.0.1:{closed_port}", "--root",
                      tmp_path / "absent.json")
    assert missing.code == 2 and "cannot read TUF root" in missing.err


def test_serve_refuses_bad_flags_before_starting(capsys: pytest.CaptureFixture[str]) -> None:
    run, as_json = both(capsys, "serve", "--deadline", "0", "--port", "1")
    assert run.code == 2 and "--deadline" in json.loads(as_json.out)["error"]["message"]


def test_internal_errors_are_one_line_exit_1(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch, workdir: Path) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("webhook.commands.policy.load_paths", broken)
    run, as_json = both(capsys, "policy", "validate", workdir / "policies")
    assert run.code == 1 and "Traceback" not in run.err and "internal error (a bug in signet)" in run.err
    assert json.loads(as_json.out)["error"]["type"] == "internal"


def test_usage_errors_print_that_commands_usage_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    run, as_json = both(capsys, "denials", "--from-lgo", "x.log")
    assert run.code == 2 and run.err.startswith("usage: signet denials")
    assert "did you mean --from-log?" in run.err and run.err.count("Error:") == 1
    assert json.loads(as_json.out)["error"]["type"] == "usage"
