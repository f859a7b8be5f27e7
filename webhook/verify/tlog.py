"""Transparency-log (Rekor) entries: parsing, SET, inclusion proof + checkpoint, body consistency.

An entry reaches us in three shapes (Sigstore bundle ``tlogEntries[]``, Rekor v1 API response,
cosign's legacy ``dev.sigstore.cosign/bundle`` annotation) and becomes one :class:`TlogEntry`.
Checks, in the order :func:`verify_entry` runs them:

1. the body is about *this* signature (:func:`check_body`) — otherwise a genuine log entry for
   some other signature would vouch for ours (the CVE-2022-36056 class);
2. the signed entry timestamp (SET) verifies with the log key valid at the integrated time —
   the only way the integrated time becomes a trusted signing time;
3. the Merkle inclusion proof leads from the body to a root that the log signed in a checkpoint.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import hashes

from webhook.errors import VerificationError
from webhook.verify import merkle
from webhook.verify._fields import STEP_ENTRY, STEP_PROOF, STEP_TLOG, _b64, _fail, _hex, _int, _obj, _str, _utc
from webhook.verify.checkpoint import Checkpoint, verify_checkpoint_for_root
from webhook.verify.keys import verify_signature
from webhook.verify.material import SignedContent
from webhook.verify.tlog_body import check_body
from webhook.verify.trustroot import TransparencyLog, TrustedRoot

# -- the entry ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InclusionProof:
    """An RFC 6962 audit path; ``log_index`` is the index inside the (shard) tree."""

    log_index: int
    tree_size: int
    root_hash: bytes
    hashes: tuple[bytes, ...]
    checkpoint: str | None = None


@dataclass(frozen=True)
class TlogEntry:
    """One transparency-log entry, whatever it came in. Bytes are decoded, nothing is verified."""

    log_index: int
    """Global (virtual) index: what the SET signs and what auditors look up."""
    log_id: bytes
    body: bytes
    """The raw canonicalized body: hashed as-is for the Merkle leaf, never re-serialized."""
    kind: str | None = None
    """Kind and version the container declares (bundles); None means the body alone says."""
    version: str | None = None
    integrated_time: int | None = None
    signed_entry_timestamp: bytes | None = None
    inclusion_proof: InclusionProof | None = None
    uuid: str | None = None

    @cached_property
    def leaf_hash(self) -> bytes:
        return merkle.leaf_hash(self.body)

    @property
    def integrated_datetime(self) -> datetime | None:
        """The *claimed* integrated time (aware UTC). A signing time only after :func:`verify_set`."""
        return _utc(self.integrated_time) if self.integrated_time else None

    @cached_property
    def body_json(self) -> Mapping[str, Any]:
        """The body parsed once (consistency checks read it several times)."""
        try:
            parsed = json.loads(self.body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise _fail("log entry body is not valid JSON") from exc
        return _obj(parsed, "log entry body")

    @classmethod
    def from_bundle(cls, data: object) -> TlogEntry:
        """Parse a Sigstore bundle ``verificationMaterial.tlogEntries[]`` item (protobuf JSON)."""
        obj = _obj(data, "tlog entry")
        kind_version = _obj(obj.get("kindVersion"), "tlog entry kindVersion")
        promise = obj.get("inclusionPromise")
        set_bytes = None
        if promise is not None:
            set_bytes = _b64(_obj(promise, "inclusionPromise").get("signedEntryTimestamp"),
                             "inclusionPromise.signedEntryTimestamp")
        proof = None
        if obj.get("inclusionProof") is not None:
            raw = _obj(obj["inclusionProof"], "inclusionProof")
            checkpoint = raw.get("checkpoint")
            envelope = (_obj(checkpoint, "inclusionProof.checkpoint").get("envelope")
                        if checkpoint is not None else None)
            proof = _proof(raw, _b64, envelope)
        return cls(
            log_index=_int(obj.get("logIndex"), "tlog entry logIndex"),
            log_id=_b64(_obj(obj.get("logId"), "tlog entry logId").get("keyId"), "logId.keyId"),
            body=_b64(obj.get("canonicalizedBody"), "canonicalizedBody"),
            kind=_str(kind_version.get("kind"), "kindVersion.kind"),
            version=_str(kind_version.get("version"), "kindVersion.version"),
            integrated_time=_int(obj.get("integratedTime"), "integratedTime", optional=True) or None,
            signed_entry_timestamp=set_bytes,
            inclusion_proof=proof,
        )

    @classmethod
    def from_rekor_response(cls, data: object, uuid: str | None = None) -> TlogEntry:
        """Parse a Rekor v1 API entry: ``{uuid: {...}}`` or the inner object with ``uuid`` given.

        The UUID is checked against the body (it ends with the leaf hash), as cosign does.
        """
        obj = _obj(data, "Rekor response")
        if "body" not in obj and len(obj) == 1:
            uuid, inner = next(iter(obj.items()))
            obj = _obj(inner, "Rekor response entry")
        verification = _obj(obj.get("verification") or {}, "Rekor response verification")
        set_value = verification.get("signedEntryTimestamp")
        proof = None
        if verification.get("inclusionProof") is not None:
            raw = _obj(verification["inclusionProof"], "verification.inclusionProof")
            proof = _proof(raw, _hex, raw.get("checkpoint"))
        entry = cls(
            log_index=_int(obj.get("logIndex"), "logIndex"),
            log_id=_hex(obj.get("logID"), "logID"),
            body=_b64(obj.get("body"), "body"),
            integrated_time=_int(obj.get("integratedTime"), "integratedTime", optional=True) or None,
            signed_entry_timestamp=_b64(set_value, "signedEntryTimestamp") if set_value is not None else None,
            inclusion_proof=proof,
            uuid=uuid,
        )
        if uuid is not None:
            uuid_text = _str(uuid, "entry UUID").lower()
            if len(uuid_text) not in (64, 80) or not uuid_text.endswith(entry.leaf_hash.hex()):
                raise _fail(f"entry UUID {uuid_text} does not match the entry body")
        return entry

    @classmethod
    def from_cosign_bundle(cls, annotation: str | bytes | Mapping[str, Any]) -> TlogEntry:
        """Parse cosign's ``dev.sigstore.cosign/bundle`` annotation (SET and payload, no proof)."""
        if isinstance(annotation, str | bytes):
            try:
                annotation = json.loads(annotation)
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                raise _fail("cosign bundle annotation is not valid JSON") from exc
        obj = _obj(annotation, "cosign bundle annotation")
        payload = _obj(obj.get("Payload"), "cosign bundle Payload")
        return cls(
            log_index=_int(payload.get("logIndex"), "Payload.logIndex"),
            log_id=_hex(payload.get("logID"), "Payload.logID"),
            body=_b64(payload.get("body"), "Payload.body"),
            integrated_time=_int(payload.get("integratedTime"), "Payload.integratedTime"),
            signed_entry_timestamp=_b64(obj.get("SignedEntryTimestamp"), "SignedEntryTimestamp"),
        )


