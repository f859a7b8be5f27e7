"""Signed checkpoints (C2SP signed notes) of Rekor v1 and Rekor v2 logs.

A checkpoint commits a log to a tree size and root hash. The envelope is::

    <origin>\\n<tree size>\\n<b64 root hash>\\n[<extension line>\\n...]\\n
    — <signer name> <b64(4-byte key hint ‖ signature)>\\n   (one or more)

The signed message is the note text up to and including the newline before the blank line.

Which signature line counts: witnesses may add cosignatures and logs may rotate keys, so a note
carries lines we cannot (or need not) check. We look only for lines whose name *and* key hint say
"this log"; every such line must verify with the log key and at least one must exist. Lines by
anyone else are ignored, in any order. The name is part of the rule because the hint is only four
bytes: on its own it does not identify a signer.

* Rekor v1: origin ``<host> - <tree ID>``, signer name ``<host>``, ECDSA, hint = SHA-256(SPKI)[:4].
* Rekor v2: origin = signer name = host of the log's ``baseUrl``, Ed25519, hint = C2SP key ID[:4].
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from webhook.errors import VerificationError
from webhook.verify.keys import PublicKey, spki_der, verify_signature
from webhook.verify.trustroot import TransparencyLog

_logger = logging.getLogger(__name__)

_STEP = "checkpoint"
_SIGNATURE_PREFIX = "\u2014 "  # EM DASH + space, as C2SP signed-note mandates
_KEY_HINT_SIZE = 4
_MAX_SIGNATURES = 100  # C2SP lets verifiers refuse notes with more; keeps hostile notes cheap
_MAX_NOTE_SIZE = 1 << 16
_V1_ORIGIN = re.compile(r"^(?P<host>\S+) - (?P<tree>\d+)$")
_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)$")
_CACHE_SIZE = 256


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: who claims to have signed, which key (hint) and the signature bytes."""

    name: str
    key_hint: bytes
    signature: bytes


@dataclass(frozen=True)
class Checkpoint:
    """A parsed checkpoint. Parsing alone proves nothing; use :func:`verify_checkpoint`."""

    origin: str
    tree_size: int
    root_hash: bytes
    extensions: tuple[str, ...]
    signatures: tuple[NoteSignature, ...]
    signed_text: bytes
    """The exact bytes the log signed (note text including its final newline)."""

    @property
    def is_rekor_v1(self) -> bool:
        """Rekor v1 origins carry the tree ID (``rekor.sigstore.dev - 2605736670972794746``)."""
        return _V1_ORIGIN.match(self.origin) is not None


