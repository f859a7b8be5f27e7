"""One image's signatures and attestations, found in the registry and verified, before any policy.

Policy-independent (so one result serves every authority that asks): ``check_image`` fetches and
verifies, ``ImageSignatures.evaluate`` applies one identity policy or key. The decision engine
(``webhook.decision``) and ``signet verify`` build on it.
"""

from webhook.images.check import check_image, verify_image
from webhook.images.results import (
    LAYOUT_BUNDLE,
    LAYOUT_LEGACY,
    CheckedSignature,
    ImageSignatures,
    ImageVerification,
    RekorLookup,
    SignatureOutcome,
)

__all__ = [
    "LAYOUT_BUNDLE",
    "LAYOUT_LEGACY",
    "CheckedSignature",
    "ImageSignatures",
    "ImageVerification",
    "RekorLookup",
    "SignatureOutcome",
    "check_image",
    "verify_image",
]
