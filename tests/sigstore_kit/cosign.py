"""cosign's OCI signature formats: legacy simple-signing layers with annotations (SIGSTORE.md §1.1) and the
cosign v3 in-toto statement signed into a bundle (§1.3)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from tests.sigstore_kit.bundles import COSIGN_SIGN_PREDICATE_TYPE, in_toto_statement, statement_subject
from tests.sigstore_kit.keys import b64
from tests.sigstore_kit.tlog import LogEntry, RekorV1Log

SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIMPLE_SIGNING_TYPE = "cosign container image signature"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
RFC3161_ANNOTATION = "dev.sigstore.cosign/rfc3161timestamp"

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def check_digest(digest: str) -> str:
    """``digest`` if it is ``sha256:<64 lowercase hex>``; raises ValueError otherwise."""
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"not a sha256 image digest: {digest!r}")
    return digest


def simple_signing_payload(digest: str, docker_reference: str,
                           optional: Mapping[str, object] | None = None) -> bytes:
    """The simple-signing JSON cosign signs for an image, as Go writes it (sorted, compact)."""
    payload = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": check_digest(digest)},
            "type": SIMPLE_SIGNING_TYPE,
        },
        "optional": dict(optional) if optional is not None else None,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def cosign_sign_statement(digest: str, annotations: Mapping[str, str] | None = None) -> bytes:
    """The cosign v3 image-signature statement: subject = image digest (no name), predicate ``{}``."""
    hex_digest = check_digest(digest).removeprefix("sha256:")
    subject = statement_subject(hex_digest, annotations=annotations)
    return in_toto_statement([subject], COSIGN_SIGN_PREDICATE_TYPE, {})


def rekor_bundle_annotation(log: RekorV1Log, entry: LogEntry) -> str:
    """``dev.sigstore.cosign/bundle``: capitalised outer keys (Go struct), Payload in Go field order."""
    return json.dumps({
        "SignedEntryTimestamp": b64(log.signed_entry_timestamp(entry)),
        "Payload": {
            "body": b64(entry.body),
            "integratedTime": entry.integrated_time,
            "logIndex": entry.log_index,
            "logID": entry.log_id.hex(),
        },
    }, separators=(",", ":"))


def rfc3161_annotation(timestamp_response: bytes) -> str:
    """``dev.sigstore.cosign/rfc3161timestamp``: the DER TimeStampResp in a one-key JSON object."""
    return json.dumps({"SignedRFC3161Timestamp": b64(timestamp_response)}, separators=(",", ":"))


@dataclass(frozen=True)
class LegacyImageSignature:
    """One ``.sig`` layer: the payload blob and its annotations (plus what produced them, for assertions)."""

    payload: bytes
    signature: bytes
    annotations: dict[str, str]
    entry: LogEntry | None = None
    media_type: str = field(default=SIMPLE_SIGNING_MEDIA_TYPE)
