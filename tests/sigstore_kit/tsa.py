"""An RFC 3161 timestamp authority issuing DER TimeStampResp tokens (SIGSTORE.md §6.5).

The CMS SignedData is written by hand (``der``) because ``cryptography`` has no TSP/CMS builder; the
layout mirrors Sigstore's TSA: SHA-256 digests with a P-384 key, signed attributes contentType,
messageDigest and signingCertificateV2, certificates optionally embedded.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.sigstore_kit import der
from tests.sigstore_kit.keys import ValidFor, b64, new_p384, sha256, utc_seconds

TSA_POLICY_OID = "1.3.6.1.4.1.57264.2"
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_TST_INFO = "1.2.840.113549.1.9.16.1.4"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
OID_SHA256 = "2.16.840.1.101.3.4.2.1"
OID_ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2"
PKI_STATUS_GRANTED = 0
PKI_STATUS_REJECTION = 2

_DEFAULT_START = datetime(2000, 1, 1, tzinfo=UTC)
_DEFAULT_END = datetime(2099, 12, 31, tzinfo=UTC)


def _attribute(attr_type: str, value: bytes) -> bytes:
    return der.sequence(der.oid(attr_type), der.set_of([value]))


def _name(organization: str, common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass
class TimestampAuthority:
    """A TSA: self-signed P-384 root and a P-384 leaf with critical EKU timeStamping."""

    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey
    leaf: x509.Certificate
    uri: str = "https://timestamp.example/api/v1/timestamp"
    valid_for: ValidFor = field(default_factory=lambda: ValidFor(_DEFAULT_START))

    @classmethod
    def create(
        cls,
        *,
        not_before: datetime = _DEFAULT_START,
        not_after: datetime = _DEFAULT_END,
        leaf_not_before: datetime | None = None,
        leaf_not_after: datetime | None = None,
        eku_critical: bool = True,
    ) -> TimestampAuthority:
        """A fresh TSA; the leaf's validity defaults to the root's (narrow it for expiry tests)."""
        root_key, leaf_key = new_p384(), new_p384()
        root_name = _name("sigstore-kit.example", "sigstore-kit-tsa-selfsigned")
        root = (
            x509.CertificateBuilder()
            .subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA384())
        )
        leaf = (
            x509.CertificateBuilder()
            .subject_name(_name("sigstore-kit.example", "sigstore-kit-tsa")).issuer_name(root_name)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(leaf_not_before or not_before).not_valid_after(leaf_not_after or not_after)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=eku_critical)
            .sign(root_key, hashes.SHA384())
        )
        return cls(root_key=root_key, root=root, leaf_key=leaf_key, leaf=leaf, valid_for=ValidFor(not_before))

    def tst_info(self, message: bytes, gen_time: datetime, *, serial: int, nonce: int | None,
                 policy: str) -> bytes:
        """DER TSTInfo: version 1, policy, SHA-256 message imprint, serial, genTime, optional nonce."""
        imprint = der.sequence(der.algorithm_identifier(OID_SHA256, with_null=True),
                               der.octet_string(sha256(message)))
        fields = [der.integer(1), der.oid(policy), imprint, der.integer(serial),
                  der.generalized_time(gen_time)]
        if nonce is not None:
            fields.append(der.integer(nonce))
        return der.sequence(*fields)

    def timestamp(
        self,
        message: bytes,
        *,
        at: datetime | None = None,
        include_certificates: bool = True,
        nonce: int | None = None,
        policy: str = TSA_POLICY_OID,
        signing_key: ec.EllipticCurvePrivateKey | None = None,
    ) -> bytes:
        """A granted DER TimeStampResp over SHA-256(``message``) at ``at`` (now by default).

        ``signing_key`` forges the SignerInfo signature with another key for negative tests.
        """
        tst_info = self.tst_info(message, utc_seconds(at), serial=secrets.randbits(63) + 1, nonce=nonce,
                                 policy=policy)
        leaf_der = self.leaf.public_bytes(serialization.Encoding.DER)
        ess_cert_id = der.sequence(
            der.octet_string(sha256(leaf_der)),  # hashAlgorithm omitted: DEFAULT sha256
            der.sequence(
                der.sequence(der.explicit(4, self.leaf.issuer.public_bytes())),  # GeneralNames{directoryName}
                der.integer(self.leaf.serial_number),
            ),
        )
        attributes = [
            _attribute(OID_CONTENT_TYPE, der.oid(OID_TST_INFO)),
            _attribute(OID_MESSAGE_DIGEST, der.octet_string(sha256(tst_info))),
            _attribute(OID_SIGNING_CERTIFICATE_V2, der.sequence(der.sequence(ess_cert_id))),
        ]
        signed_attrs_set = der.set_of(attributes)
        # CMS signs the attributes encoded as a SET, then stores them under the [0] IMPLICIT tag.
        signature = (signing_key or self.leaf_key).sign(signed_attrs_set, ec.ECDSA(hashes.SHA256()))
        signer_info = der.sequence(
            der.integer(1),
            der.sequence(self.leaf.issuer.public_bytes(), der.integer(self.leaf.serial_number)),
            der.algorithm_identifier(OID_SHA256, with_null=True),
            der.implicit_constructed(0, signed_attrs_set),
            der.algorithm_identifier(OID_ECDSA_WITH_SHA256),
            der.octet_string(signature),
        )
        signed_data_fields = [
            der.integer(3),
            der.set_of([der.algorithm_identifier(OID_SHA256, with_null=True)]),
            der.sequence(der.oid(OID_TST_INFO), der.explicit(0, der.octet_string(tst_info))),
        ]
        if include_certificates:
            signed_data_fields.append(der.implicit_constructed(0, der.set_of([leaf_der])))
        signed_data_fields.append(der.set_of([signer_info]))
        signed_data = der.sequence(*signed_data_fields)
        content_info = der.sequence(der.oid(OID_SIGNED_DATA), der.explicit(0, signed_data))
        return der.sequence(der.sequence(der.integer(PKI_STATUS_GRANTED)), content_info)

    @staticmethod
    def rejection() -> bytes:
        """A TimeStampResp with status ``rejection`` and no token."""
        return der.sequence(der.sequence(der.integer(PKI_STATUS_REJECTION)))

    def trusted_root_entry(self) -> dict[str, object]:
        """This TSA as a ``timestampAuthorities[]`` element: chain leaf first, root last."""
        return {
            "subject": {"organization": "sigstore-kit.example", "commonName": "sigstore-kit-tsa-selfsigned"},
            "uri": self.uri,
            "certChain": {"certificates": [{"rawBytes": b64(cert.public_bytes(serialization.Encoding.DER))}
                                           for cert in (self.leaf, self.root)]},
            "validFor": self.valid_for.to_json(),
        }
