"""TrustRoot ``targets`` and ``trustedRootTarget`` (policy-controller's layout fields) decide what TUF serves."""

from __future__ import annotations

import base64
import io
import tarfile
from pathlib import Path

import pytest

from tests.tuf_repo import TufTestRepository
from webhook.errors import TrustError
from webhook.policy import load_documents
from webhook.trust.crd_roots import trusted_root_from_spec
from webhook.trust.embedded import production_trusted_root, production_trusted_root_json, staging_trusted_root_json
from webhook.trust.fetchers import MemoryFetcher

MIRROR = "https://tuf.corp.example"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def repo() -> TufTestRepository:
    """``trusted_root.json`` is staging's, ``corp_root.json`` production's: which one loads tells the target used."""
    repo = TufTestRepository()
    repo.add_target("trusted_root.json", staging_trusted_root_json())
    repo.add_target("corp_root.json", production_trusted_root_json())
    repo.commit()
    return repo


def moved(files: dict[str, bytes], targets: str) -> dict[str, bytes]:
    """The repository with its targets under ``targets/`` instead of ``targets/``."""
    return {(f"{targets}/{name[len('targets/'):]}" if name.startswith("targets/") else name): data
            for name, data in files.items()}


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(f"repository/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


PRODUCTION = production_trusted_root().fingerprint


def test_remote_reads_the_named_target_below_the_named_path(repo: TufTestRepository, tmp_path: Path) -> None:
    fetcher = MemoryFetcher(moved(repo.files(), "repo/targets"), MIRROR)
    spec = {"remote": {"mirror": MIRROR, "root": b64(repo.root_json(1)), "targets": "repo/targets",
                       "trustedRootTarget": "corp_root.json"}}
    assert trusted_root_from_spec("corp", spec, cache_dir=tmp_path, fetcher=fetcher).fingerprint == PRODUCTION


def test_repository_reads_the_named_target_below_the_named_path(repo: TufTestRepository) -> None:
    spec = {"repository": {"root": b64(repo.root_json(1)), "mirrorFS": b64(tarball(moved(repo.files(), "blobs"))),
                           "targets": "blobs", "trustedRootTarget": "corp_root.json"}}
    assert trusted_root_from_spec("air-gapped", spec).fingerprint == PRODUCTION


def test_policy_controllers_defaults_mean_the_usual_layout(repo: TufTestRepository, tmp_path: Path) -> None:
    fetcher = MemoryFetcher(repo.files(), MIRROR)
    spec = {"remote": {"mirror": MIRROR, "root": b64(repo.root_json(1)), "targets": "targets",
                       "trustedRootTarget": "trusted_root.json"}}
    root = trusted_root_from_spec("defaults", spec, cache_dir=tmp_path, fetcher=fetcher)
    assert root.fingerprint != PRODUCTION and root.tlogs  # staging's, from trusted_root.json


def test_a_missing_target_fails_closed_naming_it(repo: TufTestRepository, tmp_path: Path) -> None:
    spec = {"remote": {"mirror": MIRROR, "root": b64(repo.root_json(1)), "trustedRootTarget": "nope.json"}}
    with pytest.raises(TrustError, match=r"TrustRoot corp: remote: TUF repository .* has no target nope\.json"):
        trusted_root_from_spec("corp", spec, cache_dir=tmp_path, fetcher=MemoryFetcher(repo.files(), MIRROR))


def test_targets_elsewhere_than_said_fail_closed(repo: TufTestRepository) -> None:
    spec = {"repository": {"root": b64(repo.root_json(1)), "mirrorFS": b64(tarball(repo.files())),
                           "targets": "blobs"}}
    with pytest.raises(TrustError, match="TrustRoot corp: repository: TUF mirror is missing a file"):
        trusted_root_from_spec("corp", spec)


def test_a_policy_controller_trust_root_document_builds_what_it_names(repo: TufTestRepository) -> None:
    # From the document to the trust root, as the engine does it: load, dump the spec, build.
    doc = {"apiVersion": "policy.sigstore.dev/v1alpha1", "kind": "TrustRoot", "metadata": {"name": "corp"},
           "spec": {"repository": {"root": b64(repo.root_json(1)),
                                   "mirrorFS": b64(tarball(moved(repo.files(), "blobs"))),
                                   "targets": "blobs", "trustedRootTarget": "corp_root.json"}}}
    (trust_root,) = load_documents([doc]).trust_roots
    spec = trust_root.spec.model_dump(by_alias=True, exclude_none=True)
    assert trusted_root_from_spec(trust_root.name, spec).fingerprint == PRODUCTION
