"""policy-controller's TrustRoot ``sigstoreKeys`` (bring your own keys) → a ``trusted_root.json`` document.

The fields are policy-controller's: ``certificateAuthorities`` and ``timestampAuthorities``
(``subject.organization``, ``subject.commonName``, ``uri``, ``certChain``: base64 of a PEM chain,
root last), ``tLogs`` and ``ctLogs`` (``baseURL``, ``hashAlgorithm`` such as ``sha-256``,
``publicKey``: base64 of a PEM public key). Its validation rules apply (at least one CA or TSA,
every field present, at most one leaf certificate in a TSA chain). Log IDs are the SHA-256 of the
key's DER SubjectPublicKeyInfo, as Rekor and CT logs compute them. Nothing here has a validity
window, as in policy-controller: the material is trusted until the TrustRoot changes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

from webhook.policy.custom_roots import parse_ca_certificates

MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
_ALWAYS = {"start": "1970-01-01T00:00:00Z"}
_HASHES = {"sha-256": "SHA2_256", "sha256": "SHA2_256", "sha-384": "SHA2_384", "sha384": "SHA2_384",
           "sha-512": "SHA2_512", "sha512": "SHA2_512"}
_CURVES = {"secp256r1": "PKIX_ECDSA_P256_SHA_256", "secp384r1": "PKIX_ECDSA_P384_SHA_384",
           "secp521r1": "PKIX_ECDSA_P521_SHA_512"}
MAX_ENTRIES = 32


@dataclass
class Conversion:
    """The trusted_root.json document, and what made it impossible ((path, message), path below ``sigstoreKeys``)."""

    document: dict[str, Any] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)


def _decoded(value: Any, path: str, errors: list[tuple[str, str]]) -> str | None:
    """The text of a Go ``[]byte`` field (base64 in JSON); None, with an error, when missing or not base64."""
    if not isinstance(value, str) or not value.strip():
        errors.append((path, "required field is missing"))
        return None
    try:
        return base64.b64decode("".join(value.split()), validate=True).decode()
    except (binascii.Error, ValueError):
        errors.append((path, "must be base64 (of PEM text), as policy-controller stores bytes"))
        return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _key_details(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _CURVES:
        return _CURVES[key.curve.name]
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "PKIX_ED25519"
    if isinstance(key, rsa.RSAPublicKey) and key.key_size in (2048, 3072, 4096):
        return f"PKIX_RSA_PKCS1V15_{key.key_size}_SHA256"
    raise ValueError("unsupported key type (ECDSA P-256/384/521, Ed25519 or RSA 2048/3072/4096 expected)")


def _log(entry: Any, path: str, errors: list[tuple[str, str]]) -> dict[str, Any] | None:
    if not isinstance(entry, Mapping):
        errors.append((path, "must be an object"))
        return None
    before = len(errors)
    url = entry.get("baseURL")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        errors.append((f"{path}.baseURL", "required: the log's http(s) base URL"))
    algorithm = entry.get("hashAlgorithm")
    if not isinstance(algorithm, str) or algorithm.lower() not in _HASHES:
        errors.append((f"{path}.hashAlgorithm", f"required: one of {', '.join(sorted(_HASHES))}"))
    pem = _decoded(entry.get("publicKey"), f"{path}.publicKey", errors)
    key_details = der = None
    if pem is not None:
        try:
            key = load_pem_public_key("\n".join(line.strip() for line in pem.splitlines()).encode())
            key_details = _key_details(key)
            der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        except (ValueError, TypeError) as exc:
            errors.append((f"{path}.publicKey", f"not a usable PEM public key: {exc}"))
    if len(errors) > before or der is None or not isinstance(url, str) or not isinstance(algorithm, str):
        return None
    return {"baseUrl": url, "hashAlgorithm": _HASHES[algorithm.lower()],
            "publicKey": {"rawBytes": _b64(der), "keyDetails": key_details, "validFor": _ALWAYS},
            "logId": {"keyId": _b64(hashlib.sha256(der).digest())}}


def _authority(entry: Any, path: str, errors: list[tuple[str, str]], *, tsa: bool) -> dict[str, Any] | None:
    if not isinstance(entry, Mapping):
        errors.append((path, "must be an object"))
        return None
    before = len(errors)
    subject = entry.get("subject")
    subject = subject if isinstance(subject, Mapping) else {}
    errors.extend((f"{path}.subject.{name}", "required field is missing") for name in ("organization", "commonName")
                  if not isinstance(subject.get(name), str) or not subject[name])
    uri = entry.get("uri")
    if not isinstance(uri, str) or not uri:
        errors.append((f"{path}.uri", "required field is missing"))
    pem = _decoded(entry.get("certChain"), f"{path}.certChain", errors)
    chain: tuple[x509.Certificate, ...] = ()
    if pem is not None:
        try:
            chain = parse_ca_certificates(pem)
        except ValueError as exc:
            errors.append((f"{path}.certChain", str(exc)))
    if tsa and len([c for c in chain if not _is_ca(c)]) > 1:
        errors.append((f"{path}.certChain", "certificate chain must contain at most one TSA certificate"))
    if len(errors) > before or not chain:
        return None
    return {"subject": {"organization": subject["organization"], "commonName": subject["commonName"]},
            "uri": uri, "validFor": _ALWAYS,
            "certChain": {"certificates": [{"rawBytes": _b64(c.public_bytes(Encoding.DER))} for c in chain]}}


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _entries(keys: Mapping[str, Any], name: str, errors: list[tuple[str, str]]) -> list[Any]:
    value = keys.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        errors.append((name, "must be a list"))
        return []
    if len(value) > MAX_ENTRIES:
        errors.append((name, f"at most {MAX_ENTRIES} entries"))
        return []
    return value


def convert(keys: Any) -> Conversion:
    """Build the trusted_root.json of a ``sigstoreKeys`` object; ``errors`` is empty when it is usable."""
    result = Conversion()
    if not isinstance(keys, Mapping):
        result.errors.append(("", "must be an object"))
        return result
    errors = result.errors
    cas = _entries(keys, "certificateAuthorities", errors)
    tsas = _entries(keys, "timestampAuthorities", errors)
    if not cas and not tsas and not errors:
        errors.append(("", "expected at least one of certificateAuthorities and timestampAuthorities"))
    converted = {
        "certificateAuthorities": [_authority(e, f"certificateAuthorities[{i}]", errors, tsa=False)
                                   for i, e in enumerate(cas)],
        "tlogs": [_log(e, f"tLogs[{i}]", errors) for i, e in enumerate(_entries(keys, "tLogs", errors))],
        "ctlogs": [_log(e, f"ctLogs[{i}]", errors) for i, e in enumerate(_entries(keys, "ctLogs", errors))],
        "timestampAuthorities": [_authority(e, f"timestampAuthorities[{i}]", errors, tsa=True)
                                 for i, e in enumerate(tsas)],
    }
    if not errors:
        result.document = {"mediaType": MEDIA_TYPE, **{k: [e for e in v if e] for k, v in converted.items()}}
    return result
