"""What bench/network.py prints: the table, first ÷ later, extra CPU per image, the issue's goals, a trace."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.network import Measured, Scenario


def _by_scenario(results: list[Measured]) -> dict[Scenario, dict[str, Measured]]:
    grouped: dict[Scenario, dict[str, Measured]] = {}
    for m in results:
        grouped.setdefault(m.scenario, {})[m.review] = m
    return grouped


def extra_cpu(results: list[Measured]) -> dict[tuple[Scenario, str], float]:
    """Per (Pod scenario, review): server CPU ms per image beyond the first (Pod of N vs Pod of 1)."""
    grouped = _by_scenario(results)
    extra: dict[tuple[Scenario, str], float] = {}
    for s, reviews in grouped.items():
        single = next((r for t, r in grouped.items() if t.images == 1 and (t.ref, t.signature, t.auth)
                       == (s.ref, s.signature, s.auth)), None)
        if s.images == 1 or single is None:
            continue
        for name, m in reviews.items():
            if name in single:
                extra[(s, name)] = (m.cpu_ms - single[name].cpu_ms) / (s.images - 1)
    return extra


def report(results: list[Measured], rt_ms: float, transport: str) -> None:
    print(f"Cold admissions, RT {rt_ms:g} ms per request, +2 RT per new connection; {transport}")
    print(f"{'imgs':>4} {'ref':<6} {'signature':<9} {'auth':<5} {'review':<7} {'wall ms':>8} {'RT':>5} "
          f"{'floor':>5} {'×floor':>6} {'reqs':>5} {'conns':>5} {'h2':>3} {'CPU ms':>7} {'peak':>4} {'start r/c':>9}")
    for m in results:
        s = m.scenario
        print(f"{s.images:>4} {s.ref:<6} {s.signature:<9} {s.auth:<5} {m.review:<7} {m.seconds * 1000:>8.0f} "
              f"{m.round_trips:>5.1f} {s.floor(m.review):>5} {m.over_floor:>6.2f} {m.requests:>5} "
              f"{m.connections:>5} {m.h2_connections:>3} {m.cpu_ms:>7.1f} {m.peak_concurrency:>4} "
              f"{m.startup_requests:>4}/{m.startup_connections:<4}")
    grouped = _by_scenario(results)
    print("\nfirst admission after start ÷ a later cold one (wall time):")
    for s, reviews in grouped.items():
        if "first" in reviews and "later" in reviews:
            ratio = reviews["first"].seconds / reviews["later"].seconds
            print(f"  {s.images:>3} {s.ref:<6} {s.signature:<7} {s.auth:<5} {ratio:5.2f}")
    print("\nextra CPU per extra image (Pod of N vs 1 image, server CPU time), ms:")
    extra = extra_cpu(results)
    for s in grouped:
        row = [f"{name} {extra[(s, name)]:5.1f}" for name in ("contact", "first", "later") if (s, name) in extra]
        if row:
            print(f"  {s.ref:<6} {s.signature:<7} {s.auth:<5} " + ", ".join(row))
    service = [ms for m in results for ms in m.service_ms]
    if len(service) > 1:
        deciles = statistics.quantiles(service, n=10)
        print(f"\nupstream time per request (loopback registry; inside the RT unless longer): median "
              f"{statistics.median(service):.1f} ms, p90 {deciles[-1]:.1f} ms over {len(service)} requests")
    goals(results)


def _pick(results: list[Measured], review: str, images: int, **match: str) -> Measured | None:
    for m in results:
        s = m.scenario
        if m.review == review and s.images == images and all(getattr(s, k) == v for k, v in match.items()):
            return m
    return None


def goals(results: list[Measured]) -> None:
    """The goals table of issue 12, from this run (digest-pinned legacy signatures, no auth, where it says)."""
    print("\ngoals (issue 12):")
    plain = {"ref": "digest", "signature": "legacy", "auth": "none"}
    big = max((m.scenario.images for m in results), default=1)
    rows: list[tuple[str, str, str]] = []
    one = _pick(results, "contact", 1, **plain)
    if one is not None:
        rows.append(("1 image, first contact, digest-pinned", f"{one.round_trips:.1f} RT", "≤ 4 RT"))
    known = _pick(results, "later", 1, **plain)
    if known is not None:
        rows.append(("1 image, registry already known", f"{known.round_trips:.1f} RT", "≤ 2 RT"))
    pod = _pick(results, "contact", big, **plain)
    if pod is not None and big > 1:
        rows.append((f"Pod of {big} distinct images, first contact", f"{pod.round_trips:.1f} RT", "≤ 5 RT"))
        rows.append((f"new connections for that Pod ({pod.h2_connections} h2)", f"{pod.connections}",
                     "≤ 2 per registry over h2"))
    extra = list(extra_cpu(results).values())
    if extra:
        rows.append(("extra CPU per extra image (median of Pods)", f"{statistics.median(extra):.1f} ms", "≤ 4 ms"))
    ratios = [reviews["first"].seconds / reviews["later"].seconds for reviews in _by_scenario(results).values()
              if "first" in reviews and "later" in reviews]
    if ratios:
        rows.append(("first admission after start ÷ a later cold one", f"{max(ratios):.2f} (worst)", "≤ 1.1"))
    for what, figure, goal in rows:
        print(f"  {what:<48} {figure:>14}   goal {goal}")


def trace(results: list[Measured]) -> None:
    """Each review's requests: arrival and answer in RT from the review's first request, connection, status."""
    for m in results:
        s = m.scenario
        print(f"\n{s.images} {s.ref} {s.signature} {s.auth} {m.review}: {m.round_trips:.1f} RT")
        if not m.exchanges:
            continue
        origin = min(e.started for e in m.exchanges)
        for e in sorted(m.exchanges, key=lambda e: e.started):
            print(f"  {(e.started - origin) / m.rt:5.1f} → {(e.finished - origin) / m.rt:5.1f} RT  "
                  f"conn {e.connection:<3} {e.status} {e.method:<4} {e.path}")
