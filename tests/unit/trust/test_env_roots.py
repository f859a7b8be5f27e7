"""A trust root from cosign's SIGSTORE_* environment variables."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from webhook.errors import TrustError
from webhook.trust.embedded import production_trusted_root, production_trusted_root_json
from webhook.trust.env_roots import trusted_root_from_env
from webhook.verify.trustroot import TrustedRoot

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "example.org"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


Issuer = tuple[x509.Name, ec.EllipticCurvePrivateKey]
SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


def ca_cert(
    cn: str, key: ec.EllipticCurvePrivateKey, issuer: Issuer | None, start: datetime, days: int
) -> x509.Certificate:
    issuer_name, issuer_key = issuer or (name(cn), key)
    return (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(issuer_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA384()))


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def pub_pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, SPKI)


def spki_hash(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    der = key.public_key().public_bytes(serialization.Encoding.DER, SPKI)
    return hashlib.sha256(der).digest()


@pytest.fixture
def private_sigstore(tmp_path: Path) -> dict[str, object]:
    root_key = ec.generate_private_key(ec.SECP384R1())
    inter_key = ec.generate_private_key(ec.SECP384R1())
    root = ca_cert("private-root", root_key, None, NOW, 3650)
    inter = ca_cert("private-intermediate", inter_key, (root.subject, root_key), NOW + timedelta(days=1), 365)
    rekor = ec.generate_private_key(ec.SECP256R1())
    ctlog = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "fulcio.pem").write_bytes(pem(inter) + pem(root))  # intermediate first, as cosign docs show
    (tmp_path / "rekor.pub").write_bytes(pub_pem(rekor))
    (tmp_path / "ctfe.pub").write_bytes(pub_pem(ctlog))
    env = {"SIGSTORE_ROOT_FILE": str(tmp_path / "fulcio.pem"),
           "SIGSTORE_REKOR_PUBLIC_KEY": str(tmp_path / "rekor.pub"),
           "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE": str(tmp_path / "ctfe.pub")}
    return {"env": env, "root": root, "inter": inter, "rekor": rekor, "ctlog": ctlog}


def test_all_three_variables_make_a_complete_trust_root(private_sigstore: dict[str, object]) -> None:
    env = private_sigstore["env"]
    assert isinstance(env, dict)
    document = trusted_root_from_env(env)
    assert document is not None

    root = TrustedRoot.from_json(document)

    chains = sorted((ca.chain for ca in root.certificate_authorities), key=len)
    assert chains == [(private_sigstore["root"],), (private_sigstore["inter"], private_sigstore["root"])]
    intermediate_ca = next(ca for ca in root.certificate_authorities if len(ca.chain) == 2)
    assert intermediate_ca.valid_for.start == NOW + timedelta(days=1)  # the later of the two starts
    assert intermediate_ca.valid_for.end == NOW + timedelta(days=366)
    assert intermediate_ca.subject == "example.org/private-intermediate"

    rekor, ctlog = private_sigstore["rekor"], private_sigstore["ctlog"]
    assert isinstance(rekor, ec.EllipticCurvePrivateKey) and isinstance(ctlog, ed25519.Ed25519PrivateKey)
    assert [log.log_id for log in root.tlogs] == [spki_hash(rekor)]
    assert root.tlogs[0].key_details == "PKIX_ECDSA_P256_SHA_256"
    assert root.tlogs[0].valid_for.end is None
    assert root.tlogs_for(spki_hash(rekor)) == [root.tlogs[0]]
    assert [log.log_id for log in root.ctlogs] == [spki_hash(ctlog)]
    assert root.ctlogs[0].key_details == "PKIX_ED25519"


def test_unset_variables_mean_no_env_trust_root() -> None:
    assert trusted_root_from_env({"HOME": "/root"}) is None


def test_parts_not_given_come_from_the_base(private_sigstore: dict[str, object]) -> None:
    env = private_sigstore["env"]
    assert isinstance(env, dict)
    only_rekor = {"SIGSTORE_REKOR_PUBLIC_KEY": env["SIGSTORE_REKOR_PUBLIC_KEY"]}

    document = trusted_root_from_env(only_rekor, base=production_trusted_root_json())
    assert document is not None
    root = TrustedRoot.from_json(document)

    prod = production_trusted_root()
    assert len(root.tlogs) == 1 and root.tlogs[0].log_id not in {log.log_id for log in prod.tlogs}
    chains = [ca.chain for ca in root.certificate_authorities]
    assert chains == [ca.chain for ca in prod.certificate_authorities]
    assert len(root.timestamp_authorities) == len(prod.timestamp_authorities)


def test_unreadable_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(TrustError, match=r"SIGSTORE_ROOT_FILE=.*cannot read"):
        trusted_root_from_env({"SIGSTORE_ROOT_FILE": str(tmp_path / "missing.pem")})


def test_intermediate_without_its_root_is_rejected(
    private_sigstore: dict[str, object], tmp_path: Path
) -> None:
    inter = private_sigstore["inter"]
    assert isinstance(inter, x509.Certificate)
    (tmp_path / "only-inter.pem").write_bytes(pem(inter))
    with pytest.raises(TrustError, match="no self-signed root"):
        trusted_root_from_env({"SIGSTORE_ROOT_FILE": str(tmp_path / "only-inter.pem")})


def test_key_file_without_a_key_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "rekor.pub").write_text("not a key")
    with pytest.raises(TrustError, match="SIGSTORE_REKOR_PUBLIC_KEY: no PEM public key"):
        trusted_root_from_env({"SIGSTORE_REKOR_PUBLIC_KEY": str(tmp_path / "rekor.pub")})
