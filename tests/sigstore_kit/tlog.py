"""In-memory transparency logs: a Rekor v1 (ECDSA, SETs, sharded indices) and a Rekor v2 (Ed25519, C2SP) log.

Both keep a real RFC 6962 Merkle tree so inclusion proofs and signed checkpoints (signed-note format,
SIGSTORE.md §5.4) recompute exactly as a verifier expects.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import rfc8785
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tests.sigstore_kit.keys import ValidFor, b64, key_details, new_p256, sha256, spki_der
from tests.sigstore_kit.merkle import MerkleTree, leaf_hash

EM_DASH = "\u2014"
_DEFAULT_START = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a signed note: ``— <name> b64(key hint ‖ signature)``."""

    name: str
    key_hint: bytes
    signature: bytes

    def line(self) -> str:
        return f"{EM_DASH} {self.name} {b64(self.key_hint + self.signature)}\n"


def checkpoint_body(origin: str, tree_size: int, root_hash: bytes, extensions: Sequence[str] = ()) -> str:
    """The signed text of a checkpoint: origin, size, b64 root, optional extension lines."""
    return f"{origin}\n{tree_size}\n{b64(root_hash)}\n" + "".join(f"{line}\n" for line in extensions)


def signed_note(body: str, signatures: Sequence[NoteSignature]) -> str:
    """A signed note: text, blank line, one line per signature."""
    return body + "\n" + "".join(sig.line() for sig in signatures)


@dataclass(frozen=True)
class LogEntry:
    """A logged entry: ``log_index`` is the global index, ``tree_index`` the leaf position in the tree."""

    log_index: int
    tree_index: int
    body: bytes
    log_id: bytes
    integrated_time: int | None = None

    @property
    def leaf_hash(self) -> bytes:
        return leaf_hash(self.body)


@dataclass(frozen=True)
class InclusionProof:
    """Proof that an entry is in the tree of ``tree_size``/``root_hash``, and the checkpoint signing it."""

    log_index: int
    tree_size: int
    root_hash: bytes
    hashes: tuple[bytes, ...]
    checkpoint: str


class _MerkleLog:
    """What both log versions share: the tree, entries and proofs."""

    origin: str

    def __init__(self) -> None:
        self.tree = MerkleTree()
        self.entries: list[LogEntry] = []

    @property
    def log_id(self) -> bytes:
        raise NotImplementedError

    def _append(self, body: bytes, integrated_time: int | None, index_offset: int) -> LogEntry:
        tree_index = self.tree.append(leaf_hash(body))
        entry = LogEntry(tree_index + index_offset, tree_index, body, self.log_id, integrated_time)
        self.entries.append(entry)
        return entry

    def checkpoint(self, tree_size: int | None = None, *, extensions: Sequence[str] = ()) -> str:
        """The signed checkpoint for the tree at ``tree_size`` (current size by default)."""
        size = len(self.tree) if tree_size is None else tree_size
        body = checkpoint_body(self.origin, size, self.tree.root(size), extensions)
        return signed_note(body, self.sign_note(body))

    def sign_note(self, body: str) -> list[NoteSignature]:
        raise NotImplementedError

    def inclusion_proof(self, entry: LogEntry, tree_size: int | None = None) -> InclusionProof:
        """Inclusion proof of ``entry`` against the tree at ``tree_size`` (current size by default)."""
        size = len(self.tree) if tree_size is None else tree_size
        return InclusionProof(
            log_index=entry.tree_index,
            tree_size=size,
            root_hash=self.tree.root(size),
            hashes=tuple(self.tree.inclusion_path(entry.tree_index, size)),
            checkpoint=self.checkpoint(size),
        )


