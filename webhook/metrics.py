"""Prometheus metrics of one app instance (its own registry: no module-level globals).

- ``signet_admission_decisions_total{route,result,reason}``: one per review; ``reason`` is a
  small fixed vocabulary (see ``reason_category``) so label cardinality stays bounded.
- ``signet_image_verdicts_total{verdict,reason}``: one per image decided.
- ``signet_admission_duration_seconds{route}``: request handling time (parse → answer).
- ``signet_verification_duration_seconds``: time spent in ``engine.decide`` for one review.
- ``signet_cache_*{cache}``: read from ``engine.cache_stats()`` at scrape time.
- ``signet_trust_root_ready``, ``signet_policies_loaded``, ``signet_policy_problems``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from webhook.admission.outcome import ImageOutcome

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 8.0, 10.0)

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
