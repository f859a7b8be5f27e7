"""Sigstore bundles (v0.1, v0.2, v0.3): parsing and the structural rules of each version.

Structure is checked here, before any cryptography, so a malformed bundle is refused with a reason
about the bundle and never reaches the expensive steps half-parsed.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from webhook.errors import VerificationError
from webhook.verify.certs import check_untrusted_chain
from webhook.verify.dsse import DsseEnvelope
from webhook.verify.material import HASH_NAMES, Digest

BUNDLE_MEDIA_TYPES: Mapping[str, tuple[int, int]] = {
    "application/vnd.dev.sigstore.bundle+json;version=0.1": (0, 1),
    "application/vnd.dev.sigstore.bundle+json;version=0.2": (0, 2),
    "application/vnd.dev.sigstore.bundle+json;version=0.3": (0, 3),
    "application/vnd.dev.sigstore.bundle.v0.3+json": (0, 3),
}
# Bounds on repeated fields: a bundle is attacker-supplied, and each entry costs signature checks.
MAX_TLOG_ENTRIES = 32
MAX_TIMESTAMPS = 32

_STEP = "bundle"


def _fail(reason: str) -> VerificationError:
    return VerificationError(reason, step=_STEP)


def b64(value: object, what: str) -> bytes:
    """Strict base64 of a protobuf ``bytes`` field (line breaks allowed, as Go's decoder skips them)."""
    if not isinstance(value, str):
        raise _fail(f"{what} is missing or not a base64 string")
    try:
        return base64.b64decode(value.replace("\n", "").replace("\r", ""), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _fail(f"{what} is not valid base64") from exc


def _certificate(raw: object, what: str) -> x509.Certificate:
    der = b64(raw.get("rawBytes") if isinstance(raw, Mapping) else None, what)
    try:
        cert = x509.load_der_x509_certificate(der)
        # cryptography decodes names lazily: decode them now, so a malformed one fails here and
        # not as a bare ValueError wherever they are first read.
        _ = (cert.subject, cert.issuer)
    except ValueError as exc:
        raise _fail(f"{what} is not a valid DER certificate") from exc
    return cert


@dataclass(frozen=True)
class MessageSignature:
    signature: bytes
    digest: Digest | None
    """The bundle's own claim of the artifact digest: a hint, checked against the real digest."""


@dataclass(frozen=True)
class Bundle:
    """A parsed Sigstore bundle; ``tlog_entries`` are kept as JSON for the log module to parse."""

    media_type: str
    version: tuple[int, int]
    certificate: x509.Certificate | None
    public_key_hint: str | None
    tlog_entries: tuple[Mapping[str, Any], ...]
    timestamps: tuple[bytes, ...]
    message_signature: MessageSignature | None
    envelope: DsseEnvelope | None

    @property
    def signature(self) -> bytes:
        """The signature bytes the log entry and timestamps commit to."""
        if self.message_signature is not None:
            return self.message_signature.signature
        assert self.envelope is not None
        return self.envelope.single_signature()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Bundle:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise _fail(f"bundle is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: object) -> Bundle:
        if not isinstance(data, Mapping):
            raise _fail("bundle is not a JSON object")
        media_type = data.get("mediaType")
        version = BUNDLE_MEDIA_TYPES.get(media_type) if isinstance(media_type, str) else None
        if version is None:
            raise _fail(f"unsupported bundle media type {media_type!r}")
        material = data.get("verificationMaterial")
        if not isinstance(material, Mapping):
            raise _fail("bundle has no verificationMaterial")

        certificate, key_hint = _verification_material(material, version)
        tlog_entries = _tlog_entries(material.get("tlogEntries"), version)
        timestamps = _timestamps(material.get("timestampVerificationData"))

        message: MessageSignature | None = None
        envelope: DsseEnvelope | None = None
        has_message, has_envelope = "messageSignature" in data, "dsseEnvelope" in data
        if has_message == has_envelope:
            raise _fail("bundle must hold exactly one of messageSignature and dsseEnvelope")
        if has_message:
            message = _message_signature(data["messageSignature"])
        else:
            envelope = DsseEnvelope.from_dict(data["dsseEnvelope"])
            envelope.single_signature()
        return cls(
            media_type=str(media_type),
            version=version,
            certificate=certificate,
            public_key_hint=key_hint,
            tlog_entries=tlog_entries,
            timestamps=timestamps,
            message_signature=message,
            envelope=envelope,
        )


def _verification_material(
    material: Mapping[str, Any], version: tuple[int, int]
) -> tuple[x509.Certificate | None, str | None]:
    kinds = [k for k in ("x509CertificateChain", "certificate", "publicKey") if k in material]
    if len(kinds) != 1:
        raise _fail("verificationMaterial must hold exactly one of x509CertificateChain, certificate, publicKey")
    kind = kinds[0]
    if kind == "publicKey":
        hint = material["publicKey"].get("hint") if isinstance(material["publicKey"], Mapping) else None
        return None, str(hint or "")
    if kind == "certificate":
        return _certificate(material["certificate"], "verificationMaterial.certificate"), None
    if version >= (0, 3):
        raise _fail("a v0.3 bundle must carry a single certificate, not x509CertificateChain")
    chain_obj = material["x509CertificateChain"]
    certs = chain_obj.get("certificates") if isinstance(chain_obj, Mapping) else None
    if not isinstance(certs, Sequence) or not certs:
        raise _fail("x509CertificateChain is empty")
    chain = [_certificate(c, f"x509CertificateChain.certificates[{i}]") for i, c in enumerate(certs)]
    # The chain is untrusted and never used for path building; a bundle that ships a root is
    # refused outright, as the conformance suite requires, so nobody mistakes it for an anchor.
    # It is a structural rule of the bundle, so it fails at the bundle step like the others.
    try:
        check_untrusted_chain(chain)
    except VerificationError as exc:
        raise _fail(f"x509CertificateChain: {exc.reason}") from exc
    return chain[0], None


def _tlog_entries(raw: object, version: tuple[int, int]) -> tuple[Mapping[str, Any], ...]:
    if raw is None:
        raw = []
    if not isinstance(raw, list) or not all(isinstance(e, Mapping) for e in raw):
        raise _fail("tlogEntries is not a list of objects")
    if len(raw) > MAX_TLOG_ENTRIES:
        raise _fail(f"bundle has {len(raw)} transparency log entries; at most {MAX_TLOG_ENTRIES} are accepted")
    for index, entry in enumerate(raw):
        if version == (0, 1):
            if not isinstance(entry.get("inclusionPromise"), Mapping):
                raise _fail(f"v0.1 bundle tlogEntries[{index}] has no inclusionPromise (SET)")
        else:
            proof = entry.get("inclusionProof")
            if not isinstance(proof, Mapping) or not isinstance(proof.get("checkpoint"), Mapping):
                raise _fail(f"tlogEntries[{index}] has no inclusion proof with a checkpoint "
                            f"(required since bundle v0.2)")
    return tuple(raw)


def _timestamps(raw: object) -> tuple[bytes, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise _fail("timestampVerificationData is not an object")
    items = raw.get("rfc3161Timestamps") or []
    if not isinstance(items, list):
        raise _fail("rfc3161Timestamps is not a list")
    if len(items) > MAX_TIMESTAMPS:
        raise _fail(f"bundle has {len(items)} timestamps; at most {MAX_TIMESTAMPS} are accepted")
    out = [b64(i.get("signedTimestamp") if isinstance(i, Mapping) else None,
               f"rfc3161Timestamps[{n}].signedTimestamp") for n, i in enumerate(items)]
    if len(set(out)) != len(out):
        raise _fail("bundle repeats an RFC 3161 timestamp")
    return tuple(out)


def _message_signature(raw: object) -> MessageSignature:
    if not isinstance(raw, Mapping):
        raise _fail("messageSignature is not an object")
    signature = b64(raw.get("signature"), "messageSignature.signature")
    digest: Digest | None = None
    md = raw.get("messageDigest")
    if isinstance(md, Mapping):
        algorithm = HASH_NAMES.get(str(md.get("algorithm", "")))
        if algorithm is None:
            raise _fail(f"messageDigest has unsupported algorithm {md.get('algorithm')!r}")
        digest = Digest(algorithm, b64(md.get("digest"), "messageSignature.messageDigest.digest"))
    return MessageSignature(signature=signature, digest=digest)