def _proof(raw: Mapping[str, Any], decode: Callable[[object, str], bytes], checkpoint: object
           ) -> InclusionProof:
    """Bundles encode hashes in base64, the Rekor API in hex; the shape is otherwise the same."""
    hashes = raw.get("hashes")
    if hashes is None:
        hashes = []  # a proof in a one-leaf tree has no hashes, and protobuf JSON omits empty lists
    if not isinstance(hashes, list):
        raise _fail("inclusionProof.hashes is not a list")
    return InclusionProof(
        log_index=_int(raw.get("logIndex"), "inclusionProof.logIndex"),
        tree_size=_int(raw.get("treeSize"), "inclusionProof.treeSize"),
        root_hash=decode(raw.get("rootHash"), "inclusionProof.rootHash"),
        hashes=tuple(decode(item, f"inclusionProof.hashes[{i}]") for i, item in enumerate(hashes)),
        checkpoint=_str(checkpoint, "inclusionProof.checkpoint") if checkpoint is not None else None,
    )


# -- results ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TlogVerification:
    """What a verified entry established. ``integrated_time`` is set only when the SET verified."""

    entry: TlogEntry
    log: TransparencyLog
    set_verified: bool
    checkpoint: Checkpoint | None
    integrated_time: datetime | None

    @property
    def inclusion_verified(self) -> bool:
        """True when an inclusion proof led to a root the log signed in a checkpoint."""
        return self.checkpoint is not None


# -- SET and inclusion -----------------------------------------------------------------------------

def _logs_for(entry: TlogEntry, trusted_root: TrustedRoot, step: str) -> list[TransparencyLog]:
    logs = trusted_root.tlogs_for(entry.log_id)
    if not logs:
        raise VerificationError(
            f"log entry is from a log the trust root does not know (log ID {entry.log_id.hex()})", step=step
        )
    return logs


