"""A certificate transparency log that issues precertificate SCTs (RFC 6962 §3.2) for Fulcio-like leaves."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.sigstore_kit import der
from tests.sigstore_kit.keys import ValidFor, b64, key_details, new_p256, sha256, spki_der

_SCT_VERSION_V1 = 0
_SIGNATURE_TYPE_TIMESTAMP = 0  # certificate_timestamp
_ENTRY_TYPE_PRECERT = 1
_HASH_SHA256 = 4
_SIGNATURE_ECDSA = 3


def timestamp_ms(when: datetime) -> int:
    """Milliseconds since the epoch, the resolution of an SCT timestamp."""
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)
    return int(aware.timestamp()) * 1000 + aware.microsecond // 1000


def precert_signed_struct(tbs: bytes, issuer_key_hash: bytes, when_ms: int, extensions: bytes = b"") -> bytes:
    """The ``digitally-signed`` body of a precert SCT (SIGSTORE.md §4 step 5)."""
    return (
        struct.pack(">BBQH", _SCT_VERSION_V1, _SIGNATURE_TYPE_TIMESTAMP, when_ms, _ENTRY_TYPE_PRECERT)
        + issuer_key_hash
        + len(tbs).to_bytes(3, "big")
        + tbs
        + struct.pack(">H", len(extensions))
        + extensions
    )


def sct_list_extension_value(scts: list[bytes]) -> bytes:
    """extnValue of the SCT-list extension: DER OCTET STRING around the TLS SignedCertificateTimestampList."""
    entries = b"".join(struct.pack(">H", len(sct)) + sct for sct in scts)
    return der.octet_string(struct.pack(">H", len(entries)) + entries)


@dataclass
class CTLog:
    """A CT log: P-256 key, log ID = SHA-256 of its SPKI."""

    base_url: str = "https://ctfe.example/test"
    key: ec.EllipticCurvePrivateKey = field(default_factory=new_p256)
    valid_for: ValidFor = field(default_factory=lambda: ValidFor(datetime(2000, 1, 1, tzinfo=UTC)))

    @property
    def log_id(self) -> bytes:
        return sha256(spki_der(self.key.public_key()))

    def sign_precert(
        self,
        tbs: bytes,
        issuer_key_hash: bytes,
        when: datetime,
        *,
        signing_key: ec.EllipticCurvePrivateKey | None = None,
        extensions: bytes = b"",
    ) -> bytes:
        """A TLS-encoded v1 SCT over a precertificate TBS; ``signing_key`` forges one with another key."""
        when_ms = timestamp_ms(when)
        signed = precert_signed_struct(tbs, issuer_key_hash, when_ms, extensions)
        signature = (signing_key or self.key).sign(signed, ec.ECDSA(hashes.SHA256()))
        return (
            struct.pack(">B", _SCT_VERSION_V1)
            + self.log_id
            + struct.pack(">QH", when_ms, len(extensions))
            + extensions
            + struct.pack(">BBH", _HASH_SHA256, _SIGNATURE_ECDSA, len(signature))
            + signature
        )

    def trusted_root_entry(self) -> dict[str, object]:
        """This log as a ``ctlogs[]`` element of trusted_root.json."""
        public = self.key.public_key()
        return {
            "baseUrl": self.base_url,
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": b64(spki_der(public)),
                "keyDetails": key_details(public),
                "validFor": self.valid_for.to_json(),
            },
            "logId": {"keyId": b64(self.log_id)},
        }
