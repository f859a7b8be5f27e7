"""Benchmark: one attestation policy evaluation, CEL and Rego, on a SLSA v1 provenance.

    .venv/bin/python bench/expressions.py [--iterations 2000] [--compare-cel]

Figures per language: compile (in this process), evaluate in this process, and evaluate through
the sandbox (what the webhook does: JSON to a worker process and back), plus the sandbox's cold
start. ``--compare-cel`` also times the three CEL runtimes on PyPI on the same expression, each in
its own process (skipped when not installed), and a nested comprehension of 10^6 iterations
(10^4 for the pure-Python cel-python), which only cel-expr-python stops (budget: 10,000).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from webhook.policy import cel, rego
from webhook.policy.expressions import CompiledPolicy, Limits, Scope, attestation_document
from webhook.policy.sandbox import Sandbox

STATEMENT: dict[str, Any] = {
    "_type": "https://in-toto.io/Statement/v1",
    "subject": [{"name": "ghcr.io/acme/app", "digest": {"sha256": "a" * 64}}],
    "predicateType": "https://slsa.dev/provenance/v1",
    "predicate": {
        "buildDefinition": {
            "buildType": "https://actions.github.io/buildtypes/workflow/v1",
            "externalParameters": {"workflow": {"ref": "refs/tags/v1.2.3", "repository": "https://github.com/acme/app",
                                                "path": ".github/workflows/release.yml"}},
            "internalParameters": {"github": {"event_name": "push", "repository_id": "123",
                                              "repository_owner_id": "456", "runner_environment": "github-hosted"}},
            "resolvedDependencies": [
                {"uri": "git+https://github.com/acme/app@refs/tags/v1.2.3", "digest": {"gitCommit": "b" * 40}},
                *({"uri": f"pkg:npm/dep{i}@1.0.{i}", "digest": {"sha256": "c" * 64}} for i in range(40)),
            ],
        },
        "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"},
                       "metadata": {"invocationId": "https://github.com/acme/app/actions/runs/1/attempts/1"}},
    },
}
SIGNER = {"subject": "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.2.3",
          "issuer": "https://token.actions.githubusercontent.com", "sourceRepositoryRef": "refs/tags/v1.2.3"}

CEL_POLICY = """predicateType == "https://slsa.dev/provenance/v1" &&
predicate.buildDefinition.externalParameters.workflow.repository == "https://github.com/acme/app" &&
predicate.buildDefinition.externalParameters.workflow.ref.startsWith("refs/tags/v") &&
predicate.runDetails.builder.id.matches("^https://github[.]com/actions/runner/github-hosted$") &&
predicate.buildDefinition.resolvedDependencies.exists(d, d.uri.startsWith("git+https://github.com/acme/app@")) &&
predicate.buildDefinition.resolvedDependencies.all(d, has(d.digest)) &&
signer.issuer == "https://token.actions.githubusercontent.com\""""

REGO_POLICY = """package sigstore
import rego.v1

default isCompliant := false

isCompliant if count(errors) == 0

workflow := input.predicate.buildDefinition.externalParameters.workflow

errors contains "not SLSA v1 provenance" if input.predicateType != "https://slsa.dev/provenance/v1"
errors contains sprintf("repository %s", [workflow.repository]) if workflow.repository != "https://github.com/acme/app"
errors contains sprintf("ref %s is not a release tag", [workflow.ref]) if not startswith(workflow.ref, "refs/tags/v")
errors contains "not built on a GitHub-hosted runner" if {
	not regex.match(`^https://github[.]com/actions/runner/github-hosted$`, input.predicate.runDetails.builder.id)
}
errors contains "no source dependency" if {
	not any_source
}
errors contains sprintf("dependency %s has no digest", [d.uri]) if {
	some d in input.predicate.buildDefinition.resolvedDependencies
	not d.digest
}

any_source if {
	some d in input.predicate.buildDefinition.resolvedDependencies
	startswith(d.uri, "git+https://github.com/acme/app@")
}
"""

