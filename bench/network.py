"""Benchmark: cold admissions when the registry is far away (a delay proxy in front of real registries).

    .venv/bin/python bench/network.py [--rt-ms 100] [--tls] [--no-h2] [--quick] [--images 20] [--json F]
                                      [--server-arg=--FLAG=VALUE ...]

Every request through the proxy costs one round trip (RT); every new connection two more (TCP,
TLS) before its first byte. With ``--tls`` the proxy terminates TLS with a test CA (real
handshakes; ALPN offers h2 unless ``--no-h2``) and Signet trusts that CA through SSL_CERT_FILE;
without it Signet talks plain HTTP (``--allow-http-registry``) and the handshakes are only delays.
Token scenarios put the registry behind a Docker-Hub-style token dance: 401 + Bearer challenge,
then a token server that is itself behind a delay proxy.

Each scenario posts Pod AdmissionReviews of distinct, never-seen images (policy: the test kit's
keyless signer) to fresh ``signet serve`` processes: ``contact`` to a server started without
warm-up (``--warm-up-timeout 0``: first contact with the registry), then, to a server that warmed
up as usual, ``first`` (the first admission after start) and ``later`` (a later cold one: new
images, registry known). It reports wall time, round trips on the critical path (time / RT), the
floor for that path, requests, new connections (h2 among them), the server's CPU time and what
warm-up sent at start; then first ÷ later, the extra CPU per extra image (Pod of N vs 1 image)
and the issue's goals.

Floor (RT): 1 (the signature manifest: ``.sig`` tag, referrers API and fallback tag all at once)
+ 1 (legacy payload blob) or 2 (bundle: referrer manifest, bundle blob); + 1 for a tag (its digest
first); token auth + 1 (a token for the repository). First contact adds 2 (TCP+TLS), and 4 more
with token auth (401, token server TCP+TLS). A Pod's floor is one image's.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.netproxy import Exchange, ProxyStats, ProxyThread, server_tls_context  # noqa: E402
from bench.netreport import report, trace  # noqa: E402
from bench.netsetup import Image, SignetProcess, Site, as_dict, policy_yaml, push_signed, review, start_site  # noqa: E402
from tests.sigstore_kit import SigstoreKit  # noqa: E402
from tests.unit.server.tls_certs import TestCA  # noqa: E402

REVIEWS = (("contact", "c"), ("first", "a"), ("later", "b"))
IMAGE_SETS = ("a", "b", "c")
NO_WARM_UP = ["--warm-up-timeout", "0"]


@dataclass(frozen=True)
class Scenario:
    ref: str  # digest | tag
    signature: str  # legacy | bundle
    auth: str  # none | token
    images: int

    def floor(self, review: str) -> int:
        rounds = (1 if self.ref == "tag" else 0) + (2 if self.signature == "legacy" else 3)
        rounds += 1 if self.auth == "token" else 0
        if review == "contact":
            return rounds + 2 + (4 if self.auth == "token" else 0)
        return rounds


@dataclass(frozen=True)
class Measured:
    scenario: Scenario
    review: str
    seconds: float
    rt: float
    cpu_ms: float
    requests: int
    connections: int
    h2_connections: int
    bytes: int
    peak_concurrency: int
    startup_requests: int
    startup_connections: int
    exchanges: list[Exchange]  # registry's then token server's, each in arrival order

    @property
    def service_ms(self) -> list[float]:
        """Per request, the upstream's own time (hidden in the RT delay unless longer)."""
        return [e.upstream * 1000 for e in self.exchanges]

    @property
    def round_trips(self) -> float:
        return self.seconds / self.rt

    @property
    def over_floor(self) -> float:
        return self.round_trips / self.scenario.floor(self.review)


@dataclass(frozen=True)
class Setup:
    """What every scenario shares: the proxies' thread, a scratch directory, Signet's flags and env."""

    thread: ProxyThread
    workdir: Path
    signet_args: list[str]
    env: dict[str, str]
    rt: float
    tls: bool

    def site_args(self, site: Site) -> list[str]:
        """Signet refuses loopback registries unless plain HTTP is allowed or they are configured mirrors:
        over TLS, each proxy is named as the https mirror of itself."""
        return [f"--registry-mirror={site.proxy.host}=https://{site.proxy.host}"] if self.tls else []


def run_scenario(scenario: Scenario, site: Site, setup: Setup) -> list[Measured]:
    """First contact on a server without warm-up; then, on a fresh server, the first review and a later cold one."""
    policies = setup.workdir / "policies"
    policies.mkdir(parents=True, exist_ok=True)
    (policies / "bench.yaml").write_text(policy_yaml(site.proxy.host))
    args = [*setup.signet_args, *setup.site_args(site), "--policies", str(policies)]
    return [*run_reviews(scenario, site, setup, [*args, *NO_WARM_UP], REVIEWS[:1]),
            *run_reviews(scenario, site, setup, args, REVIEWS[1:])]


