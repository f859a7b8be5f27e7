"""TUF refreshes are upstream requests like any other: timed and counted for /metrics."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.tuf_repo import LocalServer, TufTestRepository
from webhook.config import ServerConfig
from webhook.metrics import Metrics
from webhook.server.setup import build_trust


def test_the_trust_roots_tuf_requests_reach_the_metrics(
    mirror: LocalServer, tuf_repo: TufTestRepository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "root.json").write_bytes(tuf_repo.root_json(1))
    metrics = Metrics(dict, dict)
    provider = build_trust(ServerConfig(tuf_mirror=mirror.url, tuf_root=tmp_path / "root.json"), metrics.upstreams)
    provider.start()
    try:
        deadline = time.monotonic() + 10
        while not provider.ready and time.monotonic() < deadline:
            time.sleep(0.02)
        assert provider.ready
    finally:
        provider.stop()
    text = metrics.render().decode()
    host = mirror.url.removeprefix("http://").rstrip("/")
    ok = [row for row in text.splitlines()
          if row.startswith("signet_upstream_requests_total{") and 'upstream="tuf"' in row and f'host="{host}"' in row]
    assert any('outcome="ok"' in row for row in ok)  # timestamp, snapshot, targets, the trusted root
    assert any('outcome="not_found"' in row for row in ok)  # the next root version, not published
    assert f'signet_upstream_request_duration_seconds_count{{host="{host}",upstream="tuf"}}' in text
