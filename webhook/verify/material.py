"""What a signature commits to, in one shape for every format (bundle, cosign annotation, DSSE).

The transparency-log checks compare a log entry's body against this, which is how Signet refuses
a valid log entry that belongs to some other signature (the CVE-2022-36056 class).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from webhook.verify.dsse import DsseEnvelope
from webhook.verify.keys import PublicKey

HASH_NAMES = {"SHA2_256": "sha256", "SHA2_384": "sha384", "SHA2_512": "sha512",
              "sha256": "sha256", "sha384": "sha384", "sha512": "sha512"}


@dataclass(frozen=True)
class Digest:
    """A message digest: algorithm name (``sha256``/``sha384``/``sha512``) and raw bytes."""

    algorithm: str
    value: bytes

    @property
    def hex(self) -> str:
        return self.value.hex()

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.value.hex()}"


@dataclass(frozen=True)
class SignedContent:
    """A signature and what it was made over, as the verifier established it.

    ``digest`` is the digest of what the signature covers: the artifact (message signatures and
    cosign simple-signing payloads) or PAE(envelope) for DSSE. ``envelope`` is set for DSSE.
    """

    signature: bytes
    public_key: PublicKey
    digest: Digest
    certificate: x509.Certificate | None = None
    envelope: DsseEnvelope | None = None
    payload: bytes | None = None
    """The signed bytes when the verifier has them (cosign payload, DSSE PAE source)."""
    envelope_bytes: bytes | None = None
    """The DSSE envelope exactly as stored (a cosign ``.att`` layer). Logs that record only a hash of
    the submitted envelope (intoto 0.0.1) can be bound to nothing else; a bundle's envelope is
    re-serialized, so it has none."""
