"""TrustRootProvider refreshing from a served TUF repository in its background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from tests.tuf_repo import LocalServer, TufTestRepository
from webhook.trust.embedded import production_trusted_root_json, staging_trusted_root_json
from webhook.trust.provider import TrustRootProvider
from webhook.trust.tuf_client import TufClient
from webhook.verify.trustroot import TrustedRoot

PROD = TrustedRoot.from_json(production_trusted_root_json())
STAGING = TrustedRoot.from_json(staging_trusted_root_json())


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def provider_for(mirror: LocalServer, repo: TufTestRepository, cache: Path, **kw: timedelta) -> TrustRootProvider:
    client = TufClient(mirror.url, bootstrap_root=repo.root_json(1), cache_dir=cache)
    return TrustRootProvider.from_tuf(client, **kw)


def test_background_refresh_swaps_the_root_and_notifies(
    mirror: LocalServer, tuf_repo: TufTestRepository, repo_dir: Path, tmp_path: Path
) -> None:
    provider = provider_for(mirror, tuf_repo, tmp_path, refresh_interval=timedelta(seconds=0.05))
    changes: list[TrustedRoot] = []
    provider.on_change(changes.append)
    provider.start()
    try:
        assert wait_for(lambda: provider.ready)
        assert provider.current.fingerprint == PROD.fingerprint
        assert provider.status().source == "tuf"
        first = provider.current

        tuf_repo.add_target("trusted_root.json", staging_trusted_root_json())
        tuf_repo.commit()
        tuf_repo.publish(repo_dir)

        assert wait_for(lambda: bool(changes))
        assert changes[0].fingerprint == STAGING.fingerprint
        assert provider.current is changes[0]
        assert first.fingerprint == PROD.fingerprint  # readers holding the old root keep it intact
    finally:
        provider.stop()


def test_readers_never_see_a_missing_root_during_refreshes(
    mirror: LocalServer, tuf_repo: TufTestRepository, tmp_path: Path
) -> None:
    provider = provider_for(mirror, tuf_repo, tmp_path, refresh_interval=timedelta(seconds=0.01))
    assert provider.refresh_now()
    provider.start()
    seen: set[str] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(provider.current.fingerprint)

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.3)
    stop.set()
    reader.join()
    provider.stop()
    assert seen == {PROD.fingerprint}


def test_mirror_down_keeps_the_last_good_root_and_backs_off(
    tuf_repo: TufTestRepository, repo_dir: Path, tmp_path: Path
) -> None:
    server = LocalServer(repo_dir)
    provider = provider_for(server, tuf_repo, tmp_path, backoff_initial=timedelta(seconds=30))
    assert provider.refresh_now()
    server.stop()

    assert not provider.refresh_now()
    assert not provider.refresh_now()

    status = provider.status()
    assert provider.current.fingerprint == PROD.fingerprint
    assert status.source == "tuf"
    assert status.last_error is not None and "unreachable" in status.last_error
    assert status.consecutive_failures == 2
    assert status.next_refresh_at is not None and status.last_refresh_attempt is not None
    assert status.next_refresh_at - status.last_refresh_attempt == timedelta(seconds=60)
    assert status.as_dict()["lastError"] == status.last_error


def test_start_with_mirror_down_serves_the_cached_root(
    tuf_repo: TufTestRepository, repo_dir: Path, tmp_path: Path
) -> None:
    server = LocalServer(repo_dir)
    provider_for(server, tuf_repo, tmp_path).refresh_now()
    server.stop()

    restarted = provider_for(server, tuf_repo, tmp_path)
    restarted.start()
    try:
        assert restarted.ready  # immediately, before any network
        assert restarted.status().source == "cache"
        assert wait_for(lambda: restarted.status().consecutive_failures >= 1)
        assert restarted.current.fingerprint == PROD.fingerprint
    finally:
        restarted.stop()
