"""OCI registry access: references, authentication, the registry client and signature discovery.

Transport and discovery only; signatures are verified in ``webhook.verify``.
"""

from webhook.oci.auth import (
    Challenge,
    Credentials,
    CredentialStore,
    RegistryAuth,
    TokenCache,
    parse_www_authenticate,
)
from webhook.oci.client import RegistryClient
from webhook.oci.discovery import (
    BUNDLE_MEDIA_TYPES,
    COSIGN_ARTIFACT_SIG,
    DSSE_ENVELOPE,
    SIMPLE_SIGNING,
    BundleSignature,
    DiscoveredSignatures,
    LegacyAttestation,
    LegacySignature,
    Signature,
    discover_signatures,
)
from webhook.oci.egress import AddressClass, EgressTransport, address_class
from webhook.oci.errors import (
    DigestMismatchError,
    EgressRefusedError,
    ImageBudgetError,
    ImageNotFoundError,
    ManifestFormatError,
    ManifestNotFoundError,
    RegistryAuthError,
    RegistryStatusError,
    RegistryTimeoutError,
    SizeLimitError,
)
from webhook.oci.limits import ImageBudget, RegistryLimits, RequestLimiter
from webhook.oci.manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    Platform,
    PlatformManifest,
    index_covers,
    platform_digests,
)
from webhook.oci.reference import DOCKER_HUB, ImageReference, parse_reference
from webhook.oci.transport import Referrers, Repository, RepositoryLike, is_loopback_host

__all__ = [
    "BUNDLE_MEDIA_TYPES",
    "COSIGN_ARTIFACT_SIG",
    "DOCKER_HUB",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "DSSE_ENVELOPE",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "SIMPLE_SIGNING",
    "AddressClass",
    "BundleSignature",
    "Challenge",
    "CredentialStore",
    "Credentials",
    "Descriptor",
    "DigestMismatchError",
    "DiscoveredSignatures",
    "EgressRefusedError",
    "EgressTransport",
    "ImageBudget",
    "ImageBudgetError",
    "ImageNotFoundError",
    "ImageReference",
    "LegacyAttestation",
    "LegacySignature",
    "Manifest",
    "ManifestFormatError",
    "ManifestNotFoundError",
    "Platform",
    "PlatformManifest",
    "Referrers",
    "RegistryAuth",
    "RegistryAuthError",
    "RegistryClient",
    "RegistryLimits",
    "RegistryStatusError",
    "RegistryTimeoutError",
    "Repository",
    "RepositoryLike",
    "RequestLimiter",
    "Signature",
    "SizeLimitError",
    "TokenCache",
    "address_class",
    "discover_signatures",
    "index_covers",
    "is_loopback_host",
    "parse_reference",
    "parse_www_authenticate",
    "platform_digests",
]
