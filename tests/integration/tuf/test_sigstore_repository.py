"""The real Sigstore production TUF repository (sigstore/root-signing), served over loopback.

Its metadata expires, so the clock is frozen inside the window the fixture README gives
([2026-08-21T19:26Z, 2026-08-28T19:25Z)); with the real clock the refresh must fail as expired.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine

from tests.fixtures_path import shared_fixture
from tests.tuf_repo import LocalServer, serve
from webhook.errors import TrustError
from webhook.trust.embedded import production_root_json
from webhook.trust.initialize import initialize
from webhook.trust.tuf_client import TufClient

pytestmark = [
    pytest.mark.fixtures,
    # Sigstore's root uses the legacy key type name; securesystemslib warns on every verify.
    pytest.mark.filterwarnings("ignore:keytype 'ecdsa-sha2-nistp256' is deprecated:DeprecationWarning"),
]

INSIDE_VALIDITY = datetime(2026, 8, 22, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def sigstore_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    archive = shared_fixture("tuf", "root-signing-served-layout.tar.xz")
    target = tmp_path_factory.mktemp("sigstore-tuf")
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target / "root-signing-served-layout"


@pytest.fixture(scope="module")
def sigstore_mirror(sigstore_repo: Path) -> Iterator[LocalServer]:
    with serve(sigstore_repo) as server:
        yield server


@pytest.fixture
def frozen_clock() -> Iterator[None]:
    with time_machine.travel(INSIDE_VALIDITY, tick=False):
        assert datetime.now(UTC) == INSIDE_VALIDITY  # what python-tuf reads for expiry
        yield


def expected_trusted_root() -> bytes:
    return shared_fixture("trust", "prod", "trusted_root.json").read_bytes()


@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize("start", ["5.root.json", "embedded"])
def test_refresh_reaches_root_v15_and_the_published_trusted_root(
    sigstore_mirror: LocalServer, sigstore_repo: Path, tmp_path: Path, start: str
) -> None:
    bootstrap = production_root_json() if start == "embedded" else (sigstore_repo / start).read_bytes()
    client = TufClient(sigstore_mirror.url, bootstrap_root=bootstrap, cache_dir=tmp_path)

    assert client.refresh() == expected_trusted_root()
    assert client.cached_root_version() == 15


@pytest.mark.usefixtures("frozen_clock")
def test_refresh_from_root_v4_fails_on_the_signature_break(
    sigstore_mirror: LocalServer, sigstore_repo: Path, tmp_path: Path
) -> None:
    client = TufClient(
        sigstore_mirror.url, bootstrap_root=(sigstore_repo / "4.root.json").read_bytes(), cache_dir=tmp_path
    )
    with pytest.raises(TrustError, match="root rotation is not signed by enough trusted keys"):
        client.refresh()
    assert client.cached_trusted_root() is None


@pytest.mark.usefixtures("frozen_clock")
def test_old_format_root_is_rejected_as_unparseable(
    sigstore_mirror: LocalServer, sigstore_repo: Path, tmp_path: Path
) -> None:
    client = TufClient(
        sigstore_mirror.url, bootstrap_root=(sigstore_repo / "1.root.json").read_bytes(), cache_dir=tmp_path
    )
    with pytest.raises(TrustError, match=r"starting root\.json"):
        client.refresh()


def test_after_expiry_refresh_fails_as_expired(sigstore_mirror: LocalServer, sigstore_repo: Path,
                                               tmp_path: Path) -> None:
    # After the timestamp's expiry (2026-08-28), as any real clock now is; frozen so it always runs.
    with time_machine.travel(datetime(2026, 9, 15, 12, tzinfo=UTC), tick=False):
        client = TufClient(
            sigstore_mirror.url, bootstrap_root=(sigstore_repo / "5.root.json").read_bytes(), cache_dir=tmp_path
        )
        with pytest.raises(TrustError, match=r"^TUF metadata expired: timestamp expired at 2026-08-28"):
            client.refresh()


@pytest.mark.usefixtures("frozen_clock")
def test_initialize_prints_the_trust_root(sigstore_mirror: LocalServer, sigstore_repo: Path, tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()

    code = initialize(sigstore_mirror.url, sigstore_repo / "5.root.json", out, err=err, cache_dir=tmp_path)

    assert code == 0, err.getvalue()
    text = out.getvalue()
    assert "TUF root:     version 15" in text
    assert "https://rekor.sigstore.dev" in text
    assert "https://log2025-1.rekor.sigstore.dev" in text
    assert "https://ctfe.sigstore.dev/2022" in text
    assert "CN=sigstore-intermediate,O=sigstore.dev" in text
    assert "https://timestamp.sigstore.dev/api/v1/timestamp" in text


def test_initialize_reports_expiry_on_stderr(sigstore_mirror: LocalServer, sigstore_repo: Path, tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    with time_machine.travel(datetime(2026, 9, 1, tzinfo=UTC), tick=False):
        code = initialize(sigstore_mirror.url, sigstore_repo / "5.root.json", out, err=err, cache_dir=tmp_path)

    assert code == 1
    assert "expired" in err.getvalue()
    assert out.getvalue() == ""