def verify_set(entry: TlogEntry, trusted_root: TrustedRoot) -> TransparencyLog:
    """Verify the signed entry timestamp; returns the log whose key, valid then, signed it."""
    if entry.signed_entry_timestamp is None:
        raise VerificationError("log entry has no signed entry timestamp", step=STEP_TLOG)
    if entry.integrated_time is None:
        raise VerificationError("log entry has a SET but no integrated time", step=STEP_TLOG)
    logs = _logs_for(entry, trusted_root, STEP_TLOG)
    when = _utc(entry.integrated_time)
    valid = [log for log in logs if log.valid_for.contains(when)]
    if not valid:
        windows = ", ".join(log.valid_for.describe() for log in logs)
        raise VerificationError(
            f"the log key was not valid at the integrated time {when.isoformat()} (valid {windows})",
            step=STEP_TLOG,
        )
    # Exactly these four keys, JCS-canonical; logIndex is the global index, logID lowercase hex.
    try:
        signed = rfc8785.dumps({
            "body": base64.b64encode(entry.body).decode(),
            "integratedTime": entry.integrated_time,
            "logID": entry.log_id.hex(),
            "logIndex": entry.log_index,
        })
    except rfc8785.CanonicalizationError as exc:
        raise VerificationError(f"log entry cannot be canonicalized: {exc}", step=STEP_TLOG) from exc
    first_error: VerificationError | None = None
    for log in valid:
        try:
            verify_signature(log.key, entry.signed_entry_timestamp, signed, hash_algorithm=hashes.SHA256(),
                             step=STEP_TLOG, what="signed entry timestamp")
            return log
        except VerificationError as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def _verify_proof(
    entry: TlogEntry, trusted_root: TrustedRoot, *, require_checkpoint: bool, when: datetime | None
) -> tuple[TransparencyLog, Checkpoint | None]:
    proof = entry.inclusion_proof
    if proof is None:
        raise VerificationError("log entry has no inclusion proof", step=STEP_PROOF)
    logs = _logs_for(entry, trusted_root, STEP_PROOF)
    if when is not None:
        logs = [log for log in logs if log.valid_for.contains(when)]
        if not logs:
            raise VerificationError(f"the log key was not valid at {when.isoformat()}", step=STEP_PROOF)
    root = merkle.root_from_inclusion_proof(entry.leaf_hash, proof.log_index, proof.tree_size, proof.hashes)
    if root != proof.root_hash:
        raise VerificationError(
            f"inclusion proof leads to root {root.hex()}, not to its stated root {proof.root_hash.hex()}",
            step=STEP_PROOF,
        )
    if proof.checkpoint is None:
        if require_checkpoint:
            raise VerificationError("inclusion proof has no signed checkpoint", step="checkpoint")
        return logs[0], None
    checkpoint, log = verify_checkpoint_for_root(proof.checkpoint, logs, proof.tree_size, root)
    # Rekor v1 proofs use the shard-local index; C2SP logs (v2) have one tree, so both must agree.
    if not checkpoint.is_rekor_v1 and proof.log_index != entry.log_index:
        raise VerificationError(
            f"inclusion proof is for index {proof.log_index}, the entry says {entry.log_index}",
            step=STEP_PROOF,
        )
    return log, checkpoint


def verify_inclusion(
    entry: TlogEntry, trusted_root: TrustedRoot, *, when: datetime | None = None
) -> TransparencyLog:
    """Verify the inclusion proof and its signed checkpoint; returns the log that signed it.

    ``when`` (e.g. a verified RFC 3161 time for Rekor v2) additionally requires the log key to be
    valid at that instant.
    """
    log, _ = _verify_proof(entry, trusted_root, require_checkpoint=True, when=when)
    return log


def verify_entry(
    entry: TlogEntry,
    trusted_root: TrustedRoot,
    content: SignedContent,
    *,
    require_set: bool = False,
    require_inclusion_proof: bool = False,
) -> TlogVerification:
    """Run every check the entry allows: body consistency, SET, inclusion proof + checkpoint.

    What is present is verified (a bad SET fails even when not required); at least one of SET or
    checkpointed proof must verify. A proof without a checkpoint (bundle v0.1) is checked for
    consistency but proves nothing, so it only passes when ``require_inclusion_proof`` is off.
    """
    check_body(entry, content)
    set_log = None
    if require_set or entry.signed_entry_timestamp is not None:
        set_log = verify_set(entry, trusted_root)
    proof_log, checkpoint = None, None
    if require_inclusion_proof or entry.inclusion_proof is not None:
        proof_log, checkpoint = _verify_proof(entry, trusted_root, require_checkpoint=require_inclusion_proof,
                                              when=None)
    log = set_log or (proof_log if checkpoint is not None else None)
    if log is None:
        raise VerificationError("log entry has neither a signed entry timestamp nor a signed inclusion proof",
                                step=STEP_TLOG)
    integrated = _utc(entry.integrated_time) if set_log is not None and entry.integrated_time else None
    return TlogVerification(entry=entry, log=log, set_verified=set_log is not None, checkpoint=checkpoint,
                            integrated_time=integrated)


__all__ = [
    "STEP_ENTRY", "STEP_PROOF", "STEP_TLOG", "InclusionProof", "TlogEntry", "TlogVerification",
    "check_body", "verify_entry", "verify_inclusion", "verify_set",
]
