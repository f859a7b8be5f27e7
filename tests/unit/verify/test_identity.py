"""Identity policy: who signed, as Fulcio attested it, against what the cluster allows."""

from __future__ import annotations

import logging

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.unit.verify.test_certs import (
    Pki,
    bundle_certificates,
    connaisseur_certificate,
    leaf_builder,
    load_bundle,
)
from webhook.errors import IdentityMismatchError, PolicyError, VerificationError
from webhook.verify._der import DERError, decode_string
from webhook.verify.identity import (
    AllOf,
    AnyOf,
    ExtensionClaims,
    Identity,
    UnsafeNoOp,
    signer_of,
)
from webhook.verify.regexp import RegexpMode

GITHUB = "https://token.actions.githubusercontent.com"
BEACON = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
OTHERNAME_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")


def utf8(value: str) -> bytes:
    data = value.encode()
    if len(data) < 0x80:
        return bytes([0x0C, len(data)]) + data
    return bytes([0x0C, 0x81, len(data)]) + data


def cert(san: x509.GeneralName | None = None, fulcio: dict[int, bytes] | None = None) -> x509.Certificate:
    pki = PKI
    key = ec.generate_private_key(ec.SECP256R1())
    builder = leaf_builder(pki.inter, pki.inter_key, key, san=san, fulcio=fulcio)
    return builder.sign(pki.inter_key, hashes.SHA384())


PKI = Pki()
ALICE = cert(fulcio={1: b"https://accounts.example.com"})


# ---- Identity -----------------------------------------------------------------------------------


def test_exact_identity_matches() -> None:
    Identity(issuer="https://accounts.example.com", subject="alice@example.com").verify(ALICE)


def test_mismatch_says_what_was_found_and_expected() -> None:
    policy = Identity(issuer="https://accounts.example.com", subject="bob@example.com")
    with pytest.raises(IdentityMismatchError) as exc:
        policy.verify(ALICE)
    assert exc.value.step == "identity"
    assert exc.value.found == "alice@example.com / issuer https://accounts.example.com"
    assert exc.value.expected == "subject bob@example.com, issuer https://accounts.example.com"
    assert str(exc.value) == (
        "identity: certificate identity alice@example.com / issuer https://accounts.example.com "
        "does not match expected subject bob@example.com, issuer https://accounts.example.com"
    )


def test_issuer_must_match_too() -> None:
    with pytest.raises(IdentityMismatchError):
        Identity(issuer="https://evil.example.com", subject="alice@example.com").verify(ALICE)


@pytest.mark.parametrize(
    ("pattern", "ok"),
    [
        (r"alice@example\.com", True),
        (r".*@example\.com", True),
        (r"alice", False),  # full match: a prefix is not enough
        (r"example\.com", False),
        (r"alice@example\.com.", False),
    ],
)
def test_subject_regexp_is_full_match(pattern: str, ok: bool) -> None:
    policy = Identity(issuer_regexp=r"https://accounts\.example\.(com|org)", subject_regexp=pattern)
    if ok:
        policy.verify(ALICE)
    else:
        with pytest.raises(IdentityMismatchError):
            policy.verify(ALICE)


@pytest.mark.parametrize(
    ("pattern", "ok"),
    [
        (r"alice", True),  # search: a match anywhere, as cosign and policy-controller read it
        (r"example\.com$", True),
        (r"^alice@example\.com$", True),
        (r"^example\.com", False),
        (r"bob", False),
    ],
)
def test_subject_regexp_in_search_mode_matches_anywhere(pattern: str, ok: bool) -> None:
    policy = Identity(issuer_regexp=r"accounts\.example", subject_regexp=pattern, regexp_mode="search")
    if ok:
        policy.verify(ALICE)
    else:
        with pytest.raises(IdentityMismatchError) as exc:
            policy.verify(ALICE)
        assert exc.value.expected == (
            f"subject matching regexp {pattern} (search), issuer matching regexp accounts\\.example (search)")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"subject": "a"},
        {"issuer": "i"},
        {"issuer": "i", "issuer_regexp": "i", "subject": "a"},
        {"issuer": "i", "subject": "a", "subject_regexp": "a"},
        {"issuer": "i", "subject_regexp": "("},
    ],
)
@pytest.mark.parametrize("mode", ["full", "search"])
def test_invalid_identity_is_a_policy_error(kwargs: dict[str, str], mode: RegexpMode) -> None:
    with pytest.raises(PolicyError):
        Identity(**kwargs, regexp_mode=mode)


