"""Certificate rotation: the same SSLContext serves the new certificate after the files change."""

from __future__ import annotations

import os
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.unit.server.tls_certs import TestCA
from webhook.commands import serve
from webhook.config import ServerConfig
from webhook.errors import InputError
from webhook.tls import CertificateReloader


def served_certificate(context: ssl.SSLContext) -> x509.Certificate:
    """Handshake once with a server using ``context``; the certificate it presented."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    with socket.create_connection(listener.getsockname()) as raw, client.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    thread.join(5)
    listener.close()
    assert der is not None
    return x509.load_der_x509_certificate(der)


def bump_mtime(*paths: Path) -> None:
    for path in paths:
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_rotated_files_are_served_without_a_new_context(tmp_path: Path) -> None:
    ca = TestCA()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    first = ca.issue(cert, key, "first")
    reloader = CertificateReloader(cert, key)
    context = reloader.context
    assert served_certificate(context) == first
    assert reloader.check() is False  # nothing changed
    second = ca.issue(cert, key, "second")
    bump_mtime(cert, key)
    assert reloader.check() is True and reloader.reloads == 1
    assert reloader.context is context and served_certificate(context) == second


def test_half_written_rotation_keeps_the_old_pair(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ca = TestCA()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    first = ca.issue(cert, key, "first")
    reloader = CertificateReloader(cert, key)
    # A new certificate written, its key not yet: the pair does not match.
    ca.issue(tmp_path / "next.crt", tmp_path / "next.key", "second")
    cert.write_bytes((tmp_path / "next.crt").read_bytes())
    bump_mtime(cert)
    assert reloader.check() is False and "keeping the previous one" in caplog.text
    assert served_certificate(reloader.context) == first
    # The key arrives: the next poll picks the pair up.
    key.write_bytes((tmp_path / "next.key").read_bytes())
    bump_mtime(key)
    assert reloader.check() is True
    assert served_certificate(reloader.context).subject.rfc4514_string() == "CN=second"


def test_missing_files_keep_the_loaded_certificate(tmp_path: Path) -> None:
    ca = TestCA()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    first = ca.issue(cert, key)
    reloader = CertificateReloader(cert, key)
    cert.unlink()
    assert reloader.check() is False and served_certificate(reloader.context) == first


def test_bad_files_fail_at_start(tmp_path: Path) -> None:
    (tmp_path / "c").write_text("not a certificate")
    (tmp_path / "k").write_text("not a key")
    with pytest.raises(ssl.SSLError):
        CertificateReloader(tmp_path / "c", tmp_path / "k")


def test_ca_pem_round_trip(tmp_path: Path) -> None:
    ca = TestCA()
    path = ca.write_ca(tmp_path / "ca.pem")
    assert x509.load_pem_x509_certificate(path.read_bytes()) == ca.cert
    assert ca.cert.public_bytes(serialization.Encoding.PEM) == path.read_bytes()


def test_a_client_ca_makes_certificates_required(tmp_path: Path) -> None:
    ca = TestCA()
    ca.issue(tmp_path / "tls.crt", tmp_path / "tls.key")
    reloader = CertificateReloader(tmp_path / "tls.crt", tmp_path / "tls.key",
                                   client_ca=ca.write_ca(tmp_path / "ca.pem"))
    assert reloader.context.verify_mode is ssl.CERT_REQUIRED
    assert CertificateReloader(tmp_path / "tls.crt", tmp_path / "tls.key").context.verify_mode is ssl.CERT_NONE


def test_an_unusable_client_ca_is_an_input_error(tmp_path: Path) -> None:
    ca = TestCA()
    ca.issue(tmp_path / "tls.crt", tmp_path / "tls.key")
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    config = ServerConfig(tls_cert=tmp_path / "tls.crt", tls_key=tmp_path / "tls.key", client_ca=tmp_path / "ca.pem")
    with pytest.raises(InputError, match=r"--client-ca .*ca\.pem"):
        serve._tls(config)
