"""A private Sigstore instance for tests: CA, CT log, Rekor v1/v2, TSA, bundles, cosign signatures and attestations.

Everything is generated in memory with ``cryptography``; nothing touches the network.
"""

from tests.sigstore_kit.attestations import (
    DSSE_ENVELOPE_MEDIA_TYPE,
    PREDICATE_TYPE_ANNOTATION,
    SLSA_PROVENANCE_V1,
    STATEMENT_V01,
    STATEMENT_V1,
    LegacyImageAttestation,
    attest_image_bundle,
    attest_image_legacy,
    attestation_statement,
    go_envelope_json,
)
from tests.sigstore_kit.bundles import (
    COSIGN_SIGN_PREDICATE_TYPE,
    IN_TOTO_PAYLOAD_TYPE,
    MEDIA_TYPE_V01,
    MEDIA_TYPE_V02,
    MEDIA_TYPE_V03,
    MEDIA_TYPE_V03_OLD_STYLE,
    DsseEnvelope,
    bundle,
    in_toto_statement,
    message_signature,
    pae,
    statement_subject,
    tlog_entry_v1,
    tlog_entry_v2,
    verification_material,
)
from tests.sigstore_kit.ca import FulcioCA, SigningCertificate
from tests.sigstore_kit.cosign import LegacyImageSignature, cosign_sign_statement, simple_signing_payload
from tests.sigstore_kit.ctlog import CTLog
from tests.sigstore_kit.instance import SignedBundle, SigstoreKit, default_kit
from tests.sigstore_kit.tlog import InclusionProof, LogEntry, RekorV1Log, RekorV2Log, Witness
from tests.sigstore_kit.tsa import TimestampAuthority

__all__ = [
    "COSIGN_SIGN_PREDICATE_TYPE",
    "DSSE_ENVELOPE_MEDIA_TYPE",
    "IN_TOTO_PAYLOAD_TYPE",
    "MEDIA_TYPE_V01",
    "MEDIA_TYPE_V02",
    "MEDIA_TYPE_V03",
    "MEDIA_TYPE_V03_OLD_STYLE",
    "PREDICATE_TYPE_ANNOTATION",
    "SLSA_PROVENANCE_V1",
    "STATEMENT_V01",
    "STATEMENT_V1",
    "CTLog",
    "DsseEnvelope",
    "FulcioCA",
    "InclusionProof",
    "LegacyImageAttestation",
    "LegacyImageSignature",
    "LogEntry",
    "RekorV1Log",
    "RekorV2Log",
    "SignedBundle",
    "SigningCertificate",
    "SigstoreKit",
    "TimestampAuthority",
    "Witness",
    "attest_image_bundle",
    "attest_image_legacy",
    "attestation_statement",
    "bundle",
    "cosign_sign_statement",
    "default_kit",
    "go_envelope_json",
    "in_toto_statement",
    "message_signature",
    "pae",
    "simple_signing_payload",
    "statement_subject",
    "tlog_entry_v1",
    "tlog_entry_v2",
    "verification_material",
]
