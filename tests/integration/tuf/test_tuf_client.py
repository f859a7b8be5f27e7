"""TufClient against a real TUF repository served over loopback: updates and attacks."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.tuf_repo import LocalServer, TufTestRepository, serve
from webhook.errors import TrustError
from webhook.trust.embedded import production_trusted_root_json, staging_trusted_root_json
from webhook.trust.tuf_client import TufClient


def client_for(mirror: LocalServer, repo: TufTestRepository, cache: Path, version: int = 1) -> TufClient:
    return TufClient(mirror.url, bootstrap_root=repo.root_json(version), cache_dir=cache)


def test_refresh_returns_verified_trusted_root_and_caches_it(
    mirror: LocalServer, tuf_repo: TufTestRepository, tmp_path: Path
) -> None:
    client = client_for(mirror, tuf_repo, tmp_path / "cache")

    assert client.refresh() == production_trusted_root_json()

    assert client.metadata_dir == tmp_path / "cache" / quote(mirror.url, safe="") / "metadata"
    assert client.last_good_trusted_root() == (production_trusted_root_json(), "cache")
    assert client.cached_root_version() == 1


def test_root_rotation_with_key_change_is_followed(tuf_repo: TufTestRepository, tmp_path: Path) -> None:
    bootstrap = tuf_repo.root_json(1)
    tuf_repo.rotate_keys("root")
    tuf_repo.rotate_keys("timestamp")
    tuf_repo.commit()
    with serve(tuf_repo.publish(tmp_path / "served")) as mirror:
        client = TufClient(mirror.url, bootstrap_root=bootstrap, cache_dir=tmp_path / "cache")
        assert client.refresh() == production_trusted_root_json()
    assert client.cached_root_version() == 3


def test_root_rotation_not_signed_by_the_old_root_is_rejected(tuf_repo: TufTestRepository, tmp_path: Path) -> None:
    bootstrap = tuf_repo.root_json(1)
    tuf_repo.rotate_keys("root", signed_by_old_root=False)
    tuf_repo.commit()
    with serve(tuf_repo.publish(tmp_path / "served")) as mirror:
        client = TufClient(mirror.url, bootstrap_root=bootstrap, cache_dir=tmp_path / "cache")
        with pytest.raises(TrustError, match="root rotation is not signed by enough trusted keys"):
            client.refresh()


def test_target_update_is_picked_up_on_the_next_refresh(
    mirror: LocalServer, tuf_repo: TufTestRepository, repo_dir: Path, tmp_path: Path
) -> None:
    client = client_for(mirror, tuf_repo, tmp_path / "cache")
    assert client.refresh() == production_trusted_root_json()

    tuf_repo.add_target("trusted_root.json", staging_trusted_root_json())
    tuf_repo.commit()
    tuf_repo.publish(repo_dir)

    assert client.refresh() == staging_trusted_root_json()
    assert client.cached_trusted_root() == staging_trusted_root_json()


def test_expired_timestamp_is_reported_with_its_expiry(tuf_repo: TufTestRepository, tmp_path: Path) -> None:
    expired = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    tuf_repo.commit(timestamp_expires=expired)
    with serve(tuf_repo.publish(tmp_path / "served")) as mirror:
        with pytest.raises(TrustError) as info:
            client_for(mirror, tuf_repo, tmp_path / "cache").refresh()
    stamp = expired.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert info.value.reason.startswith(f"TUF metadata expired: timestamp expired at {stamp}")


def test_timestamp_rollback_is_rejected(
    mirror: LocalServer, tuf_repo: TufTestRepository, repo_dir: Path, tmp_path: Path
) -> None:
    tuf_repo.commit()  # timestamp v2 / snapshot v2
    tuf_repo.publish(repo_dir)
    client = client_for(mirror, tuf_repo, tmp_path / "cache")
    client.refresh()

    tuf_repo.publish(repo_dir, timestamp=tuf_repo.timestamp_versions[1])

    with pytest.raises(TrustError, match=r"rollback attempt rejected: New timestamp version 1 must be >= 2"):
        client.refresh()


def test_snapshot_rollback_is_rejected(
    mirror: LocalServer, tuf_repo: TufTestRepository, repo_dir: Path, tmp_path: Path
) -> None:
    tuf_repo.commit()
    tuf_repo.publish(repo_dir)
    client = client_for(mirror, tuf_repo, tmp_path / "cache")
    client.refresh()

    newer_timestamp_old_snapshot = tuf_repo.make_timestamp(snapshot_version=1, version=10)
    tuf_repo.publish(repo_dir, timestamp=newer_timestamp_old_snapshot)

    with pytest.raises(TrustError, match="rollback attempt rejected: New snapshot version must be >= 2"):
        client.refresh()


@pytest.mark.parametrize("tampered", [b"{}", b"x" * 20000], ids=["shorter", "longer"])
def test_tampered_target_is_rejected(
    mirror: LocalServer, tuf_repo: TufTestRepository, repo_dir: Path, tmp_path: Path, tampered: bytes
) -> None:
    target = repo_dir / "targets" / f"{tuf_repo.target_hash('trusted_root.json')}.trusted_root.json"
    target.write_bytes(tampered)
    client = client_for(mirror, tuf_repo, tmp_path / "cache")

    with pytest.raises(TrustError, match=r"hash or length mismatch while downloading target trusted_root"):
        client.refresh()
    assert client.cached_trusted_root() is None  # nothing unverified is ever cached


def test_missing_target_metadata_entry_is_reported(tmp_path: Path) -> None:
    repo = TufTestRepository()
    repo.add_target("signing_config.json", b"{}")
    repo.commit()
    with serve(repo.publish(tmp_path / "served")) as mirror:
        with pytest.raises(TrustError, match=r"has no target trusted_root\.json"):
            client_for(mirror, repo, tmp_path / "cache").refresh()


def test_target_file_missing_on_the_mirror_is_reported(
    mirror: LocalServer, tuf_repo: TufTestRepository, repo_dir: Path, tmp_path: Path
) -> None:
    for target in (repo_dir / "targets").iterdir():
        target.unlink()
    with pytest.raises(TrustError, match=r"missing a file while downloading target trusted_root.*HTTP 404"):
        client_for(mirror, tuf_repo, tmp_path / "cache").refresh()


def test_verified_cached_target_is_not_downloaded_again(
    mirror: LocalServer, tuf_repo: TufTestRepository, repo_dir: Path, tmp_path: Path
) -> None:
    client = client_for(mirror, tuf_repo, tmp_path / "cache")
    client.refresh()
    for target in (repo_dir / "targets").iterdir():
        target.unlink()

    assert client.refresh() == production_trusted_root_json()


def test_unreachable_mirror_is_reported_and_cache_still_serves(
    tuf_repo: TufTestRepository, repo_dir: Path, tmp_path: Path
) -> None:
    server = LocalServer(repo_dir)
    client = client_for(server, tuf_repo, tmp_path / "cache")
    client.refresh()
    server.stop()

    with pytest.raises(TrustError, match=re.escape(f"TUF mirror {server.url} unreachable")):
        client.refresh()
    assert client.last_good_trusted_root() == (production_trusted_root_json(), "cache")


def test_cache_defaults_to_xdg_directories(
    mirror: LocalServer, tuf_repo: TufTestRepository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    client = TufClient(mirror.url, bootstrap_root=tuf_repo.root_json())
    client.refresh()

    key = quote(mirror.url, safe="")
    assert (tmp_path / "data" / "signet" / "tuf" / key / "root_history" / "1.root.json").exists()
    assert (tmp_path / "cache" / "signet" / "tuf" / key / "trusted_root.json").exists()


def test_cached_root_is_the_bootstrap_for_later_runs(
    mirror: LocalServer, tuf_repo: TufTestRepository, tmp_path: Path
) -> None:
    client_for(mirror, tuf_repo, tmp_path / "cache").refresh()

    again = TufClient(mirror.url, cache_dir=tmp_path / "cache")

    assert again.refresh() == production_trusted_root_json()


def test_custom_mirror_without_root_or_cache_is_refused(mirror: LocalServer, tmp_path: Path) -> None:
    client = TufClient(mirror.url, cache_dir=tmp_path / "cache")
    with pytest.raises(TrustError, match="no TUF root to start from"):
        client.refresh()
    with pytest.raises(TrustError, match="no trusted root available offline"):
        client.last_good_trusted_root()
