"""Where a denial by an attestation requirement is reported: admission annotations, audit line, ``signet
evaluate`` and ``signet denials`` all carry the attestation's name and predicate type."""

from __future__ import annotations

import json

from webhook.admission.outcome import ImageOutcome, audit_annotations, denial_message
from webhook.audit import image_record
from webhook.commands.denials import denials_from_events, denials_from_log, parse_message
from webhook.commands.evaluate import Workload, as_json

PROVENANCE = "https://slsa.dev/provenance/v1"
REASON = f'attestation "provenance" ({PROVENANCE}): the policy denied it: CEL expression is false: x'
DENIED = ImageOutcome("ghcr.io/acme/app:v1", "sha256:" + "ab" * 32, "deny", "release", "builder", REASON,
                      "builder@example.com", "https://oidc.example", 42, "provenance", PROVENANCE)
ALLOWED = ImageOutcome("ghcr.io/acme/web:v1", "sha256:" + "cd" * 32, "allow", "release", "builder", "verified")


def test_the_audit_record_names_the_attestation_only_when_one_decided() -> None:
    assert image_record(DENIED)["attestation"] == "provenance"
    assert image_record(DENIED)["predicateType"] == PROVENANCE
    assert "attestation" not in image_record(ALLOWED)


def test_admission_annotations_and_message_carry_it() -> None:
    [record, _] = json.loads(audit_annotations("deny", [DENIED, ALLOWED])["images"])
    assert (record["attestation"], record["predicateType"]) == ("provenance", PROVENANCE)
    assert 'attestation "provenance"' in denial_message([DENIED, ALLOWED])


def test_signet_evaluate_json_names_it() -> None:
    workload = Workload("deploy.yaml#1", "Pod", "w", "team-a", images=[DENIED.reference], outcomes=[DENIED])
    [image] = as_json([workload])["workloads"][0]["images"]
    assert (image["attestation"], image["predicateType"]) == ("provenance", PROVENANCE)


def test_signet_denials_reads_it_from_the_audit_log_the_event_annotation_and_the_message() -> None:
    line = json.dumps({"decision": "deny", "time": "2026-11-30T10:00:00Z", "images": [image_record(DENIED)]})
    [from_log] = denials_from_log([line])
    assert (from_log.attestation, from_log.predicate_type) == ("provenance", PROVENANCE)
    event = {"reason": "ImageDenied", "message": denial_message([DENIED]),
             "metadata": {"annotations": {"signet.dev/images": audit_annotations("deny", [DENIED])["images"]}},
             "involvedObject": {"kind": "Pod", "name": "w", "namespace": "team-a"}}
    [from_event] = denials_from_events([event])
    assert (from_event.attestation, from_event.predicate_type) == ("provenance", PROVENANCE)
    [parsed] = parse_message(denial_message([DENIED]))
    assert (parsed["attestation"], parsed["predicate_type"]) == ("provenance", PROVENANCE)
    assert from_log.as_json()["predicateType"] == PROVENANCE
