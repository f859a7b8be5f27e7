"""TrustRootProvider without a network: static roots, backoff, callbacks, offline fallback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from tuf.ngclient.fetcher import FetcherInterface

from tests.tuf_repo import TufTestRepository
from webhook.errors import TrustError
from webhook.trust.embedded import (
    PRODUCTION_MIRROR,
    production_trusted_root,
    production_trusted_root_json,
    staging_trusted_root,
    staging_trusted_root_json,
)
from webhook.trust.fetchers import MemoryFetcher
from webhook.trust.provider import TrustRootProvider, backoff_delay
from webhook.trust.tuf_client import TufClient
from webhook.verify.trustroot import TrustedRoot


class LiveFetcher(FetcherInterface):
    """Serves whatever the repository holds at the time of each request."""

    def __init__(self, repo: TufTestRepository, mirror: str) -> None:
        self.repo, self.mirror = repo, mirror

    def _fetch(self, url: str) -> Iterator[bytes]:
        return MemoryFetcher(self.repo.files(), self.mirror).fetch(url)


def test_backoff_doubles_from_30s_up_to_one_hour() -> None:
    initial, maximum = timedelta(seconds=30), timedelta(hours=1)
    delays = [backoff_delay(n, initial, maximum).total_seconds() for n in range(1, 10)]
    assert delays == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert backoff_delay(10_000, timedelta(seconds=30), timedelta(hours=1)) == timedelta(hours=1)


def test_static_file_root(tmp_path: Path) -> None:
    path = tmp_path / "trusted_root.json"
    path.write_bytes(staging_trusted_root_json())

    provider = TrustRootProvider.from_file(path)
    provider.start()  # nothing to refresh: no thread

    assert provider.current.fingerprint == staging_trusted_root().fingerprint
    status = provider.status()
    assert (status.ready, status.source, status.dynamic) == (True, "file", False)
    assert status.as_dict()["fingerprint"] == staging_trusted_root().fingerprint


def test_missing_file_is_a_trust_error(tmp_path: Path) -> None:
    with pytest.raises(TrustError, match="cannot read trusted root"):
        TrustRootProvider.from_file(tmp_path / "absent.json")


def test_env_provider_only_when_variables_are_set() -> None:
    assert TrustRootProvider.from_env({}) is None


def test_production_mirror_falls_back_to_the_embedded_root_before_any_refresh(tmp_path: Path) -> None:
    client = TufClient(PRODUCTION_MIRROR, cache_dir=tmp_path)
    assert client.last_good_trusted_root() == (production_trusted_root_json(), "embedded")


def test_not_ready_until_a_root_is_loaded(tmp_path: Path) -> None:
    provider = TrustRootProvider.from_tuf(TufClient("https://private.example", cache_dir=tmp_path))
    assert not provider.ready
    with pytest.raises(TrustError, match="no trust root loaded yet"):
        _ = provider.current


def test_change_callbacks_run_once_per_new_root_and_failures_are_contained(tmp_path: Path) -> None:
    repo = TufTestRepository()
    repo.add_target("trusted_root.json", production_trusted_root_json())
    repo.commit()
    mirror = "https://tuf.example.internal"
    fetcher = LiveFetcher(repo, mirror)
    client = TufClient(mirror, bootstrap_root=repo.root_json(), cache_dir=tmp_path, fetcher=fetcher)
    provider = TrustRootProvider.from_tuf(client)
    seen: list[TrustedRoot] = []

    def broken(_: TrustedRoot) -> None:
        raise RuntimeError("cache hook bug")

    provider.on_change(broken)
    provider.on_change(seen.append)

    assert provider.refresh_now()  # first load: nothing to invalidate
    assert provider.refresh_now()  # same document: no change
    repo.add_target("trusted_root.json", staging_trusted_root_json())
    repo.commit()
    assert provider.refresh_now()

    assert [root.fingerprint for root in seen] == [staging_trusted_root().fingerprint]
    assert provider.current is seen[0]
    assert production_trusted_root().fingerprint != seen[0].fingerprint
