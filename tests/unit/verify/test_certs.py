"""Fulcio path validation: generated PKIs for each rule, real conformance leaves against prod.

The small PKI builder here is reused by test_sct.py and test_identity.py.
"""

from __future__ import annotations

import base64
import json
import timeit
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.fixtures_path import shared_fixture
from webhook.errors import VerificationError
from webhook.verify.certs import CertificateVerifier, check_untrusted_chain
from webhook.verify.trustroot import TrustedRoot

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
FULCIO = "1.3.6.1.4.1.57264.1"
BUNDLES = ("sigstore-conformance", "test", "assets", "bundle-verify")


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "signet.test"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _ski(key: ec.EllipticCurvePrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def make_ca(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
    not_before: datetime,
    not_after: datetime,
    key_usage_cert_sign: bool = True,
) -> x509.Certificate:
    """A CA certificate shaped like Fulcio's (P-384, EKU codeSigning on intermediates)."""
    issuer_name, issuer_key = issuer if issuer else (_name(name), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0), critical=True
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_usage_cert_sign,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(_ski(key), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    return builder.sign(issuer_key, hashes.SHA384())


def leaf_builder(
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    *,
    not_before: datetime = T0,
    san: x509.GeneralName | None = None,
    eku: Sequence[x509.ObjectIdentifier] | None = None,
    digital_signature: bool = True,
    ca: bool = False,
    fulcio: dict[int, bytes] | None = None,
    serial: int = 0x5157,
) -> x509.CertificateBuilder:
    """A Fulcio-like leaf (empty subject, one critical SAN, 10 minutes) not yet signed."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(minutes=10))
        .add_extension(
            x509.KeyUsage(
                digital_signature=digital_signature,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(list(eku if eku is not None else [ExtendedKeyUsageOID.CODE_SIGNING])),
            critical=False,
        )
        .add_extension(_ski(key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
        .add_extension(
            x509.SubjectAlternativeName([san or x509.RFC822Name("alice@example.com")]), critical=True
        )
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    for number, value in (fulcio or {}).items():
        oid = x509.ObjectIdentifier(f"{FULCIO}.{number}")
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=False)
    return builder


@dataclass
class Pki:
    """A private Fulcio: P-384 root and intermediate, P-256 leaves."""

    root_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    inter_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    root_validity: tuple[datetime, datetime] = (
        datetime(2020, 1, 1, tzinfo=UTC),
        datetime(2040, 1, 1, tzinfo=UTC),
    )
    inter_validity: tuple[datetime, datetime] = (
        datetime(2021, 1, 1, tzinfo=UTC),
        datetime(2035, 1, 1, tzinfo=UTC),
    )
    root: x509.Certificate = field(init=False)
    inter: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        self.root = make_ca(
            "root", self.root_key, not_before=self.root_validity[0], not_after=self.root_validity[1]
        )
        self.inter = make_ca(
            "intermediate",
            self.inter_key,
            issuer=(self.root.subject, self.root_key),
            not_before=self.inter_validity[0],
            not_after=self.inter_validity[1],
        )

    def leaf(self, **kwargs: Any) -> x509.Certificate:
        key = ec.generate_private_key(ec.SECP256R1())
        return leaf_builder(self.inter, self.inter_key, key, **kwargs).sign(self.inter_key, hashes.SHA384())

    def trusted_root(
        self,
        *,
        start: str = "2021-01-01T00:00:00Z",
        end: str | None = None,
        chain: Sequence[x509.Certificate] | None = None,
        ctlogs: Sequence[dict[str, Any]] = (),
    ) -> TrustedRoot:
        valid_for = {"start": start, **({"end": end} if end else {})}
        return TrustedRoot.from_json(
            json.dumps(
                {
                    "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
                    "tlogs": [],
                    "ctlogs": list(ctlogs),
                    "timestampAuthorities": [],
                    "certificateAuthorities": [
                        {
                            "uri": "https://fulcio.test",
                            "certChain": {
                                "certificates": [
                                    {"rawBytes": b64_der(c)} for c in (chain or (self.inter, self.root))
                                ]
                            },
                            "validFor": valid_for,
                        }
                    ],
                }
            )
        )


def b64_der(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def _reason(exc: pytest.ExceptionInfo[VerificationError]) -> str:
    assert exc.value.step == "certificate chain"
    return exc.value.reason


# ---- generated PKI ------------------------------------------------------------------------------


def test_valid_leaf_returns_chain_leaf_to_root() -> None:
    pki = Pki()
    leaf = pki.leaf()
    chain = CertificateVerifier(pki.trusted_root()).verify(leaf, T0 + timedelta(minutes=1))
    assert chain == (leaf, pki.inter, pki.root)


def test_leaf_validity_bounds_are_inclusive() -> None:
    pki = Pki()
    leaf = pki.leaf()
    verifier = CertificateVerifier(pki.trusted_root())
    assert verifier.verify(leaf, leaf.not_valid_before_utc)[0] == leaf
    assert verifier.verify(leaf, leaf.not_valid_after_utc)[0] == leaf


def test_signing_time_outside_leaf_validity_is_named() -> None:
    pki = Pki()
    verifier = CertificateVerifier(pki.trusted_root())
    with pytest.raises(VerificationError) as exc:
        verifier.verify(pki.leaf(), T0 + timedelta(minutes=11))
    assert "not valid at the signing time 2024-05-01T12:11:00+00:00" in _reason(exc)


def test_ca_valid_for_window_selects_ca_inclusively() -> None:
    pki = Pki()
    leaf = pki.leaf()
    at = T0 + timedelta(minutes=5)
    assert CertificateVerifier(pki.trusted_root(end="2024-05-01T12:05:00Z")).verify(leaf, at)
    with pytest.raises(VerificationError) as exc:
        CertificateVerifier(pki.trusted_root(end="2024-05-01T12:04:59Z")).verify(leaf, at)
    assert "no Fulcio CA of the trust root was valid at the signing time" in _reason(exc)


def test_leaf_from_lookalike_ca_is_rejected() -> None:
    # Same names, other keys: only the signature check can tell them apart.
    impostor, pki = Pki(), Pki()
    with pytest.raises(VerificationError) as exc:
        CertificateVerifier(pki.trusted_root()).verify(impostor.leaf(), T0)
    assert "does not chain to a Fulcio CA" in _reason(exc)


def test_leaf_of_unknown_issuer_is_rejected() -> None:
    pki = Pki()
    other_key = ec.generate_private_key(ec.SECP384R1())
    other = make_ca(
        "somebody else", other_key, not_before=pki.root_validity[0], not_after=pki.root_validity[1]
    )
    leaf = leaf_builder(other, other_key, ec.generate_private_key(ec.SECP256R1())).sign(
        other_key, hashes.SHA384()
    )
    with pytest.raises(VerificationError) as exc:
        CertificateVerifier(pki.trusted_root()).verify(leaf, T0)
    assert "no Fulcio CA of the trust root issued this certificate" in _reason(exc)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"eku": [ExtendedKeyUsageOID.SERVER_AUTH]}, "codeSigning"),
        ({"digital_signature": False}, "digitalSignature"),
        ({"ca": True}, "is a CA certificate"),
    ],
)
def test_leaf_usage_is_enforced(kwargs: dict[str, Any], expected: str) -> None:
    pki = Pki()
    with pytest.raises(VerificationError) as exc:
        CertificateVerifier(pki.trusted_root()).verify(pki.leaf(**kwargs), T0)
    assert expected in _reason(exc)


def test_expired_intermediate_fails_even_if_leaf_is_valid() -> None:
    # The anchor (intermediate) expired before the leaf was issued: the library checks the anchor.
    pki = Pki(inter_validity=(datetime(2021, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)))
    with pytest.raises(VerificationError) as exc:
        CertificateVerifier(pki.trusted_root()).verify(pki.leaf(), T0)
    assert "does not chain" in _reason(exc)


def test_expired_root_fails_even_if_intermediate_is_valid() -> None:
    pki = Pki(
        root_validity=(datetime(2020, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)),
        inter_validity=(datetime(2021, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC)),
    )
    with pytest.raises(VerificationError) as exc:
        CertificateVerifier(pki.trusted_root()).verify(pki.leaf(), T0)
    assert "its chain was not valid" in _reason(exc)


def test_broken_ca_chain_is_set_aside_at_load() -> None:
    pki, stranger = Pki(), Pki()
    verifier = CertificateVerifier(pki.trusted_root(chain=(pki.inter, stranger.root)))
    assert next(iter(verifier.unusable.values())).startswith("chain does not validate")
    with pytest.raises(VerificationError):
        verifier.verify(pki.leaf(), T0)


def test_root_only_ca_must_be_allowed_to_sign_certificates() -> None:
    pki = Pki()
    weak_root = make_ca(
        "root",
        pki.root_key,
        not_before=pki.root_validity[0],
        not_after=pki.root_validity[1],
        key_usage_cert_sign=False,
    )
    verifier = CertificateVerifier(pki.trusted_root(chain=(weak_root,)))
    assert "keyCertSign" in next(iter(verifier.unusable.values()))


def test_naive_signing_time_is_refused() -> None:
    pki = Pki()
    with pytest.raises(VerificationError):
        CertificateVerifier(pki.trusted_root()).verify(pki.leaf(), T0.replace(tzinfo=None))


def test_untrusted_chain_with_root_is_refused() -> None:
    pki = Pki()
    check_untrusted_chain([pki.leaf(), pki.inter])
    with pytest.raises(VerificationError) as exc:
        check_untrusted_chain([pki.leaf(), pki.inter, pki.root])
    assert "element 2" in _reason(exc)


# ---- real material ------------------------------------------------------------------------------


def load_bundle(case: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(shared_fixture(*BUNDLES, case, "bundle.sigstore.json").read_text())
    return data


def bundle_certificates(bundle: dict[str, Any]) -> list[x509.Certificate]:
    material = bundle["verificationMaterial"]
    raws = (
        [material["certificate"]]
        if "certificate" in material
        else material["x509CertificateChain"]["certificates"]
    )
    return [x509.load_der_x509_certificate(base64.b64decode(c["rawBytes"])) for c in raws]


def integrated_time(bundle: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(
        int(bundle["verificationMaterial"]["tlogEntries"][0]["integratedTime"]), UTC
    )


def case_root(case: str) -> TrustedRoot:
    custom = shared_fixture(*BUNDLES, case) / "trusted_root.json"
    return TrustedRoot.from_file(
        custom if custom.exists() else shared_fixture("trust", "prod", "trusted_root.json")
    )


@pytest.fixture(scope="module")
def prod_verifier() -> CertificateVerifier:
    return CertificateVerifier(TrustedRoot.from_file(shared_fixture("trust", "prod", "trusted_root.json")))


@pytest.mark.fixtures
@pytest.mark.parametrize(
    "case", ["happy-path-v0.1", "happy-path-v0.2", "happy-path-v0.3", "happy-path-intoto-in-dsse-v3"]
)
def test_conformance_leaf_verifies_at_integrated_time(case: str, prod_verifier: CertificateVerifier) -> None:
    bundle = load_bundle(case)
    leaf = bundle_certificates(bundle)[0]
    chain = prod_verifier.verify(leaf, integrated_time(bundle))
    assert chain[0] == leaf
    assert [c.subject.rfc4514_string() for c in chain[1:]] == [
        "CN=sigstore-intermediate,O=sigstore.dev",
        "CN=sigstore,O=sigstore.dev",
    ]


@pytest.mark.fixtures
def test_conformance_leaf_is_not_valid_a_day_later(prod_verifier: CertificateVerifier) -> None:
    bundle = load_bundle("happy-path-v0.3")
    with pytest.raises(VerificationError) as exc:
        prod_verifier.verify(bundle_certificates(bundle)[0], integrated_time(bundle) + timedelta(days=1))
    assert "not valid at the signing time" in _reason(exc)


@pytest.mark.fixtures
def test_staging_leaf_is_rejected_by_production_root(prod_verifier: CertificateVerifier) -> None:
    bundle = load_bundle("bundle-from-wrong-instance_fail")
    with pytest.raises(VerificationError) as exc:
        prod_verifier.verify(bundle_certificates(bundle)[0], integrated_time(bundle))
    assert "does not chain to a Fulcio CA" in _reason(exc)


@pytest.mark.fixtures
def test_expired_certificate_case_is_rejected() -> None:
    bundle = load_bundle("intoto-expired-certificate_fail")
    verifier = CertificateVerifier(case_root("intoto-expired-certificate_fail"))
    with pytest.raises(VerificationError):
        verifier.verify(bundle_certificates(bundle)[0], integrated_time(bundle))


@pytest.mark.fixtures
def test_bundle_chain_containing_root_is_refused(prod_verifier: CertificateVerifier) -> None:
    bundle = load_bundle("bundle-with-root-cert_fail")
    certificates = bundle_certificates(bundle)
    # The leaf itself is fine: the path is built from the trust root only ...
    assert prod_verifier.verify(certificates[0], integrated_time(bundle))[0] == certificates[0]
    # ... but a chain that carries a root must be refused by whoever parses the bundle.
    with pytest.raises(VerificationError):
        check_untrusted_chain(certificates)


@pytest.mark.fixtures
def test_connaisseur_keyless_certificate_verifies(prod_verifier: CertificateVerifier) -> None:
    leaf, when = connaisseur_certificate()
    assert len(prod_verifier.verify(leaf, when)) == 3


def connaisseur_certificate() -> tuple[x509.Certificate, datetime]:
    manifest = json.loads(
        shared_fixture(
            "cosign-image-signatures",
            "connaisseur-testimage",
            "securesystemsengineering",
            "testimage",
            "manifests",
            "sha256-31dc72a13a0c34b40eb95419d2b2fd67320c856baf3b72da518023ee8d370aee.sig.json",
        ).read_text()
    )
    annotations = manifest["layers"][0]["annotations"]
    leaf = x509.load_pem_x509_certificate(annotations["dev.sigstore.cosign/certificate"].encode())
    rekor = json.loads(annotations["dev.sigstore.cosign/bundle"])
    return leaf, datetime.fromtimestamp(rekor["Payload"]["integratedTime"], UTC)


BOGUS = [
    "bogus-intermediate-with-eku",
    "bogus-intermediate",
    "bogus-leaf-invalid-eku",
    "bogus-leaf-invalid-ku",
    "bogus-leaf-missing-eku",
    "bogus-leaf",
    "bogus-root-invalid-ku",
    "bogus-root-missing-ku",
    "bogus-root-noncritical-bc",
    "bogus-root",
]


def bogus(name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(shared_fixture("x509-bogus", f"{name}.pem").read_bytes())


@pytest.mark.fixtures
@pytest.mark.parametrize("name", BOGUS)
def test_bogus_certificates_are_rejected(name: str, prod_verifier: CertificateVerifier) -> None:
    cert = bogus(name)
    at = datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(VerificationError):
        prod_verifier.verify(cert, at)
    # Even when their own (RSA, sigstore-python-made) root is the trust anchor, none is a usable leaf.
    for anchors in (["bogus-root"], ["bogus-intermediate", "bogus-root"]):
        chain = [bogus(a) for a in anchors]
        with pytest.raises(VerificationError):
            CertificateVerifier(Pki().trusted_root(start="2023-01-01T00:00:00Z", chain=chain)).verify(
                cert, at
            )


@pytest.mark.fixtures
@pytest.mark.parametrize(
    "name", ["bogus-root-invalid-ku", "bogus-root-missing-ku", "bogus-root-noncritical-bc"]
)
def test_bogus_roots_are_not_usable_as_fulcio_cas(name: str) -> None:
    verifier = CertificateVerifier(Pki().trusted_root(start="2023-01-01T00:00:00Z", chain=[bogus(name)]))
    assert verifier.unusable


@pytest.mark.fixtures
def test_leaf_verification_cost(prod_verifier: CertificateVerifier) -> None:
    """Not a benchmark: guards against falling back to full-chain validation (≈ 2x slower)."""
    bundle = load_bundle("happy-path-v0.3")
    leaf, at = bundle_certificates(bundle)[0], integrated_time(bundle)
    runs = 200
    per_call = min(timeit.repeat(lambda: prod_verifier.verify(leaf, at), number=runs, repeat=3)) / runs
    assert per_call < 0.02  # generous: CI machines are slow; measured ≈ 0.7 ms here
