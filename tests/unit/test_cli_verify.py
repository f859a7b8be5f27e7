"""``signet verify`` argument handling in-process: usage and input errors exit 2, before any network."""

from __future__ import annotations

import pytest

from webhook.cli import main

SIGNER, ISSUER = "signer@example.com", "https://oidc.example"


def test_invalid_reference_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["verify", "UPPER//bad@@ref", "--certificate-identity", SIGNER, "--certificate-oidc-issuer", ISSUER])
    assert code == 2
    assert "Error:" in capsys.readouterr().err


def test_missing_identity_is_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["verify", "127.0.0.1:5000/app@sha256:" + "ab" * 32, "--certificate-identity", SIGNER])
    assert exc.value.code == 2


def test_key_with_identity_is_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["verify", "app", "--key", "k.pem", "--certificate-identity", SIGNER, "--certificate-oidc-issuer", ISSUER])
    assert exc.value.code == 2


def test_bad_mirror_exits_2() -> None:
    code = main(["verify", "127.0.0.1:5000/app@sha256:" + "ab" * 32, "--certificate-identity", SIGNER,
                 "--certificate-oidc-issuer", ISSUER, "--registry-mirror", "no-equals-sign"])
    assert code == 2


def test_unreadable_key_exits_2() -> None:
    code = main(["verify", "127.0.0.1:5000/app@sha256:" + "ab" * 32, "--key", "/nonexistent/key.pem"])
    assert code == 2
