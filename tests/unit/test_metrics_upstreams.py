"""/metrics for upstreams: latency histograms and outcomes per host, connections, bounded host labels;
and the audit line's per-upstream waits."""

from __future__ import annotations

import json
import threading

import pytest

from webhook.admission.review import parse_review
from webhook.audit import MAX_UPSTREAMS, audit_line
from webhook.metrics import MAX_HOST_LABELS, Metrics


def metrics() -> Metrics:
    return Metrics(lambda: {"registry_tokens": {"hits": 3, "misses": 1, "size": 0}}, lambda: {})


def line(text: str, name: str, **labels: str) -> float:
    for row in text.splitlines():
        if row.startswith(name + "{") and all(f'{k}="{v}"' in row for k, v in labels.items()):
            return float(row.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} {labels}")


def test_requests_and_connections_per_upstream_host() -> None:
    m = metrics()
    m.upstreams.request_done("registry", "ghcr.io", 0.12, "ok")
    m.upstreams.request_done("registry", "ghcr.io", 0.30, "not_found")
    m.upstreams.request_done("rekor", "rekor.sigstore.dev", 0.05, "ok")
    m.upstreams.request_done("tuf", "tuf-repo-cdn.sigstore.dev", 2.0, "timeout")
    m.upstreams.connection_opened("registry", "ghcr.io", "h2")
    m.upstreams.connection_opened("registry", "ghcr.io", "http/1.1")
    m.upstreams.connection_closed("registry", "ghcr.io")
    text = m.render().decode()
    assert line(text, "signet_upstream_request_duration_seconds_count", upstream="registry", host="ghcr.io") == 2
    assert line(text, "signet_upstream_request_duration_seconds_sum", upstream="registry",
                host="ghcr.io") == pytest.approx(0.42)
    assert line(text, "signet_upstream_request_duration_seconds_bucket", upstream="registry", host="ghcr.io",
                le="0.2") == 1
    assert line(text, "signet_upstream_requests_total", upstream="registry", host="ghcr.io", outcome="not_found") == 1
    assert line(text, "signet_upstream_requests_total", upstream="tuf", outcome="timeout") == 1
    assert line(text, "signet_upstream_requests_total", upstream="rekor", host="rekor.sigstore.dev",
                outcome="ok") == 1
    assert line(text, "signet_upstream_connections_opened_total", upstream="registry", protocol="h2") == 1
    assert line(text, "signet_upstream_connections_open", upstream="registry", host="ghcr.io") == 1
    assert line(text, "signet_cache_hit_ratio", cache="registry_tokens") == 0.75


def test_host_labels_are_bounded_since_hosts_come_from_pod_specs() -> None:
    m = metrics()
    for n in range(MAX_HOST_LABELS + 50):
        m.upstreams.request_done("registry", f"r{n}.example", 0.01, "ok")
    text = m.render().decode()
    assert line(text, "signet_upstream_requests_total", host="r0.example") == 1
    assert line(text, "signet_upstream_requests_total", host="other") == 50
    assert f'host="r{MAX_HOST_LABELS + 1}.example"' not in text
    m.upstreams.request_done("registry", "r1.example", 0.01, "ok")  # an early host keeps its label
    assert line(m.render().decode(), "signet_upstream_requests_total", host="r1.example") == 2


def test_the_tuf_thread_may_report_while_the_loop_does() -> None:
    m = metrics()

    def report(upstream: str) -> None:
        for n in range(500):
            m.upstreams.request_done(upstream, f"h{n % 80}.example", 0.001, "ok")

    workers = [threading.Thread(target=report, args=(u,)) for u in ("tuf", "registry")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    text = m.render().decode()
    rows = [r for r in text.splitlines() if r.startswith("signet_upstream_requests_total{")]
    total = sum(float(r.rsplit(" ", 1)[1]) for r in rows)
    assert total == 1000


REVIEW = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
    "uid": "u1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
    "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": "ns", "name": "p",
    "operation": "CREATE", "userInfo": {"username": "alice"},
    "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}}}}).encode()


def test_the_audit_line_says_how_long_the_review_waited_on_each_upstream() -> None:
    waits = [{"upstream": "registry", "host": "evil.example\n{\"forged\": 1}", "waitMs": 412.5, "requests": 7},
             {"upstream": "rekor", "host": "rekor.sigstore.dev", "waitMs": 55.0, "requests": 1}]
    document = json.loads(audit_line(parse_review(REVIEW), decision="allow", reason=None, outcomes=[],
                                     duration=0.6, route="validate", upstreams=waits))
    assert document["upstreams"][1] == {"upstream": "rekor", "host": "rekor.sigstore.dev", "waitMs": 55.0,
                                        "requests": 1}
    assert "\n" not in document["upstreams"][0]["host"]  # a crafted registry name cannot split the line
    many = [{"upstream": "registry", "host": f"r{n}", "waitMs": 1.0, "requests": 1} for n in range(40)]
    document = json.loads(audit_line(parse_review(REVIEW), decision="allow", reason=None, outcomes=[],
                                     duration=0.1, route="validate", upstreams=many))
    assert len(document["upstreams"]) == MAX_UPSTREAMS
    assert json.loads(audit_line(parse_review(REVIEW), decision="allow", reason=None, outcomes=[], duration=0.1,
                                 route="validate"))["upstreams"] == []
