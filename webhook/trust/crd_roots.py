"""Trust roots declared by ``TrustRoot`` objects (``policy.signet.dev/v1alpha1``).

A TrustRoot spec holds exactly one of:

    trustedRoot   an inline trusted_root.json (string, or the object itself)
    remote        {mirror: URL, root: base64 TUF root.json}: refreshed through TUF
    repository    {root: base64 TUF root.json, tarball: base64 tar(.gz) of a TUF repository in
                  served layout}: air-gapped; the repository is served from memory, no network
                  (``mirrorFS`` is accepted as policy-controller's name for ``tarball``)

``remote`` and ``repository`` also take policy-controller's ``targets`` (where the targets live
below the repository root, default ``targets``) and ``trustedRootTarget`` (the target holding
the trusted root, default ``trusted_root.json``).

Every failure is a :class:`~webhook.errors.TrustError` naming the TrustRoot, so a policy that
refers to it fails closed with a message an admin can trace.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tuf.api._payload import TargetFile  # tuf.api.metadata re-exports it implicitly only (mypy)
from tuf.ngclient.fetcher import FetcherInterface
from tuf.ngclient.updater import Updater

from webhook.errors import TrustError
from webhook.trust.fetchers import MemoryFetcher
from webhook.trust.tuf_client import TRUSTED_ROOT_TARGET, TufClient
from webhook.verify.trustroot import TrustedRoot

_KINDS = ("trustedRoot", "remote", "repository")
_TARGETS = "targets"
_AIRGAP_HOST = "https://trustroot.invalid"
"""A base URL that never resolves: the in-memory fetcher only looks at the path."""


def trusted_root_from_spec(
    name: str,
    spec: Mapping[str, Any],
    *,
    cache_dir: Path | None = None,
    fetcher: FetcherInterface | None = None,
) -> TrustedRoot:
    """Parse and, for ``remote``/``repository``, verify through TUF the trust root of a TrustRoot."""
    document = trusted_root_json_from_spec(name, spec, cache_dir=cache_dir, fetcher=fetcher)
    try:
        return TrustedRoot.from_json(document)
    except TrustError as exc:
        raise TrustError(f"TrustRoot {name}: {exc.reason}") from exc


def trusted_root_json_from_spec(
    name: str,
    spec: Mapping[str, Any],
    *,
    cache_dir: Path | None = None,
    fetcher: FetcherInterface | None = None,
) -> bytes:
    """The trusted_root.json bytes a TrustRoot spec stands for (``fetcher`` for ``remote``)."""
    if not isinstance(spec, Mapping):
        raise TrustError(f"TrustRoot {name}: spec is not an object")
    present = [kind for kind in _KINDS if spec.get(kind) is not None]
    if len(present) != 1:
        raise TrustError(
            f"TrustRoot {name}: spec must set exactly one of {', '.join(_KINDS)} "
            f"(found: {', '.join(present) or 'none'})"
        )
    kind = present[0]
    try:
        if kind == "trustedRoot":
            return _inline(spec[kind])
        if kind == "remote":
            return _remote(spec[kind], cache_dir, fetcher)
        return _repository(name, spec[kind])
    except TrustError as exc:
        raise TrustError(f"TrustRoot {name}: {kind}: {exc.reason}") from exc


def _inline(value: object) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, Mapping):
        # YAML may carry the document as an object; re-serialise it for the parser.
        return json.dumps(value).encode()
    raise TrustError("trustedRoot must be a JSON string or an object")


class _LayoutTufClient(TufClient):
    """A :class:`TufClient` for a TrustRoot's layout: targets below ``targets``, the trust root in ``target``."""

    def __init__(self, mirror_url: str, *, targets: str, target: str, **options: Any) -> None:
        super().__init__(mirror_url, **options)
        self._targets_url = f"{self.mirror_url}/{targets.strip('/')}/"
        self._target = target

    def _targetinfo(self, updater: Updater) -> TargetFile:
        info = updater.get_targetinfo(self._target)
        if info is None:
            raise TrustError(f"TUF repository {self.mirror_url} has no target {self._target}")
        return info

    def _download_atomic(self, updater: Updater, info: TargetFile) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.target_dir, prefix=".trusted_root.", suffix=".tmp")
        os.close(fd)
        try:
            updater.download_target(info, filepath=tmp, target_base_url=self._targets_url)
            Path(tmp).replace(self.cached_target_path)
        finally:
            Path(tmp).unlink(missing_ok=True)


def _tuf_client(mirror: str, value: Mapping[str, Any], root: bytes, cache_dir: Path | None,
                fetcher: FetcherInterface | None) -> TufClient:
    targets, target = value.get("targets") or _TARGETS, value.get("trustedRootTarget") or TRUSTED_ROOT_TARGET
    if not isinstance(targets, str) or not isinstance(target, str):
        raise TrustError("targets and trustedRootTarget must be strings")
    if (targets, target) == (_TARGETS, TRUSTED_ROOT_TARGET):
        return TufClient(mirror, bootstrap_root=root, cache_dir=cache_dir, fetcher=fetcher)
    return _LayoutTufClient(mirror, targets=targets, target=target, bootstrap_root=root, cache_dir=cache_dir,
                            fetcher=fetcher)


def _remote(value: object, cache_dir: Path | None, fetcher: FetcherInterface | None) -> bytes:
    fields = _fields(value, "remote", ("mirror", "root"))
    assert isinstance(value, Mapping)  # _fields checked it
    mirror = fields["mirror"]
    if not mirror.startswith(("https://", "http://")):
        raise TrustError(f"mirror must be an http(s) URL, got {mirror!r}")
    root = _decode_root(fields["root"])
    return _tuf_client(mirror, value, root, cache_dir, fetcher).refresh()


def _repository(name: str, value: object) -> bytes:
    if isinstance(value, Mapping) and "tarball" not in value and "mirrorFS" in value:
        value = {**value, "tarball": value["mirrorFS"]}
    fields = _fields(value, "repository", ("root", "tarball"))
    assert isinstance(value, Mapping)  # _fields checked it
    root = _decode_root(fields["root"])
    tarball = _b64(fields["tarball"], "tarball")
    base_url = f"{_AIRGAP_HOST}/{quote(name, safe='')}"
    try:
        fetcher = MemoryFetcher.from_tarball(tarball, base_url)
    except ValueError as exc:
        raise TrustError(f"tarball: {exc}") from exc
    # A fresh cache per load: the CRD holds the whole repository, so there is no state worth
    # keeping, and nothing of one TrustRoot can leak into another.
    with tempfile.TemporaryDirectory(prefix="signet-trustroot-") as tmp:
        return _tuf_client(base_url, value, root, Path(tmp), fetcher).refresh()


def _fields(value: object, what: str, names: tuple[str, ...]) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise TrustError(f"{what} must be an object with {', '.join(names)}")
    out: dict[str, str] = {}
    for field in names:
        item = value.get(field)
        if not isinstance(item, str) or not item.strip():
            raise TrustError(f"{what}.{field} is required (a non-empty string)")
        out[field] = item.strip()
    return out


def _decode_root(value: str) -> bytes:
    # policy-controller stores root.json base64-encoded; a literal JSON document is accepted
    # too because it is what people paste. Either way TUF verifies its self-signature.
    if value.startswith("{"):
        return value.encode()
    return _b64(value, "root")


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TrustError(f"{what} is not valid base64") from exc
