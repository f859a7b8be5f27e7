"""A fake decision engine (the app's seam) and an app wired to it, with the lifespan running."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI

from webhook.admission.outcome import ImageOutcome
from webhook.app import create_app
from webhook.config import ServerConfig
from webhook.decision import ImageDecision
from webhook.decision.workload import Workload
from webhook.oci import CredentialStore
from webhook.policy.loader import LoadResult
from webhook.policy.matching import PolicySet
from webhook.server.setup import LoadedPolicies
from webhook.trust.embedded import production_trusted_root
from webhook.trust.provider import TrustRootProvider

DIGEST = "sha256:" + "ab" * 32
Rule = Callable[[str, str | None], ImageDecision]


def allow(image: str, _namespace: str | None = None, *, pin: bool = False) -> ImageDecision:
    return ImageDecision(image, ImageOutcome(image, DIGEST, "allow", "release", "workflow", "verified",
                                             "signer@example.com", "https://oidc.example", 42), pin)


def deny(image: str, _namespace: str | None = None) -> ImageDecision:
    return ImageDecision(image, ImageOutcome(
        image, DIGEST, "deny", "release", "workflow",
        "certificate identity mallory@example.com does not match expected signer@example.com",
        "mallory@example.com", "https://oidc.example", 7))


def warn(image: str, _namespace: str | None = None) -> ImageDecision:
    return ImageDecision(image, ImageOutcome(image, DIGEST, "warn", "rollout", "any", "no signatures found"))


@dataclass
class FakeEngine:
    """Answers by image-name rules; records calls. ``fail`` makes ``decide`` raise."""

    rules: dict[str, Rule] = field(default_factory=dict)
    default: Rule = allow
    calls: list[tuple[tuple[str, ...], str | None]] = field(default_factory=list)
    fail: BaseException | None = None
    drop: bool = False  # answer for no image at all (an engine bug)
    closed: bool = False

    async def decide(self, images: Sequence[str], namespace: str | None,
                     credentials: CredentialStore | None = None,
                     workload: Workload | None = None) -> list[ImageDecision]:
        self.calls.append((tuple(images), namespace))
        if self.fail is not None:
            raise self.fail
        if self.drop:
            return []
        out = []
        for image in dict.fromkeys(images):
            rule = next((r for key, r in self.rules.items() if key in image), self.default)
            out.append(rule(image, namespace))
        return out

    def cache_stats(self) -> dict[str, dict[str, int]]:
        return {"verdicts": {"hits": 3, "misses": 1, "size": 1}}

    def invalidate(self) -> None:
        pass

    async def aclose(self) -> None:
        self.closed = True


def static_trust() -> TrustRootProvider:
    return TrustRootProvider(static_root=production_trusted_root(), static_source="embedded")


def empty_policies() -> LoadedPolicies:
    return LoadedPolicies(PolicySet(), LoadResult(), "test")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def app(engine: FakeEngine) -> FastAPI:
    return create_app(ServerConfig(), engine=engine, trust=static_trust(), policies=empty_policies())


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://signet.test") as http:
            yield http
