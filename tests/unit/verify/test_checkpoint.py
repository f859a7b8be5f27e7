"""Signed checkpoints: Rekor v1 (ECDSA) and Rekor v2 (Ed25519) notes, witnesses, forgeries."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tests.fixtures_path import shared_fixture
from webhook.errors import VerificationError
from webhook.verify.checkpoint import (
    check_checkpoint_covers,
    parse_checkpoint,
    verify_checkpoint,
    verify_checkpoint_for_root,
)
from webhook.verify.trustroot import TransparencyLog, TrustedRoot

V1_HOST = "rekor.example.test"
V1_ORIGIN = f"{V1_HOST} - 1234567890"
V2_HOST = "log2099-1.rekor.example.test"
ROOT_HASH = hashlib.sha256(b"some tree").digest()
SIZE = 4242

Signer = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def spki(key: Signer) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def v2_key_id(host: str, key: ed25519.Ed25519PrivateKey) -> bytes:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(host.encode() + b"\n\x01" + raw).digest()


def tlog_json(base_url: str, key: Signer, log_id: bytes, details: str) -> dict[str, object]:
    return {
        "baseUrl": base_url,
        "hashAlgorithm": "SHA2_256",
        "publicKey": {
            "rawBytes": base64.b64encode(spki(key)).decode(),
            "keyDetails": details,
            "validFor": {"start": "2020-01-01T00:00:00Z"},
        },
        "logId": {"keyId": base64.b64encode(log_id).decode()},
    }


def trusted_root(*tlogs: dict[str, object]) -> TrustedRoot:
    doc = {
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": list(tlogs),
        "certificateAuthorities": [],
        "ctlogs": [],
        "timestampAuthorities": [],
    }
    return TrustedRoot.from_json(json.dumps(doc))


@pytest.fixture(scope="module")
def v1_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def v2_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def v1_log(v1_key: ec.EllipticCurvePrivateKey) -> TransparencyLog:
    log_id = hashlib.sha256(spki(v1_key)).digest()
    return trusted_root(tlog_json(f"https://{V1_HOST}", v1_key, log_id, "PKIX_ECDSA_P256_SHA_256")).tlogs[0]


@pytest.fixture(scope="module")
def v2_log(v2_key: ed25519.Ed25519PrivateKey) -> TransparencyLog:
    log_id = v2_key_id(V2_HOST, v2_key)
    return trusted_root(tlog_json(f"https://{V2_HOST}", v2_key, log_id, "PKIX_ED25519")).tlogs[0]


def note(origin: str, size: int = SIZE, root: bytes = ROOT_HASH, extensions: tuple[str, ...] = ()) -> str:
    return "".join(f"{line}\n" for line in (origin, str(size), base64.b64encode(root).decode(), *extensions))


def sign(text: str, key: Signer) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(text.encode())
    return key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))


def line(name: str, hint: bytes, signature: bytes) -> str:
    return f"\u2014 {name} {base64.b64encode(hint + signature).decode()}\n"


def envelope(text: str, *lines: str) -> str:
    return text + "\n" + "".join(lines)


def v1_line(text: str, key: ec.EllipticCurvePrivateKey, name: str = V1_HOST) -> str:
    return line(name, hashlib.sha256(spki(key)).digest()[:4], sign(text, key))


def v2_line(text: str, key: ed25519.Ed25519PrivateKey, name: str = V2_HOST) -> str:
    return line(name, v2_key_id(V2_HOST, key)[:4], sign(text, key))


def witness_line(text: str) -> str:
    witness = ed25519.Ed25519PrivateKey.generate()
    return line("witness.example/w1", b"\x12\x34\x56\x78", b"\0" * 8 + sign(text, witness))


# -- happy paths -----------------------------------------------------------------------------------


def test_rekor_v1_checkpoint_verifies(v1_key: ec.EllipticCurvePrivateKey, v1_log: TransparencyLog) -> None:
    text = note(V1_ORIGIN, extensions=("Timestamp: 1689177396617352539",))
    checkpoint = verify_checkpoint(envelope(text, v1_line(text, v1_key)), v1_log)
    assert (checkpoint.origin, checkpoint.tree_size, checkpoint.root_hash) == (V1_ORIGIN, SIZE, ROOT_HASH)
    assert checkpoint.extensions == ("Timestamp: 1689177396617352539",)
    assert checkpoint.signed_text == text.encode()
    assert checkpoint.is_rekor_v1


def test_rekor_v2_checkpoint_verifies(v2_key: ed25519.Ed25519PrivateKey, v2_log: TransparencyLog) -> None:
    text = note(V2_HOST)
    checkpoint = verify_checkpoint(envelope(text, v2_line(text, v2_key)), v2_log)
    assert checkpoint.tree_size == SIZE and not checkpoint.is_rekor_v1


def test_witness_cosignatures_are_ignored_in_any_order(
    v2_key: ed25519.Ed25519PrivateKey, v2_log: TransparencyLog
) -> None:
    text = note(V2_HOST)
    verify_checkpoint(envelope(text, witness_line(text), v2_line(text, v2_key), witness_line(text)), v2_log)


def test_other_key_of_the_same_origin_is_ignored(
    v2_key: ed25519.Ed25519PrivateKey, v2_log: TransparencyLog
) -> None:
    text = note(V2_HOST)
    rotated = ed25519.Ed25519PrivateKey.generate()
    verify_checkpoint(envelope(text, v2_line(text, rotated), v2_line(text, v2_key)), v2_log)


# -- who signed ------------------------------------------------------------------------------------


def test_only_witness_signatures_fail(v2_log: TransparencyLog) -> None:
    text = note(V2_HOST)
    with pytest.raises(VerificationError, match="no signature by the log") as info:
        verify_checkpoint(envelope(text, witness_line(text)), v2_log)
    assert info.value.step == "checkpoint"


def test_wrong_key_hint_fails(v1_key: ec.EllipticCurvePrivateKey, v1_log: TransparencyLog) -> None:
    text = note(V1_ORIGIN)
    with pytest.raises(VerificationError, match="no signature by the log"):
        verify_checkpoint(envelope(text, line(V1_HOST, b"\xc4\xd2\x3d\x6a", sign(text, v1_key))), v1_log)


def test_wrong_signer_name_fails(v2_key: ed25519.Ed25519PrivateKey, v2_log: TransparencyLog) -> None:
    text = note(V2_HOST)
    with pytest.raises(VerificationError, match="no signature by the log"):
        verify_checkpoint(envelope(text, v2_line(text, v2_key, name="other.example.test")), v2_log)


def test_v2_origin_must_be_the_log_host(v2_key: ed25519.Ed25519PrivateKey, v2_log: TransparencyLog) -> None:
    text = note("log2099-1.rekor.attacker.test")
    signed = envelope(
        text, line("log2099-1.rekor.attacker.test", v2_key_id(V2_HOST, v2_key)[:4], sign(text, v2_key))
    )
    with pytest.raises(VerificationError, match="origin"):
        verify_checkpoint(signed, v2_log)


def test_forged_line_with_the_log_name_and_hint_fails_even_beside_a_good_one(
    v1_key: ec.EllipticCurvePrivateKey, v1_log: TransparencyLog
) -> None:
    text = note(V1_ORIGIN)
    forger = ec.generate_private_key(ec.SECP256R1())
    forged = line(V1_HOST, hashlib.sha256(spki(v1_key)).digest()[:4], sign(text, forger))
    with pytest.raises(VerificationError, match="does not verify"):
        verify_checkpoint(envelope(text, forged), v1_log)
    with pytest.raises(VerificationError, match="does not verify"):
        verify_checkpoint(envelope(text, v1_line(text, v1_key), forged), v1_log)


def test_signature_over_other_content_fails(
    v2_key: ed25519.Ed25519PrivateKey, v2_log: TransparencyLog
) -> None:
    signed = envelope(note(V2_HOST, size=SIZE + 1), v2_line(note(V2_HOST), v2_key))
    with pytest.raises(VerificationError, match="does not verify"):
        verify_checkpoint(signed, v2_log)


def test_a_cached_verdict_does_not_carry_over_to_another_log(
    v2_key: ed25519.Ed25519PrivateKey, v2_log: TransparencyLog
) -> None:
    text = note(V2_HOST)
    signed = envelope(text, v2_line(text, v2_key))
    verify_checkpoint(signed, v2_log)
    impostor = ed25519.Ed25519PrivateKey.generate()
    other = trusted_root(
        tlog_json(f"https://{V2_HOST}", impostor, v2_key_id(V2_HOST, v2_key), "PKIX_ED25519")
    ).tlogs[0]
    with pytest.raises(VerificationError):
        verify_checkpoint(signed, other)


# -- malformed notes -------------------------------------------------------------------------------

ROOT_B64 = base64.b64encode(ROOT_HASH).decode()
SIG = "\u2014 " + V2_HOST + " " + base64.b64encode(b"\1\2\3\4" + b"\0" * 64).decode() + "\n"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "missing"),
        (f"{SIZE}\n{ROOT_B64}\n\n{SIG}", "origin"),
        (f"{V2_HOST}\n{ROOT_B64}\n\n{SIG}", "origin line, a tree size"),
        (f"{V2_HOST}\n{SIZE}\n\n{SIG}", "root hash"),
        (f"{V2_HOST}\n{SIZE}\n{ROOT_B64}\n\n", "no signature lines"),
        (f"{V2_HOST}\n{SIZE}\n{ROOT_B64}\n{SIG}", "no blank line"),
        (f"{V2_HOST}\n-{SIZE}\n{ROOT_B64}\n\n{SIG}", "not a number"),
        (f"{V2_HOST}\n0{SIZE}\n{ROOT_B64}\n\n{SIG}", "not a number"),
        (f"{V2_HOST}\n{SIZE}\nnot base64!\n\n{SIG}", "base64"),
        (f"{V2_HOST}\n{SIZE}\n{base64.b64encode(b'short').decode()}\n\n{SIG}", "32"),
        (f"{V2_HOST}\n{SIZE}\n{ROOT_B64}\n\n{SIG.replace(chr(0x2014), '-')}", "does not start"),
        (f"{V2_HOST}\n{SIZE}\n{ROOT_B64}\n\n{SIG[:-1]}", "newline"),
        (f"{V2_HOST}\n{SIZE}\n{ROOT_B64}\n\n\u2014 {V2_HOST}\n", "not '"),
        (f"{V2_HOST}\n{SIZE}\n{ROOT_B64}\n\n\u2014 {V2_HOST} AAAA\n", "too short"),
        (f"{V2_HOST}\n{SIZE}\n{ROOT_B64}\n\n\u2014 {V2_HOST} ***\n", "base64"),
    ],
)
def test_malformed_checkpoints_are_rejected(text: str, reason: str) -> None:
    with pytest.raises(VerificationError, match=reason) as info:
        parse_checkpoint(text)
    assert info.value.step == "checkpoint"


# -- binding to the proof --------------------------------------------------------------------------


def test_checkpoint_must_cover_the_proof_tree(
    v1_key: ec.EllipticCurvePrivateKey, v1_log: TransparencyLog
) -> None:
    text = note(V1_ORIGIN)
    checkpoint = verify_checkpoint(envelope(text, v1_line(text, v1_key)), v1_log)
    check_checkpoint_covers(checkpoint, SIZE, ROOT_HASH)
    with pytest.raises(VerificationError, match="tree size"):
        check_checkpoint_covers(checkpoint, SIZE - 1, ROOT_HASH)
    with pytest.raises(VerificationError, match="root hash"):
        check_checkpoint_covers(checkpoint, SIZE, hashlib.sha256(b"other").digest())


def test_the_signing_log_is_found_among_candidates(
    v1_key: ec.EllipticCurvePrivateKey, v1_log: TransparencyLog, v2_log: TransparencyLog
) -> None:
    text = note(V1_ORIGIN)
    signed = envelope(text, v1_line(text, v1_key))
    checkpoint, log = verify_checkpoint_for_root(signed, [v2_log, v1_log], SIZE, ROOT_HASH)
    assert log is v1_log and checkpoint.origin == V1_ORIGIN
    with pytest.raises(VerificationError):
        verify_checkpoint_for_root(signed, [v2_log], SIZE, ROOT_HASH)
    with pytest.raises(VerificationError, match="no transparency log"):
        verify_checkpoint_for_root(signed, [], SIZE, ROOT_HASH)


# -- real checkpoints (sigstore-conformance) -------------------------------------------------------

CASES = [
    "happy-path-v0.3",
    "rekor2-happy-path",
    "rekor2-dsse-happy-path",
    "rekor2-checkpoint-cosigned",
    "rekor2-checkpoint-multiple-cosigs",
    "rekor2-checkpoint-origin-not-first",
    "rekor2-checkpoint-two-sigs-cosigned",
    "rekor2-checkpoint-two-sigs-from-origin",
    "rekor2-checkpoint-missing-log-signature_fail",
    "rekor2-checkpoint-missing-origin_fail",
    "rekor2-checkpoint-missing-root-hash_fail",
    "rekor2-checkpoint-missing-size_fail",
    "rekor2-checkpoint-no-matching-signature_fail",
    "checkpoint-bad-keyhint_fail",
    "invalid-checkpoint-signature_fail",
]


def conformance_checkpoint(case: str) -> tuple[str, list[TransparencyLog]]:
    folder: Path = shared_fixture("sigstore-conformance", "test", "assets", "bundle-verify", case)
    root_file = folder / "trusted_root.json"
    if not root_file.exists():
        root_file = shared_fixture("trust", "prod", "trusted_root.json")
    root = TrustedRoot.from_file(root_file)
    entry = json.loads((folder / "bundle.sigstore.json").read_text())["verificationMaterial"]["tlogEntries"][
        0
    ]
    logs = root.tlogs_for(base64.b64decode(entry["logId"]["keyId"]))
    assert logs, "the case's log is in its trust root"
    return entry["inclusionProof"]["checkpoint"]["envelope"], logs


@pytest.mark.fixtures
@pytest.mark.parametrize("case", CASES)
def test_conformance_checkpoints(case: str) -> None:
    text, logs = conformance_checkpoint(case)
    if case.endswith("_fail"):
        with pytest.raises(VerificationError):
            verify_checkpoint(text, logs[0])
    else:
        checkpoint = verify_checkpoint(text, logs[0])
        assert checkpoint.tree_size > 0
