"""Finding an image's signatures in every storage layout cosign uses (SIGSTORE.md §1).

Order, all of them: (1) OCI 1.1 referrers (API, else the ``sha256-<hex>`` fallback tag) carrying
Sigstore bundles, plus the rare "experimental" referrer with simple-signing layers; (2) the
legacy tag ``sha256-<hex>.sig``; (3) with ``include_attestations``, ``sha256-<hex>.att``.
A ``SignatureLocation`` (an authority's ``source``) moves all of them to another repository, as
cosign's ``COSIGN_REPOSITORY`` does, and prefixes the legacy tags (not the referrers fallback tag,
which is the registry's convention, not cosign's).
The layouts are independent, so they are fetched concurrently; every manifest and blob is
digest-checked and size-bounded by the client, and all of them together are charged to one
``ImageBudget`` (bytes, concurrent fetches). Once it is spent nothing more is requested; what was
found within it still counts (signatures are tried before other attestations), and the overrun is
reported once. Nothing here verifies a signature.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from webhook.errors import InfrastructureError, InputError, RegistryError
from webhook.oci.client import RegistryClient
from webhook.oci.errors import ImageBudgetError, ImageNotFoundError
from webhook.oci.limits import ImageBudget
from webhook.oci.manifest import IMAGE_MEDIA_TYPES, Descriptor, Manifest, index_covers
from webhook.oci.reference import ImageReference

_logger = logging.getLogger(__name__)

BUNDLE_MEDIA_TYPES = frozenset(
    {"application/vnd.dev.sigstore.bundle.v0.3+json", "application/vnd.dev.sigstore.bundle+json;version=0.3"}
)
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
COSIGN_ARTIFACT_SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"
COSIGN_ARTIFACT_ATT = "application/vnd.dev.cosign.artifact.att.v1+json"
PREDICATE_TYPE_ANNOTATION = "dev.sigstore.bundle.predicateType"
COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"

Source = Literal["referrers-api", "referrers-fallback-tag", "legacy-tag"]


@dataclass(frozen=True, slots=True)
class BundleSignature:
    """A Sigstore bundle (cosign v3) attached as a referrer. ``predicate_type`` is an unauthenticated hint."""

    bundle: bytes
    manifest_digest: str
    layer_digest: str
    media_type: str
    predicate_type: str | None
    source: Source


@dataclass(frozen=True, slots=True)
class LegacySignature:
    """One simple-signing layer: the signed payload bytes and the layer's cosign annotations."""

    payload: bytes
    annotations: Mapping[str, str]
    layer_digest: str
    manifest_digest: str
    source: Source


@dataclass(frozen=True, slots=True)
class LegacyAttestation:
    """One DSSE envelope layer of a ``.att`` manifest (or an experimental attestation referrer)."""

    envelope: bytes
    annotations: Mapping[str, str]
    layer_digest: str
    manifest_digest: str
    predicate_type: str | None
    source: Source


Signature = BundleSignature | LegacySignature | LegacyAttestation


@dataclass(frozen=True, slots=True)
class SignatureLocation:
    """Where an image's signatures are stored: another ``registry/repository`` (None: the image's), a tag prefix."""

    registry: str | None = None
    repository: str | None = None
    tag_prefix: str = ""

    def target(self, image: ImageReference, digest: str) -> ImageReference:
        """The reference signature lookups for ``image``'s ``digest`` go to."""
        if self.registry is None or self.repository is None:
            return ImageReference(image.registry, image.repository, None, digest)
        return ImageReference(self.registry, self.repository, None, digest)

    def describe(self) -> str:
        where = f"{self.registry}/{self.repository}" if self.registry and self.repository else "the image's repository"
        return where + (f" (tag prefix {self.tag_prefix!r})" if self.tag_prefix else "")


