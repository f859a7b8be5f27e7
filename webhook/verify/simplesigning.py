"""The simple-signing payload of cosign's legacy image signatures.

cosign writes ``docker-manifest-digest`` in lower case; its spec example capitalises it and Go's
JSON decoder ignores case, so keys are matched case-insensitively here too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.errors import VerificationError

COSIGN_SIGNATURE_TYPE = "cosign container image signature"
_STEP = "payload"


def _get(obj: Mapping[str, Any], key: str) -> Any:
    for k, v in obj.items():
        if isinstance(k, str) and k.lower() == key:
            return v
    return None


@dataclass(frozen=True)
class SimpleSigningPayload:
    image_digest: str
    docker_reference: str
    optional: Mapping[str, Any]

    @classmethod
    def parse(cls, raw: bytes) -> SimpleSigningPayload:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise VerificationError("signature payload is not valid JSON", step=_STEP) from exc
        if not isinstance(data, Mapping):
            raise VerificationError("signature payload is not a JSON object", step=_STEP)
        critical = _get(data, "critical")
        if not isinstance(critical, Mapping):
            raise VerificationError("signature payload has no 'critical' section", step=_STEP)
        kind = _get(critical, "type")
        if not isinstance(kind, str) or kind.lower() != COSIGN_SIGNATURE_TYPE:
            raise VerificationError(f"signature payload type is {kind!r}, not {COSIGN_SIGNATURE_TYPE!r}", step=_STEP)
        image = _get(critical, "image")
        digest = _get(image, "docker-manifest-digest") if isinstance(image, Mapping) else None
        if not isinstance(digest, str) or not digest:
            raise VerificationError("signature payload names no docker-manifest-digest", step=_STEP)
        identity = _get(critical, "identity")
        reference = _get(identity, "docker-reference") if isinstance(identity, Mapping) else None
        optional = _get(data, "optional")
        return cls(image_digest=digest, docker_reference=str(reference or ""),
                   optional=optional if isinstance(optional, Mapping) else {})

    def check_image(self, image_digest: str) -> None:
        """(h) the payload must bind exactly the image being admitted."""
        if self.image_digest.lower() != image_digest.lower():
            raise VerificationError(
                f"signature is for image {self.image_digest}, not {image_digest}", step="image binding")
