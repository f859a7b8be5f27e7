"""RFC 6962 / RFC 9162 Merkle tree hashing and inclusion proofs, as Rekor (v1 and v2) uses them.

Leaves and interior nodes are hashed with different one-byte prefixes so that a leaf can never be
passed off as an interior node (second-preimage protection). Leaves are the *raw* log entry body
bytes: old Rekor bodies are not canonical JSON, so re-serializing would change the hash.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from webhook.errors import VerificationError

HASH_SIZE = 32
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_STEP = "inclusion proof"


def leaf_hash(body: bytes) -> bytes:
    """``SHA-256(0x00 ‖ body)``: the Merkle leaf of a log entry body."""
    return hashlib.sha256(_LEAF_PREFIX + body).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 ‖ left ‖ right)``: an interior node."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def root_from_inclusion_proof(
    leaf: bytes, index: int, tree_size: int, proof_hashes: Sequence[bytes]
) -> bytes:
    """The tree root implied by ``leaf`` at ``index`` in a tree of ``tree_size`` and its audit path.

    ``proof_hashes`` are ordered from the leaf towards the root. Raises VerificationError when the
    index is outside the tree or the proof does not have exactly the length the tree shape needs
    (a longer or shorter proof would let a forger pick a different path).
    """
    if tree_size <= 0:
        raise VerificationError(f"tree size {tree_size} is not positive", step=_STEP)
    if not 0 <= index < tree_size:
        raise VerificationError(f"leaf index {index} is outside a tree of size {tree_size}", step=_STEP)
    if len(leaf) != HASH_SIZE:
        raise VerificationError(f"leaf hash is {len(leaf)} bytes, expected {HASH_SIZE}", step=_STEP)
    # The path splits in two: `inner` levels where the leaf's subtree and its sibling are both
    # complete, then `border` levels along the right edge of the tree where every sibling we
    # still need lies to the left (one per set bit of the remaining index).
    inner = (index ^ (tree_size - 1)).bit_length()
    border = (index >> inner).bit_count()
    if len(proof_hashes) != inner + border:
        raise VerificationError(
            f"proof has {len(proof_hashes)} hashes, a leaf at index {index} of a tree of size "
            f"{tree_size} needs {inner + border}",
            step=_STEP,
        )
    for position, sibling in enumerate(proof_hashes):
        if len(sibling) != HASH_SIZE:
            raise VerificationError(
                f"proof hash {position} is {len(sibling)} bytes, expected {HASH_SIZE}", step=_STEP
            )
    node = leaf
    for level in range(inner):
        sibling = proof_hashes[level]
        node = node_hash(node, sibling) if (index >> level) & 1 == 0 else node_hash(sibling, node)
    for sibling in proof_hashes[inner:]:
        node = node_hash(sibling, node)
    return node


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof_hashes: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf`` is at ``index`` of the tree of ``tree_size`` whose root is ``root``."""
    computed = root_from_inclusion_proof(leaf, index, tree_size, proof_hashes)
    if not hmac.compare_digest(computed, root):
        raise VerificationError(
            f"computed root {computed.hex()} does not match the expected root {root.hex()}", step=_STEP
        )
