"""The image's config file(s) for ``spec.policy`` with ``fetchConfigFile`` (policy-controller's ``config``).

For a platform manifest, its config; for an index, the config of each platform manifest it lists,
keyed like go-containerregistry (``os/arch[/variant][:os.version]``). An index the policy could not
see whole (more than ``MAX_PLATFORMS`` manifests, a nested index, two manifests for one platform) is
refused: a configuration left out would be one the policy never judged.
Every fetch is digest-checked, bounded and charged to the image's budget by the registry client.
"""

from __future__ import annotations

import json
from typing import Any

from webhook.errors import VerificationError
from webhook.oci.client import RegistryClient
from webhook.oci.manifest import IMAGE_MEDIA_TYPES, INDEX_MEDIA_TYPES, Manifest, Platform
from webhook.oci.reference import ImageReference
from webhook.policy.policy_result import platform_key

MAX_PLATFORMS = 32


async def image_config_files(registry: RegistryClient, ref: ImageReference) -> dict[str, Any]:
    """``{platform: config JSON}`` of the image ``ref`` (which carries its digest)."""
    assert ref.digest is not None
    budget = registry.budget(ref)
    top = await registry.get_manifest(ref, ref.digest, budget=budget)
    listed: list[tuple[Manifest, Platform | None]]
    if top.is_index:
        # The policy must see every config a runtime may pick: none left out, none hidden one level down.
        if any(d.media_type in INDEX_MEDIA_TYPES for d in top.manifests):
            raise VerificationError("the index lists another index, whose platform configs fetchConfigFile "
                                    "does not read", step="policy")
        children = [d for d in top.manifests if d.media_type in IMAGE_MEDIA_TYPES]
        if len(children) > MAX_PLATFORMS:
            raise VerificationError(f"the index lists {len(children)} manifests, more than the {MAX_PLATFORMS} "
                                    "whose config files fetchConfigFile reads", step="policy")
        listed = [(await registry.get_manifest(ref, d.digest, size=d.size, budget=budget), d.platform)
                  for d in children]
    else:
        listed = [(top, None)]
    configs: dict[str, Any] = {}
    for manifest, platform in listed:
        if manifest.config is None:
            continue
        raw = await registry.get_blob(ref, manifest.config.digest, size=manifest.config.size, budget=budget)
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise VerificationError(f"the config file {manifest.config.digest} is not JSON", step="policy") from exc
        if not isinstance(document, dict):
            raise VerificationError(f"the config file {manifest.config.digest} is not a JSON object", step="policy")
        key = platform_key(document)
        if platform is not None and _runnable(str(platform)) and not _same_platform(platform, document):
            # A runtime picks the manifest by the index's word, the policy reads the config's own.
            raise VerificationError(f"the index lists manifest {manifest.digest} for platform {platform}, but its "
                                    f"config file says {key or 'no platform'}", step="policy")
        if key in configs and _runnable(key):
            # Keyed by platform, the second would hide the first, which is the one a runtime picks.
            raise VerificationError(f"the index lists more than one manifest for platform {key}", step="policy")
        configs[key] = document
    return configs


def _runnable(key: str) -> bool:
    """A platform a runtime may select (buildkit's attestation manifests are ``unknown/unknown``)."""
    return bool(key) and not key.startswith("unknown")


def _same_platform(platform: Platform, config: dict[str, Any]) -> bool:
    """The index's platform and the config's agree (a variant only counts when both name one)."""
    variant = config.get("variant")
    return (platform.os, platform.architecture) == (config.get("os"), config.get("architecture")) and (
        not platform.variant or not variant or platform.variant == variant)
