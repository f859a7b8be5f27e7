"""Public keys as Sigstore uses them: loading, identifying and verifying signatures with them.

The hash is chosen by the structure being verified when it names one (legacy cosign is always
SHA-256); otherwise by the key. Old clients signed with P-384 keys over SHA-256, so for ECDSA keys
whose natural hash is larger we also accept SHA-256, as sigstore-go's compatibility verifier does.
"""

from __future__ import annotations

import hashlib
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from webhook.errors import VerificationError

PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

_CURVE_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


def _checked(key: object, what: str) -> PublicKey:
    if isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        return key
    raise VerificationError(f"{what} is of an unsupported type ({type(key).__name__})", step="key")


def certificate_key(cert: x509.Certificate) -> PublicKey:
    """The certificate's public key; cryptography decodes it lazily, so malformed keys surface here."""
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise VerificationError(f"certificate public key is malformed: {exc}", step="certificate") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise VerificationError(f"certificate key type {type(key).__name__} is not supported", step="certificate")
    return key


def signing_key(leaf: x509.Certificate | None, key: PublicKey | None, *, what: str, keyed: str) -> PublicKey:
    """Step (a), who signed: the caller's ``key`` (which a certificate, if any, must carry), else the leaf's.

    ``what`` names the material in the mismatch message; ``keyed`` is the reason when there is neither.
    """
    if key is not None:
        if leaf is not None and spki_der(certificate_key(leaf)) != spki_der(key):
            raise VerificationError(f"{what}'s certificate is for another key than the one given", step="key")
        return key
    if leaf is not None:
        return certificate_key(leaf)
    raise VerificationError(keyed, step="key")


def load_der_public_key(der: bytes, what: str = "public key") -> PublicKey:
    """Load a DER SubjectPublicKeyInfo."""
    try:
        return _checked(serialization.load_der_public_key(der), what)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise VerificationError(f"{what} is not a valid DER public key", step="key") from exc


def load_pem_public_key(pem: bytes, what: str = "public key") -> PublicKey:
    """Load a PEM public key (``-----BEGIN PUBLIC KEY-----``)."""
    try:
        return _checked(serialization.load_pem_public_key(pem), what)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise VerificationError(f"{what} is not a valid PEM public key", step="key") from exc


def spki_der(key: PublicKey) -> bytes:
    """The DER SubjectPublicKeyInfo of ``key``."""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def spki_sha256(key: PublicKey) -> bytes:
    """SHA-256 of the key's SubjectPublicKeyInfo: Rekor v1 log IDs and CT log IDs."""
    return hashlib.sha256(spki_der(key)).digest()


def describe(key: PublicKey) -> str:
    """A short human name for a key's algorithm, for messages."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    return "Ed25519"


def _ecdsa_hashes(key: ec.EllipticCurvePublicKey) -> list[hashes.HashAlgorithm]:
    natural = _CURVE_HASH.get(key.curve.name, hashes.SHA256)
    return [natural()] if natural is hashes.SHA256 else [natural(), hashes.SHA256()]


def verify_signature(
    key: PublicKey,
    signature: bytes,
    data: bytes,
    *,
    hash_algorithm: hashes.HashAlgorithm | None = None,
    prehashed: bool = False,
    step: str = "signature",
    what: str = "signature",
) -> None:
    """Verify ``signature`` over ``data`` (or over the digest ``data`` when ``prehashed``).

    Raises VerificationError naming ``step`` when it does not verify.
    """
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            if prehashed:
                raise VerificationError(f"{what}: Ed25519 keys cannot verify a prehashed digest", step=step)
            key.verify(signature, data)
            return
        if prehashed and hash_algorithm is None:
            raise VerificationError(f"{what}: a prehashed digest needs its hash algorithm", step=step)
        if isinstance(key, ec.EllipticCurvePublicKey):
            candidates = [hash_algorithm] if hash_algorithm is not None else _ecdsa_hashes(key)
            for index, algorithm in enumerate(candidates):
                chosen: hashes.HashAlgorithm | Prehashed = Prehashed(algorithm) if prehashed else algorithm
                try:
                    key.verify(signature, data, ec.ECDSA(chosen))
                    return
                except InvalidSignature:
                    if index == len(candidates) - 1:
                        raise
            return
        algorithm = hash_algorithm or hashes.SHA256()
        chosen_rsa: hashes.HashAlgorithm | Prehashed = Prehashed(algorithm) if prehashed else algorithm
        try:
            key.verify(signature, data, padding.PKCS1v15(), chosen_rsa)
        except InvalidSignature:
            pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.AUTO)
            key.verify(signature, data, pss, chosen_rsa)
    except InvalidSignature as exc:
        raise VerificationError(f"{what} does not verify with the {describe(key)} key", step=step) from exc
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise VerificationError(f"{what} is malformed: {exc}", step=step) from exc
