"""A Fulcio-like certificate authority: P-384 root and intermediate issuing 10-minute code-signing leaves.

Leaves follow the Fulcio profile (SIGSTORE.md §3.1) including an embedded precertificate SCT from the
kit's CT log; options produce deliberately broken leaves for negative tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.sigstore_kit import der
from tests.sigstore_kit.ctlog import CTLog, sct_list_extension_value
from tests.sigstore_kit.keys import (
    PrivateKey,
    ValidFor,
    b64,
    new_p256,
    new_p384,
    sha256,
    spki_der,
    utc_seconds,
)

FULCIO_OID_PREFIX = "1.3.6.1.4.1.57264.1"
OTHERNAME_SAN_OID = x509.ObjectIdentifier(f"{FULCIO_OID_PREFIX}.7")
SCT_LIST_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
LEAF_VALIDITY = timedelta(minutes=10)

SanKind = Literal["auto", "email", "uri", "othername"]
SctMode = Literal["valid", "none", "wrong_key", "unknown_log"]

DIGITAL_SIGNATURE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
    key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
)
CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
    key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
)
_DEFAULT_CA_START = datetime(2000, 1, 1, tzinfo=UTC)
_DEFAULT_CA_END = datetime(2099, 12, 31, tzinfo=UTC)


def fulcio_oid(suffix: int) -> x509.ObjectIdentifier:
    return x509.ObjectIdentifier(f"{FULCIO_OID_PREFIX}.{suffix}")


def fulcio_extension_value(suffix: int, value: str) -> bytes:
    """Encode a Fulcio claim: raw UTF-8 for .1–.6, DER UTF8String for .8 and later (fulcio oid-info.md)."""
    if suffix == 7:
        raise ValueError("1.3.6.1.4.1.57264.1.7 is the OtherName SAN type, not an extension")
    return value.encode() if suffix <= 6 else der.utf8_string(value)


def subject_alternative_name(identity: str, kind: SanKind = "auto") -> x509.GeneralName:
    """The SAN for an identity: e-mail, URI, or Fulcio OtherName (username identities)."""
    if kind == "auto":
        kind = "uri" if "://" in identity else "email" if "@" in identity else "othername"
    if kind == "email":
        return x509.RFC822Name(identity)
    if kind == "uri":
        return x509.UniformResourceIdentifier(identity)
    return x509.OtherName(OTHERNAME_SAN_OID, der.utf8_string(identity))


@dataclass(frozen=True)
class SigningCertificate:
    """A leaf certificate with its private key and issuing chain (issuer first, root last)."""

    certificate: x509.Certificate
    private_key: PrivateKey
    chain: tuple[x509.Certificate, ...]

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def chain_pem(self) -> bytes:
        """The chain as cosign's ``dev.sigstore.cosign/chain`` annotation writes it."""
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)


def _ski(key: ec.EllipticCurvePublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key)


def _aki(issuer_key: ec.EllipticCurvePublicKey) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key)


