"""Transparency-log entries: parsing, SET, inclusion proof + checkpoint, body consistency."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from tests.fixtures_path import shared_fixture
from tests.unit.verify.test_merkle import reference_path, reference_root
from webhook.errors import VerificationError
from webhook.verify.dsse import DsseEnvelope
from webhook.verify.keys import load_pem_public_key
from webhook.verify.material import Digest, SignedContent
from webhook.verify.merkle import leaf_hash
from webhook.verify.tlog import (
    TlogEntry,
    check_body,
    verify_entry,
    verify_inclusion,
    verify_set,
)
from webhook.verify.trustroot import TrustedRoot

LOG_HOST = "rekor.example.test"
V2_HOST = "log2099-1.rekor.example.test"
INTEGRATED = 1_700_000_000
GLOBAL_INDEX = 123_456_789
SHARD_INDEX = 5
TREE_SIZE = 11

Json = dict[str, Any]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def spki(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def make_cert(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer")])
    now = dt.datetime(2023, 11, 14, tzinfo=dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(minutes=10))
        .sign(key, hashes.SHA256())
    )


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class Kit:
    """A tiny private log: an ECDSA (Rekor v1) and an Ed25519 (Rekor v2) key, and one signer."""

    def __init__(self) -> None:
        self.log_key = ec.generate_private_key(ec.SECP256R1())
        self.log_id = hashlib.sha256(spki(self.log_key)).digest()
        self.v2_key = ed25519.Ed25519PrivateKey.generate()
        raw = self.v2_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.v2_log_id = hashlib.sha256(V2_HOST.encode() + b"\n\x01" + raw).digest()
        self.signer = ec.generate_private_key(ec.SECP256R1())
        self.cert = make_cert(self.signer)
        self.artifact = b"hello, transparency"
        self.digest = hashlib.sha256(self.artifact).digest()
        self.signature = self.signer.sign(self.artifact, ec.ECDSA(hashes.SHA256()))
        self.root = self.trusted_root()

    def trusted_root(self, start: str = "2020-01-01T00:00:00Z", end: str | None = None) -> TrustedRoot:
        valid: Json = {"start": start} if end is None else {"start": start, "end": end}
        tlogs = [
            {
                "baseUrl": f"https://{LOG_HOST}",
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": b64(spki(self.log_key)),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": valid,
                },
                "logId": {"keyId": b64(self.log_id)},
            },
            {
                "baseUrl": f"https://{V2_HOST}",
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": b64(spki(self.v2_key)),
                    "keyDetails": "PKIX_ED25519",
                    "validFor": valid,
                },
                "logId": {"keyId": b64(self.v2_log_id)},
            },
        ]
        doc = {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": tlogs,
            "certificateAuthorities": [],
            "ctlogs": [],
            "timestampAuthorities": [],
        }
        return TrustedRoot.from_json(json.dumps(doc))

    def content(self, **changes: Any) -> SignedContent:
        fields: Json = {
            "signature": self.signature,
            "public_key": self.signer.public_key(),
            "digest": Digest("sha256", self.digest),
            "certificate": self.cert,
        }
        fields.update(changes)
        return SignedContent(**fields)

    def hashedrekord_v001(self, verifier: bytes | None = None) -> bytes:
        spec = {
            "data": {"hash": {"algorithm": "sha256", "value": self.digest.hex()}},
            "signature": {
                "content": b64(self.signature),
                "publicKey": {"content": b64(verifier or pem(self.cert))},
            },
        }
        return json.dumps({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": spec}).encode()

    def hashedrekord_v002(self, field: str = "hashedRekordV002", verifier: Json | None = None) -> bytes:
        der = self.cert.public_bytes(serialization.Encoding.DER)
        spec = {
            field: {
                "data": {"algorithm": "SHA2_256", "digest": b64(self.digest)},
                "signature": {
                    "content": b64(self.signature),
                    "verifier": verifier
                    or {"keyDetails": "PKIX_ECDSA_P256_SHA_256", "x509Certificate": {"rawBytes": b64(der)}},
                },
            }
        }
        return json.dumps({"apiVersion": "0.0.2", "kind": "hashedrekord", "spec": spec}).encode()

    def set_for(self, body: bytes, index: int = GLOBAL_INDEX, when: int = INTEGRATED) -> bytes:
        payload = rfc8785.dumps(
            {"body": b64(body), "integratedTime": when, "logID": self.log_id.hex(), "logIndex": index}
        )
        return self.log_key.sign(payload, ec.ECDSA(hashes.SHA256()))

    def proof(
        self, body: bytes, index: int, origin: str, sign: Callable[[bytes], bytes], name: str, hint: bytes
    ) -> tuple[Json, bytes]:
        leaves = [leaf_hash(f"other {i}".encode()) for i in range(TREE_SIZE)]
        leaves[index] = leaf_hash(body)
        root = reference_root(leaves)
        note = f"{origin}\n{TREE_SIZE}\n{b64(root)}\n"
        envelope = f"{note}\n\u2014 {name} {b64(hint + sign(note.encode()))}\n"
        proof = {
            "logIndex": str(index),
            "rootHash": b64(root),
            "treeSize": str(TREE_SIZE),
            "hashes": [b64(h) for h in reference_path(index, leaves)],
            "checkpoint": {"envelope": envelope},
        }
        return proof, root

    def bundle_entry(self, body: bytes | None = None) -> Json:
        """A Rekor v1 bundle entry: SET over the global index, proof in the shard."""
        body = body or self.hashedrekord_v001()
        proof, _ = self.proof(
            body,
            SHARD_INDEX,
            f"{LOG_HOST} - 42",
            lambda m: self.log_key.sign(m, ec.ECDSA(hashes.SHA256())),
            LOG_HOST,
            self.log_id[:4],
        )
        return {
            "logIndex": str(GLOBAL_INDEX),
            "logId": {"keyId": b64(self.log_id)},
            "kindVersion": {"kind": "hashedrekord", "version": "0.0.1"},
            "integratedTime": str(INTEGRATED),
            "inclusionPromise": {"signedEntryTimestamp": b64(self.set_for(body))},
            "inclusionProof": proof,
            "canonicalizedBody": b64(body),
        }

    def v2_entry(self, index: int = SHARD_INDEX) -> Json:
        body = self.hashedrekord_v002()
        proof, _ = self.proof(body, SHARD_INDEX, V2_HOST, self.v2_key.sign, V2_HOST, self.v2_log_id[:4])
        return {
            "logIndex": str(index),
            "logId": {"keyId": b64(self.v2_log_id)},
            "kindVersion": {"kind": "hashedrekord", "version": "0.0.2"},
            "inclusionProof": proof,
            "canonicalizedBody": b64(body),
        }


@pytest.fixture(scope="module")
def kit() -> Kit:
    return Kit()


# -- parsing ---------------------------------------------------------------------------------------


def test_bundle_entry_is_parsed(kit: Kit) -> None:
    entry = TlogEntry.from_bundle(kit.bundle_entry())
    assert (entry.log_index, entry.log_id, entry.integrated_time) == (GLOBAL_INDEX, kit.log_id, INTEGRATED)
    assert (entry.kind, entry.version) == ("hashedrekord", "0.0.1")
    assert entry.inclusion_proof is not None and entry.inclusion_proof.log_index == SHARD_INDEX
    assert entry.leaf_hash == leaf_hash(kit.hashedrekord_v001())


def test_int64_may_be_numbers_and_v2_entries_have_no_time(kit: Kit) -> None:
    raw = kit.v2_entry()
    raw["logIndex"] = SHARD_INDEX
    entry = TlogEntry.from_bundle(raw)
    assert (
        entry.log_index == SHARD_INDEX
        and entry.integrated_time is None
        and entry.signed_entry_timestamp is None
    )


def _set(path: tuple[str, ...], value: object) -> Callable[[Json], None]:
    def mutate(entry: Json) -> None:
        target = entry
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (_set(("logIndex",), "-1"), "negative"),
        (_set(("logIndex",), -1), "negative"),
        (_set(("logIndex",), "12a"), "not an integer"),
        (_set(("logIndex",), True), "not an integer"),
        (_set(("logIndex",), "99999999999999999999"), "out of range"),
        (_set(("logIndex",), KeyError), "not an integer"),
        (_set(("logId",), "wNI9"), "logId"),
        (_set(("logId", "keyId"), "not base64!"), "base64"),
        (_set(("kindVersion",), KeyError), "kindVersion"),
        (_set(("canonicalizedBody",), 42), "canonicalizedBody"),
        (_set(("inclusionPromise", "signedEntryTimestamp"), "%%%"), "base64"),
        (_set(("inclusionProof", "hashes"), "AAAA"), "not a list"),
        (_set(("inclusionProof", "treeSize"), "-3"), "negative"),
        (_set(("inclusionProof", "checkpoint"), "text"), "checkpoint"),
    ],
)
def test_malformed_bundle_entries_are_verification_errors(
    kit: Kit, mutate: Callable[[Json], None], reason: str
) -> None:
    raw = copy.deepcopy(kit.bundle_entry())
    mutate(raw)
    with pytest.raises(VerificationError, match=reason) as info:
        TlogEntry.from_bundle(raw)
    assert info.value.step == "log entry"


def test_rekor_api_response_is_parsed_and_its_uuid_checked(kit: Kit) -> None:
    body = kit.hashedrekord_v001()
    bundle = kit.bundle_entry(body)
    proof = bundle["inclusionProof"]
    inner = {
        "body": b64(body),
        "integratedTime": INTEGRATED,
        "logID": kit.log_id.hex(),
        "logIndex": GLOBAL_INDEX,
        "verification": {
            "signedEntryTimestamp": bundle["inclusionPromise"]["signedEntryTimestamp"],
            "inclusionProof": {
                "checkpoint": proof["checkpoint"]["envelope"],
                "hashes": [base64.b64decode(h).hex() for h in proof["hashes"]],
                "logIndex": SHARD_INDEX,
                "treeSize": TREE_SIZE,
                "rootHash": base64.b64decode(proof["rootHash"]).hex(),
            },
        },
    }
    uuid = "24296fb24b8ad77a" + leaf_hash(body).hex()
    entry = TlogEntry.from_rekor_response({uuid: inner})
    assert entry.uuid == uuid and entry.kind is None
    verification = verify_entry(
        entry, kit.root, kit.content(), require_set=True, require_inclusion_proof=True
    )
    assert verification.set_verified and verification.inclusion_verified
    with pytest.raises(VerificationError, match="UUID"):
        TlogEntry.from_rekor_response({"24296fb24b8ad77a" + "00" * 32: inner})


def test_cosign_bundle_annotation_is_parsed(kit: Kit) -> None:
    body = kit.hashedrekord_v001()
    annotation = json.dumps(
        {
            "SignedEntryTimestamp": b64(kit.set_for(body)),
            "Payload": {
                "body": b64(body),
                "integratedTime": INTEGRATED,
                "logIndex": GLOBAL_INDEX,
                "logID": kit.log_id.hex(),
            },
        }
    )
    entry = TlogEntry.from_cosign_bundle(annotation)
    assert entry.inclusion_proof is None
    verification = verify_entry(entry, kit.root, kit.content())
    assert verification.integrated_time == dt.datetime.fromtimestamp(INTEGRATED, dt.UTC)
    assert not verification.inclusion_verified


@pytest.mark.parametrize(
    "annotation",
    [
        "not json",
        "[]",
        json.dumps({"SignedEntryTimestamp": "AAAA"}),
        json.dumps(
            {
                "SignedEntryTimestamp": "AAAA",
                "Payload": {"body": {"a": 1}, "integratedTime": 1, "logIndex": 1, "logID": "00"},
            }
        ),
        json.dumps(
            {
                "SignedEntryTimestamp": "AAAA",
                "Payload": {"body": "AAAA", "integratedTime": 1, "logIndex": 1, "logID": "zz"},
            }
        ),
    ],
)
def test_malformed_cosign_annotations_are_verification_errors(annotation: str) -> None:
    with pytest.raises(VerificationError):
        TlogEntry.from_cosign_bundle(annotation)


# -- SET -------------------------------------------------------------------------------------------


def test_set_verifies_over_the_global_index(kit: Kit) -> None:
    entry = TlogEntry.from_bundle(kit.bundle_entry())
    assert verify_set(entry, kit.root).base_url == f"https://{LOG_HOST}"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("integratedTime", str(INTEGRATED + 1)),
        ("logIndex", str(SHARD_INDEX)),
        ("logIndex", str(GLOBAL_INDEX + 1)),
    ],
)
def test_set_fails_when_a_signed_field_changes(kit: Kit, field: str, value: str) -> None:
    raw = kit.bundle_entry()
    raw[field] = value
    with pytest.raises(VerificationError, match="signed entry timestamp") as info:
        verify_set(TlogEntry.from_bundle(raw), kit.root)
    assert info.value.step == "transparency log"


def test_set_by_another_key_fails(kit: Kit) -> None:
    raw = kit.bundle_entry()
    other = ec.generate_private_key(ec.SECP256R1())
    raw["inclusionPromise"]["signedEntryTimestamp"] = b64(other.sign(b"x", ec.ECDSA(hashes.SHA256())))
    with pytest.raises(VerificationError, match="does not verify"):
        verify_set(TlogEntry.from_bundle(raw), kit.root)


def test_set_needs_the_log_key_valid_at_the_integrated_time(kit: Kit) -> None:
    entry = TlogEntry.from_bundle(kit.bundle_entry())
    with pytest.raises(VerificationError, match="not valid at the integrated time"):
        verify_set(entry, kit.trusted_root(start="2024-01-01T00:00:00Z"))
    with pytest.raises(VerificationError, match="not valid at the integrated time"):
        verify_set(entry, kit.trusted_root(end="2023-11-14T22:13:19Z"))
    # validFor is inclusive: ending exactly at the integrated time still counts.
    verify_set(entry, kit.trusted_root(end="2023-11-14T22:13:20Z"))


def test_entry_from_an_unknown_log_fails(kit: Kit) -> None:
    raw = kit.bundle_entry()
    raw["logId"]["keyId"] = b64(b"\1" * 32)
    entry = TlogEntry.from_bundle(raw)
    with pytest.raises(VerificationError, match="does not know"):
        verify_set(entry, kit.root)
    with pytest.raises(VerificationError, match="does not know"):
        verify_inclusion(entry, kit.root)


# -- inclusion -------------------------------------------------------------------------------------


def test_inclusion_proof_with_checkpoint_verifies(kit: Kit) -> None:
    assert (
        verify_inclusion(TlogEntry.from_bundle(kit.bundle_entry()), kit.root).base_url
        == f"https://{LOG_HOST}"
    )


def test_rekor_v2_inclusion_verifies_and_establishes_no_time(kit: Kit) -> None:
    entry = TlogEntry.from_bundle(kit.v2_entry())
    verification = verify_entry(entry, kit.root, kit.content(), require_inclusion_proof=True)
    assert verification.inclusion_verified and not verification.set_verified
    assert verification.integrated_time is None
    assert verification.log.base_url == f"https://{V2_HOST}"


def test_rekor_v2_proof_index_must_be_the_entry_index(kit: Kit) -> None:
    with pytest.raises(VerificationError, match="index"):
        verify_inclusion(TlogEntry.from_bundle(kit.v2_entry(index=SHARD_INDEX + 1)), kit.root)


def test_tampered_proof_or_body_fails(kit: Kit) -> None:
    raw = kit.bundle_entry()
    raw["inclusionProof"]["hashes"][0] = b64(b"\0" * 32)
    with pytest.raises(VerificationError) as info:
        verify_inclusion(TlogEntry.from_bundle(raw), kit.root)
    assert info.value.step == "inclusion proof"
    raw = kit.bundle_entry()
    raw["canonicalizedBody"] = b64(kit.hashedrekord_v001() + b" ")  # same JSON, other bytes
    with pytest.raises(VerificationError):
        verify_inclusion(TlogEntry.from_bundle(raw), kit.root)


def test_proof_must_be_signed_by_a_checkpoint(kit: Kit) -> None:
    raw = kit.bundle_entry()
    del raw["inclusionProof"]["checkpoint"]
    entry = TlogEntry.from_bundle(raw)
    with pytest.raises(VerificationError, match="checkpoint"):
        verify_inclusion(entry, kit.root)
    with pytest.raises(VerificationError, match="checkpoint"):
        verify_entry(entry, kit.root, kit.content(), require_inclusion_proof=True)
    # Bundle v0.1 semantics: the SET carries it, the unsigned proof is only checked for consistency.
    assert not verify_entry(entry, kit.root, kit.content()).inclusion_verified
    del raw["inclusionPromise"]
    with pytest.raises(VerificationError, match="neither"):
        verify_entry(TlogEntry.from_bundle(raw), kit.root, kit.content())


def test_verify_entry_reports_what_was_established(kit: Kit) -> None:
    verification = verify_entry(
        TlogEntry.from_bundle(kit.bundle_entry()),
        kit.root,
        kit.content(),
        require_set=True,
        require_inclusion_proof=True,
    )
    assert verification.set_verified and verification.inclusion_verified
    assert verification.integrated_time == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)
    assert verification.entry.log_index == GLOBAL_INDEX


def test_verify_entry_checks_the_body_first(kit: Kit) -> None:
    with pytest.raises(VerificationError, match="different artifact digest"):
        verify_entry(
            TlogEntry.from_bundle(kit.bundle_entry()),
            kit.root,
            kit.content(digest=Digest("sha256", hashlib.sha256(b"other").digest())),
        )


def test_required_set_must_be_present(kit: Kit) -> None:
    with pytest.raises(VerificationError, match="no signed entry timestamp"):
        verify_entry(TlogEntry.from_bundle(kit.v2_entry()), kit.root, kit.content(), require_set=True)


# -- body consistency ------------------------------------------------------------------------------


def entry_with(body: bytes, kind: str | None = None, version: str | None = None) -> TlogEntry:
    return TlogEntry(log_index=0, log_id=b"\0" * 32, body=body, kind=kind, version=version)


def test_hashedrekord_v001_body_matches(kit: Kit) -> None:
    check_body(entry_with(kit.hashedrekord_v001(), "hashedrekord", "0.0.1"), kit.content())


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"digest": Digest("sha256", hashlib.sha256(b"other").digest())}, "different artifact digest"),
        (
            {"digest": Digest("sha384", hashlib.sha256(b"hello, transparency").digest())},
            "different artifact digest",
        ),
        ({"signature": b"\x30\x00"}, "different signature"),
        ({"certificate": make_cert(ec.generate_private_key(ec.SECP256R1()))}, "different certificate"),
    ],
)
def test_hashedrekord_v001_mismatches_are_named(kit: Kit, change: dict[str, Any], reason: str) -> None:
    with pytest.raises(VerificationError, match=reason) as info:
        check_body(entry_with(kit.hashedrekord_v001()), kit.content(**change))
    assert info.value.step == "log entry"


def test_hashedrekord_v001_with_a_public_key(kit: Kit) -> None:
    key_pem = kit.signer.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    body = kit.hashedrekord_v001(verifier=key_pem)
    check_body(entry_with(body), kit.content(certificate=None))
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(VerificationError, match="different public key"):
        check_body(entry_with(body), kit.content(certificate=None, public_key=other))
    with pytest.raises(VerificationError, match="different certificate"):
        check_body(entry_with(body), kit.content())  # keyless signature, key-only entry


def test_hashedrekord_v002_body_matches(kit: Kit) -> None:
    check_body(entry_with(kit.hashedrekord_v002(), "hashedrekord", "0.0.2"), kit.content())
    check_body(entry_with(kit.hashedrekord_v002(field="hashedRekordV0_0_2")), kit.content())
    keyed = kit.hashedrekord_v002(verifier={"publicKey": {"rawBytes": b64(spki(kit.signer))}})
    check_body(entry_with(keyed), kit.content(certificate=None))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"digest": Digest("sha256", b"\0" * 32)}, "different artifact digest"),
        ({"signature": b"\x30\x01"}, "different signature"),
        ({"certificate": make_cert(ec.generate_private_key(ec.SECP256R1()))}, "different certificate"),
    ],
)
def test_hashedrekord_v002_mismatches_are_named(kit: Kit, change: dict[str, Any], reason: str) -> None:
    with pytest.raises(VerificationError, match=reason):
        check_body(entry_with(kit.hashedrekord_v002()), kit.content(**change))


def dsse_kit(kit: Kit) -> tuple[DsseEnvelope, SignedContent, Json]:
    payload = b'{"_type":"https://in-toto.io/Statement/v1"}'
    envelope = DsseEnvelope.from_dict(
        {
            "payloadType": "application/vnd.in-toto+json",
            "payload": b64(payload),
            "signatures": [{"sig": b64(kit.signature)}],
        }
    )
    content = kit.content(envelope=envelope, digest=Digest("sha256", hashlib.sha256(envelope.pae).digest()))
    body = {
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": "00" * 32},
            "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
            "signatures": [
                {"signature": b64(b"someone else"), "verifier": b64(pem(kit.cert))},
                {"signature": b64(kit.signature), "verifier": b64(pem(kit.cert))},
            ],
        },
    }
    return envelope, content, body


def test_dsse_v001_body_matches_and_mismatches(kit: Kit) -> None:
    _, content, body = dsse_kit(kit)
    check_body(entry_with(json.dumps(body).encode(), "dsse", "0.0.1"), content)
    with pytest.raises(VerificationError, match="not one"):
        check_body(entry_with(json.dumps(body).encode()), kit.content())
    wrong_payload = copy.deepcopy(body)
    wrong_payload["spec"]["payloadHash"]["value"] = "11" * 32
    with pytest.raises(VerificationError, match="different DSSE payload"):
        check_body(entry_with(json.dumps(wrong_payload).encode()), content)
    wrong_sig = copy.deepcopy(body)
    del wrong_sig["spec"]["signatures"][1]
    with pytest.raises(VerificationError, match="different signature"):
        check_body(entry_with(json.dumps(wrong_sig).encode()), content)
    other_cert = make_cert(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(VerificationError, match="different certificate"):
        check_body(
            entry_with(json.dumps(body).encode()),
            kit.content(envelope=content.envelope, certificate=other_cert),
        )


@pytest.mark.parametrize(
    ("body", "declared", "reason"),
    [
        (b"not json", None, "not valid JSON"),
        (b"[]", None, "not a JSON object"),
        (json.dumps({"apiVersion": "0.0.1", "kind": "rekord", "spec": {}}).encode(), None, "unsupported"),
        (
            json.dumps({"apiVersion": "0.0.9", "kind": "hashedrekord", "spec": {}}).encode(),
            None,
            "unsupported",
        ),
        (
            json.dumps({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {}}).encode(),
            ("dsse", "0.0.1"),
            "declares",
        ),
        (json.dumps({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": []}).encode(), None, "spec"),
        (
            json.dumps(
                {
                    "apiVersion": "0.0.1",
                    "kind": "hashedrekord",
                    "spec": {"data": {"hash": {"algorithm": "sha256", "value": "xyz"}}},
                }
            ).encode(),
            None,
            "hex",
        ),
    ],
)
def test_unusable_bodies_are_verification_errors(
    kit: Kit, body: bytes, declared: tuple[str, str] | None, reason: str
) -> None:
    entry = entry_with(body, *(declared or (None, None)))
    with pytest.raises(VerificationError, match=reason):
        check_body(entry, kit.content())


# -- real data -------------------------------------------------------------------------------------


def conformance(case: str) -> tuple[Json, TrustedRoot, Path]:
    folder = shared_fixture("sigstore-conformance", "test", "assets", "bundle-verify", case)
    root_file = folder / "trusted_root.json"
    if not root_file.exists():
        root_file = shared_fixture("trust", "prod", "trusted_root.json")
    return json.loads((folder / "bundle.sigstore.json").read_text()), TrustedRoot.from_file(root_file), folder


def bundle_content(bundle: Json, folder: Path) -> SignedContent:
    material = bundle["verificationMaterial"]
    cert = None
    if "certificate" in material:
        cert = x509.load_der_x509_certificate(base64.b64decode(material["certificate"]["rawBytes"]))
    elif "x509CertificateChain" in material:
        raw = material["x509CertificateChain"]["certificates"][0]["rawBytes"]
        cert = x509.load_der_x509_certificate(base64.b64decode(raw))
    key = cert.public_key() if cert else load_pem_public_key((folder / "key.pub").read_bytes())
    assert not isinstance(key, str)
    if "dsseEnvelope" in bundle:
        envelope = DsseEnvelope.from_dict(bundle["dsseEnvelope"])
        return SignedContent(
            signature=envelope.single_signature(),
            public_key=key,  # type: ignore[arg-type]
            digest=Digest("sha256", hashlib.sha256(envelope.pae).digest()),
            certificate=cert,
            envelope=envelope,
        )
    artifact = folder / "artifact" if (folder / "artifact").exists() else folder.parent / "a.txt"
    return SignedContent(
        signature=base64.b64decode(bundle["messageSignature"]["signature"]),
        public_key=key,  # type: ignore[arg-type]
        digest=Digest("sha256", hashlib.sha256(artifact.read_bytes()).digest()),
        certificate=cert,
    )


@pytest.mark.fixtures
@pytest.mark.parametrize(
    ("case", "set_ok", "inclusion_ok"),
    [
        ("happy-path-v0.3", True, True),
        ("happy-path-v0.1", True, True),
        ("happy-path-intoto-in-dsse-v3", True, True),
        ("intoto-with-custom-trust-root", True, True),
        ("rekor2-happy-path", None, True),
        ("rekor2-dsse-happy-path", None, True),
        ("rekor2-checkpoint-origin-not-first", None, True),
        ("rekor2-checkpoint-two-sigs-cosigned", None, True),
        ("checkpoint-bad-keyhint_fail", True, False),
        ("checkpoint-wrong-roothash_fail", True, False),
        ("inclusion-proof-corrupted-hash_fail", True, False),
        ("invalid-inclusion-proof_fail", True, False),
        ("invalid-checkpoint-signature_fail", True, False),
        ("set-invalid-signature_fail", False, True),
        ("rekor2-checkpoint-no-matching-signature_fail", None, False),
        ("rekor2-checkpoint-missing-log-signature_fail", None, False),
        ("bundle-from-wrong-instance_fail", False, False),
    ],
)
def test_conformance_log_entries(case: str, set_ok: bool | None, inclusion_ok: bool) -> None:
    bundle, root, _ = conformance(case)
    entry = TlogEntry.from_bundle(bundle["verificationMaterial"]["tlogEntries"][0])
    if set_ok is None:
        assert entry.signed_entry_timestamp is None and entry.integrated_time is None
    elif set_ok:
        verify_set(entry, root)
    else:
        with pytest.raises(VerificationError):
            verify_set(entry, root)
    if inclusion_ok:
        verify_inclusion(entry, root)
    else:
        with pytest.raises(VerificationError):
            verify_inclusion(entry, root)


@pytest.mark.fixtures
def test_conformance_negative_log_index_is_rejected() -> None:
    bundle, _, _ = conformance("bundle-negative-log-index_fail")
    with pytest.raises(VerificationError, match="negative"):
        TlogEntry.from_bundle(bundle["verificationMaterial"]["tlogEntries"][0])


@pytest.mark.fixtures
@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("happy-path-v0.3", None),
        ("happy-path-intoto-in-dsse-v3", None),
        ("intoto-with-custom-trust-root", None),
        ("rekor2-happy-path", None),
        ("rekor2-dsse-happy-path", None),
        ("managed-key-happy-path", None),
        ("wrong-hashedrekord-artifact_fail", "different artifact digest"),
        ("wrong-hashedrekord-entry_fail", "different artifact digest"),
        ("wrong-hashedrekord-cert-and-sig_fail", "different signature"),
        ("signature-mismatch_fail", "different signature"),
        ("incorrect-public-key_fail", "different certificate"),
        ("dsse-mismatch-sig_fail", "different signature"),
        ("dsse-mismatch-envelope_fail", "different DSSE payload"),
        ("intoto-log-entry-mismatch_fail", "different signature"),
        ("rekor2-dsse-mismatch-sig_fail", "different signature"),
        ("rekor2-dsse-mismatch-envelope_fail", "different artifact digest"),
    ],
)
def test_conformance_body_consistency(case: str, reason: str | None) -> None:
    bundle, _, folder = conformance(case)
    entry = TlogEntry.from_bundle(bundle["verificationMaterial"]["tlogEntries"][0])
    content = bundle_content(bundle, folder)
    if reason is None:
        check_body(entry, content)
    else:
        with pytest.raises(VerificationError, match=reason):
            check_body(entry, content)


@pytest.mark.fixtures
def test_connaisseur_legacy_bundle_annotation() -> None:
    repo = shared_fixture(
        "cosign-image-signatures", "connaisseur-testimage", "securesystemsengineering", "testimage"
    )
    digest = "31dc72a13a0c34b40eb95419d2b2fd67320c856baf3b72da518023ee8d370aee"
    manifest = json.loads((repo / "manifests" / f"sha256-{digest}.sig.json").read_text())
    layer = manifest["layers"][0]
    annotations = layer["annotations"]
    entry = TlogEntry.from_cosign_bundle(annotations["dev.sigstore.cosign/bundle"])
    root = TrustedRoot.from_file(shared_fixture("trust", "prod", "trusted_root.json"))
    assert verify_set(entry, root).base_url == "https://rekor.sigstore.dev"
    assert entry.log_index == 98235800 and entry.integrated_time == 1717082297
    payload = (repo / "blobs" / f"{layer['digest']}.json").read_bytes()
    cert = x509.load_pem_x509_certificate(annotations["dev.sigstore.cosign/certificate"].encode())
    content = SignedContent(
        signature=base64.b64decode(annotations["dev.cosignproject.cosign/signature"]),
        public_key=cert.public_key(),  # type: ignore[arg-type]
        digest=Digest("sha256", hashlib.sha256(payload).digest()),
        certificate=cert,
    )
    verification = verify_entry(entry, root, content, require_set=True)
    assert verification.integrated_time == dt.datetime(2024, 5, 30, 15, 18, 17, tzinfo=dt.UTC)
    assert not verification.inclusion_verified
    tampered = SignedContent(
        signature=content.signature,
        public_key=content.public_key,
        digest=Digest("sha256", hashlib.sha256(payload + b" ").digest()),
        certificate=cert,
    )
    with pytest.raises(VerificationError, match="different artifact digest"):
        verify_entry(entry, root, tampered)


def test_claimed_integrated_time_is_exposed_as_aware_utc(kit: Kit) -> None:
    entry = TlogEntry.from_bundle(kit.bundle_entry())
    assert entry.integrated_datetime == dt.datetime.fromtimestamp(INTEGRATED, dt.UTC)
    assert TlogEntry.from_bundle(kit.v2_entry()).integrated_datetime is None
