"""Sigstore bundle builders (protobuf-JSON dicts, SIGSTORE.md §6) and DSSE / in-toto helpers.

int64 fields are JSON strings and bytes are base64, as protobuf JSON writes them; the dicts go
straight to ``json.dumps``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.sigstore_kit.keys import PrivateKey, PublicKey, b64, sha256, sign, spki_der
from tests.sigstore_kit.tlog import InclusionProof, LogEntry, RekorV1Log, RekorV2Log

BundleVersion = Literal["0.1", "0.2", "0.3"]
MEDIA_TYPE_V01 = "application/vnd.dev.sigstore.bundle+json;version=0.1"
MEDIA_TYPE_V02 = "application/vnd.dev.sigstore.bundle+json;version=0.2"
MEDIA_TYPE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
MEDIA_TYPE_V03_OLD_STYLE = "application/vnd.dev.sigstore.bundle+json;version=0.3"
MEDIA_TYPES: dict[str, str] = {"0.1": MEDIA_TYPE_V01, "0.2": MEDIA_TYPE_V02, "0.3": MEDIA_TYPE_V03}

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_V1 = "https://in-toto.io/Statement/v1"
COSIGN_SIGN_PREDICATE_TYPE = "https://sigstore.dev/cosign/sign/v1"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding (SIGSTORE.md §6.4)."""
    encoded_type = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(encoded_type), encoded_type, len(payload), payload)


def statement_subject(sha256_hex: str, name: str | None = None,
                      annotations: Mapping[str, str] | None = None) -> dict[str, object]:
    """An in-toto ResourceDescriptor naming an artifact by SHA-256 (cosign image subjects have no name)."""
    subject: dict[str, object] = {}
    if name is not None:
        subject["name"] = name
    subject["digest"] = {"sha256": sha256_hex}
    if annotations:
        subject["annotations"] = dict(annotations)
    return subject


def in_toto_statement(subjects: Sequence[Mapping[str, object]], predicate_type: str,
                      predicate: Mapping[str, object] | None = None) -> bytes:
    """An in-toto Statement v1 as compact JSON bytes (the DSSE payload)."""
    statement = {"_type": STATEMENT_V1, "subject": [dict(s) for s in subjects],
                 "predicateType": predicate_type, "predicate": dict(predicate or {})}
    return json.dumps(statement, separators=(",", ":")).encode()


@dataclass(frozen=True)
class DsseEnvelope:
    """A DSSE envelope with raw payload and signature bytes."""

    payload: bytes
    payload_type: str
    signatures: tuple[bytes, ...]
    keyid: str | None = None

    @classmethod
    def sign(cls, key: PrivateKey, payload: bytes, payload_type: str = IN_TOTO_PAYLOAD_TYPE) -> DsseEnvelope:
        """Sign PAE(payload_type, payload) with ``key`` (SHA-256 for ECDSA)."""
        return cls(payload, payload_type, (sign(key, pae(payload_type, payload)),))

    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)

    def to_dict(self) -> dict[str, object]:
        """Protobuf-JSON shape (bundle ``dsseEnvelope``; also the DSSE JSON cosign writes)."""
        signatures: list[dict[str, str]] = []
        for sig in self.signatures:
            item = {"sig": b64(sig)}
            if self.keyid is not None:
                item = {"keyid": self.keyid, **item}
            signatures.append(item)
        return {"payload": b64(self.payload), "payloadType": self.payload_type, "signatures": signatures}

    def to_json(self) -> bytes:
        """Compact JSON bytes, as submitted to Rekor (their SHA-256 is the dsse body's envelopeHash)."""
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()


def message_signature(digest: bytes, signature: bytes) -> dict[str, object]:
    """Bundle ``messageSignature``: SHA-256 digest of the artifact and the signature over the artifact."""
    return {"messageDigest": {"algorithm": "SHA2_256", "digest": b64(digest)}, "signature": b64(signature)}


def _proof_json(proof: InclusionProof) -> dict[str, object]:
    return {
        "logIndex": str(proof.log_index),
        "rootHash": b64(proof.root_hash),
        "treeSize": str(proof.tree_size),
        "hashes": [b64(h) for h in proof.hashes],
        "checkpoint": {"envelope": proof.checkpoint},
    }


