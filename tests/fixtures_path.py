"""Where the shared real-world fixtures live, and skipping cleanly when a clone has none."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = PROJECT_ROOT.parent / "shared" / "fixtures"


def shared_fixture(*parts: str) -> Path:
    """Path to ``../shared/fixtures/<parts>``; skips the calling test when it is absent."""
    path = SHARED_FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared fixture {path} is absent (a user's clone has no ../shared)")
    return path
