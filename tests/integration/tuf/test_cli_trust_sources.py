"""Where verify-blob and verify get their trust root: a file, a TUF mirror, or cosign's SIGSTORE_* keys."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.sigstore_kit import SigstoreKit, default_kit
from tests.tuf_repo import TufTestRepository, serve

SIGNER, ISSUER = "release@example.com", "https://accounts.example.com"
SIGNET = str(Path(sys.executable).with_name("signet"))


def pem(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined, no-any-return]


@pytest.fixture
def signed(tmp_path: Path) -> tuple[SigstoreKit, Path, Path]:
    kit = default_kit()
    artifact = tmp_path / "artifact.txt"
    artifact.write_bytes(b"released bits\n")
    bundle = tmp_path / "artifact.sigstore.json"
    bundle.write_bytes(kit.sign_blob(artifact.read_bytes(), identity=SIGNER, issuer=ISSUER,
                                     bundle_version="0.3").to_json())
    return kit, artifact, bundle


def run(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SIGSTORE_")}
    environment.update({"HOME": str(home), "XDG_CACHE_HOME": str(home / "cache"), "XDG_DATA_HOME": str(home / "data"),
                        **(env or {})})
    return subprocess.run([SIGNET, "verify-blob", *args], capture_output=True, text=True, timeout=60, check=False,
                          env=environment)


def identity_args(artifact: Path, bundle: Path) -> list[str]:
    return [str(artifact), "--bundle", str(bundle), "--certificate-identity", SIGNER,
            "--certificate-oidc-issuer", ISSUER]


def test_tuf_mirror_supplies_the_trust_root(signed: tuple[SigstoreKit, Path, Path], tmp_path: Path) -> None:
    kit, artifact, bundle = signed
    repo = TufTestRepository()
    repo.add_target("trusted_root.json", kit.trusted_root_json())
    repo.commit()
    root_file = tmp_path / "root.json"
    root_file.write_bytes(repo.root_json(1))
    with serve(repo.publish(tmp_path / "mirror")) as mirror:
        ok = run(*identity_args(artifact, bundle), "--tuf-mirror", mirror.url, "--tuf-root", str(root_file),
                 home=tmp_path / "home")
        assert ok.returncode == 0, ok.stderr
        mirror.stop()
        down = run(*identity_args(artifact, bundle), "--tuf-mirror", mirror.url, "--tuf-root", str(root_file),
                   home=tmp_path / "home2")
    assert down.returncode == 1 and "unreachable" in down.stderr


def test_without_the_private_root_the_embedded_one_rejects(signed: tuple[SigstoreKit, Path, Path],
                                                          tmp_path: Path) -> None:
    _kit, artifact, bundle = signed
    result = run(*identity_args(artifact, bundle), home=tmp_path)
    assert result.returncode == 1 and result.stderr.strip()


def test_tuf_root_without_mirror_is_a_usage_error(signed: tuple[SigstoreKit, Path, Path], tmp_path: Path) -> None:
    _kit, artifact, bundle = signed
    result = run(*identity_args(artifact, bundle), "--tuf-root", str(tmp_path / "root.json"), home=tmp_path)
    assert result.returncode == 2 and "--tuf-mirror" in result.stderr


def test_cosign_environment_variables_build_the_trust_root(signed: tuple[SigstoreKit, Path, Path],
                                                            tmp_path: Path) -> None:
    kit, artifact, bundle = signed
    fulcio = tmp_path / "fulcio.pem"
    fulcio.write_bytes(kit.ca.intermediate.public_bytes(serialization.Encoding.PEM)
                       + kit.ca.root.public_bytes(serialization.Encoding.PEM))
    rekor = tmp_path / "rekor.pub"
    rekor.write_bytes(pem(kit.rekor_v1.key.public_key()))
    ctlog = tmp_path / "ctfe.pub"
    ctlog.write_bytes(pem(kit.ctlog.key.public_key()))
    env = {"SIGSTORE_ROOT_FILE": str(fulcio), "SIGSTORE_REKOR_PUBLIC_KEY": str(rekor),
           "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE": str(ctlog)}
    result = run(*identity_args(artifact, bundle), home=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    other = SigstoreKit.create()
    env["SIGSTORE_REKOR_PUBLIC_KEY"] = str(tmp_path / "other-rekor.pub")
    Path(env["SIGSTORE_REKOR_PUBLIC_KEY"]).write_bytes(pem(other.rekor_v1.key.public_key()))
    wrong_log = run(*identity_args(artifact, bundle), home=tmp_path, env=env)
    assert wrong_log.returncode == 1