def parse_checkpoint(envelope: str) -> Checkpoint:
    """Parse a signed note into a checkpoint; raises VerificationError on any malformed part."""
    if not isinstance(envelope, str) or not envelope:
        raise VerificationError("checkpoint is missing", step=_STEP)
    if len(envelope) > _MAX_NOTE_SIZE:
        raise VerificationError("checkpoint is too large", step=_STEP)
    text, sep, signature_block = envelope.partition("\n\n")
    if not sep:
        raise VerificationError("checkpoint has no blank line before its signatures", step=_STEP)
    lines = text.split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise VerificationError(
            "checkpoint must start with an origin line, a tree size line and a root hash line", step=_STEP
        )
    origin, size_line, root_line, *extensions = lines
    if _DECIMAL.match(size_line) is None:
        raise VerificationError(f"checkpoint tree size {size_line[:40]!r} is not a number", step=_STEP)
    try:
        root_hash = base64.b64decode(root_line, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError("checkpoint root hash is not valid base64", step=_STEP) from exc
    if len(root_hash) != hashlib.sha256().digest_size:
        raise VerificationError(f"checkpoint root hash is {len(root_hash)} bytes, expected 32", step=_STEP)
    return Checkpoint(
        origin=origin,
        tree_size=int(size_line),
        root_hash=root_hash,
        extensions=tuple(extensions),
        signatures=_parse_signatures(signature_block),
        signed_text=(text + "\n").encode(),
    )


def _parse_signatures(block: str) -> tuple[NoteSignature, ...]:
    if not block:
        raise VerificationError("checkpoint carries no signature lines", step=_STEP)
    if not block.endswith("\n"):
        raise VerificationError("checkpoint does not end with a newline", step=_STEP)
    lines = block[:-1].split("\n")
    if len(lines) > _MAX_SIGNATURES:
        raise VerificationError(f"checkpoint carries more than {_MAX_SIGNATURES} signatures", step=_STEP)
    signatures = []
    for number, line in enumerate(lines, start=1):
        what = f"checkpoint signature line {number}"
        if not line.startswith(_SIGNATURE_PREFIX):
            raise VerificationError(f"{what} does not start with '— '", step=_STEP)
        name, space, encoded = line[len(_SIGNATURE_PREFIX):].partition(" ")
        if not name or not space or not encoded or " " in encoded:
            raise VerificationError(f"{what} is not '— <name> <base64>'", step=_STEP)
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise VerificationError(f"{what} is not valid base64", step=_STEP) from exc
        if len(raw) <= _KEY_HINT_SIZE:
            raise VerificationError(f"{what} is too short", step=_STEP)
        hint, signature = raw[:_KEY_HINT_SIZE], raw[_KEY_HINT_SIZE:]
        signatures.append(NoteSignature(name=name, key_hint=hint, signature=signature))
    return tuple(signatures)


def c2sp_key_id(name: str, key: PublicKey) -> bytes:
    """The C2SP signed-note key ID of ``key`` under signer ``name`` (Rekor v2 log IDs are this).

    ECDSA keys are identified by SHA-256 of their SPKI, as Rekor v1 always did.
    """
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return hashlib.sha256(name.encode() + b"\n\x01" + raw).digest()
    if isinstance(key, rsa.RSAPublicKey):
        return hashlib.sha256(name.encode() + b"\n\xffPKIX-RSA-PKCS#1v1.5" + spki_der(key)).digest()
    return hashlib.sha256(spki_der(key)).digest()


def _expected_signer(checkpoint: Checkpoint, log: TransparencyLog) -> str:
    """The signer name a checkpoint of ``log`` must carry, after checking its origin."""
    v1 = _V1_ORIGIN.match(checkpoint.origin)
    if v1 is not None:
        # Rekor v1 takes the origin host from a server flag, not from its URL, so a private
        # deployment may differ from baseUrl; the log key still has to sign the note.
        host = v1.group("host")
        if host != log.origin_host:
            _logger.debug("Rekor v1 checkpoint origin %r differs from log host %r", host, log.origin_host)
        return host
    if checkpoint.origin != log.origin_host:
        raise VerificationError(
            f"checkpoint origin {checkpoint.origin!r} is not the log's origin {log.origin_host!r}", step=_STEP
        )
    return checkpoint.origin


def _log_key_hints(log: TransparencyLog, name: str) -> set[bytes]:
    hints = {key_id[:_KEY_HINT_SIZE] for key_id in log.key_ids}
    hints.add(c2sp_key_id(name, log.key)[:_KEY_HINT_SIZE])
    return hints


def _verify_against_log(checkpoint: Checkpoint, log: TransparencyLog) -> None:
    signer = _expected_signer(checkpoint, log)
    hints = _log_key_hints(log, signer)
    by_log = [s for s in checkpoint.signatures if s.name == signer and s.key_hint in hints]
    if not by_log:
        raise VerificationError(
            f"checkpoint carries no signature by the log {signer!r} with key hint "
            f"{' or '.join(sorted(h.hex() for h in hints))}",
            step=_STEP,
        )
    for note_signature in by_log:
        # A line that names this log and its key but does not verify is a forgery, not a
        # witness we do not know: refuse the note rather than skip the line.
        verify_signature(
            log.key,
            note_signature.signature,
            checkpoint.signed_text,
            step=_STEP,
            what=f"checkpoint signature by {signer!r}",
        )


class _VerifiedNotes:
    """A small LRU of notes already verified against a given log key (verdicts, not inputs)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[str, bytes], Checkpoint] = OrderedDict()
        self._lock = Lock()

    def get(self, key: tuple[str, bytes]) -> Checkpoint | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: tuple[str, bytes], checkpoint: Checkpoint) -> None:
        with self._lock:
            self._entries[key] = checkpoint
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


_verified_notes = _VerifiedNotes(_CACHE_SIZE)


def _log_identity(log: TransparencyLog) -> bytes:
    # Everything the verdict depends on: the key, the host (v2 origin) and the IDs (hints).
    ids = b"".join(sorted(log.key_ids))
    return b"\0".join((spki_der(log.key), log.origin_host.encode(), ids))


def verify_checkpoint(envelope: str, log: TransparencyLog) -> Checkpoint:
    """Parse ``envelope`` and check that ``log`` signed it; returns the verified checkpoint."""
    cache_key = (envelope, _log_identity(log))
    cached = _verified_notes.get(cache_key)
    if cached is not None:
        return cached
    checkpoint = parse_checkpoint(envelope)
    _verify_against_log(checkpoint, log)
    _verified_notes.put(cache_key, checkpoint)
    return checkpoint


def check_checkpoint_covers(checkpoint: Checkpoint, tree_size: int, root_hash: bytes) -> None:
    """The verified checkpoint must commit to exactly the tree the inclusion proof was computed for."""
    if checkpoint.tree_size != tree_size:
        raise VerificationError(
            f"checkpoint is for tree size {checkpoint.tree_size}, the inclusion proof for {tree_size}",
            step=_STEP,
        )
    if not hmac.compare_digest(checkpoint.root_hash, root_hash):
        raise VerificationError(
            f"checkpoint root hash {checkpoint.root_hash.hex()} is not the computed root {root_hash.hex()}",
            step=_STEP,
        )


def verify_checkpoint_for_root(
    envelope: str, logs: list[TransparencyLog], tree_size: int, root_hash: bytes
) -> tuple[Checkpoint, TransparencyLog]:
    """Verify ``envelope`` against the first of ``logs`` that signed it, then bind it to the tree.

    Several trust-root entries may share a log ID (key rotation keeps old instances), so each
    candidate is tried; the error of the first one is reported when none signed it.
    """
    if not logs:
        raise VerificationError("no transparency log in the trust root to verify the checkpoint", step=_STEP)
    first_error: VerificationError | None = None
    for log in logs:
        try:
            checkpoint = verify_checkpoint(envelope, log)
        except VerificationError as exc:
            first_error = first_error or exc
            continue
        check_checkpoint_covers(checkpoint, tree_size, root_hash)
        return checkpoint, log
    assert first_error is not None
    raise first_error
