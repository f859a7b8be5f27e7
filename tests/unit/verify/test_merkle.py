"""RFC 6962 inclusion proofs, checked against trees built independently in the test."""

from __future__ import annotations

import hashlib

import pytest

from webhook.errors import VerificationError
from webhook.verify.merkle import leaf_hash, node_hash, root_from_inclusion_proof, verify_inclusion


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH from RFC 6962 §2.1, recursively (slow and obviously right)."""
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(reference_root(leaves[:split]), reference_root(leaves[split:]))


def reference_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) from RFC 6962 §2.1.1, ordered leaf to root."""
    if len(leaves) == 1:
        return []
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    if index < split:
        return [*reference_path(index, leaves[:split]), reference_root(leaves[split:])]
    return [*reference_path(index - split, leaves[split:]), reference_root(leaves[:split])]


def make_leaves(size: int) -> list[bytes]:
    return [leaf_hash(f"entry {i}".encode()) for i in range(size)]


def flip(data: bytes, bit: int = 0) -> bytes:
    return bytes([data[0] ^ (1 << bit)]) + data[1:]


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    # RFC 6962 test vector: the hash of the empty leaf.
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    left, right = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    # A leaf whose body is two hashes must not collide with the node over them.
    assert leaf_hash(left + right) != node_hash(left, right)


@pytest.mark.parametrize("size", range(1, 21))
def test_every_index_of_every_tree_verifies(size: int) -> None:
    leaves = make_leaves(size)
    root = reference_root(leaves)
    for index in range(size):
        proof = reference_path(index, leaves)
        assert root_from_inclusion_proof(leaves[index], index, size, proof) == root
        verify_inclusion(leaves[index], index, size, proof, root)


@pytest.mark.parametrize("size", range(2, 21))
def test_tampered_proofs_fail(size: int) -> None:
    leaves = make_leaves(size)
    root = reference_root(leaves)
    for index in range(size):
        proof = reference_path(index, leaves)
        for position in range(len(proof)):
            bad = list(proof)
            bad[position] = flip(bad[position])
            with pytest.raises(VerificationError) as info:
                verify_inclusion(leaves[index], index, size, bad, root)
            assert info.value.step == "inclusion proof"
        # The proof for one leaf does not prove a neighbouring leaf.
        other = (index + 1) % size
        with pytest.raises(VerificationError):
            verify_inclusion(leaves[other], index, size, proof, root)
        with pytest.raises(VerificationError):
            verify_inclusion(leaves[index], index, size, proof, flip(root))


@pytest.mark.parametrize("size", [2, 5, 8, 13])
def test_proof_must_have_the_exact_length(size: int) -> None:
    leaves = make_leaves(size)
    root = reference_root(leaves)
    proof = reference_path(1, leaves)
    with pytest.raises(VerificationError, match="needs"):
        verify_inclusion(leaves[1], 1, size, [*proof, leaves[0]], root)
    with pytest.raises(VerificationError, match="needs"):
        verify_inclusion(leaves[1], 1, size, proof[:-1], root)


def test_proof_for_another_tree_size_fails() -> None:
    # Some sizes share a proof shape (which is why the checkpoint must bind the size); these do not.
    leaves = make_leaves(12)
    proof = reference_path(5, leaves)
    for wrong_size in (6, 7, 20):
        with pytest.raises(VerificationError):
            verify_inclusion(leaves[5], 5, wrong_size, proof, reference_root(leaves))


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 1), (5, 5), (-1, 4), (7, 3)])
def test_index_outside_the_tree_is_rejected(index: int, size: int) -> None:
    with pytest.raises(VerificationError, match=r"outside|not positive"):
        root_from_inclusion_proof(leaf_hash(b"x"), index, size, [])


def test_hashes_of_the_wrong_length_are_rejected() -> None:
    leaves = make_leaves(4)
    proof = reference_path(0, leaves)
    with pytest.raises(VerificationError, match="bytes"):
        root_from_inclusion_proof(leaves[0], 0, 4, [proof[0][:31], proof[1]])
    with pytest.raises(VerificationError, match="bytes"):
        root_from_inclusion_proof(leaves[0][:16], 0, 4, proof)


def test_single_leaf_tree_root_is_the_leaf() -> None:
    leaf = leaf_hash(b"only")
    verify_inclusion(leaf, 0, 1, [], leaf)
