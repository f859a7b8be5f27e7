"""The image's config file(s) for ``spec.policy`` with ``fetchConfigFile`` (policy-controller's ``config``).

For a platform manifest, its config; for an index, the config of each platform manifest it lists
(at most ``MAX_PLATFORMS``), keyed like go-containerregistry (``os/arch[/variant][:os.version]``).
Every fetch is digest-checked, bounded and charged to the image's budget by the registry client.
"""

from __future__ import annotations

import json
from typing import Any

from webhook.errors import VerificationError
from webhook.oci.client import RegistryClient
from webhook.oci.manifest import IMAGE_MEDIA_TYPES, Manifest
from webhook.oci.reference import ImageReference
from webhook.policy.policy_result import platform_key

MAX_PLATFORMS = 32


async def image_config_files(registry: RegistryClient, ref: ImageReference) -> dict[str, Any]:
    """``{platform: config JSON}`` of the image ``ref`` (which carries its digest)."""
    assert ref.digest is not None
    budget = registry.budget(ref)
    top = await registry.get_manifest(ref, ref.digest, budget=budget)
    manifests: list[Manifest] = [top]
    if top.is_index:
        children = [d for d in top.manifests if d.media_type in IMAGE_MEDIA_TYPES][:MAX_PLATFORMS]
        manifests = [await registry.get_manifest(ref, d.digest, size=d.size, budget=budget) for d in children]
    configs: dict[str, Any] = {}
    for manifest in manifests:
        if manifest.config is None:
            continue
        raw = await registry.get_blob(ref, manifest.config.digest, size=manifest.config.size, budget=budget)
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise VerificationError(f"the config file {manifest.config.digest} is not JSON", step="policy") from exc
        if isinstance(document, dict):
            configs[platform_key(document)] = document
    return configs
