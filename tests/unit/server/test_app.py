"""The admission app against a fake engine: routes, the two error channels, decisions, patch, audit, metrics."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from tests.fixtures_path import shared_fixture
from tests.unit.admission.reviews import KINDS, UID, pod_spec, review_body, workload
from tests.unit.server.conftest import DIGEST, FakeEngine, allow, deny, empty_policies, static_trust, warn
from webhook.app import create_app
from webhook.audit import AUDIT_LOGGER
from webhook.config import ServerConfig

pytestmark = pytest.mark.anyio

APP = "registry.example.com/team/app:v1"
SIDECAR = "registry.example.com/team/sidecar:v2"


async def post(client: httpx.AsyncClient, body: bytes, route: str = "/validate") -> tuple[int, dict[str, Any]]:
    response = await client.post(route, content=body, headers={"Content-Type": "application/json"})
    assert response.headers["content-type"] == "application/json"
    return response.status_code, response.json()


# --- simple routes -----------------------------------------------------------------------------


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz_after_start_reports_trust_and_policies(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    body = response.json()
    assert response.status_code == 200 and body["ready"] is True
    assert body["trustRoot"]["source"] == "embedded" and body["policies"]["problems"] == []


async def test_readyz_is_503_before_the_lifespan_loaded_anything(engine: FakeEngine) -> None:
    app = create_app(ServerConfig(policies_dir=Path("/nonexistent")), engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        response = await http.get("/readyz")
    assert response.status_code == 503 and response.json()["ready"] is False


async def test_readyz_counts_policy_problems(engine: FakeEngine, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("apiVersion: policy.signet.dev/v1alpha1\nkind: ClusterImagePolicy\n"
                                       "metadata: {name: broken}\nspec: {images: []}\n")
    app = create_app(ServerConfig(policies_dir=tmp_path), engine=engine, trust=static_trust())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        response = await http.get("/readyz")
    body = response.json()
    # An invalid --policies document is held fail-closed, and the server does not report ready.
    assert response.status_code == 503 and body["ready"] is False
    assert len(body["policies"]["problems"]) == 2 and body["policies"]["count"] == 0


async def test_lifespan_closes_the_engine(app: FastAPI, engine: FakeEngine) -> None:
    async with app.router.lifespan_context(app):
        assert not engine.closed
    assert engine.closed


# --- malformed bodies: HTTP 400, never 500 ----------------------------------------------------------

MALFORMED = [
    b"{",
    b"null",
    b"[]",
    b'{"kind":"AdmissionReview"}',
    json.dumps({"request": {"uid": 7}}).encode(),
    b"",
    b"\xff\xfe",
    b'"just a string"',
    b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}',
    b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"EAT"}}',
    b'{"apiVersion":["x"],"request":{}}',
    b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE",'
    b'"kind":{"kind":"Pod"},"resource":{"resource":"pods"},"object":[1]}}',
]


@pytest.mark.parametrize("body", MALFORMED, ids=lambda b: repr(b[:30]))
@pytest.mark.parametrize("route", ["/validate", "/mutate"])
async def test_malformed_body_is_400_with_a_status(client: httpx.AsyncClient, body: bytes, route: str) -> None:
    code, answer = await post(client, body, route)
    assert code == 400
    assert answer["kind"] == "Status" and answer["code"] == 400 and "malformed AdmissionReview" in answer["message"]


def connaisseur_fixtures() -> list[Path]:
    directory = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "admission-review" / "connaisseur"
    return sorted(directory.glob("*.json")) if directory.is_dir() else []


@pytest.mark.fixtures
@pytest.mark.parametrize("name", [p.name for p in connaisseur_fixtures()] or ["absent"])
async def test_connaisseur_reviews_answer_200_or_400(client: httpx.AsyncClient, name: str) -> None:
    path = shared_fixture("admission-review", "connaisseur", name)
    body = path.read_bytes()
    for route in ("/validate", "/mutate"):
        response = await client.post(route, content=body)
        assert response.status_code in (200, 400), response.text
        if response.status_code == 200:
            review = response.json()
            request_uid = orjson.loads(body)["request"]["uid"]
            assert review["response"]["uid"] == request_uid
            assert "auditAnnotations" in review["response"]


# --- decisions -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "Role"])
async def test_every_kind_is_verified_and_allowed(client: httpx.AsyncClient, engine: FakeEngine, kind: str) -> None:
    code, answer = await post(client, review_body(workload(kind, pod_spec(APP, SIDECAR, init=(APP,))), kind))
    response = answer["response"]
    assert code == 200 and response["uid"] == UID and response["allowed"] is True
    assert engine.calls == [((APP, SIDECAR), "team-a")]
    images = json.loads(response["auditAnnotations"]["images"])
    assert [i["image"] for i in images] == [APP, SIDECAR] and images[0]["logIndex"] == 42
    assert response["auditAnnotations"]["decision"] == "allow"


async def test_denial_names_image_policy_and_identities(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.rules["sidecar"] = deny
    code, answer = await post(client, review_body(workload("Pod", pod_spec(APP, SIDECAR))))
    response = answer["response"]
    assert code == 200 and response["allowed"] is False and response["status"]["code"] == 403
    message = response["status"]["message"]
    assert SIDECAR in message and "release" in message and "mallory@example.com" in message
    assert "signer@example.com" in message and APP not in message
    assert response["auditAnnotations"]["decision"] == "deny"


async def test_warn_mode_is_allowed_with_warnings(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.default = warn
    code, answer = await post(client, review_body(workload("Deployment", pod_spec(APP)), "Deployment"))
    response = answer["response"]
    assert code == 200 and response["allowed"] is True
    assert response["warnings"] and APP in response["warnings"][0]
    assert response["auditAnnotations"]["decision"] == "warn"


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
async def test_delete_is_allowed_without_verification(client: httpx.AsyncClient, engine: FakeEngine,
                                                       operation: str) -> None:
    engine.default = deny
    code, answer = await post(client, review_body(None, "Pod", operation=operation,
                                                  old=workload("Pod", pod_spec(APP))))
    assert code == 200 and answer["response"]["allowed"] is True and engine.calls == []
    assert "not checked" in answer["response"]["auditAnnotations"]["reason"]


async def test_unchanged_update_is_allowed_without_verification(client: httpx.AsyncClient,
                                                                engine: FakeEngine) -> None:
    engine.default = deny
    obj = workload("Deployment", pod_spec(APP))
    code, answer = await post(client, review_body(obj, "Deployment", operation="UPDATE", old=obj))
    assert code == 200 and answer["response"]["allowed"] is True and engine.calls == []


async def test_changed_update_verifies_every_image(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    old = workload("Deployment", pod_spec(APP))
    new = workload("Deployment", pod_spec(APP, SIDECAR))
    await post(client, review_body(new, "Deployment", operation="UPDATE", old=old))
    assert engine.calls == [((APP, SIDECAR), "team-a")]


async def test_non_workload_is_allowed(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    code, answer = await post(client, review_body(workload("Role", {}), "Role"))
    assert code == 200 and answer["response"]["allowed"] is True and engine.calls == []


async def test_unreadable_workload_is_a_200_denial(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    obj = workload("Pod", {"containers": [{"name": "a", "image": 42}]})
    code, answer = await post(client, review_body(obj))
    assert code == 200 and answer["response"]["allowed"] is False and engine.calls == []
    assert "cannot read the images" in answer["response"]["status"]["message"]


@pytest.mark.parametrize("failure", [RuntimeError("boom"), KeyError("x"), ValueError("y")])
async def test_engine_crash_is_a_200_internal_error_denial(
        client: httpx.AsyncClient, engine: FakeEngine, failure: Exception, caplog: pytest.LogCaptureFixture) -> None:
    engine.fail = failure
    with caplog.at_level(logging.ERROR, logger="webhook.app"):
        code, answer = await post(client, review_body(workload("Pod", pod_spec(APP))))
    assert code == 200 and answer["response"]["allowed"] is False
    assert "internal error" in answer["response"]["status"]["message"]
    assert any(r.exc_info for r in caplog.records)  # the traceback is logged


async def test_engine_answering_for_no_image_denies(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.drop = True
    code, answer = await post(client, review_body(workload("Pod", pod_spec(APP))))
    assert code == 200 and answer["response"]["allowed"] is False


async def test_v1beta1_is_answered_in_v1beta1(client: httpx.AsyncClient) -> None:
    code, answer = await post(client, review_body(workload("Pod", pod_spec(APP)),
                                                  api_version="admission.k8s.io/v1beta1"))
    assert code == 200 and answer["apiVersion"] == "admission.k8s.io/v1beta1"


# --- mutate ------------------------------------------------------------------------------------------------


def patch_of(answer: dict[str, Any]) -> list[dict[str, str]]:
    response = answer["response"]
    assert response["patchType"] == "JSONPatch"
    return list(json.loads(base64.b64decode(response["patch"])))


async def test_mutate_pins_only_images_whose_policy_asks(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.rules["app:v1"] = lambda image, ns: allow(image, ns, pin=True)
    body = review_body(workload("Deployment", pod_spec(APP, SIDECAR)), "Deployment")
    code, answer = await post(client, body, "/mutate")
    assert code == 200 and answer["response"]["allowed"] is True
    assert patch_of(answer) == [
        {"op": "test", "path": "/spec/template/spec/containers/0/image", "value": APP},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": f"{APP}@{DIGEST}"},
    ]
    # /validate never patches.
    _, validated = await post(client, body, "/validate")
    assert "patch" not in validated["response"]


async def test_mutate_without_pinning_has_no_patch(client: httpx.AsyncClient) -> None:
    code, answer = await post(client, review_body(workload("Pod", pod_spec(APP))), "/mutate")
    assert code == 200 and answer["response"]["allowed"] is True and "patch" not in answer["response"]


async def test_mutate_denies_like_validate(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.default = deny
    code, answer = await post(client, review_body(workload("Pod", pod_spec(APP))), "/mutate")
    assert code == 200 and answer["response"]["allowed"] is False and "patch" not in answer["response"]


# --- audit and metrics --------------------------------------------------------------------------------------


async def test_one_audit_line_per_decision(client: httpx.AsyncClient, engine: FakeEngine,
                                           caplog: pytest.LogCaptureFixture) -> None:
    engine.rules["sidecar"] = deny
    with caplog.at_level(logging.INFO, logger=AUDIT_LOGGER):
        await post(client, review_body(workload("Pod", pod_spec(APP, SIDECAR))))
    (record,) = [r for r in caplog.records if r.name == AUDIT_LOGGER]
    line = json.loads(record.getMessage())
    assert line["uid"] == UID and line["user"] == "dev@example.com" and line["namespace"] == "team-a"
    assert line["kind"] == "Pod" and line["name"] == "w" and line["operation"] == "CREATE"
    assert line["decision"] == "deny" and line["time"].endswith("Z")
    app_line, sidecar_line = line["images"]
    assert app_line == {"reference": APP, "digest": DIGEST, "policy": "release", "authority": "workflow",
                        "verdict": "allow", "reason": "verified", "signer": "signer@example.com",
                        "issuer": "https://oidc.example", "logIndex": 42}
    assert sidecar_line["verdict"] == "deny" and sidecar_line["signer"] == "mallory@example.com"


async def test_audit_line_for_skipped_review_says_why(client: httpx.AsyncClient,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=AUDIT_LOGGER):
        await post(client, review_body(None, operation="DELETE"))
    (record,) = [r for r in caplog.records if r.name == AUDIT_LOGGER]
    line = json.loads(record.getMessage())
    assert line["decision"] == "allow" and line["reason"] == "DELETE is not checked" and line["images"] == []


async def test_metrics_count_decisions_and_expose_caches(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    await post(client, review_body(workload("Pod", pod_spec(APP))))
    engine.default = deny
    await post(client, review_body(workload("Pod", pod_spec(APP))))
    await post(client, b"{")
    response = await client.get("/metrics")
    text = response.text
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert 'signet_admission_decisions_total{reason="verified",result="allow",route="validate"} 1.0' in text
    assert 'signet_admission_decisions_total{reason="signature",result="deny",route="validate"} 1.0' in text
    assert 'signet_admission_decisions_total{reason="malformed",result="malformed",route="validate"} 1.0' in text
    assert 'signet_admission_duration_seconds_count{route="validate"} 3.0' in text
    assert "signet_verification_duration_seconds_bucket" in text
    assert 'signet_cache_hit_ratio{cache="verdicts"} 0.75' in text
    assert "signet_trust_root_ready 1.0" in text
    # A static trust root never refreshes: no failures, and no successful refresh time either.
    assert "signet_trust_root_refresh_failures 0.0" in text
    assert "signet_trust_root_last_refresh_success_seconds 0.0" in text


async def test_two_apps_have_separate_metrics(engine: FakeEngine) -> None:
    first = create_app(ServerConfig(), engine=engine, trust=static_trust(), policies=empty_policies())
    second = create_app(ServerConfig(), engine=engine, trust=static_trust(), policies=empty_policies())
    assert first.state.signet.metrics.registry is not second.state.signet.metrics.registry
