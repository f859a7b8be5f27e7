"""What one request can cost the app: body bounds (413/408), the distinct-image cap, the audit line, the ops app."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from tests.unit.admission.reviews import pod_spec, review_body, review_dict, workload
from tests.unit.server.conftest import DIGEST, FakeEngine, empty_policies, static_trust
from webhook.admission import ImageOutcome
from webhook.admission.review import parse_review
from webhook.app import create_app, ops_app
from webhook.audit import AUDIT_LOGGER, MAX_LINE, audit_line
from webhook.config import ServerConfig
from webhook.decision import ImageDecision

pytestmark = pytest.mark.anyio


def images(count: int) -> list[str]:
    return [f"registry.example.com/team/app{i}:v1" for i in range(count)]


async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://signet.test") as http:
        yield http


@pytest.fixture
async def quick(engine: FakeEngine) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a short read timeout and a small image cap."""
    app = create_app(ServerConfig(read_timeout=0.3, max_images=4), engine=engine, trust=static_trust(),
                     policies=empty_policies())
    async for http in serve(app):
        yield http


def status_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["kind"] == "Status" and body["code"] == response.status_code
    return body


# --- the body ------------------------------------------------------------------------------------------------


async def test_a_declared_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/validate", content=b"{}", headers={"Content-Length": str(64 * 1024 * 1024)})
    assert response.status_code == 413
    assert "larger than the limit of 16777216" in status_of(response)["message"]


async def test_a_chunked_body_is_cut_at_the_limit(client: httpx.AsyncClient) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(8192):  # 512 MiB
            sent += 1
            yield b" " * 65536

    response = await client.post("/validate", content=endless())
    assert response.status_code == 413 and "larger than the limit" in status_of(response)["message"]
    assert sent * 65536 <= 16 * 1024 * 1024 + 65536


async def test_a_body_of_countless_tiny_values_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/validate", content=b"[" + b"[]," * 300_000 + b"[]]")
    assert response.status_code == 413 and "JSON values" in status_of(response)["message"]


async def test_a_stalled_body_is_408(quick: httpx.AsyncClient, engine: FakeEngine) -> None:
    async def stalls() -> AsyncIterator[bytes]:
        yield b'{"apiVersion":'
        await asyncio.sleep(5)
        yield b"}"

    started = asyncio.get_running_loop().time()
    response = await quick.post("/validate", content=stalls())
    assert response.status_code == 408 and "not received within 0.3 s" in status_of(response)["message"]
    assert asyncio.get_running_loop().time() - started < 2 and engine.calls == []


async def test_refused_bodies_are_counted(client: httpx.AsyncClient) -> None:
    await client.post("/validate", content=b"{}", headers={"Content-Length": str(64 * 1024 * 1024)})
    text = (await client.get("/metrics")).text
    assert 'signet_admission_decisions_total{reason="body_refused",result="malformed",route="validate"} 1.0' in text


# --- the distinct-image cap ----------------------------------------------------------------------------------------


async def test_a_review_over_the_image_cap_is_denied_without_verifying(quick: httpx.AsyncClient,
                                                                       engine: FakeEngine) -> None:
    response = await quick.post("/validate", content=review_body(workload("Deployment", pod_spec(*images(5))),
                                                                  "Deployment"))
    answer = response.json()["response"]
    assert response.status_code == 200 and answer["allowed"] is False and answer["status"]["code"] == 403
    message = answer["status"]["message"]
    assert "5 distinct images" in message and "the 4 one admission review may verify" in message
    assert "--max-images" in message and engine.calls == []
    assert answer["auditAnnotations"]["decision"] == "deny"


async def test_the_cap_counts_distinct_images_not_containers(quick: httpx.AsyncClient, engine: FakeEngine) -> None:
    spec = pod_spec(*images(4), *images(4), init=tuple(images(4)))
    response = await quick.post("/validate", content=review_body(workload("Pod", spec)))
    assert response.json()["response"]["allowed"] is True and len(engine.calls[0][0]) == 4