@dataclass
class FulcioCA:
    """Root and intermediate (both ECDSA P-384, signing with SHA-384) plus the CT log that logs its leaves."""

    ctlog: CTLog
    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey
    intermediate: x509.Certificate
    uri: str = "https://fulcio.example"
    organization: str = "sigstore-kit.example"
    valid_for: ValidFor = field(default_factory=lambda: ValidFor(_DEFAULT_CA_START))

    @classmethod
    def create(
        cls,
        ctlog: CTLog,
        *,
        not_before: datetime = _DEFAULT_CA_START,
        not_after: datetime = _DEFAULT_CA_END,
        organization: str = "sigstore-kit.example",
    ) -> FulcioCA:
        """A fresh root and intermediate valid over ``[not_before, not_after]``."""
        root_key, intermediate_key = new_p384(), new_p384()
        root_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                               x509.NameAttribute(NameOID.COMMON_NAME, "sigstore-kit")])
        root = (
            x509.CertificateBuilder()
            .subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(CA_KEY_USAGE, critical=True)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_ski(root_key.public_key()), critical=False)
            .add_extension(_aki(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA384())
        )
        intermediate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                                     x509.NameAttribute(NameOID.COMMON_NAME, "sigstore-kit-intermediate")]))
            .issuer_name(root_name)
            .public_key(intermediate_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(CA_KEY_USAGE, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ski(intermediate_key.public_key()), critical=False)
            .add_extension(_aki(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA384())
        )
        return cls(ctlog=ctlog, root_key=root_key, root=root, intermediate_key=intermediate_key,
                   intermediate=intermediate, organization=organization, valid_for=ValidFor(not_before))

    def issue_leaf(
        self,
        identity: str,
        issuer: str,
        *,
        san_kind: SanKind = "auto",
        claims: Mapping[int, str] | None = None,
        not_before: datetime | None = None,
        validity: timedelta = LEAF_VALIDITY,
        key: PrivateKey | None = None,
        sct: SctMode = "valid",
        extended_key_usage: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.CODE_SIGNING,),
        key_usage: x509.KeyUsage | None = DIGITAL_SIGNATURE,
        issued_by_root: bool = False,
        issuer_oids: Sequence[int] = (1, 8),
    ) -> SigningCertificate:
        """Issue a Fulcio-profile leaf for ``identity`` (SAN) and OIDC ``issuer``.

        ``claims`` maps OID suffixes under 1.3.6.1.4.1.57264.1 to values (e.g. ``{9: build signer URI}``).
        Negative-test knobs: ``sct`` ("none", "wrong_key": our log ID but another key, "unknown_log"),
        ``extended_key_usage``/``key_usage`` None to omit, other validity, or issue directly from the root.
        ``issuer_oids`` says where the issuer goes: (1,) is a Fulcio certificate from before the .8 extension.
        """
        leaf_key = key or new_p256()
        issuer_cert, issuer_key = ((self.root, self.root_key) if issued_by_root
                                   else (self.intermediate, self.intermediate_key))
        start = utc_seconds(not_before)
        serial = x509.random_serial_number()

        extensions: list[tuple[x509.ExtensionType, bool]] = []
        if key_usage is not None:
            extensions.append((key_usage, True))
        if extended_key_usage is not None:
            extensions.append((x509.ExtendedKeyUsage(list(extended_key_usage)), False))
        extensions.append((x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), False))
        extensions.append((_aki(issuer_key.public_key()), False))
        extensions.append((x509.SubjectAlternativeName([subject_alternative_name(identity, san_kind)]), True))
        fulcio_claims = {**dict.fromkeys(issuer_oids, issuer), **(claims or {})}
        for suffix in sorted(fulcio_claims):
            value = fulcio_extension_value(suffix, fulcio_claims[suffix])
            extensions.append((x509.UnrecognizedExtension(fulcio_oid(suffix), value), False))

        def build(sct_value: bytes | None) -> x509.Certificate:
            builder = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([])).issuer_name(issuer_cert.subject)
                .public_key(leaf_key.public_key()).serial_number(serial)
                .not_valid_before(start).not_valid_after(start + validity)
            )
            for extension, critical in extensions:
                builder = builder.add_extension(extension, critical=critical)
            if sct_value is not None:
                sct_extension = x509.UnrecognizedExtension(SCT_LIST_OID, sct_value)
                builder = builder.add_extension(sct_extension, critical=False)
            return builder.sign(issuer_key, hashes.SHA384())

        precert = build(None)
        if sct == "none":
            return SigningCertificate(precert, leaf_key, self._chain(issued_by_root))

        # The SCT signs the TBS without the SCT extension: exactly what tbs_precertificate_bytes
        # recovers from the final certificate, provided everything else is rebuilt identically.
        tbs = precert.tbs_certificate_bytes
        issuer_key_hash = sha256(spki_der(issuer_key.public_key()))
        log = CTLog() if sct == "unknown_log" else self.ctlog
        forged_with = new_p256() if sct == "wrong_key" else None
        sct_bytes = log.sign_precert(tbs, issuer_key_hash, start, signing_key=forged_with)
        certificate = build(sct_list_extension_value([sct_bytes]))
        assert certificate.tbs_precertificate_bytes == tbs, "precertificate TBS changed when adding the SCT"
        scts = x509.PrecertificateSignedCertificateTimestamps
        parsed = certificate.extensions.get_extension_for_class(scts)
        assert len(parsed.value) == 1, "cryptography does not parse the SCT list back"
        return SigningCertificate(certificate, leaf_key, self._chain(issued_by_root))

    def _chain(self, issued_by_root: bool) -> tuple[x509.Certificate, ...]:
        return (self.root,) if issued_by_root else (self.intermediate, self.root)

    def trusted_root_entry(self) -> dict[str, object]:
        """This CA as a ``certificateAuthorities[]`` element: chain intermediate first, root last."""
        return {
            "subject": {"organization": self.organization, "commonName": "sigstore-kit"},
            "uri": self.uri,
            "certChain": {"certificates": [
                {"rawBytes": b64(cert.public_bytes(serialization.Encoding.DER))}
                for cert in (self.intermediate, self.root)
            ]},
            "validFor": self.valid_for.to_json(),
        }
