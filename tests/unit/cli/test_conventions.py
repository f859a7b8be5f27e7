"""One convention everywhere: global flags anywhere, every default in --help, messages said once, hints, logs."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.unit.cli.helpers import STATIC_POLICIES, signet
from webhook.admission.outcome import ImageOutcome, denial_message, describe, without_repeats
from webhook.cli import build_parser
from webhook.commands.hints import diagnose_pem, diagnose_tls_files, hint_for, readable_openssl
from webhook.commands.serve import configure_logging


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(STATIC_POLICIES)
    return path


@pytest.mark.parametrize("argv", [
    ["-o", "json", "policy", "validate", "{p}"],
    ["policy", "-o", "json", "validate", "{p}"],
    ["policy", "validate", "{p}", "-o", "json"],
    ["policy", "lint", "--output=json", "{p}"],
    ["-v", "--log-level", "debug", "-ojson", "policy", "validate", "{p}"],
])
def test_global_flags_go_before_or_after_the_command(argv: list[str], policies: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    run = signet(capsys, *(a.format(p=policies) for a in argv))
    assert run.code == 0 and json.loads(run.out)["valid"] is True


def test_every_flag_of_every_command_says_its_default() -> None:
    _parser, commands = build_parser()
    for key, (parser, _runner) in commands.items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            text = formatter._get_help_string(action) or ""
            assert "default" in text or "(required)" in text, f"signet {key} {action.option_strings[0]}: {text}"
    serve_help = " ".join(commands["serve"][0].format_help().split())
    for phrase in ("deny (default), warn or allow", "how long an allow verdict is cached (default 3600)"):
        assert phrase in serve_help


def test_initialize_takes_the_trio_spelling_and_cosigns() -> None:
    _parser, commands = build_parser()
    parser = commands["initialize"][0]
    ours = parser.parse_args(["--tuf-mirror", "https://m.example", "--tuf-root", "r.json"])
    cosigns = parser.parse_args(["--mirror", "https://m.example", "--root", "r.json"])
    assert (ours.mirror, ours.root) == (cosigns.mirror, cosigns.root) == ("https://m.example", "r.json")
    for command in ("verify", "verify-blob", "evaluate", "serve"):
        flags = commands[command][0]._option_string_actions
        assert {"--trusted-root", "--tuf-mirror", "--tuf-root"} <= set(flags), command


# --- messages -----------------------------------------------------------------------------------------


def test_reasons_are_said_once() -> None:
    assert without_repeats("infrastructure error; infrastructure error: registry down") == \
        "infrastructure error: registry down"
    assert without_repeats("no signatures found; no signatures found") == "no signatures found"
    assert without_repeats("""authority "ci": authority 'ci' failed""") == 'authority "ci" failed'
    combined = ImageOutcome("ghcr.io/a/b:v1", None, "deny", "p", "ci",
                            'authority "ci": no signatures found; authority "key": no signatures found')
    line = describe(combined)
    assert line.count('authority "ci"') == 1 and 'denied by policy "p": authority "ci": no signatures' in line


def test_counts_are_plural_aware() -> None:
    outcomes = [ImageOutcome(f"r.example/app-{i}:v1", None, "deny", "p", None, "x" * 900) for i in range(10)]
    message = denial_message(outcomes)
    assert "10 of 10 images denied:" in message and "(s)" not in message
    assert message.splitlines()[-1].startswith("… and ") and message.endswith(" more denied images (see the audit log)")


def test_verify_says_no_signatures_once(capsys: pytest.CaptureFixture[str]) -> None:
    from webhook.commands.verify_image import failure_message
    from webhook.images import ImageVerification
    from webhook.oci.reference import parse_reference

    result = ImageVerification(parse_reference("ghcr.io/acme/app@sha256:" + "ab" * 32), "sha256:" + "ab" * 32, [], [])
    message = failure_message(result, keyed=False)
    assert message == f"no signatures found for ghcr.io/acme/app@sha256:{'ab' * 32}"


def test_hints_for_plain_http_registries_and_untrusted_certificates() -> None:
    assert "--allow-http-registry" in (hint_for(
        "registry 127.0.0.1:5000: HEAD manifest v1 of app: refused, 127.0.0.1:5000 is a loopback address; only "
        "public or private addresses may be reached from here") or "")
    assert "plain HTTP" in (hint_for("ConnectError: [SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")
                            or "")
    assert "self-signed certificate" in (hint_for(
        "ConnectError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate "
        "(_ssl.c:1006)") or "")
    assert hint_for("no signatures found") is None
    assert readable_openssl("--tls-cert a / --tls-key b: [X509: KEY_VALUES_MISMATCH] key values mismatch "
                            "(_ssl.c:3926)") == "--tls-cert a / --tls-key b: the private key does not belong to " \
                                                "the certificate"


def _certificate(key: ec.EllipticCurvePrivateKey, name: str) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def tls_files(tmp_path: Path) -> Iterator[dict[str, Path]]:
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    files = {"cert": tmp_path / "tls.crt", "key": tmp_path / "tls.key", "other": tmp_path / "other.key"}
    files["cert"].write_bytes(_certificate(key, "signet.signet-system.svc"))
    for name, private in (("key", key), ("other", other)):
        files[name].write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    yield files


def test_certificate_problems_say_which_file_which_certificate_and_what(tls_files: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    cert, key, other = tls_files["cert"], tls_files["key"], tls_files["other"]
    assert diagnose_tls_files(cert, key, None) is None
    assert diagnose_tls_files(cert, other, None) == (
        f"--tls-key {other} does not belong to --tls-cert {cert}: the first certificate "
        "(CN=signet.signet-system.svc) has another public key")
    assert diagnose_tls_files(key, cert, None) == (
        f"--tls-cert {key}: the file holds PRIVATE KEY, not CERTIFICATE: were the certificate and key files swapped?")
    bundle = cert.read_text()
    lines = bundle.splitlines()
    corrupt = tmp_path / "ca.pem"
    corrupt.write_text(bundle + "\n".join([lines[0], lines[1][:20] + "!!" + lines[1][22:], *lines[2:]]) + "\n")
    problem = diagnose_tls_files(cert, key, corrupt) or ""
    assert problem.startswith(f"--client-ca {corrupt}: certificate 2 (lines ") and "base64" in problem
    assert diagnose_pem(b"\x30\x82\x01\x00") is not None and "DER" in (diagnose_pem(b"\x30\x82") or "")


def test_serve_and_key_errors_use_the_diagnosis(tls_files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    run = signet(capsys, "serve", "--tls-cert", tls_files["cert"], "--tls-key", tls_files["other"], "--port", "1")
    assert run.code == 2 and "does not belong to --tls-cert" in run.err and "_ssl.c" not in run.err
    run = signet(capsys, "verify-blob", "sha256:" + "ab" * 32, "--bundle", tls_files["cert"], "--key",
                 tls_files["key"])
    assert run.code == 2 and "it holds a private key: give the public key" in run.err


# --- logs -----------------------------------------------------------------------------------------


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_serve_logs_upstream_requests_at_debug_only() -> None:
    root = logging.getLogger()
    capture = Capture()
    saved = root.level
    root.addHandler(capture)
    try:
        configure_logging(logging.INFO)
        logging.getLogger("httpx").info('HTTP Request: GET https://ghcr.io/v2/ "HTTP/1.1 200 OK"')
        logging.getLogger("webhook.app").info("signet ready")
        assert [r.getMessage() for r in capture.records] == ["signet ready"]
        configure_logging(logging.DEBUG)
        logging.getLogger("httpx").info('HTTP Request: GET https://ghcr.io/v2/ "HTTP/1.1 200 OK"')
        assert capture.records[-1].levelname == "DEBUG" and "HTTP Request" in capture.records[-1].getMessage()
    finally:
        root.removeHandler(capture)
        root.setLevel(saved)
        logging.getLogger("webhook").setLevel(logging.NOTSET)
