"""``signet denials`` over recorded decisions: audit log lines (written by ``webhook.audit``) and Events.

Events come from the loopback API stand-in, created by the real :class:`EventRecorder` or written
as an older Signet (or another tool) would, message only.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from tests.k8s_apiserver import FakeApiServer
from webhook import cli
from webhook.admission.outcome import ImageOutcome, denial_message
from webhook.admission.review import parse_review
from webhook.audit import audit_line
from webhook.commands import denials
from webhook.k8s import events as k8s_events
from webhook.k8s.events import EventRecorder

NOW = datetime.now(UTC).replace(microsecond=0)
EVE = ImageOutcome("ghcr.io/acme/app:v1", "sha256:" + "a" * 64, "deny", "release-images", "release-workflow",
                   "certificate identity eve@example.com does not match", signer="eve@example.com",
                   issuer="https://token.actions.githubusercontent.com", log_index=123456)
UNSIGNED = ImageOutcome("docker.io/library/nginx:1", "sha256:" + "b" * 64, "deny", "hub-images", "keyless",
                        "no signatures found")
MISMATCH = ImageOutcome("ghcr.io/acme/worker:v2", "sha256:" + "d" * 64, "deny", "release-images", "release-workflow",
                        "no signature by an allowed identity", signer="mallory@example.com",
                        issuer="https://accounts.google.com", log_index=99)
ALLOWED = ImageOutcome("ghcr.io/acme/ok:v1", "sha256:" + "c" * 64, "allow", "release-images", "release-workflow",
                       "verified", signer="ci@acme.example", log_index=7)


def review(namespace: str, kind: str, name: str, user: str) -> Any:
    request = {"uid": f"uid-{name}", "kind": {"group": "apps", "version": "v1", "kind": kind},
               "resource": {"group": "apps", "version": "v1", "resource": kind.lower() + "s"},
               "namespace": namespace, "name": name, "operation": "CREATE", "userInfo": {"username": user},
               "object": {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}}}
    return parse_review(json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                    "request": request}))


def line(namespace: str, name: str, user: str, outcomes: list[ImageOutcome], *, ago: timedelta,
         decision: str = "deny", reason: str | None = None) -> str:
    return audit_line(review(namespace, "Deployment", name, user), decision=decision, reason=reason,
                      outcomes=outcomes, duration=0.01, route="/validate", now=NOW - ago).decode()


@pytest.fixture
def audit_log(tmp_path: Path) -> Path:
    path = tmp_path / "signet.log"
    path.write_text("\n".join([
        line("team-a", "web", "alice@example.com", [EVE, ALLOWED], ago=timedelta(hours=3)),
        "INFO uvicorn: some other log line",
        "2026-01-01T00:00:00Z " + line("team-b", "cache", "bob@example.com", [UNSIGNED], ago=timedelta(minutes=5)),
        line("team-a", "ok", "alice@example.com", [ALLOWED], ago=timedelta(minutes=1), decision="allow"),
        line("team-c", "broken", "carol@example.com", [], ago=timedelta(minutes=2),
             reason="signet cannot check this Deployment: spec.template is not an object"),
        "{not json",
    ]) + "\n")
    return path


def signet(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["denials", *args])
    out, err = capsys.readouterr()
    return code, out, err


# --- from the audit log -----------------------------------------------------------------------


def test_table_from_the_audit_log(audit_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = signet(capsys, "--from-log", str(audit_log), "--wide")
    assert code == 0
    table, summary = out.split("\n\n")
    header, *rows = table.splitlines()
    assert header.split() == ["LAST", "SEEN", "FIRST", "SEEN", "COUNT", "USER", "NAMESPACE", "WORKLOAD", "IMAGE",
                              "POLICY", "AUTHORITY", "SIGNER", "ISSUER", "REKOR", "REASON"]
    assert len(rows) == 3  # allowed images and decisions are not denials
    assert summary.startswith("3 denials")
    first = rows[0]  # oldest first
    for expected in ("alice@example.com", "team-a", "Deployment/web", "ghcr.io/acme/app:v1@sha256:" + "a" * 64,
                     "release-images", "eve@example.com", "https://search.sigstore.dev/?logIndex=123456",
                     "certificate identity eve@example.com does not match",
                     (NOW - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")):
        assert expected in first
    assert "ok:v1" not in out
    assert "team-c" in rows[2] and "spec.template is not an object" in rows[2]


def test_filters_and_json_output(audit_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = signet(capsys, "--from-log", str(audit_log), "--since", "1h", "--output", "json")
    assert code == 0
    records = json.loads(out)["denials"]
    assert [(r["namespace"], r["workload"]) for r in records] == [("team-b", "Deployment/cache"),
                                                                  ("team-c", "Deployment/broken")]
    assert records[0]["user"] == "bob@example.com" and records[0]["policy"] == "hub-images"
    assert records[0]["logIndex"] is None and records[0]["rekorUrl"] is None and records[0]["source"] == "log"

    code, out, _ = signet(capsys, "--from-log", str(audit_log), "--policy", "release-images", "-o", "json")
    (record,) = json.loads(out)["denials"]
    assert record["rekorUrl"] == "https://search.sigstore.dev/?logIndex=123456" and record["logIndex"] == 123456
    assert record["signer"] == "eve@example.com" and record["issuer"].startswith("https://token.actions")
    assert record["digest"] == "sha256:" + "a" * 64 and record["authority"] == "release-workflow"

    since = (NOW - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    code, out, _ = signet(capsys, "--from-log", str(audit_log), "--since", since, "--namespace", "team-c")
    assert code == 0 and len(out.split("\n\n")[0].splitlines()) == 2 and "carol@example.com" in out


def test_no_denials_from_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    allowed = line("team-a", "ok", "alice@example.com", [ALLOWED], ago=timedelta(0), decision="allow")
    monkeypatch.setattr("sys.stdin", io.StringIO(allowed + "\n"))
    assert signet(capsys, "--from-log", "-") == (0, "no denials\n", "")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, out, _ = signet(capsys, "--from-log", "-", "-o", "json")
    assert code == 0 and json.loads(out)["denials"] == [] and json.loads(out)["summary"]["denials"] == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--from-log", "/nonexistent/signet.log"], "cannot read --from-log /nonexistent/signet.log"),
    (["--from-log", "-", "--since", "yesterday"], "--since 'yesterday': expected a duration"),
    (["--kubeconfig", "/nonexistent/kubeconfig"], "cannot load a Kubernetes configuration from /nonexistent"),
])
def test_input_errors_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = signet(capsys, *args)
    assert code == 2 and out == "" and message in err and "Traceback" not in err


def test_since_durations() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert denials.parse_since("1h30m", now) == now - timedelta(minutes=90)
    assert denials.parse_since("2d", now) == datetime(2025, 12, 31, tzinfo=UTC)
    assert denials.parse_since("2026-01-01T12:00:00+01:00", now) == datetime(2026, 1, 1, 11, tzinfo=UTC)


# --- from Events in the cluster ---------------------------------------------------------------


@pytest.fixture
def apiserver() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    yield server
    server.stop()


@pytest.fixture
def kubeconfig(apiserver: FakeApiServer, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
        "clusters": [{"name": "stand-in", "cluster": {"server": apiserver.url}}],
        "users": [{"name": "auditor", "user": {"token": "t"}}],
        "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "auditor"}}],
    }))
    return path


def test_events_from_the_cluster(apiserver: FakeApiServer, kubeconfig: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    api = k8s_client.ApiClient(k8s_client.Configuration(host=apiserver.url))
    recorder = EventRecorder(api)
    recorder.denied("Deployment", "web", "team-a", "uid-1", denial_message([EVE, ALLOWED]), api_version="apps/v1",
                    user="alice@example.com", images=[EVE, ALLOWED])
    assert recorder.flush(5)
    recorder.stop()
    # An Event without annotations (message only), one of another reason, and an old one.
    stamp = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    apiserver.put("events", {"metadata": {"name": "cache.1", "namespace": "team-b"}, "reason": "ImageDenied",
                             "involvedObject": {"kind": "Pod", "name": "cache-0", "namespace": "team-b"},
                             "message": denial_message([UNSIGNED, MISMATCH]), "lastTimestamp": stamp, "count": 3})
    apiserver.put("events", {"metadata": {"name": "other.1", "namespace": "team-b"}, "reason": "Pulled",
                             "involvedObject": {"kind": "Pod", "name": "cache-0"}, "message": "pulled"})
    old = (NOW - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    apiserver.put("events", {"metadata": {"name": "old.1", "namespace": "team-c"}, "reason": "ImageDenied",
                             "involvedObject": {"kind": "Pod", "name": "old"}, "message": "image x denied: old",
                             "lastTimestamp": old})

    code, out, _ = signet(capsys, "--kubeconfig", str(kubeconfig), "--since", "1d", "-o", "json")
    assert code == 0
    records = json.loads(out)["denials"]
    by_image = {(r["namespace"], r["image"]): r for r in records}
    assert set(by_image) == {("team-a", "ghcr.io/acme/app:v1"), ("team-b", "docker.io/library/nginx:1"),
                             ("team-b", "ghcr.io/acme/worker:v2")}
    annotated = by_image[("team-a", "ghcr.io/acme/app:v1")]  # full fields from the annotation
    assert annotated["user"] == "alice@example.com" and annotated["logIndex"] == 123456
    assert annotated["workload"] == "Deployment/web" and annotated["source"] == "event"
    parsed = by_image[("team-b", "ghcr.io/acme/worker:v2")]  # parsed back from the message
    assert (parsed["policy"], parsed["authority"], parsed["signer"], parsed["issuer"]) == (
        "release-images", "release-workflow", "mallory@example.com", "https://accounts.google.com")
    assert parsed["reason"] == "no signature by an allowed identity" and parsed["logIndex"] is None
    assert parsed["user"] is None and parsed["count"] == 3 and parsed["workload"] == "Pod/cache-0"
    assert by_image[("team-b", "docker.io/library/nginx:1")]["reason"] == "no signatures found"

    code, out, _ = signet(capsys, "--kubeconfig", str(kubeconfig), "--namespace", "team-a", "--wide")
    assert code == 0 and "https://search.sigstore.dev/?logIndex=123456" in out and "team-b" not in out
    assert apiserver.count("GET", "/api/v1/namespaces/team-a/events")
    code, out, _ = signet(capsys, "--kubeconfig", str(kubeconfig), "--policy", "nobody")
    assert (code, out) == (0, "no denials\n")


def test_cluster_unreachable_exits_1(apiserver: FakeApiServer, kubeconfig: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    apiserver.outage = True
    code, _, err = signet(capsys, "--kubeconfig", str(kubeconfig))
    assert code == 1 and "cannot list Events from the cluster: HTTP 503" in err


def test_annotation_names_match_the_recorder() -> None:
    assert (denials.USER_ANNOTATION, denials.IMAGES_ANNOTATION, denials.REASON) == (
        k8s_events.USER_ANNOTATION, k8s_events.IMAGES_ANNOTATION, k8s_events.REASON)