def run_reviews(scenario: Scenario, site: Site, setup: Setup, args: list[str],
                reviews: tuple[tuple[str, str], ...]) -> list[Measured]:
    """A fresh ``signet serve`` with ``args``, and ``reviews`` (name, image set) posted to it in order."""
    thread, rt = setup.thread, setup.rt

    def snapshot() -> list[ProxyStats]:
        return [thread.stats(p) for p in site.proxies]

    def since(before: list[ProxyStats]) -> list[ProxyStats]:
        return [now.since(then) for now, then in zip(snapshot(), before, strict=True)]

    before = snapshot()
    server = SignetProcess(setup.workdir / "signet", args, setup.env)
    try:
        startup = since(before)
        results = []
        for name, image_set in reviews:
            images: list[Image] = site.images[(scenario.signature, image_set)][:scenario.images]
            refs = [image.reference(site.proxy.host, pinned=scenario.ref == "digest") for image in images]
            mark = snapshot()
            admission = server.admit(review(refs))
            parts = since(mark)
            if not admission.allowed:
                raise SystemExit(f"{scenario} {name}: denied: {admission.message}\n{server.stderr()}")
            exchanges = [e for p in parts for e in p.exchanges]
            results.append(Measured(
                scenario, name, admission.seconds, rt, admission.cpu_seconds * 1000,
                requests=sum(p.requests for p in parts), connections=sum(p.connections for p in parts),
                h2_connections=sum(p.h2_connections for p in parts),
                bytes=sum(p.bytes_in + p.bytes_out for p in parts),
                peak_concurrency=ProxyStats(exchanges=exchanges).peak_concurrency(),
                startup_requests=sum(p.requests for p in startup),
                startup_connections=sum(p.connections for p in startup), exchanges=exchanges,
            ))
        return results
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rt-ms", type=float, default=100.0, help="one round trip, in ms (default 100)")
    parser.add_argument("--tls", action="store_true", help="the proxy terminates TLS (Signet trusts its test CA)")
    parser.add_argument("--no-h2", action="store_true", help="with --tls: do not offer h2 in ALPN")
    parser.add_argument("--images", type=int, default=20, help="images in the big Pod (default 20)")
    parser.add_argument("--refs", default="digest,tag", help="digest,tag")
    parser.add_argument("--signatures", default="legacy,bundle", help="legacy,bundle")
    parser.add_argument("--auth", default="none,token", help="none,token")
    parser.add_argument("--quick", action="store_true", help="digest-pinned references only")
    parser.add_argument("--trace", action="store_true", help="print each review's requests on a timeline")
    parser.add_argument("--json", type=Path, help="also write every figure (and each request) here")
    parser.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                        help="pass ARG to every signet serve, e.g. --server-arg=--images-in-flight=32 (repeatable)")
    args = parser.parse_args()
    refs = ["digest"] if args.quick else args.refs.split(",")
    signatures, auths = args.signatures.split(","), args.auth.split(",")
    sizes = sorted({1, args.images})
    rt = args.rt_ms / 1000
    scenarios = [Scenario(r, sig, a, n) for a, sig, r, n in itertools.product(auths, signatures, refs, sizes)]

    kit = SigstoreKit.create(seed_entries=3)
    with tempfile.TemporaryDirectory(prefix="signet-bench-net-") as tmp, ProxyThread() as thread:
        work = Path(tmp)
        (work / "trusted_root.json").write_bytes(kit.trusted_root_json())
        signet_args = ["--trusted-root", str(work / "trusted_root.json"), "--deadline", "60", *args.server_arg]
        env: dict[str, str] = {}
        options: dict[str, object] = {"rt": rt}
        if args.tls:
            ca = TestCA("signet bench CA")
            ca.issue(work / "proxy.crt", work / "proxy.key", "registry.bench")
            options["tls"] = server_tls_context(work / "proxy.crt", work / "proxy.key", http2=not args.no_h2)
            env["SSL_CERT_FILE"] = str(ca.write_ca(work / "ca.pem"))
            transport = f"TLS by the proxy (ALPN {'http/1.1 only' if args.no_h2 else 'h2, http/1.1'})"
        else:
            signet_args.append("--allow-http-registry")
            transport = "plain HTTP (handshakes are delays only)"
        sites: dict[str, Site] = {}
        try:
            started = time.perf_counter()
            for auth in auths:
                site = sites[auth] = start_site(work / f"registry-{auth}", thread, auth, **options)
                for signature, image_set in itertools.product(signatures, IMAGE_SETS):
                    site.images[(signature, image_set)] = [
                        push_signed(site, kit, f"bench/{signature}-{image_set}{i}", signature)
                        for i in range(args.images)
                    ]
            print(f"pushed {args.images * len(IMAGE_SETS) * len(signatures) * len(auths)} signed images in "
                  f"{time.perf_counter() - started:.1f} s; {len(scenarios)} scenarios\n", file=sys.stderr)
            setup = Setup(thread, work / "run", signet_args, env, rt, args.tls)
            results = [m for s in scenarios for m in run_scenario(s, sites[s.auth], setup)]
        finally:
            for site in sites.values():
                site.stop()
    report(results, args.rt_ms, transport)
    if args.trace:
        trace(results)
    if args.json:
        args.json.write_text(json.dumps({"rt_ms": args.rt_ms, "transport": transport,
                                         "results": [as_dict(m) for m in results]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
