"""The one error tree of Signet.

    SignetError                      every error Signet raises on purpose; ``reason`` is for humans
    ├── VerificationError            a signature, certificate, log entry or time did not verify
    │   └── IdentityMismatchError    verified, but signed by someone the policy does not allow
    ├── InfrastructureError          something we depend on failed: it says nothing about the signature
    │   ├── RegistryError            an OCI registry refused, timed out or sent nonsense
    │   ├── TransparencyLogError     Rekor could not be asked
    │   └── TrustError               the trust root could not be obtained or refreshed (TUF)
    └── InputError                   the user gave us something unusable (bad reference, flag, file)
        └── PolicyError              a policy document is invalid

Verification never lets a ``ValueError`` or ``KeyError`` escape: malformed material becomes a
``VerificationError`` naming the step that failed, so a denial always explains itself.
"""

from __future__ import annotations


class SignetError(Exception):
    """Base of every error Signet raises on purpose."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def diagnostics(self) -> str:
        """A human explanation, suitable for a denial message or stderr."""
        return self.reason

    def __str__(self) -> str:
        return self.diagnostics()


class VerificationError(SignetError):
    """A check on signature material failed; ``step`` names which (e.g. "certificate chain")."""

    def __init__(self, reason: str, *, step: str | None = None) -> None:
        super().__init__(reason)
        self.step = step

    def diagnostics(self) -> str:
        return f"{self.step}: {self.reason}" if self.step else self.reason


class IdentityMismatchError(VerificationError):
    """The signature verified but its signer is not one the policy allows."""

    def __init__(self, reason: str, *, found: str, expected: str) -> None:
        super().__init__(reason, step="identity")
        self.found = found
        self.expected = expected


class InfrastructureError(SignetError):
    """A dependency (registry, Rekor, TUF mirror) failed; no statement about the signature."""


class RegistryError(InfrastructureError):
    """An OCI registry could not be read."""


class TransparencyLogError(InfrastructureError):
    """A transparency log (Rekor) could not be queried."""


class TrustError(InfrastructureError):
    """The trust root could not be obtained, refreshed or parsed."""


class InputError(SignetError):
    """Unusable input from the user: a bad reference, flag or file."""


class PolicyError(InputError):
    """A policy document is invalid; the reason names file, object and field."""
