"""Fulcio certificate path validation at the signing time (ARCHITECTURE.md §2 steps b and c).

Trust anchors and intermediates come only from the trust root, never from the signature: the
untrusted chain a v0.1/v0.2 bundle or a legacy ``dev.sigstore.cosign/chain`` annotation carries
is not used to build the path (SIGSTORE.md §3.2, §8.5). ``check_untrusted_chain`` exists so that
bundle parsing can still refuse a chain that smuggles in a root.

Cost model (ARCHITECTURE.md §10): re-verifying intermediate → root for every leaf is the dominant
cost of path validation, so each CA's own chain is validated once when the verifier is built, and
leaves are then validated with the pre-validated issuing certificate as the only ``Store`` anchor.
``cryptography`` still checks that anchor's validity at the signing time; the certificates above
it are checked here with plain date comparisons, because the hybrid model requires every
certificate of the path to be valid at that time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
)
from cryptography.x509.verification import (
    VerificationError as PathError,
)

from webhook.errors import VerificationError
from webhook.verify._memo import PassedChecks
from webhook.verify.trustroot import CertificateAuthority, TrustedRoot

_logger = logging.getLogger(__name__)

STEP = "certificate chain"


def _eku_relaxed(policy: ExtensionPolicy) -> ExtensionPolicy:
    # The WebPKI client profile insists on EKU clientAuth; Fulcio issues codeSigning (and its
    # intermediates carry codeSigning too). Let EKU through here and check codeSigning ourselves.
    return policy.may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)


# Extension policies are immutable and independent of the trust root: build them once.
_CA_POLICY = _eku_relaxed(ExtensionPolicy.webpki_defaults_ca())
_EE_POLICY = _eku_relaxed(ExtensionPolicy.webpki_defaults_ee())


def _when(t: datetime) -> str:
    return t.astimezone(UTC).isoformat()


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


@dataclass(frozen=True)
class _PreparedCA:
    """A Fulcio CA whose own chain has been validated; everything a leaf check needs."""

    authority: CertificateAuthority
    issuing: x509.Certificate
    builder: PolicyBuilder
    """Store (the issuing certificate alone) and extension policies; only the time is added per call."""
    upper_not_before: datetime | None
    upper_not_after: datetime | None
    """Intersection of the validity of the certificates above the issuing one (None: there are none)."""

    def upper_valid_at(self, at: datetime) -> bool:
        if self.upper_not_before is None or self.upper_not_after is None:
            return True
        return self.upper_not_before <= at <= self.upper_not_after

    def issuing_valid_at(self, at: datetime) -> bool:
        return self.issuing.not_valid_before_utc <= at <= self.issuing.not_valid_after_utc

    def describe(self) -> str:
        return self.authority.uri or self.authority.subject or _name(self.issuing)


def _require_ca(cert: x509.Certificate, what: str) -> None:
    """A trust anchor must at least look like a CA; the library does not police anchors."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise ValueError(f"{what} lacks {exc.oid.dotted_string}") from exc
    if not constraints.value.ca:
        raise ValueError(f"{what} is not a CA certificate")
    if not constraints.critical:
        raise ValueError(f"{what} has a non-critical BasicConstraints extension (RFC 5280 §4.2.1.9)")
    if not usage.key_cert_sign:
        raise ValueError(f"{what} may not sign certificates (KeyUsage lacks keyCertSign)")


def _prepare(ca: CertificateAuthority) -> _PreparedCA:
    """Validate one CA's chain (issuing certificate → root) once; raise ValueError when unusable."""
    chain = ca.chain
    issuing = chain[0]
    _require_ca(issuing, f"CA certificate {_name(issuing)}")
    upper_before = upper_after = None
    if len(chain) > 1:
        common_start = max(c.not_valid_before_utc for c in chain)
        if common_start > min(c.not_valid_after_utc for c in chain):
            raise ValueError("the certificates of the chain are never valid at the same time")
        # The issuing certificate is checked as if it were an end entity, but under the CA profile:
        # BasicConstraints CA, keyCertSign, a signature by the next certificate up.
        verifier = (
            PolicyBuilder()
            .store(Store([chain[-1]]))
            .time(common_start)
            .extension_policies(ca_policy=_CA_POLICY, ee_policy=_CA_POLICY)
            .build_client_verifier()
        )
        try:
            verifier.verify(issuing, list(chain[1:-1]))
        except PathError as exc:
            raise ValueError(f"chain does not validate: {exc}") from exc
        upper_before = max(c.not_valid_before_utc for c in chain[1:])
        upper_after = min(c.not_valid_after_utc for c in chain[1:])
    builder = PolicyBuilder().store(Store([issuing])).extension_policies(
        ca_policy=_CA_POLICY, ee_policy=_EE_POLICY
    )
    return _PreparedCA(ca, issuing, builder, upper_before, upper_after)