async def test_the_default_cap_is_256(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    allowed = await client.post("/validate", content=review_body(workload("Pod", pod_spec(*images(256)))))
    assert allowed.json()["response"]["allowed"] is True
    denied = await client.post("/validate", content=review_body(workload("Pod", pod_spec(*images(257)))))
    assert "257 distinct images, more than the 256" in denied.json()["response"]["status"]["message"]
    assert len(engine.calls) == 1


async def test_a_large_review_is_decided_the_same(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    # Over LARGE_REVIEW its planning and answer run in a thread: same decision and patch.
    spec = pod_spec(*images(3))
    spec["containers"][0]["env"] = [{"name": f"V{i}", "value": "x" * 100} for i in range(3000)]
    body = review_body(workload("Pod", spec))
    assert len(body) > 256 * 1024

    def pinned(image: str, _namespace: str | None = None) -> ImageDecision:
        return ImageDecision(image, ImageOutcome(image, DIGEST, "allow", "release", "workflow", "verified"), True)

    engine.default = pinned
    response = await client.post("/mutate", content=body)
    answer = response.json()["response"]
    assert answer["allowed"] is True and answer["patchType"] == "JSONPatch"


# --- the audit line ---------------------------------------------------------------------------------------------


def outcome(i: int) -> ImageOutcome:
    return ImageOutcome(f"registry.example.com/team/app{i}:v1", DIGEST, "deny", "p" * 300, "a" * 300,
                        "r\n" * 2000, "s" * 5000, "i" * 5000, i)


def test_a_huge_audit_line_is_cut_to_64_kib_with_a_marker() -> None:
    review = parse_review(review_body(workload("Pod", pod_spec(*images(2)))))
    line = audit_line(review, decision="deny", reason="x" * 10**6, outcomes=[outcome(i) for i in range(256)],
                      duration=0.1, route="validate")
    assert len(line) <= MAX_LINE and b"\n" not in line
    record = json.loads(line)
    kept = len(record["images"])
    assert record["truncated"] is True and record["imagesOmitted"] == 256 - kept and kept > 10
    assert record["images"][0]["reference"] == "registry.example.com/team/app0:v1"
    assert len(record["reason"]) <= 1024 and all(len(i["signer"]) <= 256 and len(i["policy"]) <= 256
                                                  for i in record["images"])


def test_an_ordinary_audit_line_is_not_marked() -> None:
    review = parse_review(review_body(workload("Pod", pod_spec(*images(2)))))
    record = json.loads(audit_line(review, decision="deny", reason=None, outcomes=[outcome(1)], duration=0.1,
                                   route="validate"))
    assert "truncated" not in record and len(record["images"]) == 1


def test_hostile_review_fields_are_bounded_in_the_audit_line() -> None:
    doc = review_dict(workload("Pod", pod_spec("registry.example.com/a:v1")))
    doc["request"]["name"] = "n" * (8 * 1024 * 1024)
    doc["request"]["userInfo"]["username"] = "u\n" * 100_000
    line = audit_line(parse_review(orjson.dumps(doc)), decision="allow", reason=None, outcomes=[], duration=0,
                      route="validate")
    record = json.loads(line)
    assert len(line) < 4096 and len(record["name"]) == 256 and "\n" not in record["user"]


async def test_the_server_writes_a_bounded_audit_line(client: httpx.AsyncClient, engine: FakeEngine,
                                                     caplog: pytest.LogCaptureFixture) -> None:

    def verbose(image: str, _namespace: str | None = None) -> ImageDecision:
        return ImageDecision(image, outcome(images(256).index(image)))

    engine.default = verbose
    with caplog.at_level(logging.INFO, logger=AUDIT_LOGGER):
        await client.post("/validate", content=review_body(workload("Pod", pod_spec(*images(256)))))
    (record,) = [r for r in caplog.records if r.name == AUDIT_LOGGER]
    assert len(record.getMessage().encode()) <= MAX_LINE and json.loads(record.getMessage())["truncated"] is True


# --- health, readiness and metrics on their own port --------------------------------------------------------------


async def test_with_a_metrics_port_ops_routes_leave_the_admission_app(engine: FakeEngine) -> None:
    app = create_app(ServerConfig(metrics_port=9090), engine=engine, trust=static_trust(), policies=empty_policies())
    ops = ops_app(app)
    assert ops is not None
    async for http in serve(app):
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await http.get(path)).status_code == 404
        assert (await http.post("/validate", content=review_body(workload("Pod", pod_spec("a:v1"))))).status_code == 200
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ops), base_url="http://ops") as side:
            assert (await side.get("/healthz")).json() == {"status": "ok"}
            assert (await side.get("/readyz")).status_code == 200
            assert "signet_admission_decisions_total" in (await side.get("/metrics")).text
            assert (await side.post("/validate", content=b"{}")).status_code in (404, 405)


async def test_without_a_metrics_port_there_is_no_ops_app(app: FastAPI) -> None:
    assert ops_app(app) is None