@dataclass(slots=True)
class DiscoveredSignatures:
    """Everything found for one image digest, with notes per layout and failures that did not stop discovery.

    ``errors`` is non-empty when some layout or blob could not be read; discovery raises
    instead when that left it with nothing at all. A verifier that finds no passing signature
    while ``errors`` is non-empty should report an infrastructure failure, not "unsigned".
    """

    image: ImageReference
    bundles: list[BundleSignature] = field(default_factory=list)
    legacy: list[LegacySignature] = field(default_factory=list)
    attestations: list[LegacyAttestation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[RegistryError] = field(default_factory=list)

    @property
    def signatures(self) -> list[Signature]:
        """All signatures, bundles first (the order cosign v3 tries them)."""
        return [*self.bundles, *self.legacy, *self.attestations]

    def __len__(self) -> int:
        return len(self.bundles) + len(self.legacy) + len(self.attestations)


_T = TypeVar("_T")


async def _all(work: Iterable[Coroutine[object, object, _T]]) -> list[_T]:
    """Like ``gather``, but an unexpected failure cancels the rest instead of leaving them fetching."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one) for one in work]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


class _Discovery:
    def __init__(
        self,
        client: RegistryClient,
        image: ImageReference,
        digest: str,
        include_attestations: bool,
        budget: ImageBudget,
        *,
        location: SignatureLocation | None = None,
    ) -> None:
        self.client = client
        self.image = image
        # Every fetch goes where the signatures are: the image's repository, or the authority's source.
        self.where = location.target(image, digest) if location is not None else image
        self.tag_prefix = location.tag_prefix if location is not None else ""
        self.digest = digest
        self.include_attestations = include_attestations
        self.budget = budget
        self.result = DiscoveredSignatures(image)
        self._blobs: dict[str, asyncio.Task[bytes]] = {}
        self._overrun = False

    def blob(self, layer: Descriptor) -> Awaitable[bytes]:
        """Each blob digest is fetched once, however many manifests list it."""
        task = self._blobs.get(layer.digest)
        if task is None:
            task = asyncio.ensure_future(self._fetch_blob(layer))
            self._blobs[layer.digest] = task
        return asyncio.shield(task)

    async def _fetch_blob(self, layer: Descriptor) -> bytes:
        return await self.client.get_blob(self.where, layer.digest, size=layer.size, budget=self.budget)

    def cancel(self) -> None:
        for task in self._blobs.values():
            task.cancel()

    async def guarded(self, what: str, work: Awaitable[list[_T]]) -> list[_T]:
        """Run one independent piece; a registry failure is recorded, not fatal to the others.

        A spent budget is recorded once, however many fetches it stopped.
        """
        try:
            return await work
        except ImageBudgetError as exc:
            if not self._overrun:
                self._overrun = True
                _logger.debug("signature discovery for %s: %s", self.image, exc)
                self.result.errors.append(exc)
                self.result.notes.append(f"{what}: {exc.reason}; nothing more was fetched")
            return []
        except RegistryError as exc:
            _logger.debug("signature discovery for %s: %s failed: %s", self.image, what, exc)
            self.result.errors.append(exc)
            self.result.notes.append(f"{what}: failed: {exc.reason}")
            return []

    async def each(
        self, what: str, items: list[Descriptor], one: Callable[[Descriptor], Awaitable[list[_T]]]
    ) -> list[_T]:
        """``one`` over ``items`` concurrently; results in item order, failures recorded."""
        results = await _all(self.guarded(f"{what} {item.digest}", one(item)) for item in items)
        return [signature for result in results for signature in result]

    # --- layout 1: referrers ------------------------------------------------------------------

    async def referrers(self) -> list[Signature]:
        found = await self.client.referrers(self.where, self.digest, budget=self.budget)
        source: Source = "referrers-api" if found.source == "api" else "referrers-fallback-tag"
        self.result.notes.extend(f"referrers: {note}" for note in found.notes)
        wanted = {*BUNDLE_MEDIA_TYPES, COSIGN_ARTIFACT_SIG, COSIGN_ARTIFACT_ATT}
        # Fallback indexes may lack artifactType (old cosign): then we must open the manifest to know.
        first: dict[str, Descriptor] = {}
        for descriptor in found.descriptors:
            first.setdefault(descriptor.digest, descriptor)  # a list naming one digest 1000 times costs one fetch
        unique = list(first.values())
        candidates = [
            d
            for d in unique
            if d.media_type in IMAGE_MEDIA_TYPES and (d.artifact_type is None or d.artifact_type in wanted)
        ]
        # Signatures before other attestations, so a budget spent on SBOMs never hides a signature.
        candidates.sort(key=lambda d: d.annotations.get(PREDICATE_TYPE_ANNOTATION, COSIGN_SIGN) != COSIGN_SIGN)
        ignored = len(unique) - len(candidates)
        self.result.notes.append(
            f"referrers ({found.source}): {len(found.descriptors)} referrer(s), "
            f"{ignored} not Sigstore/cosign, ignored"
        )

        async def one(descriptor: Descriptor) -> list[Signature]:
            manifest = await self.client.get_manifest(
                self.where, descriptor.digest, size=descriptor.size, budget=self.budget
            )
            return await self._referrer(manifest, descriptor, source)

        return await self.each("referrer", candidates, one)

    async def _referrer(self, manifest: Manifest, descriptor: Descriptor, source: Source) -> list[Signature]:
        if manifest.subject is None or manifest.subject.digest != self.digest:
            # A fallback tag is an ordinary, writable tag: do not trust it about what refers to what.
            self.result.notes.append(f"referrer {manifest.digest}: subject is not {self.digest}; ignored")
            return []
        kind = manifest.artifact_type or (manifest.config.media_type if manifest.config else None)
        if len(manifest.layers) == 1 and manifest.layers[0].media_type in BUNDLE_MEDIA_TYPES:
            layer = manifest.layers[0]
            hint = manifest.annotations.get(PREDICATE_TYPE_ANNOTATION) or descriptor.annotations.get(
                PREDICATE_TYPE_ANNOTATION
            )
            data = await self.blob(layer)
            return [BundleSignature(data, manifest.digest, layer.digest, layer.media_type, hint, source)]
        if kind == COSIGN_ARTIFACT_SIG:
            return [*await self._simple_signing_layers(manifest, source)]
        if kind == COSIGN_ARTIFACT_ATT:
            return [*await self._dsse_layers(manifest, source)] if self.include_attestations else []
        self.result.notes.append(
            f"referrer {manifest.digest} ({kind}): not a Sigstore bundle or cosign signature; ignored"
        )
        return []

    # --- layouts 2 and 3: legacy tags ---------------------------------------------------------

    async def legacy_tag(self, suffix: Literal["sig", "att"]) -> list[Signature]:
        algorithm, _, hex_digest = self.digest.partition(":")
        tag = f"{self.tag_prefix}{algorithm}-{hex_digest}.{suffix}"
        manifest = await self.client.get_tag_manifest(self.where, tag, budget=self.budget)
        if manifest is None:
            self.result.notes.append(f"legacy tag {tag}: not found")
            return []
        if manifest.is_index:
            self.result.notes.append(f"legacy tag {tag}: is an index, not a signature manifest; ignored")
            return []
        found: list[Signature] = []
        if suffix == "sig":
            found.extend(await self._simple_signing_layers(manifest, "legacy-tag"))
        else:
            found.extend(await self._dsse_layers(manifest, "legacy-tag"))
        self.result.notes.append(f"legacy tag {tag}: {len(found)} usable of {len(manifest.layers)} layer(s)")
        return found

    async def _simple_signing_layers(self, manifest: Manifest, source: Source) -> list[LegacySignature]:
        async def one(layer: Descriptor) -> list[LegacySignature]:
            payload = await self.blob(layer)
            return [LegacySignature(payload, dict(layer.annotations), layer.digest, manifest.digest, source)]

        layers = [layer for layer in manifest.layers if layer.media_type == SIMPLE_SIGNING]
        return await self.each("signature layer", layers, one)

    async def _dsse_layers(self, manifest: Manifest, source: Source) -> list[LegacyAttestation]:
        async def one(layer: Descriptor) -> list[LegacyAttestation]:
            envelope = await self.blob(layer)
            hint = layer.annotations.get("predicateType")
            return [
                LegacyAttestation(
                    envelope, dict(layer.annotations), layer.digest, manifest.digest, hint, source
                )
            ]

        layers = [layer for layer in manifest.layers if layer.media_type == DSSE_ENVELOPE]
        return await self.each("attestation layer", layers, one)


async def discover_signatures(
    client: RegistryClient,
    image: ImageReference,
    *,
    include_attestations: bool = False,
    budget: ImageBudget | None = None,
    location: SignatureLocation | None = None,
) -> DiscoveredSignatures:
    """All signatures stored for ``image`` (which must carry a digest), in the order above; at ``location`` if given.

    Raises the first RegistryError when some layout failed and nothing was found at all, so a
    registry outage is never mistaken for "unsigned" (an ImageBudgetError when the image's
    signature data exceeded ``budget``, by default a fresh one from the client's limits).
    """
    if image.digest is None:
        raise InputError(f"signature discovery needs a digest reference, got {image}; resolve the tag first")
    discovery = _Discovery(client, image, image.digest, include_attestations, budget or client.budget(image),
                           location=location)
    layouts = [
        discovery.guarded("referrers", discovery.referrers()),
        discovery.guarded("legacy .sig tag", discovery.legacy_tag("sig")),
    ]
    if include_attestations:
        layouts.append(discovery.guarded("legacy .att tag", discovery.legacy_tag("att")))
    result = discovery.result
    try:
        layouts_found = await _all(layouts)
    finally:
        discovery.cancel()
    for found in layouts_found:
        for signature in found:
            if isinstance(signature, BundleSignature):
                result.bundles.append(signature)
            elif isinstance(signature, LegacySignature):
                result.legacy.append(signature)
            else:
                result.attestations.append(signature)
    if result.errors and len(result) == 0:
        raise next((e for e in result.errors if isinstance(e, ImageBudgetError)), result.errors[0])
    return result


@dataclass(frozen=True)
class IndexLookup:
    """The multi-arch index covering a platform manifest (``digest`` None when there is none), and what was seen."""

    digest: str | None
    notes: tuple[str, ...] = ()
    errors: tuple[InfrastructureError, ...] = ()


async def covering_index(client: RegistryClient, ref: ImageReference, digest: str,
                         index_digest: str | None = None) -> IndexLookup:
    """The index that lists ``digest``: ``index_digest``, else the one the reference's tag points to.

    Its signatures and attestations may stand for the platform manifest when a policy opts in.
    """
    try:
        candidate = index_digest
        if candidate is None and ref.tag is not None:
            candidate = await client.resolve_digest(ImageReference(ref.registry, ref.repository, ref.tag, None))
        if candidate is None or candidate == digest:
            return IndexLookup(None)
        index = await client.get_manifest(ref, candidate)
    except ImageNotFoundError as exc:
        return IndexLookup(None, (f"no covering index: {exc.reason}",))
    except InfrastructureError as exc:
        return IndexLookup(None, (f"covering index lookup failed: {exc.reason}",), (exc,))
    if not index_covers(index, digest):
        return IndexLookup(None, (f"{candidate} is not an index listing {digest}; its signatures do not apply",))
    return IndexLookup(candidate)