def test_issuer_v2_extension_wins_over_deprecated_one() -> None:
    leaf = cert(fulcio={1: b"https://old.example.com", 8: utf8("https://new.example.com")})
    Identity(issuer="https://new.example.com", subject="alice@example.com").verify(leaf)
    with pytest.raises(IdentityMismatchError):
        Identity(issuer="https://old.example.com", subject="alice@example.com").verify(leaf)


def test_othername_san_is_decoded_from_der() -> None:
    leaf = cert(
        san=x509.OtherName(OTHERNAME_OID, utf8("foo!oidc.local")), fulcio={8: utf8("https://oidc.local")}
    )
    Identity(issuer="https://oidc.local", subject="foo!oidc.local").verify(leaf)
    assert signer_of(leaf).subject == "foo!oidc.local"


def test_uri_san_matches() -> None:
    leaf = cert(san=x509.UniformResourceIdentifier("https://ci.example.com/job"), fulcio={1: b"https://ci"})
    Identity(issuer="https://ci", subject="https://ci.example.com/job").verify(leaf)


def test_missing_issuer_never_matches() -> None:
    with pytest.raises(IdentityMismatchError) as exc:
        Identity(issuer_regexp=".*", subject="alice@example.com").verify(cert())
    assert "issuer (none)" in exc.value.found


def test_malformed_der_extension_is_a_verification_error() -> None:
    leaf = cert(fulcio={8: b"\x0c\x05abc"})  # length says 5, only 3 bytes follow
    with pytest.raises(VerificationError) as exc:
        Identity(issuer="abc", subject="alice@example.com").verify(leaf)
    assert exc.value.step == "identity"
    assert signer_of(leaf).issuer == ""  # audit still gets a signer, minus the broken claim


# ---- ExtensionClaims ----------------------------------------------------------------------------

CI = cert(
    san=x509.UniformResourceIdentifier(
        "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
    ),
    fulcio={
        1: GITHUB.encode(),
        6: b"refs/heads/main",
        8: utf8(GITHUB),
        11: utf8("github-hosted"),
        14: utf8("refs/heads/main"),
    },
)


def test_extension_claims_by_name_and_oid() -> None:
    ExtensionClaims(
        {
            "sourceRepositoryRef": "refs/heads/main",
            "RUNNERENVIRONMENT": "github-hosted",  # names are case-insensitive
            "githubWorkflowRef": "refs/heads/main",  # .6: raw bytes, not DER
            "1.3.6.1.4.1.57264.1.14": "refs/heads/main",
            "issuer": GITHUB,
        }
    ).verify(CI)


def test_extension_claim_mismatches_are_all_reported() -> None:
    policy = ExtensionClaims({"sourceRepositoryRef": "refs/tags/v1", "deploymentEnvironment": "prod"})
    with pytest.raises(IdentityMismatchError) as exc:
        policy.verify(CI)
    assert "sourceRepositoryRef is 'refs/heads/main', expected 'refs/tags/v1'" in exc.value.reason
    assert "deploymentEnvironment is absent, expected 'prod'" in exc.value.reason
    assert exc.value.expected == "sourceRepositoryRef=refs/tags/v1, deploymentEnvironment=prod"


@pytest.mark.parametrize(
    "claims",
    [{}, {"favouriteColour": "blue"}, {"1.3.6.1.4.1.57264.1.7": "x"}, {"1.3.6.1.4.1.57264.1.99": "x"}],
)
def test_invalid_extension_claims_are_policy_errors(claims: dict[str, str]) -> None:
    with pytest.raises(PolicyError):
        ExtensionClaims(claims)


# ---- combinators --------------------------------------------------------------------------------


