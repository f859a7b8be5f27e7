"""``multiArch: everyPlatform``: every manifest an index lists must carry a signature the authority accepts.

``cosign sign --recursive`` signs the index and each manifest it lists (nested indexes included);
with ``everyPlatform`` an authority passes only when the digest the workload names passes and so
does each of those, so an index signed alone never stands for platform images nobody signed.
The signature of the index never counts for its children here. A single-platform manifest has no
children: its own signature is all there is. An index listing more than ``MAX_PLATFORMS``
manifests cannot be checked within bounds and is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from webhook.decision.verdicts import Result
from webhook.errors import VerificationError
from webhook.oci.client import RegistryClient
from webhook.oci.limits import ImageBudget
from webhook.oci.manifest import INDEX_MEDIA_TYPES, PlatformManifest, platform_digests
from webhook.oci.reference import ImageReference

MAX_PLATFORMS = 64


async def listed_manifests(registry: RegistryClient, ref: ImageReference, budget: ImageBudget | None = None
                           ) -> list[PlatformManifest]:
    """Every manifest the index ``ref`` (pinned) lists, nested indexes walked; empty for a single manifest."""
    assert ref.digest is not None
    found: list[PlatformManifest] = []
    seen = {ref.digest}
    pending = [ref.digest]
    while pending:
        manifest = await registry.get_manifest(ref, pending.pop(0), budget=budget)
        for child in platform_digests(manifest):
            if child.digest in seen:
                continue
            seen.add(child.digest)
            found.append(child)
            if len(found) > MAX_PLATFORMS:
                raise VerificationError(f"the index lists more than {MAX_PLATFORMS} manifests; multiArch "
                                        "everyPlatform cannot verify them all", step="multiArch")
            if child.media_type in INDEX_MEDIA_TYPES:
                pending.append(child.digest)
    return found


def _describe(child: PlatformManifest) -> str:
    return f"{child.digest} ({child.platform or 'no platform'})"


def every_platform(passed: Result, children: Sequence[PlatformManifest], results: Sequence[Result]
                         ) -> Result:
    """``passed`` (the index's own success) when every child passed too, else the first child's failure."""
    failed = [(child, result) for child, result in zip(children, results, strict=True) if not result.ok]
    if not failed:
        if not children:
            return passed
        return Result(True, f"{passed.reason}; every platform manifest ({len(children)}) verified", passed.authority,
                      signer=passed.signer, issuer=passed.issuer, log_index=passed.log_index, match=passed.match)
    # A child that is not signed decides over one that could not be checked (that one may well be signed).
    failed.sort(key=lambda item: item[1].infrastructure)
    child, result = failed[0]
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    return Result(False, f"multiArch everyPlatform: platform manifest {_describe(child)}{more} is not signed as "
                  f"required: {result.reason}", passed.authority, infrastructure=result.infrastructure,
                  signer=result.signer or passed.signer, issuer=result.issuer or passed.issuer,
                  log_index=result.log_index)
