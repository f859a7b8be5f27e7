"""Benchmark: an attestation requirement in the decision engine, from verification to policy.

    .venv/bin/python bench/attestations.py [--iterations 200]

An image with a legacy ``.att`` SLSA provenance (made by the test signing kit) in the in-memory
registry, a keyless authority requiring it with a 4-clause CEL policy. Figures (medians):

- ``verify``: the cryptography of one ``.att`` layer (envelope signature, certificate chain, SCT,
  Rekor SET): what ``check_image`` adds per attestation, in its worker thread;
- ``policy, cold``: one policy evaluation as the engine runs it (a thread, the sandbox worker,
  JSON both ways), result cache cleared every time;
- ``policy, cached``: the same through the engine's result cache;
- ``decision, cold``: a whole decision with every engine cache cleared (registry, verification,
  policy), and ``decision, warm``: the verdict cache answering.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.sigstore_kit import default_kit
from tests.unit.decision.attesting import attesting_policy, legacy, put_att, requirement
from tests.unit.engine_harness import REPO, push_signed
from tests.unit.oci.fake_registry import HOST, FakeRegistry
from webhook.decision import Engine, EngineSettings
from webhook.decision.attested import signer_attributes
from webhook.decision.cache import AsyncCache
from webhook.decision.policy_runner import PolicyRunner, PolicyVerdict
from webhook.oci import RegistryClient
from webhook.policy.expressions import attestation_document
from webhook.policy.loader import load_text
from webhook.policy.matching import PolicySet
from webhook.policy.models import NoMatchPolicy
from webhook.policy.sandbox import Sandbox
from webhook.verify.attestation import verify_cosign_attestation
from webhook.verify.cosign_attestation import CosignAttestation
from webhook.verify.trustroot import TrustedRoot
from webhook.verify.verifier import Verifier

POLICY = ('predicate.buildDefinition.externalParameters.workflow.ref.startsWith("refs/tags/") &&\n'
          'predicate.buildDefinition.externalParameters.workflow.repository == "https://github.com/acme/app" &&\n'
          'signer.issuer.startsWith("https://") &&\n'
          'predicateType == "https://slsa.dev/provenance/v1"')


async def _timed(runs: int, step: Callable[[], Awaitable[object]]) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await step()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


async def main(iterations: int) -> None:
    kit = default_kit()
    root = TrustedRoot.from_json(kit.trusted_root_json())
    fake = FakeRegistry()
    digest = push_signed(fake, kit)
    made = legacy(kit, digest)
    put_att(fake, digest, made)
    image = f"{HOST}/{REPO}:v1"
    loaded = load_text(attesting_policy(requirement(policy=POLICY)), "bench.yaml")
    policy_set = PolicySet.from_load_result(loaded, no_match_policy=NoMatchPolicy.DENY)
    content = loaded.policies[0].spec.authorities[0].attestations[0].policy
    compiled = content.compiled if content is not None else None
    assert compiled is not None

    verifier = Verifier(root)
    material = CosignAttestation.from_layer(made.envelope, made.annotations)
    started = time.perf_counter()
    for _ in range(iterations):
        verified = verify_cosign_attestation(verifier, material, digest)
    verify = (time.perf_counter() - started) / iterations

    document = attestation_document(verified.statement_json, signer_attributes(verified))
    sandbox = Sandbox(workers=2)
    await asyncio.to_thread(sandbox.start)
    results: AsyncCache[tuple[str, str], PolicyVerdict] = AsyncCache("bench", max_entries=16, ttl=3600.0)
    runner = PolicyRunner(lambda: sandbox, results)  # what the engine evaluates policies with
    async with RegistryClient(transport=fake.transport()) as client:
        engine = Engine(policies=lambda: policy_set, trust_root=lambda: root, registry=client,
                        settings=EngineSettings(), sandbox=sandbox)
        try:
            [first] = await engine.decide([image], "bench")
            assert first.outcome.verdict == "allow", first.outcome.reason

            async def cold_policy() -> object:
                runner.results.clear()
                return await runner.evaluate(compiled, document)

            async def cold_decision() -> object:
                engine.invalidate()
                engine.caches.digests.clear()
                return await engine.decide([image], "bench")

            figures = {
                "verify one .att layer": verify,
                "policy, cold (thread + sandbox)": await _timed(iterations, cold_policy),
                "policy, cached": await _timed(iterations, lambda: runner.evaluate(compiled, document)),
                "decision, cold (all caches cleared)": await _timed(max(iterations // 4, 10), cold_decision),
                "decision, warm (verdict cached)": await _timed(iterations, lambda: engine.decide([image], "bench")),
            }
        finally:
            await engine.aclose()
            sandbox.close()
    for name, seconds in figures.items():
        print(f"{name:40s} {seconds * 1000:8.3f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    asyncio.run(main(parser.parse_args().iterations))
