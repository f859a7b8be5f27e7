"""Benchmark: registry cost of verifying images on a loopback docker-registry.

    .venv/bin/python bench/registry.py [--images 20] [--rounds 5]

1. A cold ``verify`` of a digest-pinned image with one legacy keyless signature (bundle
   annotation): registry requests made (``RegistryClient.request_count``; goal ≤ 3) and time.
2. A pod-like set of N distinct such images verified concurrently by one client, against one
   image alone (goal: ≤ 2× the time). Each round uses a fresh client (cold connections, no caches).

Starts its own Debian docker-registry on a free 127.0.0.1 port; signatures are made with the
test signing kit (tests/sigstore_kit), verified against its trust root.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.registry import LocalRegistry  # noqa: E402
from tests.sigstore_kit import SigstoreKit  # noqa: E402
from webhook.images import verify_image  # noqa: E402
from webhook.oci import RegistryClient, parse_reference  # noqa: E402
from webhook.verify.identity import Identity  # noqa: E402
from webhook.verify.trustroot import TrustedRoot  # noqa: E402
from webhook.verify.verifier import Verifier  # noqa: E402

POLICY = Identity(subject="signer@example.com", issuer="https://oidc.example")


def push_signed(registry: LocalRegistry, kit: SigstoreKit, repo: str) -> str:
    digest = registry.push_random_image(repo, None)
    sig = kit.sign_image_legacy(digest, repository=f"{registry.host}/{repo}")
    registry.push_legacy_signature(repo, digest, [(sig.payload, sig.annotations)])
    return f"{registry.host}/{repo}@{digest}"


async def verify_set(refs: list[str], root: TrustedRoot) -> tuple[float, int]:
    """Seconds and registry requests to verify ``refs`` concurrently with a fresh client and verifier."""
    verifier = Verifier(root)
    async with RegistryClient(allow_http=True) as client:
        start = time.perf_counter()
        results = await asyncio.gather(*(
            verify_image(parse_reference(ref), registry_client=client, verifier=verifier, policy=POLICY)
            for ref in refs
        ))
        elapsed = time.perf_counter() - start
        if not all(result.ok for result in results):
            raise SystemExit("a benchmark image did not verify: " + "; ".join(r.explain() for r in results))
        return elapsed, client.request_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    kit = SigstoreKit.create(seed_entries=3)
    root = TrustedRoot.from_json(kit.trusted_root_json())
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        registry = LocalRegistry(Path(tmp))
        try:
            single = push_signed(registry, kit, "bench/single")
            pod = [push_signed(registry, kit, f"bench/pod-{i}") for i in range(args.images)]
            asyncio.run(verify_set([single], root))  # warm the registry process itself, not our client

            one_times, one_requests = [], 0
            many_times, many_requests = [], 0
            for _ in range(args.rounds):
                elapsed, one_requests = asyncio.run(verify_set([single], root))
                one_times.append(elapsed)
                elapsed, many_requests = asyncio.run(verify_set(pod, root))
                many_times.append(elapsed)
        finally:
            registry.stop()

    one, many = statistics.median(one_times), statistics.median(many_times)
    print(f"cold verify, digest-pinned, 1 legacy signature: {one_requests} registry requests "
          f"(goal <= 3), {one * 1000:.1f} ms (median of {args.rounds})")
    print(f"{args.images} distinct images concurrently: {many_requests} registry requests, {many * 1000:.1f} ms; "
          f"ratio to 1 image {many / one:.2f}x (goal <= 2x)")


if __name__ == "__main__":
    main()
