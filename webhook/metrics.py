"""Prometheus metrics of one app instance (its own registry: no module-level globals).

- ``signet_admission_decisions_total{route,result,reason}``: one per review; ``reason`` is a
  small fixed vocabulary (see ``reason_category``) so label cardinality stays bounded.
- ``signet_image_verdicts_total{verdict,reason}``: one per image decided.
- ``signet_admission_duration_seconds{route}``: request handling time (parse → answer).
- ``signet_verification_duration_seconds``: time spent in ``engine.decide`` for one review.
- ``signet_cache_hits``, ``signet_cache_misses``, ``signet_cache_entries``, ``signet_cache_hit_ratio``
  ``{cache}``: read at scrape time from ``engine.cache_stats()`` (digest, signatures, verdicts, keys,
  trust_roots) and the upstream clients (registry_tokens, rekor_entries).
- ``signet_upstream_request_duration_seconds{upstream,host}``: each request to an upstream
  (``registry``, ``rekor``, ``tuf``), from sending it to its answer read and closed (TUF: to its headers).
- ``signet_upstream_requests_total{upstream,host,outcome}``: the same requests by outcome: ``ok``,
  ``redirect``, ``denied`` (401/403), ``not_found``, ``rate_limited``, ``client_error``,
  ``server_error``, ``timeout``, ``refused`` (egress rules), ``error``, ``cancelled``.
- ``signet_upstream_connections_opened_total{upstream,host,protocol}`` (``h2`` or ``http/1.1``) and
  ``signet_upstream_connections_open{upstream,host}``: connections to registries and Rekor.
- ``signet_trust_root_ready``, ``signet_policies_loaded``, ``signet_policy_problems``, ``signet_warm_up_done``.

``host`` is ``host[:port]`` as contacted (a registry, its token realm or CDN, Rekor, the TUF
mirror). Registry hosts come from image references, so the label is bounded: the first
``MAX_HOST_LABELS`` hosts seen keep their name, any later one is counted as ``other``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from webhook.admission.outcome import ImageOutcome

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 8.0, 10.0)
_UPSTREAM_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 8.0, 15.0)
MAX_HOST_LABELS: Final = 64
OTHER_HOST: Final = "other"

StatsSource = Callable[[], Mapping[str, Mapping[str, int]]]
StateSource = Callable[[], Mapping[str, float]]


def reason_category(outcome: ImageOutcome) -> str:
    """A bounded label for why an image got its verdict (read from the engine's reason text)."""
    reason = outcome.reason.lower()
    if "in time" in reason:
        return "deadline"
    if "infrastructure failure" in reason or "unreachable" in reason:
        return "infrastructure"
    if outcome.policy is None and "no policy matches" in reason:
        return "no_match"
    if "internal error" in reason:
        return "internal_error"
    if outcome.verdict == "allow":
        return "verified"
    if "no signature" in reason:
        return "unsigned"
    if "invalid image reference" in reason:
        return "invalid_reference"
    return "signature"


class _StateCollector(Collector):
    """Gauges read at scrape time: caches and readiness."""

    def __init__(self, cache_stats: StatsSource, state: StateSource) -> None:
        self._cache_stats = cache_stats
        self._state = state

    def collect(self) -> Iterator[Metric]:
        hits = GaugeMetricFamily("signet_cache_hits", "cache hits since start", labels=["cache"])
        misses = GaugeMetricFamily("signet_cache_misses", "cache misses since start", labels=["cache"])
        size = GaugeMetricFamily("signet_cache_entries", "entries held", labels=["cache"])
        ratio = GaugeMetricFamily("signet_cache_hit_ratio", "hits / (hits + misses) since start", labels=["cache"])
        try:
            stats = self._cache_stats()
        except Exception:  # noqa: BLE001  -- a scrape must never fail because of a cache
            stats = {}
        for name, values in sorted(stats.items()):
            h, m = int(values.get("hits", 0)), int(values.get("misses", 0))
            hits.add_metric([name], h)
            misses.add_metric([name], m)
            size.add_metric([name], int(values.get("size", 0)))
            ratio.add_metric([name], h / (h + m) if h + m else 0.0)
        yield from (hits, misses, size, ratio)
        for name, value in sorted(self._state().items()):
            yield GaugeMetricFamily(f"signet_{name}", name.replace("_", " "), value=value)


class UpstreamMetrics:
    """The ``UpstreamObserver`` of the server: latency, outcomes and connections per upstream host."""

    def __init__(self, registry: CollectorRegistry, *, max_hosts: int = MAX_HOST_LABELS) -> None:
        self.duration = Histogram("signet_upstream_request_duration_seconds",
                                  "time from sending a request to an upstream to its answer read",
                                  ["upstream", "host"], buckets=_UPSTREAM_BUCKETS, registry=registry)
        self.requests = Counter("signet_upstream_requests", "requests to upstreams by outcome",
                                ["upstream", "host", "outcome"], registry=registry)
        self.opened = Counter("signet_upstream_connections_opened", "connections opened to upstreams",
                              ["upstream", "host", "protocol"], registry=registry)
        self.open = Gauge("signet_upstream_connections_open", "connections to upstreams open now",
                          ["upstream", "host"], registry=registry)
        self._max_hosts = max_hosts
        self._hosts: dict[tuple[str, str], str] = {}
        # TUF refreshes report from their own thread.
        self._lock = threading.Lock()

    def host_label(self, upstream: str, host: str) -> str:
        """``host``, or ``other`` once ``max_hosts`` others have their label (hosts come from references)."""
        label = self._hosts.get((upstream, host))
        if label is None:
            with self._lock:
                label = self._hosts.get((upstream, host))
                if label is None:
                    label = host if len(self._hosts) < self._max_hosts else OTHER_HOST
                    if label != OTHER_HOST:
                        self._hosts[(upstream, host)] = label
        return label

    def request_done(self, upstream: str, host: str, seconds: float, outcome: str) -> None:
        label = self.host_label(upstream, host)
        self.duration.labels(upstream, label).observe(seconds)
        self.requests.labels(upstream, label, outcome).inc()

    def connection_opened(self, upstream: str, host: str, protocol: str) -> None:
        label = self.host_label(upstream, host)
        self.opened.labels(upstream, label, protocol).inc()
        self.open.labels(upstream, label).inc()

    def connection_closed(self, upstream: str, host: str) -> None:
        self.open.labels(upstream, self.host_label(upstream, host)).dec()


class Metrics:
    """The counters and histograms the app updates on each request."""

    def __init__(self, cache_stats: StatsSource, state: StateSource) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter("signet_admission_decisions", "admission decisions",
                                 ["route", "result", "reason"], registry=self.registry)
        self.images = Counter("signet_image_verdicts", "per-image verdicts", ["verdict", "reason"],
                              registry=self.registry)
        self.duration = Histogram("signet_admission_duration_seconds", "time to answer one admission review",
                                  ["route"], buckets=_BUCKETS, registry=self.registry)
        self.verification = Histogram("signet_verification_duration_seconds",
                                      "time in the decision engine for one review", buckets=_BUCKETS,
                                      registry=self.registry)
        self.registry.register(_StateCollector(cache_stats, state))
        self.upstreams = UpstreamMetrics(self.registry)
        """Told about every registry, Rekor and TUF request and connection (``webhook.upstreams``)."""
        # Resolved label children: the hot path does a dict lookup instead of labels() each time.
        self._decision_children: dict[tuple[str, str, str], Counter] = {}
        self._image_children: dict[tuple[str, str], Counter] = {}
        self._duration_children = {route: self.duration.labels(route) for route in ("validate", "mutate")}

    def decision(self, route: str, result: str, reason: str, seconds: float) -> None:
        key = (route, result, reason)
        child = self._decision_children.get(key)
        if child is None:
            child = self._decision_children[key] = self.decisions.labels(*key)
        child.inc()
        histogram = self._duration_children.get(route)
        if histogram is not None:
            histogram.observe(seconds)

    def image(self, outcome: ImageOutcome) -> str:
        """Count one image verdict; returns its reason category."""
        category = reason_category(outcome)
        key = (outcome.verdict, category)
        child = self._image_children.get(key)
        if child is None:
            child = self._image_children[key] = self.images.labels(*key)
        child.inc()
        return category

    def render(self) -> bytes:
        return generate_latest(self.registry)