def tlog_entry_v1(
    log: RekorV1Log,
    entry: LogEntry,
    *,
    kind: str,
    version: str = "0.0.1",
    include_promise: bool = True,
    include_proof: bool = True,
    tree_size: int | None = None,
) -> dict[str, object]:
    """A bundle ``tlogEntries[]`` element for a Rekor v1 entry (SET and/or inclusion proof)."""
    result: dict[str, object] = {
        "logIndex": str(entry.log_index),
        "logId": {"keyId": b64(entry.log_id)},
        "kindVersion": {"kind": kind, "version": version},
        "integratedTime": str(entry.integrated_time),
    }
    if include_promise:
        result["inclusionPromise"] = {"signedEntryTimestamp": b64(log.signed_entry_timestamp(entry))}
    if include_proof:
        result["inclusionProof"] = _proof_json(log.inclusion_proof(entry, tree_size))
    result["canonicalizedBody"] = b64(entry.body)
    return result


def tlog_entry_v2(log: RekorV2Log, entry: LogEntry, *, include_proof: bool = True,
                  tree_size: int | None = None, kind: str = "hashedrekord") -> dict[str, object]:
    """A bundle ``tlogEntries[]`` element for a Rekor v2 entry (``kind`` 0.0.2): no time, no SET."""
    result: dict[str, object] = {
        "logIndex": str(entry.log_index),
        "logId": {"keyId": b64(entry.log_id)},
        "kindVersion": {"kind": kind, "version": "0.0.2"},
    }
    if include_proof:
        result["inclusionProof"] = _proof_json(log.inclusion_proof(entry, tree_size))
    result["canonicalizedBody"] = b64(entry.body)
    return result


def public_key_hint(key: PublicKey) -> str:
    """The ``publicKey.hint`` cosign and sigstore-go write: b64 SHA-256 of the SPKI DER."""
    return b64(sha256(spki_der(key)))


def verification_material(
    version: BundleVersion,
    *,
    certificate: x509.Certificate | None = None,
    chain: Sequence[x509.Certificate] = (),
    public_key: PublicKey | None = None,
    tlog_entries: Sequence[Mapping[str, object]] = (),
    timestamps: Sequence[bytes] = (),
) -> dict[str, object]:
    """``verificationMaterial``: leaf + ``chain`` (v0.1/0.2), ``certificate`` (v0.3), or a public key hint."""
    material: dict[str, object] = {}
    if certificate is not None:
        if version == "0.3":
            material["certificate"] = {"rawBytes": b64(certificate.public_bytes(serialization.Encoding.DER))}
        else:
            certificates = [{"rawBytes": b64(cert.public_bytes(serialization.Encoding.DER))}
                            for cert in (certificate, *chain)]
            material["x509CertificateChain"] = {"certificates": certificates}
    elif public_key is not None:
        material["publicKey"] = {"hint": public_key_hint(public_key)}
    else:
        raise ValueError("a bundle needs a certificate or a public key")
    material["tlogEntries"] = [dict(e) for e in tlog_entries]
    if timestamps:
        signed = [{"signedTimestamp": b64(t)} for t in timestamps]
        material["timestampVerificationData"] = {"rfc3161Timestamps": signed}
    return material


def bundle(
    version: BundleVersion,
    material: Mapping[str, object],
    *,
    message: Mapping[str, object] | None = None,
    envelope: DsseEnvelope | None = None,
    media_type: str | None = None,
) -> dict[str, object]:
    """A whole bundle with exactly one of ``message`` (messageSignature) or ``envelope`` (dsseEnvelope)."""
    if (message is None) == (envelope is None):
        raise ValueError("a bundle carries exactly one of messageSignature or dsseEnvelope")
    result: dict[str, object] = {"mediaType": media_type or MEDIA_TYPES[version],
                                 "verificationMaterial": dict(material)}
    if message is not None:
        result["messageSignature"] = dict(message)
    else:
        assert envelope is not None
        result["dsseEnvelope"] = envelope.to_dict()
    return result
