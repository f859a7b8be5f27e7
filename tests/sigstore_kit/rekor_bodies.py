"""Canonicalized Rekor entry bodies: hashedrekord, dsse and intoto (Rekor v1), hashedrekord and dsse 0.0.2 (v2).

Bodies are RFC 8785 canonical JSON, which matches the key order Rekor emits (SIGSTORE.md §5.1, §5.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.sigstore_kit.keys import PublicKey, b64, key_details, public_pem, sha256, spki_der

Verifier = x509.Certificate | PublicKey


def verifier_pem(verifier: Verifier) -> bytes:
    """PEM of the certificate or public key as Rekor v1 stores it."""
    if isinstance(verifier, x509.Certificate):
        return verifier.public_bytes(serialization.Encoding.PEM)
    return public_pem(verifier)


def hashedrekord_v001(digest: bytes, signature: bytes, verifier: Verifier,
                      algorithm: str = "sha256") -> bytes:
    """hashedrekord v0.0.1: hex digest, b64 signature, b64 PEM certificate or key."""
    return rfc8785.dumps({
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": algorithm, "value": digest.hex()}},
            "signature": {"content": b64(signature), "publicKey": {"content": b64(verifier_pem(verifier))}},
        },
    })


def dsse_v001(envelope_json: bytes, payload: bytes, signatures: Sequence[bytes], verifier: Verifier) -> bytes:
    """dsse v0.0.1: hashes of the submitted envelope and of the payload, signatures with b64 PEM verifier."""
    return rfc8785.dumps({
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": sha256(envelope_json).hex()},
            "payloadHash": {"algorithm": "sha256", "value": sha256(payload).hex()},
            "signatures": [{"signature": b64(sig), "verifier": b64(verifier_pem(verifier))}
                           for sig in signatures],
        },
    })


def intoto_v001(envelope_json: bytes, payload: bytes, verifier: Verifier) -> bytes:
    """intoto v0.0.1 as cosign < v3 logged ``.att`` layers: hashes of the submitted envelope and of the
    payload, and the b64 PEM signer; the canonical body drops the envelope, so no signature is kept."""
    return rfc8785.dumps({
        "apiVersion": "0.0.1",
        "kind": "intoto",
        "spec": {
            "content": {
                "hash": {"algorithm": "sha256", "value": sha256(envelope_json).hex()},
                "payloadHash": {"algorithm": "sha256", "value": sha256(payload).hex()},
            },
            "publicKey": b64(verifier_pem(verifier)),
        },
    })


def intoto_v002(envelope_json: bytes, payload_type: str, payload: bytes, signatures: Sequence[bytes],
                verifier: Verifier) -> bytes:
    """intoto v0.0.2: envelope hash, payload hash, payloadType and signatures (no payload).

    Rekor stores each signature as base64 of the envelope's base64 text, and the signer as b64 PEM.
    """
    return rfc8785.dumps({
        "apiVersion": "0.0.2",
        "kind": "intoto",
        "spec": {
            "content": {
                "envelope": {
                    "payloadType": payload_type,
                    "signatures": [{"publicKey": b64(verifier_pem(verifier)), "sig": b64(b64(sig).encode())}
                                   for sig in signatures],
                },
                "hash": {"algorithm": "sha256", "value": sha256(envelope_json).hex()},
                "payloadHash": {"algorithm": "sha256", "value": sha256(payload).hex()},
            },
        },
    })


def hashedrekord_v002(
    digest: bytes,
    signature: bytes,
    verifier: Verifier,
    *,
    algorithm: Literal["SHA2_256", "SHA2_384", "SHA2_512"] = "SHA2_256",
    spec_field: str = "hashedRekordV002",
) -> bytes:
    """hashedrekord v0.0.2 (Rekor v2): b64 digest, verifier as DER certificate or SPKI plus keyDetails.

    ``spec_field`` may be set to the older ``hashedRekordV0_0_2`` spelling some logs emitted.
    """
    return rfc8785.dumps({
        "apiVersion": "0.0.2",
        "kind": "hashedrekord",
        "spec": {
            spec_field: {
                "data": {"algorithm": algorithm, "digest": b64(digest)},
                "signature": {"content": b64(signature), "verifier": _v002_verifier(verifier)},
            }
        },
    })


def dsse_v002(payload: bytes, signatures: Sequence[bytes], verifier: Verifier) -> bytes:
    """dsse v0.0.2 (Rekor v2 ``dsseRequestV002``, as sigstore-js logs attestations): b64 payload hash,
    each signature with its verifier as DER plus keyDetails."""
    return rfc8785.dumps({
        "apiVersion": "0.0.2",
        "kind": "dsse",
        "spec": {
            "dsseV002": {
                "payloadHash": {"algorithm": "SHA2_256", "digest": b64(sha256(payload))},
                "signatures": [{"content": b64(sig), "verifier": _v002_verifier(verifier)} for sig in signatures],
            }
        },
    })


def _v002_verifier(verifier: Verifier) -> dict[str, Any]:
    public = verifier.public_key() if isinstance(verifier, x509.Certificate) else verifier
    if not isinstance(public, PublicKey):
        raise TypeError(f"unsupported verifier key type {type(public).__name__}")
    details: dict[str, Any] = {"keyDetails": key_details(public)}
    if isinstance(verifier, x509.Certificate):
        details["x509Certificate"] = {"rawBytes": b64(verifier.public_bytes(serialization.Encoding.DER))}
    else:
        details["publicKey"] = {"rawBytes": b64(spki_der(verifier))}
    return details
