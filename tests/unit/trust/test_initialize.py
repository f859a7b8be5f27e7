"""`signet initialize` logic: output on success, reasons and exit codes on failure (no sockets)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.tuf_repo import TufTestRepository
from webhook.trust.embedded import production_trusted_root_json
from webhook.trust.fetchers import MemoryFetcher
from webhook.trust.initialize import initialize

MIRROR = "https://tuf.example.internal"


def run(repo: TufTestRepository, tmp_path: Path, root: Path | None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = initialize(MIRROR, root, out, err=err, cache_dir=tmp_path / "cache",
                      fetcher=MemoryFetcher(repo.files(), MIRROR))
    return code, out.getvalue(), err.getvalue()


def make_repo(tmp_path: Path, *, expired: bool = False) -> tuple[TufTestRepository, Path]:
    repo = TufTestRepository()
    repo.add_target("trusted_root.json", production_trusted_root_json())
    repo.commit(timestamp_expires=datetime.now(UTC) - timedelta(days=1) if expired else None)
    root = tmp_path / "root.json"
    root.write_bytes(repo.root_json(1))
    return repo, root


def test_prints_logs_and_authorities(tmp_path: Path) -> None:
    repo, root = make_repo(tmp_path)

    code, out, err = run(repo, tmp_path, root)

    assert (code, err) == (0, "")
    assert f"TUF mirror:   {MIRROR}" in out
    assert "Transparency logs (2):\n  https://rekor.sigstore.dev\n    key: PKIX_ECDSA_P256_SHA_256" in out
    assert "valid: 2021-01-12T11:53:27Z .. open" in out
    assert "CT logs (2):" in out and "https://ctfe.sigstore.dev/2022" in out
    assert "Fulcio certificate authorities (2):" in out
    assert "valid: 2021-03-07T03:20:29Z .. 2022-12-31T23:59:59Z" in out
    assert "Timestamp authorities (1):" in out
    assert (tmp_path / "cache").rglob("trusted_root.json")


def test_expired_metadata_exits_1_with_reason_on_stderr(tmp_path: Path) -> None:
    repo, root = make_repo(tmp_path, expired=True)

    code, out, err = run(repo, tmp_path, root)

    assert code == 1 and out == ""
    assert err.startswith("error: TUF metadata expired: timestamp expired at ")


def test_unreadable_root_file_is_a_usage_error(tmp_path: Path) -> None:
    repo, _ = make_repo(tmp_path)
    code, _, err = run(repo, tmp_path, tmp_path / "nope.json")
    assert code == 2 and "cannot read TUF root" in err


def test_custom_mirror_needs_a_root(tmp_path: Path) -> None:
    repo, _ = make_repo(tmp_path)
    code, _, err = run(repo, tmp_path, None)
    assert code == 1 and "no TUF root to start from" in err
