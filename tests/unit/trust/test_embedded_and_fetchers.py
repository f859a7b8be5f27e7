"""Embedded roots and the fetchers' error mapping (httpx MockTransport, in-memory tarballs)."""

from __future__ import annotations

import io
import json
import tarfile

import httpx
import pytest
from tuf.api import exceptions as tuf_exceptions

from tests.tuf_repo import TufTestRepository
from webhook.trust import embedded
from webhook.trust.fetchers import HttpxFetcher, MemoryFetcher


def test_embedded_roots_are_the_sigstore_ones() -> None:
    prod_root = json.loads(embedded.production_root_json())
    assert prod_root["signed"]["_type"] == "root" and prod_root["signed"]["version"] == 15
    assert embedded.production_trusted_root().tlogs[0].base_url == "https://rekor.sigstore.dev"
    assert json.loads(embedded.staging_root_json())["signed"]["_type"] == "root"
    assert embedded.staging_trusted_root().fingerprint != embedded.production_trusted_root().fingerprint
    assert embedded.embedded_for_mirror(embedded.PRODUCTION_MIRROR + "/") == (
        embedded.production_root_json(), embedded.production_trusted_root_json())
    assert embedded.embedded_for_mirror("https://example.org") is None


def fetcher_answering(handler: httpx.MockTransport) -> HttpxFetcher:
    return HttpxFetcher(client=httpx.Client(transport=handler))


def test_http_error_status_becomes_download_http_error() -> None:
    fetcher = fetcher_answering(httpx.MockTransport(lambda request: httpx.Response(503)))
    with pytest.raises(tuf_exceptions.DownloadHTTPError) as info:
        fetcher.download_bytes("https://mirror.test/timestamp.json", 100)
    assert info.value.status_code == 503


def test_timeout_becomes_slow_retrieval() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("too slow", request=request)

    with pytest.raises(tuf_exceptions.SlowRetrievalError):
        fetcher_answering(httpx.MockTransport(handler)).download_bytes("https://mirror.test/1.root.json", 100)


def test_body_is_streamed_within_the_length_limit() -> None:
    fetcher = fetcher_answering(httpx.MockTransport(lambda request: httpx.Response(200, content=b"x" * 50)))
    assert fetcher.download_bytes("https://mirror.test/a", 50) == b"x" * 50
    with pytest.raises(tuf_exceptions.DownloadLengthMismatchError):
        fetcher.download_bytes("https://mirror.test/a", 10)


def test_memory_fetcher_serves_a_repository_tarball_under_its_base_path() -> None:
    repo = TufTestRepository()
    repo.add_target("trusted_root.json", b"{}")
    repo.commit()
    fetcher = MemoryFetcher.from_tarball(repo.tarball(prefix="deep/repository"), "https://x.invalid/name")

    assert fetcher.download_bytes("https://x.invalid/name/1.root.json", 10**6) == repo.root_json(1)
    with pytest.raises(tuf_exceptions.DownloadHTTPError):
        fetcher.download_bytes("https://x.invalid/name/2.root.json", 10**6)
    with pytest.raises(tuf_exceptions.DownloadHTTPError):
        fetcher.download_bytes("https://x.invalid/other/1.root.json", 10**6)


def test_memory_fetcher_rejects_archives_without_a_repository() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("repository/README")
        archive.addfile(info, io.BytesIO(b""))
    with pytest.raises(ValueError, match=r"no timestamp\.json"):
        MemoryFetcher.from_tarball(buffer.getvalue(), "https://x.invalid/")