def test_any_of_passes_on_one_match_and_lists_alternatives_otherwise() -> None:
    bob = Identity(issuer="https://accounts.example.com", subject="bob@example.com")
    alice = Identity(issuer="https://accounts.example.com", subject="alice@example.com")
    AnyOf([bob, alice]).verify(ALICE)
    with pytest.raises(IdentityMismatchError) as exc:
        AnyOf([bob, Identity(issuer=GITHUB, subject_regexp=r"https://github\.com/acme/.*")]).verify(ALICE)
    assert "subject bob@example.com" in exc.value.expected
    # shown as written (no repr, no doubled backslashes), with how it matches
    assert r"subject matching regexp https://github\.com/acme/.* (full match)" in exc.value.expected


@pytest.mark.parametrize("combinator", [AnyOf, AllOf])
def test_empty_combinators_fail_closed(combinator: type[AnyOf] | type[AllOf]) -> None:
    with pytest.raises(IdentityMismatchError) as exc:
        combinator([]).verify(ALICE)
    assert "fails closed" in exc.value.reason


def test_all_of_needs_identity_and_claims() -> None:
    identity = Identity(issuer=GITHUB, subject_regexp=r"https://github\.com/acme/app/.*")
    AllOf([identity, ExtensionClaims({"sourceRepositoryRef": "refs/heads/main"})]).verify(CI)
    with pytest.raises(IdentityMismatchError):
        AllOf([identity, ExtensionClaims({"sourceRepositoryRef": "refs/heads/dev"})]).verify(CI)


def test_unsafe_noop_accepts_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        UnsafeNoOp().verify(ALICE)
    assert "UnsafeNoOp" in caplog.text


# ---- DER helper ---------------------------------------------------------------------------------


def test_der_strings() -> None:
    assert decode_string(utf8("x" * 200)) == "x" * 200
    assert decode_string(b"\x16\x03abc") == "abc"  # IA5String
    for bad in (b"\x0c\x03ab", b"\x0c\x01ab", b"\x04\x01a", b"\x0c\x81\x01a", b"\x0c\x80", b"\x0c"):
        with pytest.raises(DERError):
            decode_string(bad)


# ---- real certificates --------------------------------------------------------------------------


@pytest.mark.fixtures
def test_connaisseur_keyless_signer() -> None:
    leaf, _ = connaisseur_certificate()
    signer = signer_of(leaf)
    assert (signer.subject, signer.issuer) == (
        "philipp.belitz@securesystems.de",
        "https://github.com/login/oauth",
    )
    Identity(issuer="https://github.com/login/oauth", subject="philipp.belitz@securesystems.de").verify(leaf)
    with pytest.raises(IdentityMismatchError) as exc:
        Identity(issuer="https://github.com/login/oauth", subject="bob@example.com").verify(leaf)
    assert exc.value.reason == (
        "certificate identity philipp.belitz@securesystems.de / issuer https://github.com/login/oauth "
        "does not match expected subject bob@example.com, issuer https://github.com/login/oauth"
    )


@pytest.mark.fixtures
def test_github_actions_conformance_leaf() -> None:
    leaf = bundle_certificates(load_bundle("happy-path-v0.3"))[0]
    signer = signer_of(leaf)
    assert signer.subject == BEACON
    assert signer.issuer == GITHUB
    assert signer.extensions["runnerEnvironment"] == "github-hosted"
    assert signer.extensions["buildSignerURI"] == BEACON  # long-form DER length (0x81)
    Identity(
        issuer=GITHUB, subject_regexp=r"https://github\.com/sigstore-conformance/.+@refs/heads/main"
    ).verify(leaf)
    ExtensionClaims(
        {
            "sourceRepositoryRef": "refs/heads/main",
            "runnerEnvironment": "github-hosted",
            "githubWorkflowRef": "refs/heads/main",
            "buildSignerURI": BEACON,
            "sourceRepositoryURI": "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon",
        }
    ).verify(leaf)
    with pytest.raises(IdentityMismatchError):
        ExtensionClaims({"sourceRepositoryRef": "refs/tags/v1.0.0"}).verify(leaf)
    with pytest.raises(IdentityMismatchError):
        Identity(issuer=GITHUB, subject_regexp=r"https://github\.com/sigstore-conformance/").verify(leaf)
