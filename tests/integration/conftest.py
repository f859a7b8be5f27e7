"""Session-scoped local registries (started once, stopped at the end of the run)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.registry import LocalRegistry, TokenIssuer, TokenServer

BASIC_USER = ("alice", "wonderland")
TOKEN_USER = ("bob", "builder")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A plain registry (no auth)."""
    reg = LocalRegistry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A registry behind htpasswd Basic auth (user ``alice``)."""
    reg = LocalRegistry(tmp_path_factory.mktemp("registry-basic"), htpasswd=BASIC_USER)
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A registry with token auth; its token endpoint grants anonymous pull."""
    server = TokenServer(TokenIssuer())
    reg = LocalRegistry(tmp_path_factory.mktemp("registry-token"), token=server)
    yield reg
    reg.stop()
    server.stop()


@pytest.fixture(scope="session")
def token_registry_with_login(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A registry with token auth whose token endpoint demands Basic credentials (user ``bob``)."""
    server = TokenServer(TokenIssuer(), credentials=TOKEN_USER)
    reg = LocalRegistry(tmp_path_factory.mktemp("registry-token-login"), token=server)
    yield reg
    reg.stop()
    server.stop()