def _check_usage(leaf: x509.Certificate) -> None:
    """Step (c): the leaf may sign code, and nothing else matters to us."""
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise VerificationError("certificate has no KeyUsage extension", step=STEP) from None
    if not usage.digital_signature:
        raise VerificationError("certificate KeyUsage does not allow digitalSignature", step=STEP)
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise VerificationError("certificate has no ExtendedKeyUsage extension", step=STEP) from None
    if ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        raise VerificationError("certificate ExtendedKeyUsage does not include codeSigning", step=STEP)


def _check_not_ca(leaf: x509.Certificate) -> None:
    try:
        constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return
    if constraints.ca:
        raise VerificationError("signing certificate is a CA certificate", step=STEP)


class CertificateVerifier:
    """Path validation of Fulcio leaves against the certificate authorities of one trust root."""

    def __init__(self, trusted_root: TrustedRoot) -> None:
        prepared: list[_PreparedCA] = []
        self.unusable: dict[str, str] = {}
        """CAs of the trust root that failed their own validation: description → reason."""
        for index, ca in enumerate(trusted_root.certificate_authorities):
            try:
                prepared.append(_prepare(ca))
            except ValueError as exc:
                # A broken CA must not take the others down; leaves it issued will fail closed.
                label = ca.uri or ca.subject or f"certificateAuthorities[{index}]"
                self.unusable[label] = str(exc)
                _logger.warning("ignoring Fulcio CA %s of the trust root: %s", label, exc)
        self._cas = tuple(prepared)
        # Leaves already validated against a CA: (leaf fingerprint, CA position). What the library
        # proved about them apart from time (signature, profile, usages) cannot change, so a
        # repeat verification redoes only the validity-window checks, which happen before lookup.
        self._validated = PassedChecks()

    def verify(
        self, leaf: x509.Certificate, at: datetime, *, fingerprint: bytes | None = None
    ) -> tuple[x509.Certificate, ...]:
        """Validate ``leaf`` at the signing time ``at``; return the chain leaf → root.

        Raises VerificationError (step "certificate chain") naming why the leaf is not trusted.
        """
        if at.tzinfo is None:
            raise VerificationError("signing time has no time zone", step=STEP)
        try:
            return self._verify(leaf, at.astimezone(UTC), fingerprint or leaf.fingerprint(hashes.SHA256()))
        except ValueError as exc:
            # cryptography raises ValueError for malformed or duplicate extensions.
            raise VerificationError(f"certificate is malformed: {exc}", step=STEP) from exc

    def _verify(self, leaf: x509.Certificate, at: datetime, fingerprint: bytes) -> tuple[x509.Certificate, ...]:
        if not leaf.not_valid_before_utc <= at <= leaf.not_valid_after_utc:
            raise VerificationError(
                f"certificate was not valid at the signing time {_when(at)} (valid "
                f"{_when(leaf.not_valid_before_utc)} .. {_when(leaf.not_valid_after_utc)})",
                step=STEP,
            )
        current = [ca for ca in self._cas if ca.authority.valid_for.contains(at)]
        if not current:
            raise VerificationError(
                f"no Fulcio CA of the trust root was valid at the signing time {_when(at)}", step=STEP
            )
        # Name comparison is cheap and spares a path build per CA that cannot be the issuer.
        issuers = [ca for ca in current if ca.issuing.subject == leaf.issuer]
        if not issuers:
            raise VerificationError(
                "no Fulcio CA of the trust root issued this certificate "
                f"(issuer {leaf.issuer.rfc4514_string() or '(empty)'})",
                step=STEP,
            )
        failures: list[str] = []
        for ca in issuers:
            if not ca.upper_valid_at(at):
                failures.append(f"{ca.describe()}: its chain was not valid at {_when(at)}")
                continue
            memo_key = (fingerprint, self._cas.index(ca))
            if memo_key in self._validated and ca.issuing_valid_at(at):
                return (leaf, *ca.authority.chain)
            _check_not_ca(leaf)
            try:
                verified = ca.builder.time(at).build_client_verifier().verify(leaf, [])
            except PathError as exc:
                failures.append(f"{ca.describe()}: {exc}")
                continue
            _check_usage(leaf)
            self._validated.add(memo_key)
            return (*verified.chain, *ca.authority.chain[1:])
        raise VerificationError(
            "certificate does not chain to a Fulcio CA of the trust root: " + "; ".join(failures),
            step=STEP,
        )


def check_untrusted_chain(certificates: Sequence[x509.Certificate]) -> None:
    """Refuse an untrusted chain (bundle v0.1/v0.2, legacy annotation) that includes a root.

    ``certificates`` are the certificates the signature carries, leaf included or not.

    The chain is never used for path building; a self-issued certificate in it is still a sign
    of a confused or malicious signer (conformance case ``bundle-with-root-cert_fail``).
    """
    for index, cert in enumerate(certificates):
        if cert.subject == cert.issuer:
            raise VerificationError(
                f"certificate chain element {index} ({_name(cert)}) is a root certificate; "
                "roots must come from the trust root only",
                step=STEP,
            )
