"""``signet verify-blob``: exit 0 verified, 1 rejected (reason on stderr), 2 usage or input error."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.sigstore_kit import default_kit
from tests.sigstore_kit.keys import new_p256
from webhook.cli import main

DATA = b"a blob for the command line\n"
IDENTITY = "signer@example.com"
ISSUER = "https://oidc.example"
SIGNET = Path(sys.executable).with_name("signet")


@dataclass(frozen=True)
class Files:
    artifact: Path
    bundle: Path
    trusted_root: Path
    keyed_bundle: Path
    public_key: Path
    other_key: Path


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    kit = default_kit()
    directory = tmp_path_factory.mktemp("verify-blob")
    key = new_p256()
    paths = Files(
        artifact=directory / "artifact.txt",
        bundle=directory / "artifact.sigstore.json",
        trusted_root=directory / "trusted_root.json",
        keyed_bundle=directory / "keyed.sigstore.json",
        public_key=directory / "key.pub",
        other_key=directory / "other.pub",
    )
    paths.artifact.write_bytes(DATA)
    paths.bundle.write_bytes(kit.sign_blob(DATA).to_json())
    paths.trusted_root.write_bytes(kit.trusted_root_json())
    paths.keyed_bundle.write_bytes(kit.sign_blob(DATA, key=key).to_json())
    paths.public_key.write_bytes(_pem(key))
    paths.other_key.write_bytes(_pem(new_p256()))
    return paths


def identity_flags(subject: str = IDENTITY, issuer: str = ISSUER) -> list[str]:
    return ["--certificate-identity", subject, "--certificate-oidc-issuer", issuer]


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str]:
    """Run ``signet verify-blob`` in-process; argparse usage errors exit via SystemExit."""
    try:
        code = main(["verify-blob", *map(str, argv)])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    return code, capsys.readouterr().err


def test_verified_with_identity(files: Files, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, files.artifact, "--bundle", files.bundle, "--trusted-root", files.trusted_root,
                    *identity_flags())
    assert code == 0, err
    assert "Verified OK" in err and IDENTITY in err


def test_verified_with_regexp_identity(files: Files, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, files.artifact, "--bundle", files.bundle, "--trusted-root", files.trusted_root,
                    "--certificate-identity-regexp", r".*@example\.com",
                    "--certificate-oidc-issuer-regexp", r"https://oidc\..*")
    assert code == 0, err


def test_digest_argument(files: Files, capsys: pytest.CaptureFixture[str]) -> None:
    digest = "sha256:" + hashlib.sha256(DATA).hexdigest()
    code, err = run(capsys, digest, "--bundle", files.bundle, "--trusted-root", files.trusted_root, *identity_flags())
    assert code == 0, err
    other = "sha256:" + hashlib.sha256(b"other").hexdigest()
    code, err = run(capsys, other, "--bundle", files.bundle, "--trusted-root", files.trusted_root, *identity_flags())
    assert code == 1
    assert "artifact" in err and "does not match" in err


def test_wrong_identity_is_rejected_with_reason(files: Files, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, files.artifact, "--bundle", files.bundle, "--trusted-root", files.trusted_root,
                    *identity_flags("mallory@example.com"))
    assert code == 1
    assert err.startswith("Error: identity:")
    assert IDENTITY in err and "mallory@example.com" in err


def test_identity_regexps_search_like_cosign(files: Files, capsys: pytest.CaptureFixture[str]) -> None:
    # cosign's --certificate-identity-regexp is Go's MatchString: a search, not a full match.
    code, _ = run(capsys, files.artifact, "--bundle", files.bundle, "--trusted-root", files.trusted_root,
                  "--certificate-identity-regexp", "signer@", "--certificate-oidc-issuer", ISSUER)
    assert code == 0
    code, err = run(capsys, files.artifact, "--bundle", files.bundle, "--trusted-root", files.trusted_root,
                    "--certificate-identity-regexp", "^signer@$", "--certificate-oidc-issuer", ISSUER)
    assert code == 1
    assert IDENTITY in err


def test_tampered_artifact_is_rejected(files: Files, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tampered = tmp_path / "tampered.txt"
    tampered.write_bytes(DATA + b"!")
    code, err = run(capsys, tampered, "--bundle", files.bundle, "--trusted-root", files.trusted_root,
                    *identity_flags())
    assert code == 1
    assert "does not match" in err


def test_default_trust_root_rejects_a_kit_bundle(files: Files, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, files.artifact, "--bundle", files.bundle, *identity_flags())
    assert code == 1
    assert "Error:" in err


def test_key_flow(files: Files, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, files.artifact, "--bundle", files.keyed_bundle, "--trusted-root", files.trusted_root,
                    "--key", files.public_key)
    assert code == 0, err
    assert "the given key" in err
    code, err = run(capsys, files.artifact, "--bundle", files.keyed_bundle, "--trusted-root", files.trusted_root,
                    "--key", files.other_key)
    assert code == 1
    assert "signature" in err
    # A keyed bundle verified with identity flags: rejected, and told to use --key.
    code, err = run(capsys, files.artifact, "--bundle", files.keyed_bundle, "--trusted-root", files.trusted_root,
                    *identity_flags())
    assert code == 1
    assert "--key" in err


def test_missing_bundle_file(files: Files, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.sigstore.json"
    code, err = run(capsys, files.artifact, "--bundle", missing, "--trusted-root", files.trusted_root,
                    *identity_flags())
    assert code == 2
    assert str(missing) in err


def test_missing_artifact_file(files: Files, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, tmp_path / "absent.txt", "--bundle", files.bundle, "--trusted-root", files.trusted_root,
                    *identity_flags())
    assert code == 2
    assert "absent.txt" in err


@pytest.mark.parametrize("content", [None, b"{not json", b'{"mediaType": "nonsense"}'],
                         ids=["absent", "not-json", "wrong-media-type"])
def test_unreadable_trusted_root(
    files: Files, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None
) -> None:
    root = tmp_path / "trusted_root.json"
    if content is not None:
        root.write_bytes(content)
    code, err = run(capsys, files.artifact, "--bundle", files.bundle, "--trusted-root", root, *identity_flags())
    assert code == 2
    assert "--trusted-root" in err


def test_missing_key_file(files: Files, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run(capsys, files.artifact, "--bundle", files.keyed_bundle, "--trusted-root", files.trusted_root,
                  "--key", tmp_path / "absent.pub")
    assert code == 2


def test_malformed_bundle_is_rejected(files: Files, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.sigstore.json"
    bad.write_bytes(b"{not json")
    code, err = run(capsys, files.artifact, "--bundle", bad, "--trusted-root", files.trusted_root, *identity_flags())
    assert code == 2  # a file that is not a bundle is an input error, not a failed signature
    assert f"bundle {bad}:" in err


@pytest.mark.parametrize(
    ("flags", "phrase"),
    [
        (["--certificate-identity-regexp", "(unclosed", "--certificate-oidc-issuer", ISSUER], "invalid"),
        (["--certificate-identity", IDENTITY, "--certificate-oidc-issuer-regexp", "[z-a]"], "invalid"),
        (["--key", "KEY", *identity_flags()], "--key cannot be combined"),
        (["--key", "KEY", "--certificate-oidc-issuer", ISSUER], "--key cannot be combined"),
        (["--certificate-identity", IDENTITY], "--certificate-oidc-issuer"),
        (["--certificate-oidc-issuer", ISSUER], "--certificate-identity"),
        ([], "--key"),
        (["--certificate-identity", IDENTITY, "--certificate-identity-regexp", ".*",
          "--certificate-oidc-issuer", ISSUER], "not allowed with"),
    ],
    ids=["invalid-subject-regexp", "invalid-issuer-regexp", "key-and-identity", "key-and-issuer", "missing-issuer",
         "missing-identity", "nothing", "exact-and-regexp"],
)
def test_usage_errors(files: Files, capsys: pytest.CaptureFixture[str], flags: list[str], phrase: str) -> None:
    argv = [str(files.public_key) if flag == "KEY" else flag for flag in flags]
    code, err = run(capsys, files.artifact, "--bundle", files.bundle, "--trusted-root", files.trusted_root, *argv)
    assert code == 2
    assert phrase in err


def test_missing_bundle_flag(files: Files, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, files.artifact, *identity_flags())
    assert code == 2
    assert "--bundle" in err


def test_installed_entry_point(files: Files) -> None:
    common = [str(SIGNET), "verify-blob", str(files.artifact), "--bundle", str(files.bundle),
              "--trusted-root", str(files.trusted_root)]
    ok = subprocess.run([*common, *identity_flags()], capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "Verified OK" in ok.stderr
    denied = subprocess.run([*common, *identity_flags("mallory@example.com")], capture_output=True, text=True,
                            timeout=60, check=False)
    assert denied.returncode == 1
    assert "mallory@example.com" in denied.stderr and IDENTITY in denied.stderr
