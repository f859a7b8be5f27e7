"""Image attestations as cosign makes them: legacy ``.att`` layers (cosign < v3) and DSSE bundles (cosign v3).

Legacy layers carry the envelope JSON as Go writes it, the signature-layer annotations with an empty
signature, a ``predicateType`` annotation, and a Rekor bundle annotation for an ``intoto`` 0.0.1 entry
(or 0.0.2, or ``dsse`` 0.0.1) with a SET and no inclusion proof (SIGSTORE.md §1.2).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization

from tests.sigstore_kit import rekor_bodies
from tests.sigstore_kit.bundles import IN_TOTO_PAYLOAD_TYPE, DsseEnvelope, statement_subject
from tests.sigstore_kit.ca import SigningCertificate
from tests.sigstore_kit.cosign import (
    BUNDLE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    CHAIN_ANNOTATION,
    RFC3161_ANNOTATION,
    SIGNATURE_ANNOTATION,
    check_digest,
    rekor_bundle_annotation,
    rfc3161_annotation,
)
from tests.sigstore_kit.instance import DEFAULT_IDENTITY, DEFAULT_ISSUER, DEFAULT_REPOSITORY, SignedBundle, SigstoreKit
from tests.sigstore_kit.keys import PrivateKey, b64, utc_seconds
from tests.sigstore_kit.tlog import LogEntry

DSSE_ENVELOPE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
PREDICATE_TYPE_ANNOTATION = "predicateType"
STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
STATEMENT_V1 = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
StatementVersion = Literal["v0.1", "v1"]
LegacyLogEntry = Literal["intoto", "intoto-0.0.2", "dsse"]


def attestation_statement(
    digest: str,
    predicate_type: str = SLSA_PROVENANCE_V1,
    predicate: Mapping[str, object] | None = None,
    *,
    version: StatementVersion = "v0.1",
    repository: str | None = None,
    extra_subjects: Sequence[Mapping[str, object]] = (),
) -> bytes:
    """An in-toto statement about an image, in the field order its producer writes.

    v0.1 is cosign < v3 (``_type, predicateType, subject, predicate``; subject named after the
    repository); v1 is cosign v3 (``_type, subject, predicateType, predicate``). ``digest`` may be
    sha256 or ``sha512:<128 hex>``.
    """
    algorithm, _, hex_digest = digest.partition(":")
    if algorithm == "sha512":
        subject: dict[str, object] = {"digest": {"sha512": hex_digest}}
        if repository is not None:
            subject = {"name": repository, **subject}
    else:
        subject = statement_subject(check_digest(digest).removeprefix("sha256:"), name=repository)
    subjects = [subject, *(dict(s) for s in extra_subjects)]
    body = dict(predicate or {})
    statement: dict[str, object]
    if version == "v0.1":
        statement = {"_type": STATEMENT_V01, "predicateType": predicate_type, "subject": subjects,
                     "predicate": body}
    else:
        statement = {"_type": STATEMENT_V1, "subject": subjects, "predicateType": predicate_type,
                     "predicate": body}
    return json.dumps(statement, separators=(",", ":")).encode()


def go_envelope_json(envelope: DsseEnvelope) -> bytes:
    """The DSSE envelope as cosign's Go code serializes it: Go field order, an empty ``keyid``."""
    return json.dumps({
        "payloadType": envelope.payload_type,
        "payload": b64(envelope.payload),
        "signatures": [{"keyid": envelope.keyid or "", "sig": b64(sig)} for sig in envelope.signatures],
    }, separators=(",", ":")).encode()


@dataclass(frozen=True)
class LegacyImageAttestation:
    """One ``.att`` layer: the envelope blob and its annotations (plus what produced them, for assertions)."""

    envelope: bytes
    annotations: dict[str, str]
    statement: bytes
    signature: bytes
    payload_type: str = IN_TOTO_PAYLOAD_TYPE
    entry: LogEntry | None = None
    media_type: str = field(default=DSSE_ENVELOPE_MEDIA_TYPE)

    def with_annotations(self, changes: Mapping[str, str | None]) -> LegacyImageAttestation:
        """A copy with annotations set, or removed where the value is None."""
        annotations = dict(self.annotations)
        for key, value in changes.items():
            if value is None:
                annotations.pop(key, None)
            else:
                annotations[key] = value
        return replace(self, annotations=annotations)

    def with_statement(self, statement: bytes) -> LegacyImageAttestation:
        """A tampered copy: the envelope carries ``statement`` under the original signature."""
        forged = DsseEnvelope(statement, self.payload_type, (self.signature,))
        return replace(self, envelope=go_envelope_json(forged), statement=statement)


