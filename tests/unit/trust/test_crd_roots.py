"""TrustRoot specs: inline, remote (through TUF), air-gapped repository tarball (no network)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.tuf_repo import TufTestRepository
from webhook.errors import TrustError
from webhook.trust.crd_roots import trusted_root_from_spec
from webhook.trust.embedded import (
    production_trusted_root,
    production_trusted_root_json,
    staging_trusted_root,
    staging_trusted_root_json,
)
from webhook.trust.fetchers import MemoryFetcher

PROD_FINGERPRINT = production_trusted_root().fingerprint


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def repo() -> TufTestRepository:
    repo = TufTestRepository()
    repo.add_target("trusted_root.json", staging_trusted_root_json())
    repo.commit()
    return repo


def test_inline_trusted_root_string() -> None:
    root = trusted_root_from_spec("inline", {"trustedRoot": production_trusted_root_json().decode()})
    assert root.fingerprint == PROD_FINGERPRINT


def test_inline_trusted_root_as_yaml_object() -> None:
    root = trusted_root_from_spec("inline", {"trustedRoot": json.loads(production_trusted_root_json())})
    assert [log.base_url for log in root.tlogs] == [log.base_url for log in production_trusted_root().tlogs]


def test_air_gapped_repository_is_verified_from_memory(repo: TufTestRepository) -> None:
    spec = {"repository": {"root": b64(repo.root_json(1)), "tarball": b64(repo.tarball())}}

    root = trusted_root_from_spec("air-gapped", spec)

    assert root.fingerprint == staging_trusted_root().fingerprint


def test_air_gapped_repository_accepts_policy_controller_field_name(repo: TufTestRepository) -> None:
    spec = {"repository": {"root": b64(repo.root_json(1)), "mirrorFS": b64(repo.tarball(prefix=""))}}
    assert trusted_root_from_spec("pc", spec).tlogs


def test_air_gapped_repository_with_a_foreign_root_fails_closed(repo: TufTestRepository) -> None:
    other = TufTestRepository()
    spec = {"repository": {"root": b64(other.root_json(1)), "tarball": b64(repo.tarball())}}
    with pytest.raises(TrustError, match=r"^TrustRoot forged: repository: TUF metadata has bad signatures"):
        trusted_root_from_spec("forged", spec)


def test_remote_uses_the_given_root_and_fetcher(repo: TufTestRepository, tmp_path: Path) -> None:
    mirror = "https://tuf.example.internal"
    fetcher = MemoryFetcher(repo.files(), mirror)
    spec = {"remote": {"mirror": mirror, "root": b64(repo.root_json(1))}}

    root = trusted_root_from_spec("remote", spec, cache_dir=tmp_path, fetcher=fetcher)

    assert root.fingerprint == staging_trusted_root().fingerprint


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "exactly one of trustedRoot, remote, repository .found: none"),
        ({"trustedRoot": "{}", "remote": {}}, "found: trustedRoot, remote"),
        ({"trustedRoot": "not json"}, "trusted root is not valid JSON"),
        ({"remote": {"mirror": "ftp://x", "root": "e30="}}, "mirror must be an http"),
        ({"remote": {"mirror": "https://x"}}, "remote.root is required"),
        ({"repository": {"root": "e30=", "tarball": "%%%"}}, "tarball is not valid base64"),
        ({"repository": {"root": "e30=", "tarball": "bm90IGEgdGFy"}}, "tarball: not a tar archive"),
    ],
)
def test_invalid_specs_name_the_trust_root(spec: dict[str, object], message: str) -> None:
    with pytest.raises(TrustError, match=f"^TrustRoot broken: .*{message}"):
        trusted_root_from_spec("broken", spec)
