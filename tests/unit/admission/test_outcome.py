"""Denial messages, warnings and audit annotations: what users and auditors read."""

from __future__ import annotations

import orjson

from tests.unit.admission.reviews import DIGEST
from webhook.admission.outcome import (
    MAX_IMAGE_LINE,
    MAX_WARNING,
    ImageOutcome,
    audit_annotations,
    clean,
    denial_message,
    describe,
    images_annotation,
    short_digest,
    warning_for,
    warnings_for,
)

SIGNER = "philipp.belitz@securesystems.de"
GHO = "https://github.com/login/oauth"


def _deny(reference: str = "registry.example/app:v1", reason: str = "", **kwargs: object) -> ImageOutcome:
    fields: dict[str, object] = {
        "digest": DIGEST,
        "verdict": "deny",
        "policy": "release-images",
        "authority": "release-workflow",
        "reason": reason or "certificate identity does not match expected subject b@y; no other signature matched",
        "signer": SIGNER,
        "issuer": GHO,
        "log_index": 98235800,
    }
    fields.update(kwargs)
    return ImageOutcome(reference, **fields)  # type: ignore[arg-type]


def test_denial_names_image_digest_policy_authority_reason_and_signer_found() -> None:
    message = denial_message([_deny()])
    assert message == (
        'image registry.example/app:v1 (sha256:abababababab…) denied by policy "release-images": '
        'authority "release-workflow": certificate identity does not match expected subject b@y; '
        f"no other signature matched (found signer {SIGNER}, issuer {GHO})"
    )


def test_signer_is_not_repeated_when_the_reason_names_it() -> None:
    line = describe(_deny(reason=f"certificate identity {SIGNER} does not match b@y"))
    assert line.count(SIGNER) == 1


def test_digest_is_omitted_when_the_reference_carries_it() -> None:
    line = describe(_deny(f"registry.example/app@{DIGEST}"))
    assert line.startswith(f"image registry.example/app@{DIGEST} denied")


def test_no_policy_no_authority_no_digest() -> None:
    outcome = ImageOutcome("nginx", None, "deny", None, None, "no policy matches this image")
    assert describe(outcome) == "image nginx denied: no policy matches this image"


def test_only_denied_images_are_listed_with_a_count() -> None:
    ok = ImageOutcome("a:1", DIGEST, "allow", "p", "x", "verified", SIGNER, GHO, 1)
    message = denial_message([ok, _deny("b:1"), _deny("c:1")])
    lines = message.split("\n")
    assert lines[0] == "2 of 3 images denied:"
    assert [line.split()[1] for line in lines[1:]] == ["b:1", "c:1"]
    assert "a:1" not in message


def test_a_long_reason_is_cut_but_reference_policy_and_signer_survive() -> None:
    line = describe(_deny(reason="x" * 50_000))
    assert len(line) <= MAX_IMAGE_LINE
    assert "registry.example/app:v1" in line and "release-images" in line
    assert line.endswith(f"x… (found signer {SIGNER}, issuer {GHO})")


def test_huge_reference_and_identity_are_bounded() -> None:
    line = describe(_deny("r" * 10_000, signer="s" * 10_000, issuer="i" * 10_000, policy="p" * 10_000))
    assert len(line) <= MAX_IMAGE_LINE
    assert "…" in line


def test_many_denied_images_are_summarised() -> None:
    outcomes = [_deny(f"registry.example/app-{i}:v1", reason="y" * 900) for i in range(50)]
    message = denial_message(outcomes)
    assert len(message) <= 8192
    assert message.endswith("more denied images (see the audit log)")
    assert "registry.example/app-0:v1" in message


def test_control_characters_cannot_forge_lines() -> None:
    line = describe(_deny(reason="bad\nimage evil:1 allowed\r\x00", signer="a\u2028b"))
    assert "\n" not in line and "\r" not in line and "\x00" not in line and "\u2028" not in line


def test_denial_without_denied_images_still_says_something() -> None:
    assert denial_message([]) == "denied by signet"


def test_warning_is_short_and_names_image_and_policy() -> None:
    outcome = _deny(verdict="warn", reason="no signature found")
    warning = warning_for(outcome)
    assert warning == 'signet: image registry.example/app:v1 not verified (policy "release-images"): no signature found'
    long = warning_for(_deny("r" * 500, verdict="warn", reason="z" * 500))
    assert len(long) == MAX_WARNING and long.endswith("…")


def test_one_warning_per_warned_image() -> None:
    ok = ImageOutcome("a:1", DIGEST, "allow", "p", "x", "verified")
    assert len(warnings_for([ok, _deny(verdict="warn"), _deny("b", verdict="warn"), _deny("c")])) == 2


def test_images_annotation_is_json_with_full_digest_signer_and_log_index() -> None:
    records = orjson.loads(images_annotation([_deny()]))
    assert records == [
        {
            "image": "registry.example/app:v1",
            "digest": DIGEST,
            "verdict": "deny",
            "policy": "release-images",
            "authority": "release-workflow",
            "reason": _deny().reason,
            "signer": SIGNER,
            "issuer": GHO,
            "logIndex": 98235800,
        }
    ]


def test_images_annotation_stays_bounded_and_valid_json() -> None:
    outcomes = [_deny(f"registry.example/app-{i}:v1", reason="q" * 2000) for i in range(200)]
    text = images_annotation(outcomes, limit=4096)
    assert len(text) <= 4096
    records = orjson.loads(text)
    assert records[-1]["omitted"] == 200 - (len(records) - 1)
    assert all(len(r["reason"]) <= 120 for r in records[:-1])


def test_audit_annotations_keys_are_plain_names_and_values_strings() -> None:
    annotations = audit_annotations("deny", [_deny()], reason="why")
    assert set(annotations) == {"decision", "images", "reason"}
    assert all(isinstance(v, str) for v in annotations.values())
    assert audit_annotations("allow") == {"decision": "allow"}


def test_helpers() -> None:
    assert short_digest(DIGEST) == "sha256:abababababab…"
    assert short_digest("sha256:abc") == "sha256:abc"
    assert clean("a\tb", 10) == "a b"
    assert clean("abcdef", 4) == "abc…"
