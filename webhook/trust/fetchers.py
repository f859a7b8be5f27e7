"""Network seams for python-tuf: an httpx fetcher and an in-memory one for air-gapped roots.

python-tuf wraps only exceptions raised while *starting* a fetch; errors raised while the
returned iterator is consumed escape unwrapped. Both fetchers therefore do all the fallible
work (connect, status check) before returning, and translate streaming errors into tuf's
``DownloadError`` family themselves, so callers see one exception tree.
"""

from __future__ import annotations

import io
import logging
import posixpath
import tarfile
from collections.abc import Iterator, Mapping
from urllib.parse import unquote, urlsplit

import httpx
from tuf.api import exceptions as tuf_exceptions
from tuf.ngclient.fetcher import FetcherInterface

import webhook

_logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
"""Per-operation limits: a stalled mirror must not hold the refresh thread for long."""

USER_AGENT = f"signet/{webhook.__version__}"


class HttpxFetcher(FetcherInterface):
    """Fetch TUF metadata and targets with httpx (timeouts, redirects followed).

    Following redirects is safe here: everything fetched is verified against signed TUF
    metadata, and CDNs redirect routinely.
    """

    def __init__(
        self,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        client: httpx.Client | None = None,
        chunk_size: int = 64 * 1024,
    ) -> None:
        self._client = client or httpx.Client(
            timeout=timeout, follow_redirects=True, headers={"User-Agent": USER_AGENT}
        )
        self._chunk_size = chunk_size

    def close(self) -> None:
        self._client.close()

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            response = self._client.send(self._client.build_request("GET", url), stream=True)
        except httpx.TimeoutException as exc:
            raise tuf_exceptions.SlowRetrievalError(f"timed out connecting for {url}") from exc
        except httpx.HTTPError as exc:
            raise tuf_exceptions.DownloadError(f"failed to download {url}: {exc}") from exc
        if response.status_code >= 400:
            response.close()
            raise tuf_exceptions.DownloadHTTPError(
                f"HTTP {response.status_code} for {url}", response.status_code
            )
        return self._stream(response, url)

    def _stream(self, response: httpx.Response, url: str) -> Iterator[bytes]:
        try:
            yield from response.iter_bytes(self._chunk_size)
        except httpx.TimeoutException as exc:
            raise tuf_exceptions.SlowRetrievalError(f"timed out reading {url}") from exc
        except httpx.HTTPError as exc:
            raise tuf_exceptions.DownloadError(f"failed reading {url}: {exc}") from exc
        finally:
            response.close()


class MemoryFetcher(FetcherInterface):
    """Serve a TUF repository held in memory: paths relative to the repository root → bytes.

    The URL's scheme and host are ignored; only the path below the base URL's path is looked
    up, so any base URL (``https://trustroot.invalid/<name>``) works and no socket is opened.
    """

    def __init__(self, files: Mapping[str, bytes], base_url: str) -> None:
        self._files = dict(files)
        self._base_path = urlsplit(base_url).path.rstrip("/")

    @classmethod
    def from_tarball(
        cls, tarball: bytes, base_url: str, *, max_bytes: int = 64 * 1024 * 1024
    ) -> MemoryFetcher:
        """Load a (gzip/xz/plain) tar of a repository in served layout.

        The repository root is the folder holding ``timestamp.json`` (any leading folders such
        as ``repository/`` are skipped). Raises ``ValueError`` for an unusable archive.
        """
        try:
            archive = tarfile.open(fileobj=io.BytesIO(tarball), mode="r:*")  # noqa: SIM115 - closed below
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ValueError(f"not a tar archive: {exc}") from exc
        files: dict[str, bytes] = {}
        total = 0
        with archive:
            try:
                for member in archive:
                    if not member.isfile():
                        continue  # links and devices are never part of a served repository
                    name = posixpath.normpath(member.name.lstrip("/"))
                    if name.startswith("..") or name == ".":
                        continue
                    total += member.size
                    if total > max_bytes:
                        raise ValueError(f"archive is larger than {max_bytes} bytes")
                    handle = archive.extractfile(member)
                    if handle is not None:
                        files[name] = handle.read()
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise ValueError(f"broken tar archive: {exc}") from exc
        roots = sorted(
            (posixpath.dirname(name) for name in files if posixpath.basename(name) == "timestamp.json"),
            key=len,
        )
        if not roots:
            raise ValueError("archive holds no timestamp.json (not a TUF repository in served layout)")
        prefix = f"{roots[0]}/" if roots[0] else ""
        relative = {name[len(prefix):]: data for name, data in files.items() if name.startswith(prefix)}
        return cls(relative, base_url)

    def _fetch(self, url: str) -> Iterator[bytes]:
        path = unquote(urlsplit(url).path)
        if not path.startswith(self._base_path + "/"):
            raise tuf_exceptions.DownloadHTTPError(f"{url} is outside the repository", 404)
        data = self._files.get(path[len(self._base_path) + 1:])
        if data is None:
            raise tuf_exceptions.DownloadHTTPError(f"{url} not found in the repository", 404)
        return iter((data,))
