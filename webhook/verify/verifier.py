"""Verifying Sigstore bundles: the checklist.

For a bundle and the artifact (or its digest), in this order (ARCHITECTURE.md §2 step letters):

  (0) structure: the bundle parses and obeys its version's rules (``bundle.py``).
  (1) signing times: every RFC 3161 timestamp must verify against a TSA of the trust root; every
      Rekor v1 SET must verify. Only verified times count; keyless needs at least one.
  (a) the leaf certificate is parsed (keyless) or the caller's key is used (keyed).
  (b) path validation of the leaf to a Fulcio CA valid at *each* signing time, never "now";
      (c) EKU codeSigning and KeyUsage digitalSignature are part of it.
  (d) an embedded SCT from a trusted CT log.
  (e) every transparency log entry: SET and/or inclusion proof against a signed checkpoint, and
      the entry's body must describe this very signature, certificate and artifact.
  (f) each signing time within the certificate's validity (done by (b), which validates at it).
  (g) the signature over the artifact digest (message) or over PAE (DSSE).
  (h) the payload binds this artifact: message digest, or in-toto subject digest.
  (i) identity — left to ``VerifiedSignature.check_identity`` so one verification serves many policies.

Any failure raises VerificationError naming its step; nothing else escapes.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from webhook.errors import VerificationError
from webhook.verify._memo import PassedChecks
from webhook.verify.bundle import Bundle
from webhook.verify.certs import CertificateVerifier
from webhook.verify.dsse import IN_TOTO_PAYLOAD_TYPE, DsseEnvelope, Statement
from webhook.verify.identity import Policy
from webhook.verify.keys import PublicKey, signing_key, verify_signature
from webhook.verify.material import Digest, SignedContent
from webhook.verify.result import LogProof, VerifiedSignature
from webhook.verify.sct import verify_sct
from webhook.verify.timestamp import verify_timestamp
from webhook.verify.tlog import TlogEntry, verify_entry
from webhook.verify.trustroot import TrustedRoot

_logger = logging.getLogger(__name__)

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
}


def hash_algorithm(name: str) -> hashes.HashAlgorithm:
    try:
        return _HASHES[name]()
    except KeyError:
        raise VerificationError(f"unsupported digest algorithm {name!r}", step="signature") from None


def digest_for_key(key: PublicKey, data: bytes) -> Digest:
    """Digest of ``data`` with the hash a log uses for this key (Rekor v2 hashedrekord-over-DSSE)."""
    name = "sha256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        name = {"secp384r1": "sha384", "secp521r1": "sha512"}.get(key.curve.name, "sha256")
    return Digest(name, hashlib.new(name, data).digest())


@dataclass(frozen=True)
class Artifact:
    """What the caller says was signed: the bytes, or just their digest."""

    digest: Digest
    data: bytes | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> Artifact:
        return cls(Digest("sha256", hashlib.sha256(data).digest()), data)

    def digest_with(self, algorithm: str) -> Digest:
        if self.digest.algorithm == algorithm:
            return self.digest
        if self.data is None:
            raise VerificationError(
                f"the bundle signs a {algorithm} digest but only the {self.digest.algorithm} digest of "
                "the artifact was given", step="signature")
        return Digest(algorithm, hashlib.new(algorithm, self.data).digest())


@dataclass(frozen=True)
class Requirements:
    """What an authority asks of a signature's evidence besides the trust root (the default: Sigstore's)."""

    transparency_log: bool = True
    """False: log entries are neither required nor consulted (cosign ``--insecure-ignore-tlog``); a
    certificate without another verified time must then be valid now."""
    sct: bool = True
    """False: the certificate's SCT is not checked (``insecureIgnoreSCT``)."""
    timestamp: bool = False
    """An RFC 3161 timestamp from one of the trust root's TSAs is required (``rfc3161timestamp``)."""

    def check_timestamped(self, count: int) -> None:
        """Raise unless a required RFC 3161 timestamp is present (each one present is verified anyway)."""
        if self.timestamp and not count:
            raise VerificationError("no RFC 3161 timestamp, and this authority requires one from its timestamp "
                                    "authorities (rfc3161timestamp)", step="signing time")