COMPARE = textwrap.dedent("""
    import json, statistics, sys, time
    lib, expression, variables = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    loop = "l.all(x, l.all(y, x + y >= 0))"
    size = 100 if lib == "cel-python" else 1000  # pure Python: 10^6 iterations take minutes
    if lib == "cel-expr-python":
        from cel_expr_python import cel
        env = cel.NewEnv(variables={k: cel.Type.DYN for k in [*variables, "l"]})
        compile_ = lambda e: env.compile(e)
        run = lambda p, v: p.eval(data=v).value()
    elif lib == "common-expression-language":
        import cel
        compile_ = lambda e: cel.compile(e)
        run = lambda p, v: p.execute(v)
    else:
        import celpy
        env = celpy.Environment()
        compile_ = lambda e: env.program(env.compile(e))
        run = lambda p, v: p.evaluate({k: celpy.json_to_cel(x) for k, x in v.items()})
    compiles = []
    for _ in range(20):
        start = time.perf_counter(); program = compile_(expression); compiles.append(time.perf_counter() - start)
    evals = []
    for _ in range(200):
        start = time.perf_counter(); result = run(program, variables); evals.append(time.perf_counter() - start)
    start = time.perf_counter()
    try:
        run(compile_(loop), {"l": list(range(size))})
        loop_result = f"{size * size} iterations ran to the end in {time.perf_counter() - start:.2f} s"
    except Exception as exc:
        loop_result = f"{size * size} iterations stopped after {time.perf_counter() - start:.3f} s: {str(exc)[:60]}"
    print(json.dumps({"result": str(result), "compile": statistics.median(compiles),
                      "eval": statistics.median(evals), "loop": loop_result}))
""")


def timed(function: Callable[[], object], iterations: int) -> float:
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--compare-cel", action="store_true")
    args = parser.parse_args()
    document = attestation_document(STATEMENT, SIGNER)
    now = datetime.now(UTC)
    print(f"SLSA v1 provenance, {len(json.dumps(STATEMENT))} bytes of statement; medians of {args.iterations} runs")
    compiled_cel = cel.compile_expression(CEL_POLICY, Scope.ATTESTATION)
    compiled_rego = rego.compile_module(REGO_POLICY, Scope.ATTESTATION)
    compile_runs = max(10, args.iterations // 20)
    with Sandbox(Limits(timeout=5.0), workers=1) as sandbox:
        start = time.perf_counter()
        sandbox.evaluate(compiled_cel, document, now=now)
        cold = time.perf_counter() - start
        rows: list[tuple[str, CompiledPolicy, Callable[[], object]]] = [
            ("cel ", compiled_cel, functools.partial(cel.compile_expression, CEL_POLICY, Scope.ATTESTATION)),
            ("rego", compiled_rego, functools.partial(rego.compile_module, REGO_POLICY, Scope.ATTESTATION))]
        for name, policy, compile_ in rows:
            assert policy.evaluate(document, now=now) == ()
            in_process = functools.partial(policy.evaluate, document, now=now)
            sandboxed = functools.partial(sandbox.evaluate, policy, document, now=now)
            print(f"  {name}  compile {timed(compile_, compile_runs) * 1e3:7.3f} ms   "
                  f"evaluate in process {timed(in_process, args.iterations) * 1e3:6.3f} ms   "
                  f"through the sandbox {timed(sandboxed, args.iterations) * 1e3:6.3f} ms")
    print(f"  sandbox cold start (worker process, first evaluation): {cold * 1e3:.0f} ms")
    if args.compare_cel:
        compare(document)


def compare(document: dict[str, Any]) -> None:
    statement = document["statement"]
    variables = json.dumps({"predicateType": statement["predicateType"], "predicate": statement["predicate"],
                            "statement": statement, "signer": document["signer"]})
    print("CEL runtimes on the same expression (compile / evaluate medians; a 10^6-iteration loop):")
    for lib in ("cel-expr-python", "common-expression-language", "cel-python"):
        try:
            done = subprocess.run([sys.executable, "-c", COMPARE, lib, CEL_POLICY, variables],
                                  capture_output=True, text=True, timeout=120, check=False)
        except subprocess.TimeoutExpired:
            print(f"  {lib:28s} did not finish in 120 s")
            continue
        if done.returncode != 0:
            print(f"  {lib:28s} not available: {done.stderr.strip().splitlines()[-1:]}")
            continue
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  {lib:28s} {figures['compile'] * 1e6:8.0f} µs / {figures['eval'] * 1e6:8.0f} µs  "
              f"result {figures['result']}; loop {figures['loop']}")


if __name__ == "__main__":
    main()
