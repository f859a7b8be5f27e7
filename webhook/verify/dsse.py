"""DSSE envelopes and in-toto statements.

The signature of a DSSE envelope covers PAE(payloadType, payload), never the payload alone, so a
payload cannot be re-labelled with another type without breaking the signature.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.errors import VerificationError

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
IN_TOTO_STATEMENT_TYPES = frozenset({"https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"})
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: ``DSSEv1 SP len(type) SP type SP len(payload) SP payload``."""
    type_bytes = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


@dataclass(frozen=True)
class DsseSignature:
    sig: bytes
    keyid: str = ""


@dataclass(frozen=True)
class DsseEnvelope:
    payload_type: str
    payload: bytes
    signatures: tuple[DsseSignature, ...]

    @property
    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)

    @classmethod
    def from_dict(cls, data: object) -> DsseEnvelope:
        """Parse the JSON form (``payload`` and ``sig`` base64)."""
        if not isinstance(data, Mapping):
            raise VerificationError("DSSE envelope is not a JSON object", step="envelope")
        payload_type = data.get("payloadType")
        if not isinstance(payload_type, str) or not payload_type:
            raise VerificationError("DSSE envelope has no payloadType", step="envelope")
        payload = _b64(data.get("payload"), "DSSE payload")
        raw_sigs = data.get("signatures")
        if not isinstance(raw_sigs, list):
            raise VerificationError("DSSE envelope has no signatures list", step="envelope")
        sigs = []
        for raw in raw_sigs:
            if not isinstance(raw, Mapping):
                raise VerificationError("DSSE signature is not an object", step="envelope")
            keyid = raw.get("keyid") or ""
            sigs.append(DsseSignature(sig=_b64(raw.get("sig"), "DSSE signature"), keyid=str(keyid)))
        return cls(payload_type=payload_type, payload=payload, signatures=tuple(sigs))

    @classmethod
    def from_json(cls, raw: bytes) -> DsseEnvelope:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise VerificationError("DSSE envelope is not valid JSON", step="envelope") from exc
        return cls.from_dict(data)

    def single_signature(self) -> bytes:
        """The one signature Sigstore envelopes carry; more or fewer is an error."""
        if len(self.signatures) != 1:
            raise VerificationError(
                f"DSSE envelope must carry exactly one signature, it has {len(self.signatures)}", step="envelope"
            )
        return self.signatures[0].sig


@dataclass(frozen=True)
class Statement:
    """An in-toto statement: what it says about which subjects."""

    type: str
    predicate_type: str
    subjects: tuple[tuple[str, Mapping[str, str]], ...]
    """(name, {algorithm: hex digest}) per subject."""
    predicate: Any
    raw: Mapping[str, Any]

    @classmethod
    def from_payload(cls, payload: bytes) -> Statement:
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise VerificationError("in-toto statement is not valid JSON", step="statement") from exc
        if not isinstance(data, Mapping):
            raise VerificationError("in-toto statement is not a JSON object", step="statement")
        st_type = data.get("_type")
        if st_type not in IN_TOTO_STATEMENT_TYPES:
            raise VerificationError(f"unsupported in-toto statement type {st_type!r}", step="statement")
        subjects_raw = data.get("subject")
        if not isinstance(subjects_raw, list) or not subjects_raw:
            raise VerificationError("in-toto statement has no subjects", step="statement")
        subjects = []
        for subject in subjects_raw:
            digest = subject.get("digest") if isinstance(subject, Mapping) else None
            if not isinstance(digest, Mapping):
                raise VerificationError("in-toto subject has no digest", step="statement")
            name = subject.get("name", "") if isinstance(subject, Mapping) else ""
            subjects.append((str(name or ""), {str(k).lower(): str(v).lower() for k, v in digest.items()}))
        predicate_type = data.get("predicateType")
        return cls(type=str(st_type), predicate_type=str(predicate_type or ""), subjects=tuple(subjects),
                   predicate=data.get("predicate"), raw=data)

    @property
    def is_cosign_signature(self) -> bool:
        """cosign v3 signs an image with this statement: it is a signature, every other statement an attestation."""
        return self.predicate_type == COSIGN_SIGN_PREDICATE

    def has_subject_digest(self, algorithm: str, hex_digest: str) -> bool:
        wanted = hex_digest.lower()
        return any(digests.get(algorithm) == wanted for _, digests in self.subjects)


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise VerificationError(f"{what} is missing or not a string", step="envelope")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(f"{what} is not valid base64", step="envelope") from exc
