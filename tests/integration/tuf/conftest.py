"""A test TUF repository (python-tuf metadata API) served on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tuf_repo import LocalServer, TufTestRepository, serve
from webhook.trust.embedded import production_trusted_root_json


@pytest.fixture
def tuf_repo() -> TufTestRepository:
    repo = TufTestRepository()
    repo.add_target("trusted_root.json", production_trusted_root_json())
    repo.commit()
    return repo


@pytest.fixture
def repo_dir(tmp_path: Path, tuf_repo: TufTestRepository) -> Path:
    return tuf_repo.publish(tmp_path / "served")


@pytest.fixture
def mirror(repo_dir: Path) -> Iterator[LocalServer]:
    with serve(repo_dir) as server:
        yield server
