"""Key and encoding helpers shared by the kit: signing, key IDs, base64 and timestamps."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import TypeAlias

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey


def b64(data: bytes) -> str:
    """Standard base64 with padding, as protobuf JSON writes ``bytes``."""
    return base64.b64encode(data).decode()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def spki_der(key: PublicKey) -> bytes:
    """DER SubjectPublicKeyInfo of a public key."""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_pem(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_details(key: PublicKey) -> str:
    """The protobuf-specs ``PublicKeyDetails`` name for a key (trusted roots, hashedrekord v0.0.2)."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "PKIX_ED25519"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {
            "secp256r1": "PKIX_ECDSA_P256_SHA_256",
            "secp384r1": "PKIX_ECDSA_P384_SHA_384",
            "secp521r1": "PKIX_ECDSA_P521_SHA_512",
        }[key.curve.name]
    return f"PKIX_RSA_PKCS1V15_{key.key_size}_SHA256"


def sign(key: PrivateKey, data: bytes, hash_algorithm: hashes.HashAlgorithm | None = None) -> bytes:
    """Sign ``data`` as Sigstore clients do: ECDSA DER, pure Ed25519, or RSA PKCS#1 v1.5."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    algorithm = hash_algorithm or hashes.SHA256()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(algorithm))
    return key.sign(data, padding.PKCS1v15(), algorithm)


def new_p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def new_p384() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def utc_seconds(when: datetime | None = None) -> datetime:
    """An aware UTC datetime truncated to whole seconds (X.509 and Rekor resolution); now by default."""
    value = when or datetime.now(UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


def rfc3339(when: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` as trusted_root.json writes times."""
    return utc_seconds(when).strftime("%Y-%m-%dT%H:%M:%SZ")


class ValidFor:
    """A trusted-root ``validFor`` window (``end`` None = open)."""

    def __init__(self, start: datetime, end: datetime | None = None) -> None:
        self.start = utc_seconds(start)
        self.end = utc_seconds(end) if end is not None else None

    def to_json(self) -> dict[str, str]:
        window = {"start": rfc3339(self.start)}
        if self.end is not None:
            window["end"] = rfc3339(self.end)
        return window
