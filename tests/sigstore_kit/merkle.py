"""RFC 6962 / RFC 9162 Merkle tree hashing and inclusion proofs for the kit's in-memory logs."""

from __future__ import annotations

import hashlib


def leaf_hash(body: bytes) -> bytes:
    """``H(0x00 ‖ body)``: the leaf hash of a log entry's raw body bytes."""
    return hashlib.sha256(b"\x00" + body).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only list of leaf hashes with tree heads and inclusion paths at any past size."""

    def __init__(self) -> None:
        self._leaves: list[bytes] = []
        self._cache: dict[tuple[int, int], bytes] = {}

    def __len__(self) -> int:
        return len(self._leaves)

    def append(self, leaf: bytes) -> int:
        """Add a leaf hash; returns its index."""
        self._leaves.append(leaf)
        return len(self._leaves) - 1

    def leaf(self, index: int) -> bytes:
        return self._leaves[index]

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (all by default)."""
        size = len(self._leaves) if size is None else size
        if size == 0:
            return hashlib.sha256(b"").digest()
        return self._subtree(0, size)

    def inclusion_path(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 6962 PATH(index, D[0:size]): sibling hashes ordered from the leaf up to the root."""
        size = len(self._leaves) if size is None else size
        if not 0 <= index < size <= len(self._leaves):
            raise IndexError(f"leaf {index} is not in a tree of size {size}")
        return self._path(index, 0, size)

    def _path(self, index: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = _split(n)
        if index < k:
            return [*self._path(index, start, start + k), self._subtree(start + k, end)]
        return [*self._path(index - k, start + k, end), self._subtree(start, start + k)]

    def _subtree(self, start: int, end: int) -> bytes:
        # Subtrees of an append-only log never change, so memoising keeps proofs cheap as logs grow.
        cached = self._cache.get((start, end))
        if cached is not None:
            return cached
        if end - start == 1:
            value = self._leaves[start]
        else:
            k = _split(end - start)
            value = node_hash(self._subtree(start, start + k), self._subtree(start + k, end))
        self._cache[(start, end)] = value
        return value
