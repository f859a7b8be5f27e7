"""A trust root from cosign's environment variables, for private Sigstore deployments.

cosign reads three files named by the environment, each replacing one part of the trust it
would otherwise get from TUF:

    SIGSTORE_ROOT_FILE               PEM certificates: Fulcio root(s) and intermediates
    SIGSTORE_REKOR_PUBLIC_KEY        PEM public key(s) of the Rekor log(s)
    SIGSTORE_CT_LOG_PUBLIC_KEY_FILE  PEM public key(s) of the CT log(s)

We turn them into a ``trusted_root.json`` document so the verifier has one input format. CA
validity comes from the certificates; logs have no validity information, so they are open
ended from the epoch; log IDs are SHA-256 of the key's SubjectPublicKeyInfo (as Rekor v1 and
RFC 6962 define them). Parts not given are taken from ``base`` (e.g. the TUF root), or empty.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from webhook.errors import TrustError, VerificationError
from webhook.verify.keys import PublicKey, load_pem_public_key, spki_der, spki_sha256

ROOT_FILE_ENV = "SIGSTORE_ROOT_FILE"
REKOR_KEY_ENV = "SIGSTORE_REKOR_PUBLIC_KEY"
CT_LOG_KEY_ENV = "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE"

MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
_EPOCH = "1970-01-01T00:00:00Z"
_PEM_KEY = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)
_CURVE_DETAILS = {
    "secp256r1": "PKIX_ECDSA_P256_SHA_256",
    "secp384r1": "PKIX_ECDSA_P384_SHA_384",
    "secp521r1": "PKIX_ECDSA_P521_SHA_512",
}


def trusted_root_from_env(env: Mapping[str, str], *, base: bytes | None = None) -> bytes | None:
    """Build a trusted_root.json from cosign's variables; None when none of them is set."""
    paths = {name: env.get(name) for name in (ROOT_FILE_ENV, REKOR_KEY_ENV, CT_LOG_KEY_ENV)}
    if not any(paths.values()):
        return None
    contents = {name: _read(name, path) if path else None for name, path in paths.items()}
    return build_trusted_root_json(
        ca_pem=contents[ROOT_FILE_ENV],
        rekor_key_pem=contents[REKOR_KEY_ENV],
        ct_log_key_pem=contents[CT_LOG_KEY_ENV],
        base=base,
    )


def build_trusted_root_json(
    *,
    ca_pem: bytes | None = None,
    rekor_key_pem: bytes | None = None,
    ct_log_key_pem: bytes | None = None,
    base: bytes | None = None,
    rekor_url: str = "",
    ct_log_url: str = "",
) -> bytes:
    """A trusted_root.json document from PEM material; absent parts come from ``base``."""
    document: dict[str, Any] = {"mediaType": MEDIA_TYPE, "tlogs": [], "certificateAuthorities": [],
                                "ctlogs": [], "timestampAuthorities": []}
    if base is not None:
        try:
            parsed = json.loads(base)
        except ValueError as exc:
            raise TrustError(f"base trusted root is not JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise TrustError("base trusted root is not a JSON object")
        document.update({k: v for k, v in parsed.items() if k in document})
    if ca_pem is not None:
        document["certificateAuthorities"] = certificate_authorities_from_pem(ca_pem, ROOT_FILE_ENV)
    if rekor_key_pem is not None:
        document["tlogs"] = logs_from_pem(rekor_key_pem, rekor_url, REKOR_KEY_ENV)
    if ct_log_key_pem is not None:
        document["ctlogs"] = logs_from_pem(ct_log_key_pem, ct_log_url, CT_LOG_KEY_ENV)
    return json.dumps(document, indent=2).encode()


def logs_from_pem(pem: bytes, base_url: str, what: str) -> list[dict[str, Any]]:
    """One TransparencyLogInstance per PEM public key in ``pem``."""
    blocks = _PEM_KEY.findall(pem)
    if not blocks:
        raise TrustError(f"{what}: no PEM public key found")
    logs = []
    for index, block in enumerate(blocks):
        try:
            key = load_pem_public_key(block, f"{what} key {index}")
        except VerificationError as exc:
            raise TrustError(exc.reason) from exc
        logs.append({
            "baseUrl": base_url,
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": _b64(spki_der(key)),
                "keyDetails": key_details(key),
                "validFor": {"start": _EPOCH},
            },
            "logId": {"keyId": _b64(spki_sha256(key))},
        })
    return logs


def certificate_authorities_from_pem(pem: bytes, what: str) -> list[dict[str, Any]]:
    """CertificateAuthority entries from a bundle of roots and intermediates.

    cosign treats the bundle as pools (any intermediate, any root), so we emit one chain per
    certificate: each intermediate with its path up to a root, and each root alone.
    """
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise TrustError(f"{what}: not a PEM certificate bundle: {exc}") from exc
    roots = [c for c in certs if _issued_by(c, c)]
    if not roots:
        raise TrustError(f"{what}: no self-signed root certificate")
    authorities = []
    for cert in certs:
        chain = _path_to_root(cert, certs, what)
        start = max(c.not_valid_before_utc for c in chain)
        end = min(c.not_valid_after_utc for c in chain)
        authorities.append({
            "subject": _subject(cert),
            "uri": "",
            "certChain": {"certificates": [{"rawBytes": _b64(c.public_bytes(Encoding.DER))} for c in chain]},
            "validFor": {"start": _rfc3339(start), "end": _rfc3339(end)},
        })
    return authorities


def key_details(key: PublicKey) -> str:
    """The protobuf-specs ``PublicKeyDetails`` name for a key (signing hash by convention)."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        details = _CURVE_DETAILS.get(key.curve.name)
        if details is None:
            raise TrustError(f"unsupported elliptic curve {key.curve.name}")
        return details
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "PKIX_ED25519"
    if isinstance(key, rsa.RSAPublicKey) and key.key_size in (2048, 3072, 4096):
        return f"PKIX_RSA_PKCS1V15_{key.key_size}_SHA256"
    raise TrustError(f"unsupported log key type {type(key).__name__}")


# -- helpers -------------------------------------------------------------------------------

def _read(name: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TrustError(f"{name}={path}: cannot read: {exc.strerror or exc}") from exc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _path_to_root(cert: x509.Certificate, pool: list[x509.Certificate], what: str) -> list[x509.Certificate]:
    chain = [cert]
    while not _issued_by(chain[-1], chain[-1]):
        issuer = next((c for c in pool if c not in chain and _issued_by(chain[-1], c)), None)
        if issuer is None:
            name = chain[-1].subject.rfc4514_string()
            raise TrustError(f"{what}: certificate {name} does not chain to a root in the file")
        chain.append(issuer)
    return chain


def _subject(cert: x509.Certificate) -> dict[str, str]:
    subject: dict[str, str] = {}
    for oid, key in ((NameOID.ORGANIZATION_NAME, "organization"), (NameOID.COMMON_NAME, "commonName")):
        attrs = cert.subject.get_attributes_for_oid(oid)
        if attrs:
            subject[key] = str(attrs[0].value)
    return subject
