"""The Sigstore trust root (``trusted_root.json``): CAs, transparency logs, CT logs and TSAs.

Parsed once and kept: every certificate and key is loaded at construction so that verification
only looks things up. Instances are immutable; a new trust root is a new object.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from cryptography import x509

from webhook.errors import TrustError, VerificationError
from webhook.verify.keys import PublicKey, load_der_public_key

TRUSTED_ROOT_MEDIA_TYPES = frozenset(
    {
        "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "application/vnd.dev.sigstore.trustedroot.v0.1+json",
        "application/vnd.dev.sigstore.trustedroot.v0.2+json",
        "application/vnd.dev.sigstore.trustedroot+json;version=0.2",
    }
)


def parse_time(value: object, what: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or offset, optional fraction) into an aware UTC datetime."""
    if not isinstance(value, str):
        raise TrustError(f"{what} is not an RFC 3339 timestamp string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise TrustError(f"{what} is not an RFC 3339 timestamp: {value!r}") from exc
    if parsed.tzinfo is None:
        raise TrustError(f"{what} has no time zone: {value!r}")
    return parsed.astimezone(UTC)


def b64decode(value: object, what: str) -> bytes:
    """Strict standard base64 (padding required), as protobuf JSON writes ``bytes``."""
    if not isinstance(value, str):
        raise TrustError(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TrustError(f"{what} is not valid base64") from exc


@dataclass(frozen=True)
class ValidityWindow:
    """An inclusive ``[start, end]`` window; ``end`` None means still valid."""

    start: datetime
    end: datetime | None = None

    def contains(self, when: datetime) -> bool:
        return self.start <= when and (self.end is None or when <= self.end)

    def describe(self) -> str:
        end = self.end.isoformat() if self.end else "open"
        return f"{self.start.isoformat()} .. {end}"

    @classmethod
    def from_json(cls, data: object, what: str) -> ValidityWindow:
        if not isinstance(data, Mapping) or "start" not in data:
            raise TrustError(f"{what}: validFor.start is required")
        end = data.get("end")
        return cls(parse_time(data["start"], f"{what} validFor.start"),
                   parse_time(end, f"{what} validFor.end") if end is not None else None)


@dataclass(frozen=True)
class TransparencyLog:
    """A Rekor (tlog) or certificate transparency (ctlog) log instance."""

    base_url: str
    key: PublicKey
    key_details: str
    log_id: bytes
    valid_for: ValidityWindow
    checkpoint_key_id: bytes | None = None
    operator: str = ""

    @property
    def origin_host(self) -> str:
        """Host of ``base_url``: the checkpoint origin (and signer name) of a Rekor v2 log."""
        return urlparse(self.base_url).netloc or self.base_url

    @property
    def key_ids(self) -> frozenset[bytes]:
        """Every ID this log may be named by (log ID and, if different, checkpoint key ID)."""
        ids = {self.log_id}
        if self.checkpoint_key_id:
            ids.add(self.checkpoint_key_id)
        return frozenset(ids)

    @classmethod
    def from_json(cls, data: object, what: str) -> TransparencyLog:
        if not isinstance(data, Mapping):
            raise TrustError(f"{what} is not an object")
        base_url = data.get("baseUrl", "")
        pk = data.get("publicKey")
        if not isinstance(pk, Mapping):
            raise TrustError(f"{what}: publicKey is required")
        if not isinstance(base_url, str):
            raise TrustError(f"{what}: baseUrl is not a string")
        try:
            key = load_der_public_key(b64decode(pk.get("rawBytes"), f"{what} publicKey.rawBytes"), f"{what} key")
        except VerificationError as exc:
            raise TrustError(exc.reason) from exc
        log_id_obj = data.get("logId")
        if not isinstance(log_id_obj, Mapping):
            raise TrustError(f"{what}: logId is required")
        log_id = b64decode(log_id_obj.get("keyId"), f"{what} logId.keyId")
        checkpoint = data.get("checkpointKeyId")
        checkpoint_key_id = (b64decode(checkpoint.get("keyId"), f"{what} checkpointKeyId.keyId")
                             if isinstance(checkpoint, Mapping) else None)
        return cls(
            base_url=base_url,
            key=key,
            key_details=str(pk.get("keyDetails", "")),
            log_id=log_id,
            valid_for=ValidityWindow.from_json(pk.get("validFor"), what),
            checkpoint_key_id=checkpoint_key_id,
            operator=str(data.get("operator", "")),
        )


@dataclass(frozen=True)
class CertificateAuthority:
    """A Fulcio CA or a timestamp authority: a chain (issuing certificate first, root last)."""

    chain: tuple[x509.Certificate, ...]
    valid_for: ValidityWindow
    uri: str = ""
    subject: str = ""

    @property
    def root(self) -> x509.Certificate:
        return self.chain[-1]

    @classmethod
    def from_json(cls, data: object, what: str) -> CertificateAuthority:
        if not isinstance(data, Mapping):
            raise TrustError(f"{what} is not an object")
        chain_obj = data.get("certChain")
        certs = chain_obj.get("certificates") if isinstance(chain_obj, Mapping) else None
        if not isinstance(certs, list) or not certs:
            raise TrustError(f"{what}: certChain.certificates must list at least one certificate")
        chain: list[x509.Certificate] = []
        for index, cert in enumerate(certs):
            raw = b64decode(cert.get("rawBytes") if isinstance(cert, Mapping) else None,
                            f"{what} certificate {index}")
            try:
                chain.append(x509.load_der_x509_certificate(raw))
            except ValueError as exc:
                raise TrustError(f"{what}: certificate {index} is not valid DER") from exc
        subject_obj = data.get("subject")
        subject = ""
        if isinstance(subject_obj, Mapping):
            subject = "/".join(str(subject_obj[k]) for k in ("organization", "commonName") if subject_obj.get(k))
        return cls(chain=tuple(chain), valid_for=ValidityWindow.from_json(data.get("validFor"), what),
                   uri=str(data.get("uri", "")), subject=subject)


def _select_logs(logs: Iterable[TransparencyLog], key_id: bytes) -> list[TransparencyLog]:
    return [log for log in logs if key_id in log.key_ids]


@dataclass(frozen=True)
class TrustedRoot:
    """A parsed ``trusted_root.json``."""

    tlogs: tuple[TransparencyLog, ...]
    ctlogs: tuple[TransparencyLog, ...]
    certificate_authorities: tuple[CertificateAuthority, ...]
    timestamp_authorities: tuple[CertificateAuthority, ...]
    fingerprint: str = field(default="")
    """SHA-256 of the document: identifies this version of the trust root (cache keys)."""

    @classmethod
    def from_json(cls, raw: bytes | str) -> TrustedRoot:
        """Parse a trusted_root.json document; raises TrustError naming what is wrong."""
        data_bytes = raw.encode() if isinstance(raw, str) else raw
        try:
            data: Any = json.loads(data_bytes)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise TrustError(f"trusted root is not valid JSON: {exc}") from exc
        if not isinstance(data, Mapping):
            raise TrustError("trusted root is not a JSON object")
        media_type = data.get("mediaType")
        if media_type not in TRUSTED_ROOT_MEDIA_TYPES:
            raise TrustError(f"trusted root has unsupported mediaType {media_type!r}")

        def items(name: str) -> list[object]:
            value = data.get(name, [])
            if not isinstance(value, list):
                raise TrustError(f"trusted root: {name} is not a list")
            return value

        return cls(
            tlogs=tuple(TransparencyLog.from_json(v, f"tlogs[{i}]") for i, v in enumerate(items("tlogs"))),
            ctlogs=tuple(TransparencyLog.from_json(v, f"ctlogs[{i}]") for i, v in enumerate(items("ctlogs"))),
            certificate_authorities=tuple(
                CertificateAuthority.from_json(v, f"certificateAuthorities[{i}]")
                for i, v in enumerate(items("certificateAuthorities"))
            ),
            timestamp_authorities=tuple(
                CertificateAuthority.from_json(v, f"timestampAuthorities[{i}]")
                for i, v in enumerate(items("timestampAuthorities"))
            ),
            fingerprint=hashlib.sha256(data_bytes).hexdigest(),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> TrustedRoot:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise TrustError(f"cannot read trusted root {path}: {exc.strerror or exc}") from exc
        return cls.from_json(raw)

    def tlogs_for(self, key_id: bytes) -> list[TransparencyLog]:
        """Transparency logs known by this log ID or checkpoint key ID."""
        return _select_logs(self.tlogs, key_id)

    def ctlogs_for(self, key_id: bytes) -> list[TransparencyLog]:
        """CT logs known by this log ID."""
        return _select_logs(self.ctlogs, key_id)

    def cas_at(self, when: datetime) -> list[CertificateAuthority]:
        """Fulcio CAs whose validity window contains ``when``."""
        return [ca for ca in self.certificate_authorities if ca.valid_for.contains(when)]
