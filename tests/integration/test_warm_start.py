"""A fresh server warms up before it is ready; its /metrics and audit lines say what it waited on.

The app builds its own engine (lifespan), policies name a real ``docker-registry``, the trust root
is the test Sigstore kit's, and a signed image is admitted through ``POST /validate``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from bench.netsetup import ISSUER, SIGNER, policy_yaml, review
from tests.integration.registry import LocalRegistry, silent_server
from tests.sigstore_kit import SigstoreKit
from webhook.app import create_app
from webhook.audit import AUDIT_LOGGER
from webhook.config import ServerConfig

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return SigstoreKit.create(seed_entries=3)


@pytest.fixture(scope="module")
def signed(registry: LocalRegistry, kit: SigstoreKit) -> str:
    """A digest reference to an image carrying the kit signer's legacy signature."""
    host = registry.url.removeprefix("http://")
    digest = registry.push_random_image("bench/warm", "v1")
    sig = kit.sign_image_legacy(digest, repository=f"{host}/bench/warm", identity=SIGNER, issuer=ISSUER)
    registry.push_legacy_signature("bench/warm", digest, [(sig.payload, sig.annotations)])
    return f"{host}/bench/warm@{digest}"


def config(tmp_path: Path, kit: SigstoreKit, registry_host: str, **overrides: object) -> ServerConfig:
    (tmp_path / "policies").mkdir(exist_ok=True)
    (tmp_path / "policies" / "p.yaml").write_text(policy_yaml(registry_host))
    (tmp_path / "trusted_root.json").write_bytes(kit.trusted_root_json())
    settings: dict[str, object] = {"policies_dir": tmp_path / "policies", "trust_source": "file",
                                   "trusted_root": tmp_path / "trusted_root.json", "allow_http_registry": True,
                                   "registry_connections_per_host": 2, **overrides}
    return ServerConfig(**settings)  # type: ignore[arg-type]


@asynccontextmanager
async def running(settings: ServerConfig) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://signet") as client:
        yield client


async def until_ready(client: httpx.AsyncClient, within: float) -> float:
    started = time.monotonic()
    while (await client.get("/readyz")).status_code != 200:
        assert time.monotonic() - started < within, "never became ready"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} {labels} in /metrics")


async def test_warm_up_connects_to_the_policies_registries_before_ready_and_metrics_show_it(
    tmp_path: Path, kit: SigstoreKit, registry: LocalRegistry, signed: str, caplog: pytest.LogCaptureFixture
) -> None:
    host = registry.url.removeprefix("http://")
    async with running(config(tmp_path, kit, host)) as client:
        await until_ready(client, 10)
        metrics = (await client.get("/metrics")).text
        assert metric(metrics, "signet_warm_up_done") == 1.0
        # Pings: one to learn the registry, then one per connection it keeps open.
        assert metric(metrics, "signet_upstream_requests_total", upstream="registry", host=host, outcome="ok") == 3
        assert metric(metrics, "signet_upstream_connections_opened_total", upstream="registry", host=host,
                      protocol="http/1.1") == 2
        with caplog.at_level(logging.INFO, logger=AUDIT_LOGGER):
            answer = await client.post("/validate", content=review([signed]))
        assert answer.json()["response"]["allowed"] is True
        metrics = (await client.get("/metrics")).text
    line = json.loads(next(r.getMessage() for r in caplog.records if r.name == AUDIT_LOGGER))
    waits = {(u["upstream"], u["host"]): u for u in line["upstreams"]}
    assert waits[("registry", host)]["requests"] >= 3  # .sig tag, fallback tag, payload blob
    assert 0 < waits[("registry", host)]["waitMs"] <= line["durationMs"]
    assert metric(metrics, "signet_upstream_connections_opened_total", upstream="registry", host=host,
                  protocol="http/1.1") == 2  # the review used the warm connections
    assert metric(metrics, "signet_upstream_request_duration_seconds_count", upstream="registry", host=host) >= 6
    for cache in ("digest", "signatures", "verdicts", "registry_tokens", "rekor_entries"):
        assert f'signet_cache_hit_ratio{{cache="{cache}"}}' in metrics


async def test_readiness_waits_for_warm_up_but_no_longer_than_its_timeout(
    tmp_path: Path, kit: SigstoreKit
) -> None:
    with silent_server() as url:  # accepts connections, never answers
        host = url.removeprefix("http://")
        async with running(config(tmp_path, kit, host, warm_up_timeout=0.5)) as client:
            assert (await client.get("/readyz")).status_code == 503
            waited = await until_ready(client, 5)
            assert 0.3 < waited < 3
            assert (await client.get("/healthz")).status_code == 200


async def test_without_warm_up_the_server_is_ready_at_once(tmp_path: Path, kit: SigstoreKit) -> None:
    with silent_server() as url:
        async with running(config(tmp_path, kit, url.removeprefix("http://"), warm_up_timeout=0)) as client:
            assert await until_ready(client, 1) < 0.5
