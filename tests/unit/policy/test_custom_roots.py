"""Trust roots derived for one authority: bring-your-own CA (``keyless.caCert``) and another TrustRoot's TSAs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.sigstore_kit.instance import SigstoreKit
from webhook.errors import VerificationError
from webhook.policy.custom_roots import parse_ca_certificates, with_certificate_authorities, with_timestamp_authorities
from webhook.verify.certs import CertificateVerifier
from webhook.verify.trustroot import TrustedRoot


@pytest.fixture(scope="module")
def public() -> SigstoreKit:
    return SigstoreKit.create(seed_entries=1)


@pytest.fixture(scope="module")
def corporate() -> SigstoreKit:
    """Another PKI: its CA plays the company's own CA of ``ca-cert``."""
    return SigstoreKit.create(seed_entries=1)


def pem(*certificates: object) -> str:
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certificates)  # type: ignore[attr-defined]


def root_of(kit: SigstoreKit) -> TrustedRoot:
    return TrustedRoot.from_json(kit.trusted_root_json())


def test_certificates_must_chain_to_the_given_ca_instead_of_fulcio(public: SigstoreKit,
                                                                   corporate: SigstoreKit) -> None:
    base = root_of(public)
    custom = with_certificate_authorities(base, pem(corporate.ca.intermediate, corporate.ca.root))
    verifier = CertificateVerifier(custom)

    ours = corporate.issue_leaf("build@corp.example")
    chain = verifier.verify(ours.certificate, ours.certificate.not_valid_before_utc + timedelta(minutes=1))
    assert chain[0] == ours.certificate and chain[1] == corporate.ca.intermediate

    fulcio = public.issue_leaf("someone@example.com")
    with pytest.raises(VerificationError, match="does not chain to"):
        verifier.verify(fulcio.certificate, fulcio.certificate.not_valid_before_utc + timedelta(minutes=1))


def test_logs_stay_those_of_the_base_root_and_the_result_is_a_root_of_its_own(public: SigstoreKit,
                                                                              corporate: SigstoreKit) -> None:
    base = root_of(public)
    custom = with_certificate_authorities(base, pem(corporate.ca.root))
    assert custom.tlogs == base.tlogs and custom.ctlogs == base.ctlogs
    assert custom.timestamp_authorities == base.timestamp_authorities
    assert [ca.chain for ca in custom.certificate_authorities] == [(corporate.ca.root,)]
    assert custom.fingerprint not in ("", base.fingerprint)
    # the same CA gives the same root (cache keys), another CA another one
    assert with_certificate_authorities(base, pem(corporate.ca.root)).fingerprint == custom.fingerprint
    assert with_certificate_authorities(base, pem(public.ca.root)).fingerprint != custom.fingerprint


def test_each_certificate_given_is_an_anchor_of_its_own(public: SigstoreKit, corporate: SigstoreKit) -> None:
    # As a Go CertPool of the PEM data: an intermediate that issues the certificates must be listed.
    only_root = CertificateVerifier(with_certificate_authorities(root_of(public), pem(corporate.ca.root)))
    by_intermediate = corporate.issue_leaf("build@corp.example")
    with pytest.raises(VerificationError):
        only_root.verify(by_intermediate.certificate,
                         by_intermediate.certificate.not_valid_before_utc + timedelta(minutes=1))
    by_root = corporate.issue_leaf("build@corp.example", issued_by_root=True)
    assert only_root.verify(by_root.certificate, by_root.certificate.not_valid_before_utc + timedelta(minutes=1))


def test_indented_pem_is_read_as_go_reads_it(corporate: SigstoreKit) -> None:
    indented = "\n".join("    " + line for line in pem(corporate.ca.root).splitlines())
    assert parse_ca_certificates(indented) == (corporate.ca.root,)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "no PEM certificate"),
        ("-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n", "no PEM certificate"),
        ("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n", "not a valid PEM certificate"),
    ],
)
def test_unusable_ca_data_is_refused(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_ca_certificates(text)


def test_timestamps_from_another_trust_roots_authorities(public: SigstoreKit, corporate: SigstoreKit) -> None:
    base, tsa_root = root_of(public), root_of(corporate)
    derived = with_timestamp_authorities(base, tsa_root)
    assert derived.timestamp_authorities == tsa_root.timestamp_authorities
    assert derived.timestamp_authorities != base.timestamp_authorities
    assert derived.certificate_authorities == base.certificate_authorities and derived.tlogs == base.tlogs
    assert derived.fingerprint not in (base.fingerprint, tsa_root.fingerprint)
