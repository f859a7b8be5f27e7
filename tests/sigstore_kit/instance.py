"""``SigstoreKit``: a private Sigstore instance (Fulcio CA, CT log, Rekor v1 and v2, TSA) and its trust root.

Tests sign blobs and images with it and verify against ``trusted_root_json()``; every knob that a
negative test needs (signing time, leaf options, missing proofs or timestamps) is a keyword argument.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, overload

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.sigstore_kit import rekor_bodies
from tests.sigstore_kit.bundles import (
    IN_TOTO_PAYLOAD_TYPE,
    BundleVersion,
    DsseEnvelope,
    bundle,
    in_toto_statement,
    message_signature,
    statement_subject,
    tlog_entry_v1,
    tlog_entry_v2,
    verification_material,
)
from tests.sigstore_kit.ca import FulcioCA, SigningCertificate
from tests.sigstore_kit.cosign import (
    BUNDLE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    CHAIN_ANNOTATION,
    RFC3161_ANNOTATION,
    SIGNATURE_ANNOTATION,
    LegacyImageSignature,
    cosign_sign_statement,
    rekor_bundle_annotation,
    rfc3161_annotation,
    simple_signing_payload,
)
from tests.sigstore_kit.ctlog import CTLog
from tests.sigstore_kit.keys import PrivateKey, b64, sha256, sign, utc_seconds
from tests.sigstore_kit.tlog import LogEntry, RekorV1Log, RekorV2Log, Witness
from tests.sigstore_kit.tsa import TimestampAuthority

TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
DEFAULT_IDENTITY = "signer@example.com"
DEFAULT_ISSUER = "https://oidc.example"
DEFAULT_REPOSITORY = "registry.example/team/app"
Rekor = Literal["v1", "v2"] | None
ChainAnnotation = Literal["full", "intermediates", "empty", "absent"]
BundleChain = Literal["intermediates", "leaf_only", "with_root"]


@dataclass(frozen=True)
class SignedBundle:
    """A signed bundle dict plus what made it (the leaf, the log entry), for assertions and tampering."""

    bundle: dict[str, Any]
    signing_certificate: SigningCertificate | None
    entry: LogEntry | None

    def to_json(self) -> bytes:
        return json.dumps(self.bundle).encode()


@dataclass
class SigstoreKit:
    """All the services of a Sigstore deployment, with fresh keys, in memory."""

    ca: FulcioCA
    ctlog: CTLog
    rekor_v1: RekorV1Log
    rekor_v2: RekorV2Log
    tsa: TimestampAuthority

    @classmethod
    def create(cls, *, v1_index_offset: int = 1_000_000, seed_entries: int = 5,
               witnesses: Sequence[Witness] = ()) -> SigstoreKit:
        """A new instance; Rekor v1 global indices are offset from tree indices as in production.

        Both logs start with ``seed_entries`` unrelated entries so that inclusion proofs are never empty.
        """
        ctlog = CTLog()
        kit = cls(
            ca=FulcioCA.create(ctlog),
            ctlog=ctlog,
            rekor_v1=RekorV1Log(index_offset=v1_index_offset),
            rekor_v2=RekorV2Log(witnesses=witnesses),
            tsa=TimestampAuthority.create(),
        )
        for index in range(seed_entries):
            kit.rekor_v1.add(b'{"seed":%d}' % index, 1_600_000_000 + index)
            kit.rekor_v2.add(b'{"seed":%d}' % index)
        return kit

    # --- trust root --------------------------------------------------------------------------

    def trusted_root(self) -> dict[str, Any]:
        """trusted_root.json as a dict (tests may edit it to build broken trust roots)."""
        return {
            "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": [self.rekor_v1.trusted_root_entry(), self.rekor_v2.trusted_root_entry()],
            "certificateAuthorities": [self.ca.trusted_root_entry()],
            "ctlogs": [self.ctlog.trusted_root_entry()],
            "timestampAuthorities": [self.tsa.trusted_root_entry()],
        }

    def trusted_root_json(self) -> bytes:
        return json.dumps(self.trusted_root(), indent=2).encode()

    # --- certificates ------------------------------------------------------------------------

    def issue_leaf(self, identity: str = DEFAULT_IDENTITY, issuer: str = DEFAULT_ISSUER, *,
                   signing_time: datetime | None = None, **options: Any) -> SigningCertificate:
        """A Fulcio leaf valid from ``signing_time``; ``options`` go to ``FulcioCA.issue_leaf``."""
        return self.ca.issue_leaf(identity, issuer, not_before=signing_time, **options)

    # --- blobs -------------------------------------------------------------------------------

    def sign_blob(
        self,
        data: bytes,
        *,
        identity: str = DEFAULT_IDENTITY,
        issuer: str = DEFAULT_ISSUER,
        claims: Mapping[int, str] | None = None,
        bundle_version: BundleVersion = "0.3",
        media_type: str | None = None,
        dsse: bool = False,
        statement: bytes | None = None,
        rekor: Rekor = "v1",
        tsa: bool | None = None,
        signing_time: datetime | None = None,
        integrated_time: datetime | None = None,
        timestamp_time: datetime | None = None,
        leaf: SigningCertificate | None = None,
        key: PrivateKey | None = None,
        include_promise: bool = True,
        include_proof: bool = True,
        bundle_chain: BundleChain = "intermediates",
        payload_type: str = IN_TOTO_PAYLOAD_TYPE,
        v2_dsse_entry: Literal["hashedrekord", "dsse"] = "hashedrekord",
    ) -> SignedBundle:
        """Sign ``data`` keylessly (or with ``key``) into a bundle.

        ``dsse`` signs an in-toto statement about ``data`` (or the given ``statement``) instead of the
        bytes. ``rekor`` picks the log (None: no tlog entry); ``tsa`` defaults to on for Rekor v2.
        Times default to ``signing_time`` (default now): certificate notBefore, integratedTime, genTime.
        ``bundle_chain`` sets what follows the leaf in a v0.1/v0.2 ``x509CertificateChain``;
        ``payload_type`` labels the DSSE payload (signed, so only a payload-type check refuses another);
        ``v2_dsse_entry`` is how Rekor v2 logs DSSE: hashedrekord over PAE (sigstore-go) or dsse (sigstore-js).
        """
        if rekor == "v2" and bundle_version != "0.3":
            raise ValueError("Rekor v2 entries need a v0.3 bundle")
        when = utc_seconds(signing_time)
        signer: SigningCertificate | None = None
        if key is None:
            signer = leaf or self.ca.issue_leaf(identity, issuer, claims=claims, not_before=when)
            private_key: PrivateKey = signer.private_key
        else:
            private_key = key
        verifier = signer.certificate if signer is not None else private_key.public_key()

        envelope: DsseEnvelope | None = None
        message: dict[str, object] | None = None
        if dsse:
            subject = statement_subject(sha256(data).hex(), name="artifact")
            payload = statement or in_toto_statement([subject], "https://slsa.dev/provenance/v1", {})
            envelope = DsseEnvelope.sign(private_key, payload, payload_type)
            signature = envelope.signatures[0]
        else:
            signature = sign(private_key, data)
            message = message_signature(sha256(data), signature)

        entries: list[dict[str, object]] = []
        entry: LogEntry | None = None
        if rekor == "v1":
            if envelope is not None:
                body = rekor_bodies.dsse_v001(envelope.to_json(), envelope.payload, envelope.signatures,
                                              verifier)
            else:
                body = rekor_bodies.hashedrekord_v001(sha256(data), signature, verifier)
            entry = self.rekor_v1.add(body, utc_seconds(integrated_time or when))
            entries.append(tlog_entry_v1(self.rekor_v1, entry, kind="dsse" if envelope else "hashedrekord",
                                         include_promise=include_promise, include_proof=include_proof))
        elif rekor == "v2" and envelope is not None and v2_dsse_entry == "dsse":
            entry = self.rekor_v2.add(rekor_bodies.dsse_v002(envelope.payload, envelope.signatures, verifier))
            entries.append(tlog_entry_v2(self.rekor_v2, entry, include_proof=include_proof, kind="dsse"))
        elif rekor == "v2":
            # sigstore-go logs DSSE on Rekor v2 as a hashedrekord over SHA-256(PAE).
            signed_digest = sha256(envelope.pae()) if envelope is not None else sha256(data)
            entry = self.rekor_v2.add(rekor_bodies.hashedrekord_v002(signed_digest, signature, verifier))
            entries.append(tlog_entry_v2(self.rekor_v2, entry, include_proof=include_proof))

        timestamps: list[bytes] = []
        if tsa if tsa is not None else rekor == "v2":
            timestamps.append(self.tsa.timestamp(signature, at=timestamp_time or when))

        material = verification_material(
            bundle_version,
            certificate=signer.certificate if signer else None,
            chain=_bundle_chain(signer, bundle_chain),
            public_key=None if signer else private_key.public_key(),
            tlog_entries=entries,
            timestamps=timestamps,
        )
        result = bundle(bundle_version, material, message=message, envelope=envelope, media_type=media_type)
        return SignedBundle(result, signer, entry)

    # --- images ------------------------------------------------------------------------------

    def sign_image_legacy(
        self,
        digest: str,
        *,
        repository: str = DEFAULT_REPOSITORY,
        identity: str = DEFAULT_IDENTITY,
        issuer: str = DEFAULT_ISSUER,
        claims: Mapping[int, str] | None = None,
        optional: Mapping[str, object] | None = None,
        tlog: bool = True,
        tsa: bool = False,
        chain: ChainAnnotation = "full",
        signing_time: datetime | None = None,
        integrated_time: datetime | None = None,
        leaf: SigningCertificate | None = None,
        key: PrivateKey | None = None,
    ) -> LegacyImageSignature:
        """A legacy ``.sig`` layer: simple-signing payload, signature and annotations (cert, chain, bundle).

        With ``key`` the signature is keyed (no certificate annotations); ``tlog=False`` omits the Rekor
        bundle; ``chain`` picks the chain annotation: full (intermediate+root), intermediates, empty, absent.
        """
        when = utc_seconds(signing_time)
        payload = simple_signing_payload(digest, repository, optional)
        signer: SigningCertificate | None = None
        if key is None:
            signer = leaf or self.ca.issue_leaf(identity, issuer, claims=claims, not_before=when)
            private_key: PrivateKey = signer.private_key
        else:
            private_key = key
        signature = sign(private_key, payload)
        annotations = {SIGNATURE_ANNOTATION: b64(signature)}
        if signer is not None:
            annotations[CERTIFICATE_ANNOTATION] = signer.pem.decode()
            chain_certs = {"full": signer.chain, "intermediates": signer.chain[:-1],
                           "empty": (), "absent": None}[chain]
            if chain_certs is not None:
                annotations[CHAIN_ANNOTATION] = b"".join(
                    c.public_bytes(serialization.Encoding.PEM) for c in chain_certs).decode()
        entry: LogEntry | None = None
        if tlog:
            verifier = signer.certificate if signer is not None else private_key.public_key()
            body = rekor_bodies.hashedrekord_v001(sha256(payload), signature, verifier)
            entry = self.rekor_v1.add(body, utc_seconds(integrated_time or when))
            annotations[BUNDLE_ANNOTATION] = rekor_bundle_annotation(self.rekor_v1, entry)
        if tsa:
            # Legacy .sig layers timestamp the raw signature bytes.
            annotations[RFC3161_ANNOTATION] = rfc3161_annotation(self.tsa.timestamp(signature, at=when))
        return LegacyImageSignature(payload, signature, annotations, entry)

    def sign_image_bundle(
        self,
        digest: str,
        *,
        identity: str = DEFAULT_IDENTITY,
        issuer: str = DEFAULT_ISSUER,
        claims: Mapping[int, str] | None = None,
        subject_annotations: Mapping[str, str] | None = None,
        rekor: Rekor = "v1",
        tsa: bool | None = None,
        signing_time: datetime | None = None,
        leaf: SigningCertificate | None = None,
        key: PrivateKey | None = None,
    ) -> SignedBundle:
        """A cosign v3 image signature: v0.3 bundle, DSSE in-toto statement about ``digest``."""
        statement = cosign_sign_statement(digest, subject_annotations)
        return self.sign_blob(b"", identity=identity, issuer=issuer, claims=claims, dsse=True,
                              statement=statement, rekor=rekor, tsa=tsa, signing_time=signing_time,
                              leaf=leaf, key=key)

    @overload
    def sign_image(self, digest: str, *, format: Literal["legacy"] = "legacy",
                   **options: Any) -> LegacyImageSignature: ...

    @overload
    def sign_image(self, digest: str, *, format: Literal["bundle"], **options: Any) -> SignedBundle: ...

    def sign_image(self, digest: str, *, format: Literal["legacy", "bundle"] = "legacy",
                   **options: Any) -> LegacyImageSignature | SignedBundle:
        """Sign an image digest as cosign ≤ v2 (``legacy``) or cosign v3 (``bundle``) would."""
        if format == "bundle":
            return self.sign_image_bundle(digest, **options)
        return self.sign_image_legacy(digest, **options)


def _bundle_chain(signer: SigningCertificate | None, which: BundleChain) -> tuple[x509.Certificate, ...]:
    if signer is None or which == "leaf_only":
        return ()
    return signer.chain if which == "with_root" else signer.chain[:-1]


@functools.cache
def default_kit() -> SigstoreKit:
    """A process-wide kit, so test modules share one set of keys (their logs grow across tests)."""
    return SigstoreKit.create()
