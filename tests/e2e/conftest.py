"""End-to-end fixtures: the session's local registry (from the integration tests) and anyio on asyncio."""

from __future__ import annotations

from tests.integration.conftest import anyio_backend, registry

__all__ = ["anyio_backend", "registry"]
