"""The outcome of verifying one signature: what was proven, by whom, and when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import ClassVar

from cryptography import x509

from webhook.errors import VerificationError
from webhook.verify.dsse import Statement
from webhook.verify.identity import Policy, Signer, signer_of


@dataclass(frozen=True)
class LogProof:
    """A transparency log entry that was verified for this signature."""

    log_url: str
    log_index: int
    integrated_time: datetime | None


class SignerIdentity:
    """Who made a verified signature or attestation, held against identity policies after verification."""

    certificate: x509.Certificate | None
    log_proofs: tuple[LogProof, ...]
    _made: ClassVar[str]
    """What was made (``signature``, ``attestation``), for the message when there is no certificate."""

    @cached_property
    def signer(self) -> Signer | None:
        """Subject, issuer and Fulcio claims of the certificate (None when made with a key); computed on first use."""
        return signer_of(self.certificate) if self.certificate is not None else None

    @property
    def log_index(self) -> int | None:
        return self.log_proofs[0].log_index if self.log_proofs else None

    def check_identity(self, policy: Policy) -> None:
        """Raise IdentityMismatchError (or VerificationError) unless the signer satisfies ``policy``."""
        if self.certificate is None:
            raise VerificationError(f"{self._made} was made with a key, not a certificate identity", step="identity")
        policy.verify(self.certificate)


@dataclass(frozen=True)
class VerifiedSignature(SignerIdentity):
    """A cryptographically verified signature, before any identity policy is applied.

    Identity is checked separately (``check_identity``) so that one verification can be held
    against many policies: the expensive work does not depend on who is allowed.
    """

    kind: str
    """``bundle`` or ``cosign`` (legacy registry annotations)."""
    certificate: x509.Certificate | None
    signing_times: tuple[datetime, ...]
    log_proofs: tuple[LogProof, ...]
    payload: bytes | None = None
    """The signed payload: cosign simple-signing JSON, or the DSSE payload."""
    statement: Statement | None = None
    key_verified: bool = False
    """True when the signature was checked with a caller-supplied public key."""
    _made: ClassVar[str] = "signature"
