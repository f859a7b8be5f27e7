"""RFC 3161 timestamps: the rekor2-timestamp-* and TSA conformance cases, plus malformed input."""

from __future__ import annotations

import base64
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.unit.verify.test_certs import case_root, load_bundle
from webhook.errors import VerificationError
from webhook.verify.timestamp import verify_timestamp
from webhook.verify.trustroot import TrustedRoot, ValidityWindow

pytestmark = pytest.mark.fixtures


def material(case: str) -> tuple[bytes, bytes, TrustedRoot]:
    """(TimeStampResp DER, the bundle's signature bytes, the case's trust root)."""
    bundle: dict[str, Any] = load_bundle(case)
    stamps = bundle["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
    if "messageSignature" in bundle:
        signature = bundle["messageSignature"]["signature"]
    else:
        signature = bundle["dsseEnvelope"]["signatures"][0]["sig"]
    return base64.b64decode(stamps[0]["signedTimestamp"]), base64.b64decode(signature), case_root(case)


def _fails(case: str) -> str:
    tsr, signature, trusted = material(case)
    with pytest.raises(VerificationError) as exc:
        verify_timestamp(tsr, signature, trusted)
    assert exc.value.step == "timestamp"
    return exc.value.reason


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("rekor2-happy-path", datetime(2025, 6, 12, 12, 2, 20, tzinfo=UTC)),
        ("rekor2-timestamp-with-embedded-cert", datetime(2025, 8, 6, 18, 51, 36, tzinfo=UTC)),
        ("rekor2-timestamp-without-embedded-cert", datetime(2025, 8, 6, 19, 3, 51, tzinfo=UTC)),
        # The TSA chain has expired since, but was valid at genTime: that is what counts.
        ("rekor2-timestamp-with-expired-cert-chain", datetime(2025, 8, 7, 15, 32, 26, tzinfo=UTC)),
        # genTime equals the TSA's validFor.end: the window is closed.
        ("trust-root-tsa-validity-end-inclusive", datetime(2025, 6, 12, 12, 2, 20, tzinfo=UTC)),
        ("rekor2-dsse-happy-path", datetime(2026, 5, 13, 19, 23, 33, tzinfo=UTC)),
        ("bundle-with-sct-with-extensions", datetime(2026, 1, 15, 22, 49, 26, tzinfo=UTC)),
    ],
)
def test_valid_timestamps_yield_gen_time(case: str, expected: datetime) -> None:
    tsr, signature, trusted = material(case)
    gen_time = verify_timestamp(tsr, signature, trusted)
    assert gen_time == expected
    assert gen_time.tzinfo is not None and gen_time.utcoffset() == timedelta(0)


def test_timestamp_over_another_signature_is_rejected() -> None:
    assert "does not cover this signature" in _fails("rekor2-timestamp-payload-mismatch_fail")


def test_timestamp_over_tampered_signature_is_rejected() -> None:
    tsr, signature, trusted = material("rekor2-happy-path")
    with pytest.raises(VerificationError):
        verify_timestamp(tsr, signature[:-1] + bytes([signature[-1] ^ 1]), trusted)


def test_untrusted_tsa_without_embedded_cert_is_rejected() -> None:
    assert "no timestamp authority of the trust root verified" in _fails(
        "rekor2-timestamp-untrusted-tsa-without-embedded-cert_fail"
    )


def test_untrusted_tsa_with_embedded_cert_is_rejected() -> None:
    # FreeTSA's response is not even valid DER (unsorted SET OF); either way it must not pass.
    _fails("rekor2-timestamp-untrusted-tsa-with-embedded-cert_fail")


def test_tsa_certificate_expired_at_gen_time_is_rejected() -> None:
    assert "expired" in _fails("rekor2-timestamp-outside-tsa-cert-validity_fail")


def test_gen_time_outside_trust_root_tsa_validity_is_rejected() -> None:
    assert "outside the TSA's validity in the trust root" in _fails(
        "rekor2-timestamp-outside-trust-root-tsa-validity_fail"
    )


def test_one_second_past_tsa_validity_end_is_rejected() -> None:
    tsr, signature, trusted = material("trust-root-tsa-validity-end-inclusive")
    tsa = trusted.timestamp_authorities[0]
    assert tsa.valid_for.end is not None
    earlier = ValidityWindow(tsa.valid_for.start, tsa.valid_for.end - timedelta(seconds=1))
    narrowed = dataclasses.replace(
        trusted, timestamp_authorities=(dataclasses.replace(tsa, valid_for=earlier),)
    )
    with pytest.raises(VerificationError):
        verify_timestamp(tsr, signature, narrowed)


def test_trust_root_without_tsas_rejects() -> None:
    tsr, signature, trusted = material("rekor2-happy-path")
    with pytest.raises(VerificationError) as exc:
        verify_timestamp(tsr, signature, dataclasses.replace(trusted, timestamp_authorities=()))
    assert "no timestamp authorities" in exc.value.reason


def test_production_tsa_does_not_vouch_for_staging_timestamp() -> None:
    tsr, signature, _ = material("rekor2-happy-path")
    production = case_root("happy-path-v0.1")  # the production trusted root
    with pytest.raises(VerificationError):
        verify_timestamp(tsr, signature, production)


@pytest.mark.parametrize(
    "garbage", [b"", b"\x30\x03\x02\x01\x00", b"not DER at all", b"\x30\x80", b"\x30\x05\x30\x03\x02\x01\x02"]
)
def test_malformed_responses_are_verification_errors(garbage: bytes) -> None:
    _, signature, trusted = material("rekor2-happy-path")
    with pytest.raises(VerificationError) as exc:
        verify_timestamp(garbage, signature, trusted)
    assert exc.value.step == "timestamp"


def test_truncated_response_is_a_verification_error() -> None:
    tsr, signature, trusted = material("rekor2-happy-path")
    with pytest.raises(VerificationError):
        verify_timestamp(tsr[:-10], signature, trusted)
