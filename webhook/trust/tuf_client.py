"""A thin wrapper over python-tuf's ngclient that yields a verified ``trusted_root.json``.

One :class:`TufClient` per mirror. Metadata and targets are cached in directories keyed by the
URL-quoted mirror (like sigstore-python), so switching mirrors never mixes repositories. Every
TUF exception is wrapped into :class:`~webhook.errors.TrustError` with a reason a cluster admin
can act on: expired metadata, bad signatures, rollback, tampered target, unreachable mirror.

The refresh is synchronous (python-tuf is); the server runs it in a background thread
(:mod:`webhook.trust.provider`), never in the request path.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from tuf.api import exceptions as tuf_exceptions
from tuf.api._payload import TargetFile  # tuf.api.metadata re-exports it implicitly only (mypy)
from tuf.ngclient.config import UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface
from tuf.ngclient.updater import Updater

from webhook.errors import TrustError
from webhook.trust.embedded import PRODUCTION_MIRROR, embedded_for_mirror, normalize_mirror
from webhook.trust.fetchers import HttpxFetcher
from webhook.verify.trustroot import TrustedRoot

_logger = logging.getLogger(__name__)

TRUSTED_ROOT_TARGET = "trusted_root.json"
_APP_DIR = "signet"


def default_base_dirs() -> tuple[Path, Path]:
    """``(data_dir, cache_dir)`` for TUF state, following the XDG base directory spec.

    Metadata is state worth keeping (rollback protection), so it lives under the data dir;
    targets can be re-downloaded, so they live under the cache dir.
    """
    home = Path(os.environ.get("HOME") or Path.home())
    data = os.environ.get("XDG_DATA_HOME") or str(home / ".local" / "share")
    cache = os.environ.get("XDG_CACHE_HOME") or str(home / ".cache")
    return Path(data) / _APP_DIR / "tuf", Path(cache) / _APP_DIR / "tuf"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class TufClient:
    """Refresh Sigstore trust material from one TUF mirror.

    ``bootstrap_root`` is the trusted TUF ``root.json`` to start from; when None, the embedded
    root is used for Sigstore's production and staging mirrors, else the cached root (if any).
    ``cache_dir`` overrides the XDG directories (metadata and targets both go below it).
    """

    def __init__(
        self,
        mirror_url: str = PRODUCTION_MIRROR,
        *,
        bootstrap_root: bytes | None = None,
        cache_dir: Path | None = None,
        fetcher: FetcherInterface | None = None,
        config: UpdaterConfig | None = None,
    ) -> None:
        self.mirror_url = normalize_mirror(mirror_url)
        key = quote(self.mirror_url, safe="")
        if cache_dir is not None:
            self.metadata_dir = Path(cache_dir) / key / "metadata"
            self.target_dir = Path(cache_dir) / key / "targets"
        else:
            data_base, cache_base = default_base_dirs()
            self.metadata_dir = data_base / key
            self.target_dir = cache_base / key
        self._embedded = embedded_for_mirror(self.mirror_url)
        self._bootstrap = bootstrap_root if bootstrap_root is not None else (
            self._embedded[0] if self._embedded else None
        )
        self._fetcher = fetcher
        self._config = config or UpdaterConfig(app_user_agent="signet")

    @property
    def cached_target_path(self) -> Path:
        return self.target_dir / quote(TRUSTED_ROOT_TARGET, safe="")

    def refresh(self) -> bytes:
        """Run a full TUF refresh and return the verified ``trusted_root.json`` bytes."""
        with self._locked():
            updater: Updater | None = None
            stage = "loading the starting root.json"
            try:
                updater = self._new_updater()
                stage = "refreshing metadata"
                info = self._targetinfo(updater)
                stage = f"downloading target {TRUSTED_ROOT_TARGET}"
                cached = updater.find_cached_target(info, str(self.cached_target_path))
                if cached is None:
                    self._download_atomic(updater, info)
                data = self.cached_target_path.read_bytes()
            except TrustError:
                raise
            except Exception as exc:  # every TUF/OS failure becomes one TrustError
                raise self._translate(exc, stage, updater) from exc
        _logger.info("TUF refresh from %s: %s is up to date", self.mirror_url, TRUSTED_ROOT_TARGET)
        return data

    def refresh_trusted_root(self) -> TrustedRoot:
        """:meth:`refresh` and parse the result."""
        return TrustedRoot.from_json(self.refresh())

    def cached_trusted_root(self) -> bytes | None:
        """The ``trusted_root.json`` of the last successful refresh, without any network."""
        try:
            return self.cached_target_path.read_bytes()
        except OSError:
            return None

    def cached_root_version(self) -> int | None:
        """Version of the newest TUF root verified into the cache (None if unknown)."""
        try:
            signed = json.loads((self.metadata_dir / "root.json").read_bytes())["signed"]
            version = signed["version"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return version if isinstance(version, int) else None

    def last_good_trusted_root(self) -> tuple[bytes, str]:
        """Offline fallback: ``(document, source)`` with source ``"cache"`` or ``"embedded"``.

        The cached target was hash-checked against signed metadata when it was written. The
        embedded document is used only for the Sigstore mirror it belongs to: falling back
        to public-good trust for a private mirror would silently change who is trusted.
        """
        cached = self.cached_trusted_root()
        if cached is not None:
            return cached, "cache"
        if self._embedded is not None:
            return self._embedded[1], "embedded"
        raise TrustError(
            f"no trusted root available offline for TUF mirror {self.mirror_url}: "
            "nothing cached yet and no embedded copy"
        )

    # -- internals -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # python-tuf is not safe for concurrent use of one cache (e.g. `signet initialize`
        # while the server refreshes): serialise on an advisory lock in the metadata dir.
        try:
            self.metadata_dir.mkdir(parents=True, exist_ok=True)
            self.target_dir.mkdir(parents=True, exist_ok=True)
            handle = (self.metadata_dir / ".lock").open("a")
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise TrustError(f"cannot use TUF cache directory {self.metadata_dir}: {reason}") from exc
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _new_updater(self) -> Updater:
        bootstrap = self._bootstrap
        if bootstrap is None and not (self.metadata_dir / "root.json").exists():
            raise TrustError(
                f"no TUF root to start from for mirror {self.mirror_url}: give a root.json (--tuf-root)"
            )
        return Updater(
            metadata_dir=str(self.metadata_dir),
            metadata_base_url=self.mirror_url,
            target_dir=str(self.target_dir),
            target_base_url=f"{self.mirror_url}/targets/",
            fetcher=self._fetcher or HttpxFetcher(),
            config=self._config,
            bootstrap=bootstrap,
        )

    def _targetinfo(self, updater: Updater) -> TargetFile:
        info = updater.get_targetinfo(TRUSTED_ROOT_TARGET)
        if info is None:
            raise TrustError(f"TUF repository {self.mirror_url} has no target {TRUSTED_ROOT_TARGET}")
        return info

    def _download_atomic(self, updater: Updater, info: TargetFile) -> None:
        # download_target() writes in place; download beside the target and rename instead,
        # so a crash never leaves a truncated trusted_root.json for the offline fallback.
        fd, tmp = tempfile.mkstemp(dir=self.target_dir, prefix=".trusted_root.", suffix=".tmp")
        os.close(fd)
        try:
            updater.download_target(info, filepath=tmp)
            Path(tmp).replace(self.cached_target_path)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _translate(self, exc: Exception, stage: str, updater: Updater | None) -> TrustError:
        where = f"TUF mirror {self.mirror_url}"
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, tuf_exceptions.ExpiredMetadataError):
            return TrustError(f"TUF metadata expired: {_expiry_detail(detail, updater)} ({where})")
        if isinstance(exc, tuf_exceptions.UnsignedMetadataError):
            if detail.startswith("root "):
                return TrustError(
                    f"TUF root rotation is not signed by enough trusted keys ({detail}); "
                    f"the starting root may be too old or the repository forged ({where})"
                )
            return TrustError(f"TUF metadata has bad signatures: {detail} ({where})")
        if isinstance(exc, tuf_exceptions.BadVersionNumberError):
            return TrustError(f"TUF rollback attempt rejected: {detail} ({where})")
        mismatch = (tuf_exceptions.LengthOrHashMismatchError, tuf_exceptions.DownloadLengthMismatchError)
        if isinstance(exc, mismatch):
            return TrustError(f"TUF hash or length mismatch while {stage}: {detail} ({where})")
        if isinstance(exc, tuf_exceptions.DownloadHTTPError):
            if exc.status_code in {403, 404}:
                return TrustError(f"TUF mirror is missing a file while {stage}: {detail} ({where})")
            return TrustError(f"TUF mirror answered an error while {stage}: {detail} ({where})")
        if isinstance(exc, tuf_exceptions.SlowRetrievalError):
            return TrustError(f"{where} unreachable: timed out while {stage}")
        if isinstance(exc, tuf_exceptions.DownloadError):
            cause = exc.__cause__ or exc.__context__
            return TrustError(f"{where} unreachable while {stage}: {cause or detail}")
        if isinstance(exc, tuf_exceptions.RepositoryError):
            return TrustError(f"TUF metadata rejected while {stage}: {detail} ({where})")
        if isinstance(exc, OSError):
            reason = exc.strerror or detail
            return TrustError(f"TUF cache error while {stage}: {reason} ({self.metadata_dir})")
        return TrustError(f"TUF refresh failed while {stage}: {type(exc).__name__}: {detail} ({where})")


def _expiry_detail(message: str, updater: Updater | None) -> str:
    """"timestamp expired at <time>" from python-tuf's terse message and the trusted set."""
    role = message
    for known in ("root", "timestamp", "snapshot", "targets"):
        if known in message:
            role = known
            break
    expires: datetime | None = None
    # The expiry date is only in the loaded metadata; python-tuf exposes no public accessor.
    trusted = getattr(updater, "_trusted_set", None)
    try:
        if trusted is not None:
            expires = trusted[role].expires
    except (KeyError, AttributeError, TypeError):
        expires = None
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if expires is None:
        return f"{role} metadata is expired (now {now})"
    return f"{role} expired at {expires.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')} (now {now})"
