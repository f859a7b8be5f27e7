"""Trust material shipped inside the package: TUF roots and trusted_root.json snapshots.

The embedded TUF ``root.json`` is the trust anchor for the first refresh from Sigstore's
mirrors; the embedded ``trusted_root.json`` is the last resort when no mirror can be reached
and nothing is cached. Both are read with :mod:`importlib.resources` so they work from a wheel
or a zip.
"""

from __future__ import annotations

from importlib import resources

from webhook.verify.trustroot import TrustedRoot

PRODUCTION_MIRROR = "https://tuf-repo-cdn.sigstore.dev"
"""Sigstore public-good TUF repository (metadata at the root, targets under ``targets/``)."""

STAGING_MIRROR = "https://tuf-repo-cdn.sigstage.dev"
"""Sigstore staging TUF repository."""

_PRODUCTION = "prod"
_STAGING = "staging"


def _read(instance: str, name: str) -> bytes:
    return resources.files(__package__).joinpath("embedded", instance, name).read_bytes()


def production_root_json() -> bytes:
    """The embedded TUF root of the production repository (bootstrap for refreshes)."""
    return _read(_PRODUCTION, "root.json")


def production_trusted_root_json() -> bytes:
    """The embedded production ``trusted_root.json`` document (bytes as shipped)."""
    return _read(_PRODUCTION, "trusted_root.json")


def production_trusted_root() -> TrustedRoot:
    """The embedded production trust root, parsed."""
    return TrustedRoot.from_json(production_trusted_root_json())


def staging_root_json() -> bytes:
    """The embedded TUF root of the staging repository."""
    return _read(_STAGING, "root.json")


def staging_trusted_root_json() -> bytes:
    """The embedded staging ``trusted_root.json`` document."""
    return _read(_STAGING, "trusted_root.json")


def staging_trusted_root() -> TrustedRoot:
    """The embedded staging trust root, parsed."""
    return TrustedRoot.from_json(staging_trusted_root_json())


def normalize_mirror(url: str) -> str:
    """A mirror URL without trailing slashes, so equal mirrors share one cache directory."""
    return url.rstrip("/")


def embedded_for_mirror(url: str) -> tuple[bytes, bytes] | None:
    """``(root.json, trusted_root.json)`` shipped for ``url`` if it is a known Sigstore mirror."""
    mirror = normalize_mirror(url)
    if mirror == PRODUCTION_MIRROR:
        return production_root_json(), production_trusted_root_json()
    if mirror == STAGING_MIRROR:
        return staging_root_json(), staging_trusted_root_json()
    return None
