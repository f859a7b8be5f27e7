"""OCI/Docker manifests and indexes as immutable values, parsed defensively from digest-checked bytes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.oci.errors import ManifestFormatError, SizeLimitError
from webhook.oci.reference import is_valid_digest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})

# Index types first: a registry answering a multi-arch tag must give us the index digest, which is
# what `cosign sign <tag>` signed, not one platform's manifest.
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST])


def media_type_of(content_type: str | None) -> str | None:
    """``application/x; charset=utf-8`` → ``application/x``; None for a missing header."""
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A content descriptor: what a manifest says about a blob or another manifest."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    platform: Platform | None = None

    @classmethod
    def from_json(cls, value: Any, where: str) -> Descriptor:
        if not isinstance(value, dict):
            raise ManifestFormatError(f"{where}: a descriptor must be an object")
        media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise ManifestFormatError(f"{where}: descriptor without mediaType")
        if not isinstance(digest, str) or not is_valid_digest(digest):
            raise ManifestFormatError(f"{where}: descriptor digest {digest!r} is not a sha256/sha512 digest")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestFormatError(f"{where}: descriptor {digest} has no valid size")
        artifact_type = value.get("artifactType")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            annotations=_string_map(value.get("annotations"), f"{where}: annotations of {digest}"),
            artifact_type=artifact_type if isinstance(artifact_type, str) and artifact_type else None,
            platform=_platform(value.get("platform")),
        )


def _string_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ManifestFormatError(f"{where} must map strings to strings")
    return dict(value)


def _platform(value: Any) -> Platform | None:
    if not isinstance(value, dict):
        return None
    os_, arch, variant = value.get("os"), value.get("architecture"), value.get("variant")
    if not isinstance(os_, str) or not isinstance(arch, str):
        return None
    return Platform(os_, arch, variant if isinstance(variant, str) and variant else None)


@dataclass(frozen=True, slots=True)
class Manifest:
    """An image manifest or an index, with the exact bytes it was parsed from.

    ``digest`` is the digest those bytes hash to (checked by the client when fetched by digest,
    computed when fetched by tag). ``media_type`` comes from the body when it says, since the
    body is covered by the digest and the Content-Type header is not.
    """

    digest: str
    media_type: str
    raw: bytes = field(repr=False)
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES

    @classmethod
    def parse(
        cls,
        raw: bytes,
        *,
        digest: str,
        content_type: str | None = None,
        max_layers: int = 1000,
        source: str = "registry",
    ) -> Manifest:
        """Parse manifest bytes; ManifestFormatError/SizeLimitError name ``source`` and the digest."""
        where = f"manifest {digest} from {source}"
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestFormatError(f"{where} is not valid JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise ManifestFormatError(f"{where} is not a JSON object")
        body_type = document.get("mediaType")
        media_type = body_type if isinstance(body_type, str) and body_type else media_type_of(content_type)
        if media_type not in INDEX_MEDIA_TYPES | IMAGE_MEDIA_TYPES:
            # Neither body nor header is conclusive (OCI allows omitting mediaType): go by shape.
            if "manifests" in document:
                media_type = OCI_INDEX
            elif "layers" in document:
                media_type = OCI_MANIFEST
            else:
                raise ManifestFormatError(f"{where} has unsupported media type {media_type!r}")

        def descriptors(key: str) -> tuple[Descriptor, ...]:
            items = document.get(key, [])
            if items is None:
                return ()
            if not isinstance(items, list):
                raise ManifestFormatError(f"{where}: {key} must be a list")
            if len(items) > max_layers:
                raise SizeLimitError(
                    f"{where} lists {len(items)} {key}, more than the limit of {max_layers}", limit=max_layers
                )
            return tuple(Descriptor.from_json(item, f"{where} {key}[{i}]") for i, item in enumerate(items))

        config = document.get("config")
        subject = document.get("subject")
        artifact_type = document.get("artifactType")
        return cls(
            digest=digest,
            media_type=media_type,
            raw=raw,
            config=Descriptor.from_json(config, f"{where} config") if config is not None else None,
            layers=descriptors("layers"),
            manifests=descriptors("manifests"),
            subject=Descriptor.from_json(subject, f"{where} subject") if subject is not None else None,
            artifact_type=artifact_type if isinstance(artifact_type, str) and artifact_type else None,
            annotations=_string_map(document.get("annotations"), f"{where} annotations"),
        )


@dataclass(frozen=True, slots=True)
class PlatformManifest:
    """One child of a multi-arch index."""

    digest: str
    media_type: str
    platform: Platform | None


def platform_digests(index: Manifest) -> list[PlatformManifest]:
    """The child manifests of an index, in index order (empty for a single-platform manifest).

    Policy use: when the index digest carries a verified signature, a platform manifest is
    covered if its digest is listed here; ``index`` must be the digest-checked index.
    """
    if not index.is_index:
        return []
    return [PlatformManifest(d.digest, d.media_type, d.platform) for d in index.manifests]


def index_covers(index: Manifest, digest: str) -> bool:
    """True when ``digest`` is one of the index's child manifests."""
    return any(child.digest == digest for child in platform_digests(index))