class RekorV1Log(_MerkleLog):
    """A Rekor v1 shard: ECDSA P-256 key, log ID = SHA-256(SPKI), origin ``<name> - <treeID>``.

    ``index_offset`` makes global log indices differ from tree (shard) indices, as in production,
    so a verifier that mixes them up fails.
    """

    def __init__(
        self,
        name: str = "rekor.example",
        *,
        key: ec.EllipticCurvePrivateKey | None = None,
        tree_id: int | None = None,
        index_offset: int = 0,
        valid_for: ValidFor | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.key = key or new_p256()
        self.tree_id = tree_id if tree_id is not None else secrets.randbits(62) + 1
        self.index_offset = index_offset
        self.valid_for = valid_for or ValidFor(_DEFAULT_START)
        self.origin = f"{name} - {self.tree_id}"
        self.base_url = f"https://{name}"

    @property
    def log_id(self) -> bytes:
        return sha256(spki_der(self.key.public_key()))

    def add(self, body: bytes, integrated_time: int | datetime) -> LogEntry:
        """Log ``body`` (the canonicalized entry body) at ``integrated_time`` (unix seconds)."""
        when = int(integrated_time.timestamp()) if isinstance(integrated_time, datetime) else integrated_time
        return self._append(body, when, self.index_offset)

    def sign_note(self, body: str, *, key: ec.EllipticCurvePrivateKey | None = None) -> list[NoteSignature]:
        signature = (key or self.key).sign(body.encode(), ec.ECDSA(hashes.SHA256()))
        return [NoteSignature(self.name, self.log_id[:4], signature)]

    @staticmethod
    def set_payload(entry: LogEntry) -> bytes:
        """The bytes a SET signs: JCS of body (b64), integratedTime, logID (hex), global logIndex."""
        return rfc8785.dumps({
            "body": b64(entry.body),
            "integratedTime": entry.integrated_time,
            "logID": entry.log_id.hex(),
            "logIndex": entry.log_index,
        })

    def signed_entry_timestamp(self, entry: LogEntry, *,
                               key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
        """The SET (inclusion promise) of an entry; ``key`` forges one with another key."""
        return (key or self.key).sign(self.set_payload(entry), ec.ECDSA(hashes.SHA256()))

    def uuid(self, entry: LogEntry) -> str:
        """Entry UUID: 16-hex tree ID followed by the 64-hex leaf hash."""
        return f"{self.tree_id:016x}{entry.leaf_hash.hex()}"

    def api_entry(self, entry: LogEntry, tree_size: int | None = None) -> dict[str, object]:
        """The entry as ``GET /api/v1/log/entries/{uuid}`` returns it (hex hashes, numbers as numbers)."""
        proof = self.inclusion_proof(entry, tree_size)
        return {
            self.uuid(entry): {
                "body": b64(entry.body),
                "integratedTime": entry.integrated_time,
                "logID": entry.log_id.hex(),
                "logIndex": entry.log_index,
                "verification": {
                    "inclusionProof": {
                        "checkpoint": proof.checkpoint,
                        "hashes": [h.hex() for h in proof.hashes],
                        "logIndex": proof.log_index,
                        "rootHash": proof.root_hash.hex(),
                        "treeSize": proof.tree_size,
                    },
                    "signedEntryTimestamp": b64(self.signed_entry_timestamp(entry)),
                },
            }
        }

    def trusted_root_entry(self) -> dict[str, object]:
        """This log as a ``tlogs[]`` element of trusted_root.json."""
        return _tlog_entry(self.base_url, self.key.public_key(), self.valid_for, self.log_id)


def c2sp_ed25519_key_id(origin: str, public_key: ed25519.Ed25519PublicKey, key_type: int = 0x01) -> bytes:
    """C2SP note key ID: SHA-256(name ‖ 0x0A ‖ type ‖ raw key); type 0x01 Ed25519, 0x04 cosignature/v1."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sha256(origin.encode() + b"\n" + bytes([key_type]) + raw)


@dataclass
class Witness:
    """A C2SP tlog-cosignature/v1 witness that co-signs checkpoints."""

    name: str = "witness.example"
    key: ed25519.Ed25519PrivateKey = field(default_factory=ed25519.Ed25519PrivateKey.generate)
    timestamp: int = 1_750_000_000

    def cosign(self, body: str) -> NoteSignature:
        message = f"cosignature/v1\ntime {self.timestamp}\n{body}".encode()
        key_id = c2sp_ed25519_key_id(self.name, self.key.public_key(), 0x04)
        signature = struct.pack(">Q", self.timestamp) + self.key.sign(message)
        return NoteSignature(self.name, key_id[:4], signature)


class RekorV2Log(_MerkleLog):
    """A Rekor v2 (rekor-tiles) log: Ed25519 key, origin = host name, log ID = C2SP key ID, no SETs."""

    def __init__(
        self,
        origin: str = "log2025-test.rekor.example",
        *,
        key: ed25519.Ed25519PrivateKey | None = None,
        witnesses: Sequence[Witness] = (),
        valid_for: ValidFor | None = None,
    ) -> None:
        super().__init__()
        self.origin = origin
        self.key = key or ed25519.Ed25519PrivateKey.generate()
        self.witnesses = list(witnesses)
        self.valid_for = valid_for or ValidFor(_DEFAULT_START)
        self.base_url = f"https://{origin}"

    @property
    def log_id(self) -> bytes:
        return c2sp_ed25519_key_id(self.origin, self.key.public_key())

    def add(self, body: bytes) -> LogEntry:
        """Log ``body``; v2 has no integrated time and one index space."""
        return self._append(body, None, 0)

    def sign_note(self, body: str, *, key: ed25519.Ed25519PrivateKey | None = None) -> list[NoteSignature]:
        own = NoteSignature(self.origin, self.log_id[:4], (key or self.key).sign(body.encode()))
        return [own, *(witness.cosign(body) for witness in self.witnesses)]

    def trusted_root_entry(self) -> dict[str, object]:
        return _tlog_entry(self.base_url, self.key.public_key(), self.valid_for, self.log_id)


def _tlog_entry(base_url: str, public: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey,
                valid_for: ValidFor, log_id: bytes) -> dict[str, object]:
    return {
        "baseUrl": base_url,
        "hashAlgorithm": "SHA2_256",
        "publicKey": {
            "rawBytes": b64(spki_der(public)),
            "keyDetails": key_details(public),
            "validFor": valid_for.to_json(),
        },
        "logId": {"keyId": b64(log_id)},
    }