def attest_image_legacy(
    kit: SigstoreKit,
    digest: str,
    *,
    predicate_type: str = SLSA_PROVENANCE_V1,
    predicate: Mapping[str, object] | None = None,
    version: StatementVersion = "v0.1",
    statement: bytes | None = None,
    payload_type: str = IN_TOTO_PAYLOAD_TYPE,
    repository: str | None = None,
    identity: str = DEFAULT_IDENTITY,
    issuer: str = DEFAULT_ISSUER,
    claims: Mapping[int, str] | None = None,
    log_entry: LegacyLogEntry | None = "intoto",
    tsa: bool = False,
    predicate_annotation: bool = True,
    signing_time: datetime | None = None,
    leaf: SigningCertificate | None = None,
    key: PrivateKey | None = None,
) -> LegacyImageAttestation:
    """A ``cosign attest`` (< v3) layer for ``digest``, keyless (or keyed with ``key``).

    ``statement`` replaces the generated statement (e.g. one with another ``_type``); ``log_entry`` is
    the Rekor entry kind logged (None: no bundle annotation); ``tsa`` adds an RFC 3161 timestamp over
    the envelope bytes, as cosign does for attestations.
    """
    when = utc_seconds(signing_time)
    payload = statement or attestation_statement(digest, predicate_type, predicate, version=version,
                                                 repository=repository or DEFAULT_REPOSITORY)
    signer: SigningCertificate | None = None
    if key is None:
        signer = leaf or kit.ca.issue_leaf(identity, issuer, claims=claims, not_before=when)
        private_key: PrivateKey = signer.private_key
    else:
        private_key = key
    envelope = DsseEnvelope.sign(private_key, payload, payload_type)
    blob = go_envelope_json(envelope)

    annotations = {SIGNATURE_ANNOTATION: ""}
    if predicate_annotation:
        annotations[PREDICATE_TYPE_ANNOTATION] = predicate_type
    if signer is not None:
        annotations[CERTIFICATE_ANNOTATION] = signer.pem.decode()
        annotations[CHAIN_ANNOTATION] = b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in signer.chain).decode()
    entry: LogEntry | None = None
    if log_entry is not None:
        verifier = signer.certificate if signer is not None else private_key.public_key()
        if log_entry == "intoto":
            body = rekor_bodies.intoto_v001(blob, payload, verifier)
        elif log_entry == "intoto-0.0.2":
            body = rekor_bodies.intoto_v002(blob, payload_type, payload, envelope.signatures, verifier)
        else:
            body = rekor_bodies.dsse_v001(blob, payload, envelope.signatures, verifier)
        entry = kit.rekor_v1.add(body, when)
        annotations[BUNDLE_ANNOTATION] = rekor_bundle_annotation(kit.rekor_v1, entry)
    if tsa:
        annotations[RFC3161_ANNOTATION] = rfc3161_annotation(kit.tsa.timestamp(blob, at=when))
    return LegacyImageAttestation(blob, annotations, payload, envelope.signatures[0], payload_type, entry)


def attest_image_bundle(
    kit: SigstoreKit,
    digest: str,
    *,
    predicate_type: str = SLSA_PROVENANCE_V1,
    predicate: Mapping[str, object] | None = None,
    version: StatementVersion = "v1",
    statement: bytes | None = None,
    repository: str | None = None,
    **options: Any,
) -> SignedBundle:
    """A cosign v3 ``attest`` (or ``gh attestation``) bundle: DSSE in-toto statement about ``digest``.

    Rekor v1 logs it as ``dsse`` 0.0.1 (SET and inclusion proof), v2 as hashedrekord over PAE;
    ``options`` go to ``SigstoreKit.sign_blob`` (identity, key, rekor, tsa, bundle_version, ...).
    """
    payload = statement or attestation_statement(digest, predicate_type, predicate, version=version,
                                                 repository=repository)
    return kit.sign_blob(b"", dsse=True, statement=payload, **options)