class Verifier:
    """Verifies signatures against one trust root; holds what does not change between verifications."""

    def __init__(self, trusted_root: TrustedRoot, requirements: Requirements | None = None) -> None:
        self.trusted_root = trusted_root
        self.requirements = requirements or Requirements()
        self._certificates = CertificateVerifier(trusted_root)
        # An SCT is checked against the CT log key valid at the SCT's own timestamp, so its outcome
        # for a given leaf and issuer never changes.
        self._sct_checked = PassedChecks()

    # -- bundles -------------------------------------------------------------------------------

    def verify_bundle(
        self,
        bundle: Bundle,
        artifact: Artifact,
        *,
        policy: Policy | None = None,
        key: PublicKey | None = None,
    ) -> VerifiedSignature:
        """Verify ``bundle`` over ``artifact``: with ``key`` (keyed) or ``policy`` (keyless identity)."""
        if key is None and policy is None:
            raise VerificationError("neither a public key nor an identity policy was given", step="policy")
        result = self.verify_bundle_signature(bundle, artifact, key=key)
        if key is None and policy is not None:
            result.check_identity(policy)
        return result

    def verify_bundle_signature(
        self, bundle: Bundle, artifact: Artifact, *, key: PublicKey | None = None
    ) -> VerifiedSignature:
        """Steps (0)–(h): everything but the identity policy."""
        signature = bundle.signature

        # (a) who signed: the caller's key, or the bundle's leaf certificate.
        leaf = bundle.certificate
        signer_key = signing_key(leaf, key, what="the bundle",
                                 keyed="the bundle was signed with a key; verify it with --key")

        # (g)+(h) the signature over the artifact, and the payload's binding to it.
        content, statement, payload = self._check_content(bundle, artifact, signer_key, leaf, signature)

        # (1) signing times from TSAs and (e) the transparency log entries.
        times = [verify_timestamp(tsr, signature, self.trusted_root) for tsr in bundle.timestamps]
        self.requirements.check_timestamped(len(times))
        proofs = self._check_log_entries(bundle, content) if self.requirements.transparency_log else []
        times.extend(p.integrated_time for p in proofs if p.integrated_time is not None)
        if not proofs and self.requirements.transparency_log:
            raise VerificationError("the bundle has no transparency log entry", step="transparency log")

        if leaf is not None and key is None:
            self.check_certificate(leaf, times)
        return VerifiedSignature(
            kind="bundle",
            certificate=leaf if key is None else None,
            signing_times=tuple(times),
            log_proofs=tuple(proofs),
            payload=payload,
            statement=statement,
            key_verified=key is not None,
        )

    def _check_content(
        self, bundle: Bundle, artifact: Artifact, signing_key: PublicKey,
        leaf: x509.Certificate | None, signature: bytes,
    ) -> tuple[SignedContent, Statement | None, bytes | None]:
        if bundle.message_signature is not None:
            claimed = bundle.message_signature.digest
            digest = artifact.digest_with(claimed.algorithm if claimed else "sha256")
            if claimed is not None and claimed != digest:
                raise VerificationError(
                    f"the bundle's message digest {claimed} does not match the artifact's {digest}",
                    step="artifact")
            verify_signature(signing_key, signature, digest.value, hash_algorithm=hash_algorithm(digest.algorithm),
                             prehashed=True, step="signature", what="artifact signature")
            return SignedContent(signature, signing_key, digest, certificate=leaf), None, None

        envelope = bundle.envelope
        assert envelope is not None
        statement = check_envelope(envelope, signing_key, signature, artifact)
        content = SignedContent(signature, signing_key, digest_for_key(signing_key, envelope.pae),
                                certificate=leaf, envelope=envelope, payload=envelope.payload)
        return content, statement, envelope.payload

    def _check_log_entries(self, bundle: Bundle, content: SignedContent) -> list[LogProof]:
        proofs = []
        for raw in bundle.tlog_entries:
            entry = TlogEntry.from_bundle(raw)
            # Since v0.2 an inclusion proof with a signed checkpoint is mandatory; v0.1 relies on its SET.
            checked = verify_entry(entry, self.trusted_root, content,
                                   require_inclusion_proof=bundle.version >= (0, 2))
            proofs.append(LogProof(checked.log.base_url, entry.log_index, checked.integrated_time))
        return proofs

    def check_certificate(self, leaf: x509.Certificate, times: list[datetime]) -> None:
        """(b)–(d), (f): the leaf chains to a Fulcio CA at every verified time and carries a valid SCT."""
        if not times and not self.requirements.transparency_log:
            times = [datetime.now(UTC)]  # no log by the authority's choice: cosign then checks the certificate now
        if not times:
            raise VerificationError(
                "no verified signing time: the bundle needs a Rekor SET or an RFC 3161 timestamp "
                "from a trusted authority", step="signing time")
        chain: tuple[x509.Certificate, ...] = ()
        fingerprint = leaf.fingerprint(hashes.SHA256())
        # (b)(c)(f) validate at every verified time: each one is a claim that must hold.
        for when in times:
            chain = self._certificates.verify(leaf, when, fingerprint=fingerprint)
        # (d) SCT from a trusted CT log, issued by the certificate that issued the leaf.
        # The issuer is a certificate object of the trust root this verifier holds, so its id is stable.
        sct_key = (fingerprint, id(chain[1]))
        if self.requirements.sct and sct_key not in self._sct_checked:
            verify_sct(leaf, chain[1], self.trusted_root)
            self._sct_checked.add(sct_key)


def check_envelope(envelope: DsseEnvelope, key: PublicKey, signature: bytes, artifact: Artifact) -> Statement:
    """(g) the DSSE signature over PAE; (h) for in-toto, the artifact is one of the subjects."""
    verify_signature(key, signature, envelope.pae, step="signature", what="DSSE envelope signature")
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise VerificationError(f"unsupported DSSE payload type {envelope.payload_type!r}", step="envelope")
    statement = Statement.from_payload(envelope.payload)
    # A subject may name the artifact by any digest we can compute: the one given, or any when the
    # bytes are at hand (an image is known only by its sha256 or sha512 digest).
    algorithms = {artifact.digest.algorithm} | (set(_HASHES) if artifact.data is not None else set())
    if not any(statement.has_subject_digest(name, artifact.digest_with(name).hex) for name in sorted(algorithms)):
        raise VerificationError(
            f"the in-toto statement does not name {artifact.digest} among its subjects", step="artifact")
    return statement
