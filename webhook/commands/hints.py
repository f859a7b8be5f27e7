"""Hints for errors whose cause is not obvious from the message: plain-HTTP registries, OpenSSL codes, PEM files.

OpenSSL reports a bad file as ``[SSL] PEM lib (_ssl.c:3905)`` and cryptography as ``Unable to load
PEM file. See https://… MalformedFraming``; neither says which certificate of which file is wrong,
nor how. ``diagnose_pem`` and ``diagnose_tls_files`` read the files again and say it.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

_PLAIN_HTTP: Final = ("WRONG_VERSION_NUMBER", "wrong version number", "record layer failure",
                      "server gave HTTP response to HTTPS client", "http_request")
_LOOPBACK_REFUSED = re.compile(r"is a loopback address; only public or private addresses")
_OPENSSL = re.compile(r"\[(?:SSL|X509|PEM|ASN1)(?:: (?P<code>[A-Z0-9_]+))?\] (?P<text>[^(\[]*?)\s*\(_ssl\.c:\d+\)")
_OPENSSL_CODES: Final = {
    "KEY_VALUES_MISMATCH": "the private key does not belong to the certificate",
    "NO_START_LINE": "no PEM block (-----BEGIN …-----) where one was expected",
    "NO_CERTIFICATE_OR_CRL_FOUND": "the file holds no PEM certificate",
    "CERTIFICATE_VERIFY_FAILED": "the server's certificate is not trusted",
    "WRONG_VERSION_NUMBER": "the other side does not speak TLS (plain HTTP?)",
}
_BLOCK = re.compile(r"-----BEGIN (?P<label>[A-Z0-9 ]+)-----(?P<body>(?:(?!-----BEGIN ).)*?)"
                    r"(?:-----END (?P<end>[A-Z0-9 ]+)-----|(?=-----BEGIN )|\Z)", re.S)


def hint_for(message: str) -> str | None:
    """A next step for a known failure, judged from its message; None when there is nothing to add."""
    if _LOOPBACK_REFUSED.search(message):
        return "a registry on this machine is reached only with --allow-http-registry (plain HTTP, loopback only)"
    if any(marker in message for marker in _PLAIN_HTTP):
        return ("the registry answered in plain HTTP, not HTTPS: for a registry on this machine add "
                "--allow-http-registry; others must serve HTTPS")
    if "CERTIFICATE_VERIFY_FAILED" in message:
        detail = message.split("certificate verify failed:", 1)[-1].split("(_ssl.c", 1)[0].strip(" :")
        return (f"the registry's TLS certificate is not trusted here ({detail or 'unknown issuer'}): add the CA "
                "that issued it to this machine's trust store")
    return None


def readable_openssl(message: str) -> str:
    """``[X509: KEY_VALUES_MISMATCH] key values mismatch (_ssl.c:3926)`` → what it means, in words."""
    def words(match: re.Match[str]) -> str:
        code = match.group("code")
        return _OPENSSL_CODES.get(code or "", match.group("text").strip() or "OpenSSL refused it")
    return _OPENSSL.sub(words, message)


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def diagnose_pem(data: bytes, *, expect: str = "CERTIFICATE") -> str | None:
    """Which PEM block of ``data`` is unusable and why ("certificate 2 (lines 14-30): …"); None if all parse."""
    text = data.decode("utf-8", errors="replace")
    what = expect.lower()
    blocks = list(_BLOCK.finditer(text))
    if not blocks:
        if data[:1] == b"\x30":
            return ("the file is DER (binary), not PEM: convert it, e.g. openssl x509 -inform der -in FILE "
                    "-out FILE.pem")
        return f"no -----BEGIN {expect}----- line: the file holds no PEM {what}"
    # "EC PRIVATE KEY" and "RSA PRIVATE KEY" are private keys too.
    wanted = [b for b in blocks if b.group("label") == expect or b.group("label").endswith(f" {expect}")]
    if not wanted:
        found = ", ".join(sorted({b.group("label") for b in blocks}))
        advice = ""
        if "PRIVATE KEY" in found and expect == "CERTIFICATE":
            advice = ": were the certificate and key files swapped?"
        elif found == "CERTIFICATE" and expect == "PUBLIC KEY":
            advice = ": extract its key with openssl x509 -in FILE -pubkey -noout"
        return f"the file holds {found}, not {expect}{advice}"
    for number, block in enumerate(wanted, start=1):
        first, last = _line_of(text, block.start()), _line_of(text, block.end())
        where = f"{what} {number} (lines {first}-{last})"
        if block.group("end") is None:
            return f"{where}: no -----END {expect}----- line"
        if block.group("end") != block.group("label"):
            return f"{where}: it ends with -----END {block.group('end')}-----"
        body = "".join(line.strip() for line in block.group("body").splitlines() if ":" not in line)
        try:
            der = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            return f"{where}: the base64 text between BEGIN and END is corrupt ({exc})"
        if expect != "CERTIFICATE":
            continue
        try:
            x509.load_der_x509_certificate(der)
        except ValueError as exc:
            return f"{where}: not a valid X.509 certificate ({_asn1_problem(str(exc))})"
    return None


def _asn1_problem(message: str) -> str:
    """cryptography's ``ParseError { kind: ShortData { needed: 361 }, location: [...] }`` in words."""
    kind = re.search(r"kind: (\w+)", message)
    location = re.search(r'location: \[([^]]*)\]', message)
    words = {"ShortData": "the DER encoding is truncated", "ExtraData": "extra bytes follow the DER encoding",
             "InvalidValue": "a field has an invalid value", "UnexpectedTag": "a field has an unexpected type",
             "InvalidLength": "a length is invalid"}.get(kind.group(1) if kind else "", message)
    where = location.group(1).replace('"', "").split(",")[0].strip() if location else ""
    return f"{words} at {where}" if where else words


def diagnose_pem_file(path: str | Path, *, expect: str = "CERTIFICATE") -> str | None:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    return diagnose_pem(data, expect=expect)


def diagnose_tls_files(cert: Path | None, key: Path | None, client_ca: Path | None) -> str | None:
    """What is wrong with the serving certificate, its key or the client CA, naming flag, file and certificate."""
    for flag, path in (("--tls-cert", cert), ("--client-ca", client_ca)):
        if path is not None:
            problem = diagnose_pem_file(path)
            if problem is not None:
                return f"{flag} {path}: {problem}"
    if cert is None or key is None:
        return None
    try:
        private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        found = diagnose_pem_file(key, expect="PRIVATE KEY")
        return f"--tls-key {key}: " + (found or f"not an unencrypted PEM private key ({exc})")
    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    if private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
            != leaf.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo):
        return (f"--tls-key {key} does not belong to --tls-cert {cert}: the first certificate "
                f"({leaf.subject.rfc4514_string()}) has another public key")
    return None
