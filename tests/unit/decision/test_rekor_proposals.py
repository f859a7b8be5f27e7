"""The Rekor v1 entries proposed to find a ``.att`` layer that carries no bundle annotation.

Rekor answers a proposed entry by rebuilding its canonical body; these check that each proposal
holds what that body is made of, for the bodies cosign's uploads produced (as the kit logs them).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from tests.sigstore_kit import default_kit
from tests.sigstore_kit.attestations import LegacyLogEntry, attest_image_legacy
from webhook.images.attestations import proposed_attestation_entries
from webhook.verify.cosign_attestation import CosignAttestation

DIGEST = "sha256:" + "a" * 64


def _layer(entry: LegacyLogEntry) -> tuple[CosignAttestation, dict[str, Any]]:
    made = attest_image_legacy(default_kit(), DIGEST, log_entry=entry)
    assert made.entry is not None
    return CosignAttestation.from_layer(made.envelope, made.annotations), json.loads(made.entry.body)


def _proposal(material: CosignAttestation, kind: str, version: str) -> dict[str, Any]:
    assert material.certificate is not None
    proposals = proposed_attestation_entries(material.envelope_bytes, material.certificate)
    [found] = [p for p in proposals if (p["kind"], p["apiVersion"]) == (kind, version)]
    return found


def test_intoto_001_proposal_carries_the_envelope_as_submitted_and_the_signer() -> None:
    material, body = _layer("intoto")
    proposal = _proposal(material, "intoto", "0.0.1")
    envelope = proposal["spec"]["content"]["envelope"]
    assert hashlib.sha256(envelope.encode()).hexdigest() == body["spec"]["content"]["hash"]["value"]
    assert proposal["spec"]["publicKey"] == body["spec"]["publicKey"]


def test_intoto_002_proposal_double_encodes_as_rekor_stores_it() -> None:
    material, body = _layer("intoto-0.0.2")
    envelope = _proposal(material, "intoto", "0.0.2")["spec"]["content"]["envelope"]
    logged = body["spec"]["content"]["envelope"]
    assert envelope["payloadType"] == logged["payloadType"]
    assert [{"publicKey": s["publicKey"], "sig": s["sig"]} for s in envelope["signatures"]] == logged["signatures"]
    payload = base64.b64decode(base64.b64decode(envelope["payload"]))
    assert hashlib.sha256(payload).hexdigest() == body["spec"]["content"]["payloadHash"]["value"]


def test_dsse_001_proposal_carries_the_envelope_and_its_verifier() -> None:
    material, body = _layer("dsse")
    content = _proposal(material, "dsse", "0.0.1")["spec"]["proposedContent"]
    assert hashlib.sha256(content["envelope"].encode()).hexdigest() == body["spec"]["envelopeHash"]["value"]
    assert content["verifiers"] == [s["verifier"] for s in body["spec"]["signatures"]]


@pytest.mark.parametrize("garbage", [b'{"payloadType": "x"}', b"[]"])
def test_an_odd_envelope_still_gets_the_proposals_that_need_only_its_text(garbage: bytes) -> None:
    material, _ = _layer("intoto")
    assert material.certificate is not None
    kinds = [(p["kind"], p["apiVersion"]) for p in proposed_attestation_entries(garbage, material.certificate)]
    assert kinds == [("intoto", "0.0.1"), ("dsse", "0.0.1")]
