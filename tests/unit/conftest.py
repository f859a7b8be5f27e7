"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from tests.unit.engine_harness import Harness, engine_harness


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Harness]]:
    """Build engines over in-memory registries; their clients are closed afterwards."""
    async for build in engine_harness():
        yield build
